"""The password in ``JobSvcConfig.pg_con`` stays out of reprs, dumps, validation errors and
connection errors. (With a real server rejecting the password: tests/integration/test_worker.py.)
"""

from __future__ import annotations

import ast
import traceback
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr, ValidationError

from job import DatabaseError, Jobs, JobSvcConfig
from job import config as config_module
from job.__main__ import migrate_command

PASSWORD = "s3cr3t-Pw"

# Nothing listens on port 1: connecting fails fast with "Connection refused".
URI = f"postgresql://app:{PASSWORD}@127.0.0.1:1/appdb"
KEY_VALUE = f"host=127.0.0.1 port=1 user=app password={PASSWORD} dbname=appdb"
DSNS = pytest.mark.parametrize("dsn", [URI, KEY_VALUE], ids=["uri", "key_value"])


def everything_about(exc: BaseException) -> str:
    """The exception as a traceback would print it, causes and contexts included."""
    return "".join(traceback.format_exception(exc))


@DSNS
def test_repr_str_and_dumps_hide_the_password(dsn):
    config = JobSvcConfig(pg_con=dsn)
    for text in (
        repr(config),
        str(config),
        repr(config.model_dump()),
        str(config.model_dump()),
        config.model_dump_json(),
        repr(config.pg_con),
        str(config.pg_con),
    ):
        assert PASSWORD not in text
        assert "**********" in text


@DSNS
def test_a_plain_str_is_accepted_and_kept_exactly(dsn):
    config = JobSvcConfig(pg_con=dsn)
    assert isinstance(config.pg_con, SecretStr)
    assert config.pg_con.get_secret_value() == dsn
    assert JobSvcConfig(pg_con=SecretStr(dsn)).pg_con == config.pg_con
    assert config.should_migrate is True


def test_model_dump_json_has_the_other_fields():
    dumped = JobSvcConfig(pg_con=URI, max_connections=7).model_dump_json()
    assert '"max_connections":7' in dumped
    assert '"sqlite_path":null' in dumped
    assert "ClockHandle realtime" in dumped


@DSNS
def test_validation_errors_do_not_echo_the_dsn(dsn):
    pool: AsyncConnectionPool = AsyncConnectionPool("", open=False)
    bad_inputs = [
        {"pg_con": dsn, "pool": pool},  # model-level error: would quote the whole input
        {"pg_con": dsn, "pgcon": dsn},  # unknown field: would quote its value
        {"pg_con": dsn, "max_connections": 1},
        {"pg_con": [dsn]},  # wrong type: would quote the list
    ]
    for data in bad_inputs:
        with pytest.raises(ValidationError) as caught:
            JobSvcConfig(**data)
        assert PASSWORD not in str(caught.value)
        assert PASSWORD not in repr(caught.value)


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        (URI, PASSWORD),
        (KEY_VALUE, PASSWORD),
        ("postgresql://app:p%40ss%2Fword@h/db", "p@ss/word"),  # percent-encoded
        ("postgresql://h/db?password=qu%20ery&user=app", "qu ery"),  # in the query string
        ("host=h password='quoted \\' pw' user=app", "quoted ' pw"),  # quoted key=value
    ],
)
def test_redact_masks_the_password_as_parsed_and_as_written(dsn, secret):
    config = JobSvcConfig(pg_con=dsn)
    written = dsn.split("password=")[-1].split()[0] if "password=" in dsn else None
    text = f"failed: {secret} / {dsn} / {written}"
    redacted = config.redact(text)
    assert secret not in redacted
    assert "***" in redacted
    assert config.redact("nothing secret here") == "nothing secret here"


async def _init_error(dsn: str) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught:
        await Jobs.init(JobSvcConfig(pg_con=dsn))
    return caught.value


@pytest.mark.anyio
@DSNS
async def test_a_failed_connection_error_does_not_contain_the_password(dsn):
    exc = await _init_error(dsn)
    assert str(exc).startswith("cannot connect to PostgreSQL: ")
    assert "port 1 failed" in str(exc)  # the driver's explanation is kept
    assert PASSWORD not in everything_about(exc)
    assert exc.__cause__ is not None  # nothing to hide: the driver's error stays chained


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dsn", "fragment"),
    [
        # libpq quotes the bad token of a DSN it cannot parse: here the password itself...
        (f"postgresql://app:{PASSWORD}%zz@127.0.0.1:1/db", PASSWORD),
        # ...or the whole URI...
        (f"postgresql://app:{PASSWORD}@[127.0.0.1:1/db", PASSWORD),
        # ...or the end of an unquoted password with a space in it.
        ("host=127.0.0.1 port=1 password=first-half second-half", "second-half"),
    ],
    ids=["percent", "ipv6", "space"],
)
async def test_an_unparseable_dsn_error_does_not_contain_the_password(dsn, fragment):
    exc = await _init_error(dsn)
    assert str(exc).startswith("cannot connect to PostgreSQL: ")
    assert '"***"' in str(exc)
    assert fragment not in everything_about(exc)


def test_the_type_checking_signature_lists_every_field():
    """config.py declares JobSvcConfig.__init__ for type checkers (so that pg_con="..." type
    checks without the pydantic plugin); it must name every field, with its default."""
    tree = ast.parse(Path(config_module.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "JobSvcConfig"]
    (init,) = [
        n
        for block in cls.body
        if isinstance(block, ast.If)
        for n in block.body
        if isinstance(n, ast.FunctionDef) and n.name == "__init__"
    ]
    pairs = zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True)
    declared = {arg.arg: default for arg, default in pairs}
    assert set(declared) == set(JobSvcConfig.model_fields)
    for name, field in JobSvcConfig.model_fields.items():
        default = declared[name]
        if isinstance(default, ast.Constant) and default.value is not Ellipsis:
            assert field.default == default.value, name


def test_a_plain_str_type_checks_without_the_pydantic_plugin(tmp_path):
    mypy_api = pytest.importorskip("mypy.api")
    source = tmp_path / "usage.py"
    source.write_text(
        "from job import JobSvcConfig\n"
        "from pydantic import SecretStr\n"
        'JobSvcConfig(pg_con="postgresql://app:pw@db/app")\n'
        'JobSvcConfig(pg_con=SecretStr("postgresql://app:pw@db/app"))\n'
        'JobSvcConfig(pg_con=b"bytes")  # type: ignore[arg-type]\n'
    )
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\nwarn_unused_ignores = True\n")
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(tmp_path / "mypy.ini"), "--no-incremental",
         "--cache-dir=/dev/null", str(source)]
    )  # fmt: skip
    assert status == 0, stdout + stderr


@pytest.mark.parametrize(
    "dsn", [URI, f"postgresql://app:{PASSWORD}%zz@127.0.0.1:1/db"], ids=["refused", "unparseable"]
)
def test_job_migrate_errors_do_not_contain_the_password(dsn, capsys):
    assert migrate_command(dsn) == 1
    err = capsys.readouterr().err
    assert err.startswith("job migrate: ")
    assert PASSWORD not in err
