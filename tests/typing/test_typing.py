"""The public API's static types, proven by running mypy --strict on tests/typing/api_usage.py."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent


def test_public_api_types_check_strictly():
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--warn-unused-ignores",
            "--no-incremental",
            "--cache-dir=/dev/null",
            str(HERE / "api_usage.py"),
        ]
    )
    assert status == 0, stdout + stderr


def test_a_type_error_is_reported(tmp_path):
    """Guard against a checker that passes everything: a misuse without its ignore fails."""
    source = (HERE / "api_usage.py").read_text()
    broken = source.replace(
        "await spawner.spawn(Other(x=1))  # type: ignore[arg-type]",
        "await spawner.spawn(Other(x=1))",
    )
    assert broken != source
    target = tmp_path / "broken_usage.py"
    target.write_text(broken)
    stdout, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(target)]
    )
    assert status == 1
    assert 'Argument 1 to "spawn" of "JobSpawner" has incompatible type "Other"' in stdout
