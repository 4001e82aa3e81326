"""cosmic-ray over the pure core (retry math, clock), on a copy of the project.

    python -m tests.mutation.py_mutants                # retry.py and clock.py
    python -m tests.mutation.py_mutants retry          # one module
    python -m tests.mutation.py_mutants --src-rev HEAD # src/ as committed

Why cosmic-ray and not mutmut: cosmic-ray applies each mutant to the file on disk in the
directory it is pointed at and runs an ordinary shell command, so pointing it at a temporary
copy (``_copy.project_copy``) with ``PYTHONPATH`` on the copy's ``src`` works with this src
layout and with an editable install of the original. mutmut 3 instead copies the code into
``./mutants`` of the current directory and imports it through trampolines, which an editable
src-layout install shadows (the un-mutated original is imported: false survivors), and it only
mutates code inside functions (not the pydantic field defaults in retry.py).

Each module's mutants run only that module's unit tests. The report lists every survivor
with its diff; docs/testing.md says, for each one, which test now kills it or why it cannot
be killed (an equivalent mutant).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from tests.mutation._copy import check_imports_copy, copy_env, project_copy, run_pytest

MODULES = {
    "retry": ("src/job/retry.py", "tests/unit/test_retry.py"),
    "clock": ("src/job/clock.py", "tests/unit/test_clock.py"),
}

CONFIG = """\
[cosmic-ray]
module-path = "{module}"
timeout = 120.0
excluded-modules = []
test-command = "{python} -m pytest -x -q -p no:cacheprovider {tests}"

[cosmic-ray.distributor]
name = "local"
"""


def tool(name: str) -> str:
    """A console script of the running interpreter's environment (the nox venv)."""
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else (shutil.which(name) or name)


def run_module(copy: Path, name: str, module: str, tests: str) -> tuple[int, int]:
    env = copy_env(copy)
    base = run_pytest(copy, [tests], env=env)
    if base.returncode != 0:
        print(base.stdout[-3000:])
        raise SystemExit(f"{name}: baseline tests fail on the unmutated copy")
    config = copy / f"cosmic-ray-{name}.toml"
    config.write_text(CONFIG.format(module=module, python=sys.executable, tests=tests))
    session = copy / f"{name}.sqlite"
    for argv in (
        [tool("cosmic-ray"), "init", str(config), str(session)],
        [tool("cosmic-ray"), "exec", str(config), str(session)],
    ):
        subprocess.run(argv, cwd=copy, env=env, check=True)
    report = subprocess.run(
        [tool("cr-report"), "--show-diff", "--surviving-only", str(session)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(f"===== {name}: {module} (tests: {tests})")
    print(report)
    total = killed = 0
    rate = subprocess.run(
        [tool("cr-rate"), str(session)], cwd=copy, env=env, capture_output=True, text=True
    )
    summary = subprocess.run(
        [tool("cr-report"), str(session)], cwd=copy, env=env, capture_output=True, text=True
    ).stdout
    for line in summary.splitlines():
        if line.startswith("total jobs:"):
            total = int(line.split(":")[1])
        elif line.startswith("surviving mutants:"):
            killed = total - int(line.split(":")[1].split("(")[0])
    print(f"{name}: {killed}/{total} killed; survival rate {rate.stdout.strip()}%")
    return killed, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--src-rev", metavar="REV", help="take src/ from this git revision")
    args = parser.parse_args(argv)
    names = args.modules or list(MODULES)
    if unknown := [n for n in names if n not in MODULES]:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    results = {}
    with project_copy(args.src_rev) as copy:
        check_imports_copy(copy)
        for name in names:
            module, tests = MODULES[name]
            results[name] = run_module(copy, name, module, tests)
    for name, (killed, total) in results.items():
        print(f"{MODULES[name][0]}: {killed}/{total} mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
