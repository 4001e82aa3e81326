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
import ast
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


def signature_annotation_lines(path: Path) -> set[int]:
    """Lines holding only annotations of function parameters or return values.

    Under ``from __future__ import annotations`` these are never evaluated (nothing here
    calls ``get_type_hints`` on a function), so mutating ``X | None`` into ``X - None`` is an
    equivalent mutant. Class-level annotations are NOT skipped: pydantic evaluates them.
    """
    tree = ast.parse(path.read_text())
    if not any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    ):
        return set()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            annotated = [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            annotated += [node.returns]
            for ann in annotated:
                if ann is not None:
                    lines.update(range(ann.lineno, (ann.end_lineno or ann.lineno) + 1))
    return lines


def skip_signature_annotations(session: Path, module: Path) -> int:
    """Mark the session's mutants of signature annotations as skipped; how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    lines = signature_annotation_lines(module)
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            if all(m.start_pos[0] in lines for m in item.mutations):
                db.set_result(
                    item.job_id,
                    WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="annotation"),
                )
                skipped += 1
    return skipped


def run_module(copy: Path, name: str, module: str, tests: str) -> tuple[int, int]:
    env = copy_env(copy)
    base = run_pytest(copy, [tests], env=env)
    if base.returncode != 0:
        print(base.stdout[-3000:])
        raise SystemExit(f"{name}: baseline tests fail on the unmutated copy")
    config = copy / f"cosmic-ray-{name}.toml"
    config.write_text(CONFIG.format(module=module, python=sys.executable, tests=tests))
    session = copy / f"{name}.sqlite"
    subprocess.run(
        [tool("cosmic-ray"), "init", str(config), str(session)], cwd=copy, env=env, check=True
    )
    skipped = skip_signature_annotations(session, copy / module)
    print(f"{name}: {skipped} mutants of function-signature annotations skipped (equivalent)")
    subprocess.run(
        [tool("cosmic-ray"), "exec", str(config), str(session)], cwd=copy, env=env, check=True
    )
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
            total = int(line.split(":")[1]) - skipped  # skipped mutants were not run
        elif line.startswith("surviving mutants:"):
            killed = total - int(line.split(":")[1].split("(")[0])
    print(f"{name}: {killed}/{total} run mutants killed (cr-rate, skipped counted as killed:")
    print(f"    {rate.stdout.strip()}% survive)")
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
