"""A throwaway copy of the project to mutate, and running pytest against it.

Other developers edit ``src/job`` in the same working tree while mutants run, so a mutation
tool must never touch it: ``project_copy()`` copies ``src/``, ``tests/``, ``docs/``,
``scripts/``, ``README.md`` and ``pyproject.toml`` into a temporary directory, and
``run_pytest()`` runs the tests there with ``PYTHONPATH`` set to the copy's ``src`` (which wins
over an editable install of the original), after checking that ``import job`` really resolves
to the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")


@contextmanager
def project_copy(src_rev: str | None = None) -> Iterator[Path]:
    """A copy of the project as it is in the working tree now, removed afterwards.

    With ``src_rev`` (a git revision, e.g. ``HEAD``), ``src/`` comes from that commit instead
    of the working tree: useful while someone's uncommitted engine change breaks the suite.
    """
    with tempfile.TemporaryDirectory(prefix="job-mutants-") as tmp:
        dest = Path(tmp) / "job"
        dest.mkdir()
        shutil.copytree(ROOT / "tests", dest / "tests", ignore=_IGNORE)
        if src_rev is None:
            shutil.copytree(ROOT / "src", dest / "src", ignore=_IGNORE)
        else:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", src_rev, "src"],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        for name in ("docs", "scripts"):  # for the docs snippet check
            shutil.copytree(ROOT / name, dest / name, ignore=_IGNORE)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, dest / name)
        yield dest


def copy_env(copy: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "src"), str(copy)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def check_imports_copy(copy: Path) -> None:
    """Fail loudly if ``import job`` would not load the copy (the mutants would be ignored)."""
    out = subprocess.run(
        [sys.executable, "-c", "import job, tests; print(job.__file__); print(tests.__file__)"],
        cwd=copy,
        env=copy_env(copy),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stdout.split():
        if not Path(line).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"imports resolve outside the copy ({line}); refusing to run")


def run_pytest(
    copy: Path, tests: Sequence[str], *, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``tests`` in the copy; stop at the first failure."""
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(
            argv, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, -1, str(exc.stdout or ""), "timed out")
