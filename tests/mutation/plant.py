"""Plant one bug in a copy of the project and run some tests against it.

    python -m tests.mutation.plant src/job/_dispatcher.py 'old text' 'new text' \\
        -- tests/integration/test_failures.py

Checks that a test fails for the reason it names: the change is applied to a temporary copy
(``_copy.project_copy``; the working tree is never written), the unmutated copy must pass the
same tests first, and the exit status is 0 only if the tests FAIL with the bug planted.
"""

from __future__ import annotations

import argparse
import sys

from tests.mutation._copy import check_imports_copy, copy_env, project_copy, run_pytest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="path inside the project, e.g. src/job/retry.py")
    parser.add_argument("old", help="text to replace (must occur exactly once)")
    parser.add_argument("new", help="replacement text")
    parser.add_argument("tests", nargs="+", help="pytest arguments (after --)")
    parser.add_argument("--src-rev", metavar="REV", help="take src/ from this git revision")
    args = parser.parse_args(argv)
    with project_copy(args.src_rev) as copy:
        check_imports_copy(copy)
        env = copy_env(copy)
        target = copy / args.file
        text = target.read_text()
        if text.count(args.old) != 1:
            print(f"{args.old!r} occurs {text.count(args.old)} times in {args.file}")
            return 2
        base = run_pytest(copy, args.tests, env=env)
        if base.returncode != 0:
            print(base.stdout[-3000:], "\nbaseline (no bug planted) failed")
            return 2
        target.write_text(text.replace(args.old, args.new))
        result = run_pytest(copy, args.tests, env=env)
        lines = result.stdout.splitlines()
        failed = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR tests"))]
        if result.returncode == 0:
            print("SURVIVED: the tests pass with the bug planted")
            return 1
        print("killed:", *(failed or [result.stdout[-1500:]]), sep="\n  ")
        return 0


if __name__ == "__main__":
    sys.exit(main())
