#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md):
#
#     bench/run.sh                 # full run, about 25 minutes on 2 cores
#     bench/run.sh --quick --runs 1  # smoke test, about 3 minutes
#
# Creates bench/.venv (requirements.txt plus this repository's `job`, editable), then runs
# bench/run.py with the given options. JOB_BENCH_DSN=postgresql://... uses an existing server
# (the role must be allowed to create databases) instead of a throwaway local one.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=bench/.venv
stamp=$venv/.installed
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ bench/requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r bench/requirements.txt -e .
    touch "$stamp"
fi
exec "$venv/bin/python" bench/run.py "$@"
