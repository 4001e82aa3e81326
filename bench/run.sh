#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md):
#
#     bench/run.sh                 # full run (both profiles), about 60 minutes on 2 cores
#     bench/run.sh --quick --runs 1  # smoke test
#
# Creates bench/.venv (requirements.txt plus this repository's `job`, editable) and
# bench/.venv312 (requirements-py312.txt: oban, which needs Python >= 3.12; PYTHON312 names the
# interpreter, default /root/.pyenv/versions/3.12.1/bin/python, else python3.12 on PATH), then
# runs bench/run.py with the given options. Without a Python 3.12 oban is skipped (said so in
# the results). JOB_BENCH_DSN=postgresql://... uses an existing server (the role must be
# allowed to create databases) instead of a throwaway local one.
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

venv312=bench/.venv312
stamp312=$venv312/.installed
python312=${PYTHON312:-/root/.pyenv/versions/3.12.1/bin/python}
if [ ! -x "$python312" ]; then
    python312=$(command -v python3.12 || true)
fi
if [ ! -x "$venv312/bin/python" ] && [ -n "$python312" ]; then
    "$python312" -m venv "$venv312"
fi
if [ -x "$venv312/bin/python" ]; then
    # Keep it out of git without touching the repository's .gitignore (Python 3.13's venv
    # writes the same file itself).
    [ -f "$venv312/.gitignore" ] || echo '*' > "$venv312/.gitignore"
    if [ ! -f "$stamp312" ] || [ bench/requirements-py312.txt -nt "$stamp312" ]; then
        "$venv312/bin/python" -m pip install --quiet --upgrade pip
        "$venv312/bin/python" -m pip install --quiet -r bench/requirements-py312.txt
        touch "$stamp312"
    fi
else
    echo "bench/run.sh: no Python 3.12 (set PYTHON312): oban will be skipped" >&2
fi
exec "$venv/bin/python" bench/run.py "$@"
