"""A throwaway local PostgreSQL server, for the demo, the test suite and the benchmarks.

Finds the server binaries (``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``, ``PATH``),
runs ``initdb`` into a temporary directory and starts ``postgres`` on a free loopback port.
``initdb`` refuses to run as root, so as root both run as the ``postgres`` user. Durability is
switched off (fsync, synchronous_commit, full_page_writes): the data is thrown away anyway;
``LocalPostgres(durable=True)`` switches all three on, for measurements that should pay a real
commit flush.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LocalPostgres", "LocalPostgresError", "find_bindir"]


class LocalPostgresError(RuntimeError):
    """A local PostgreSQL server could not be started."""


def find_bindir() -> Path | None:
    """Where initdb and postgres live, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += sorted(glob.glob("/usr/local/pgsql/bin"))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for folder in candidates:
        path = Path(folder)
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.dsn(...)`` - started on enter, removed on exit."""

    def __init__(
        self,
        *,
        max_connections: int = 300,
        log_name: str = "postgres.log",
        durable: bool = False,
    ) -> None:
        self.max_connections = max_connections
        self.durable = durable
        self.log_name = log_name
        self.port = 0
        self.root: Path | None = None
        self._as_postgres_user = hasattr(os, "geteuid") and os.geteuid() == 0
        self._bindir: Path | None = None

    # -- public ------------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def start(self) -> LocalPostgres:
        bindir = find_bindir()
        if bindir is None:
            raise LocalPostgresError(
                "PostgreSQL server binaries (initdb, postgres) were not found. Install them"
                " (Debian/Ubuntu: `apt-get install postgresql`) or give a database URL in"
                " JOB_DATABASE_URL / JOB_TEST_DSN."
            )
        self._bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="job-pg-"))
        os.chmod(self.root, 0o777)
        self.port = _free_port()
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        self.start_server()
        return self

    def start_server(self) -> None:
        """(Re)start the server on the same data directory and port."""
        assert self._bindir is not None and self.root is not None
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                f"-c max_connections={self.max_connections}",
                *(
                    ["-c fsync=on", "-c synchronous_commit=on", "-c full_page_writes=on"]
                    if self.durable
                    else ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
                ),
                "-c shared_buffers=256MB",
            ]
        )
        self._run(
            [
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.root / self.log_name),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._wait_ready()

    def stop_server(self, mode: str = "fast") -> None:
        assert self._bindir is not None
        self._run(
            [str(self._bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]
        )

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                self.stop_server("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres_user:
            runuser = shutil.which("runuser")
            argv = [runuser, "-u", "postgres", "--", *argv] if runuser else [
                "su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)
            ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise LocalPostgresError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise LocalPostgresError(f"PostgreSQL did not accept connections on port {self.port}")


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"
