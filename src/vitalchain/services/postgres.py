"""A throwaway local PostgreSQL cluster (Debian's ``postgresql`` package), for tests and demos.

``LocalPostgres`` runs ``initdb`` into a fresh directory and ``pg_ctl start`` on a free
127.0.0.1 port, with its unix socket in that directory too, so it never touches the system
cluster.  Listening is loopback only, and the superuser has a random password (scram), so
other local users cannot get in by TCP either.

initdb and postgres refuse to run as root: as root both run as the ``postgres`` system user
(``runuser``), and the cluster directory is handed to that user.

PostgreSQL brings its own "start, wait, stop": ``pg_ctl start -w`` returns once the server
accepts connections, ``pg_ctl stop`` shuts it down in order, and the postmaster it starts is a
daemon rather than our child.  So it does not run under
:class:`~vitalchain.services.process.LocalProcess` (no death signal could reach it); it shares
the port helpers and the retry on a taken port (:func:`~vitalchain.services.process.retry_port`).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final
from urllib.parse import quote

import psycopg
from psycopg import sql

from vitalchain.services.ports import LOOPBACK, free_port
from vitalchain.services.process import (
    PORT_CLASH,
    PortInUse,
    ServiceError,
    StartStop,
    retry_port,
)

__all__ = ["LocalPostgres", "PostgresError", "find_pg_bin"]

_TOOLS: Final = ("initdb", "pg_ctl", "postgres")
_SUPERUSER: Final = "postgres"


class PostgresError(ServiceError):
    """The local cluster could not be made, started or stopped; or it is not running."""

    code = "postgres_failed"


def find_pg_bin() -> Path:
    """The directory holding initdb, pg_ctl and postgres: Debian's newest, else ``PATH``.

    Debian keeps them in /usr/lib/postgresql/<major>/bin, off the ``PATH``.
    """
    debian = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in debian:
        if all(os.access(folder / t, os.X_OK) for t in _TOOLS):
            return folder
    found = [shutil.which(t) for t in _TOOLS]
    if all(found) and len({Path(f).parent for f in found if f}) == 1:
        return Path(str(found[0])).parent
    raise PostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
        "install Debian's `postgresql` package (apt install postgresql)",
        code="postgres_missing",
    )


class LocalPostgres(StartStop):
    """A PostgreSQL cluster of our own; ``.dsn`` names its ``vitalchain`` database.

    ``root`` holds ``data/``, ``sock/`` and ``postgres.log``; by default a fresh temp directory
    that :meth:`stop` removes.  As root, every parent of a given ``root`` must be traversable
    by the ``postgres`` user.  Durability settings are PostgreSQL's defaults (fsync on).
    """

    START_TIMEOUT: Final = 30
    DATABASE: Final = "vitalchain"

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self._given_root = root
        self._fixed_port = port
        self.root: Path | None = None
        self.port = port or 0
        self._password = secrets.token_urlsafe(24)
        self._bin: Path | None = None
        self._running = False

    # -- addresses ------------------------------------------------------------------------------

    def dsn_for(self, database: str) -> str:
        """A libpq URI for ``database`` as the superuser, over TCP on 127.0.0.1."""
        if not self._running:
            raise PostgresError("local PostgreSQL is not running", code="postgres_not_started")
        return (
            f"postgresql://{_SUPERUSER}:{quote(self._password, safe='')}@{LOOPBACK}:{self.port}/"
            f"{quote(database, safe='')}?connect_timeout=10"
        )

    @property
    def dsn(self) -> str:
        """The ``vitalchain`` database, created at start: what a store connects to."""
        return self.dsn_for(self.DATABASE)

    @property
    def admin_dsn(self) -> str:
        """The ``postgres`` maintenance database, for CREATE/DROP DATABASE."""
        return self.dsn_for("postgres")

    @property
    def log_path(self) -> Path:
        return self._dir() / "postgres.log"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            raise PostgresError("local PostgreSQL is already running", code="postgres_running")
        self._bin = find_pg_bin()
        user = self._run_as()
        if self._given_root is None:
            self.root = Path(tempfile.mkdtemp(prefix="vitalchain-pg-"))
        else:
            self.root = self._given_root
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._initdb(user)
            self._start_server()
            self._running = True
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.DATABASE)))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the directory if we made it."""
        root, self._running = self.root, False
        if root is None:
            return
        for mode in ("fast", "immediate"):  # immediate only if fast did not finish in time
            if not (root / "data" / "postmaster.pid").exists():
                break
            self._pg_ctl(["stop", "-m", mode, "-w", "-t", str(self.START_TIMEOUT)], check=False)
        if self._given_root is None:
            shutil.rmtree(root, ignore_errors=True)
            self.root = None

    def halt(self) -> None:
        """Stop the server but keep its data, as an outage would (fault tests): ``resume``
        brings it back on the same port."""
        if not self._running:
            raise PostgresError("local PostgreSQL is not running", code="postgres_not_started")
        self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(self.START_TIMEOUT)])
        self._running = False

    def resume(self) -> None:
        """Start a halted server again on the port it had."""
        fixed, self._fixed_port = self._fixed_port, self.port
        try:
            self._start_server()
        finally:
            self._fixed_port = fixed
        self._running = True

    # -- internals ------------------------------------------------------------------------------

    def _dir(self) -> Path:
        if self.root is None:
            raise PostgresError(
                "local PostgreSQL has not been started", code="postgres_not_started"
            )
        return self.root

    @staticmethod
    def _run_as() -> pwd.struct_passwd | None:
        """The ``postgres`` user when we are root (initdb refuses root), else None."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError(
                "running as root needs the `postgres` system user (Debian's `postgresql` "
                "package creates it)",
                code="postgres_missing",
            ) from None

    def _cmd(self, tool: str, args: list[str]) -> list[str]:
        assert self._bin is not None
        cmd = [str(self._bin / tool), *args]
        return ["runuser", "-u", _SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, tool: str, args: list[str], *, check: bool = True) -> None:
        done = subprocess.run(  # noqa: S603 - fixed binaries, arguments we built
            self._cmd(tool, args),
            cwd=self._dir(),  # the postgres user may not be able to read our cwd
            capture_output=True,
            timeout=self.START_TIMEOUT * 2,
            check=False,
        )
        if check and done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise PostgresError(
                f"{tool} failed ({done.returncode}): {output}{self._log_tail()}",
                code="postgres_start_failed",
            )

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> None:
        self._run("pg_ctl", ["-D", str(self._dir() / "data"), *args], check=check)

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        root = self._dir()
        (root / "sock").mkdir(mode=0o700, exist_ok=True)
        pwfile = root / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._password + "\n")
        if user is not None:
            root.chmod(0o700)
            for path in (root, root / "sock", pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            # A throwaway cluster on loopback: the superuser's random password (scram) guards
            # TCP and the private socket directory; --no-sync because nothing in it survives.
            self._run(
                "initdb",
                [
                    "-D", str(root / "data"), "-U", _SUPERUSER, f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                    "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
                ],
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _start_server(self) -> None:
        fixed = bool(self._fixed_port)
        retry_port(self._start_on, self._fixed_port or free_port(), fixed=fixed)

    def _start_on(self, port: int) -> None:
        """``pg_ctl start -w`` on ``port``: it returns once the server accepts connections."""
        self.port = port
        options = shlex.join(
            ["-p", str(port), "-k", str(self._dir() / "sock"), "-c", f"listen_addresses={LOOPBACK}"]
        )
        try:
            self._pg_ctl(
                ["start", "-w", "-t", str(self.START_TIMEOUT), "-s",
                 "-l", str(self.log_path), "-o", options]
            )  # fmt: skip
        except PostgresError as exc:
            if PORT_CLASH in self._log_tail():
                raise PortInUse(f"{LOOPBACK}:{port} is in use by another process: {exc}") from None
            raise

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return ""
        return "\n  postgres.log: " + "\n  ".join(lines) if lines else ""
