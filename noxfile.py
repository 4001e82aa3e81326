"""Developer and CI entry points: `nox -s lint typecheck tests` (what ./scripts/test runs)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ (configured in pyproject.toml)."""
    session.install("-e", ".[lint]")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole pytest suite against a real PostgreSQL (started by the tests themselves)."""
    session.install("-e", ".[test]", "mypy>=1.11")
    # Exit code 5 (no tests collected) is not in success_codes, so it fails the session.
    session.run("pytest", *session.posargs, success_codes=[0])


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (not a default session, not in CI; see docs/testing.md).

    `nox -s mutants` runs the scripted SQL mutants (tests/mutation/sql_mutants.py) and
    cosmic-ray over retry.py and clock.py (tests/mutation/py_mutants.py). Both work on a copy
    of the tree in a temporary directory and never write to the working tree. Arguments pick
    a part: `nox -s mutants -- sql [names...]`, `nox -s mutants -- python [retry|clock]`;
    add `--src-rev HEAD` to take src/ from the last commit.
    """
    session.install("-e", ".[test,mutation]")
    args = list(session.posargs)
    part = args.pop(0) if args and args[0] in ("sql", "python") else "all"
    if part in ("sql", "all"):
        session.run("python", "-m", "tests.mutation.sql_mutants", *args)
    if part in ("python", "all"):
        session.run("python", "-m", "tests.mutation.py_mutants", *args)


@nox.session
def demo(session: nox.Session) -> None:
    """The demo worker (starts its own PostgreSQL unless JOB_DATABASE_URL is set)."""
    session.install("-e", ".[binary]")
    session.run("python", "-m", "job", "demo", *session.posargs)
