"""Mutation testing (``nox -s mutants``; not part of CI). See docs/testing.md.

Nothing here ever writes to the working tree: every mutant is applied to a copy of the project
in a temporary directory, and the tests run against that copy.
"""
