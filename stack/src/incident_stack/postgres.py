"""A PostgreSQL instance owned by the project: Airflow's metadata database on the cluster tier.

The server binaries are the operating system's (Debian's package `postgresql`, under
/usr/lib/postgresql/<version>/bin; `make cluster-up` installs it when missing). The instance itself
is the project's: its data directory, password and log live under the runtime folder, it listens on
127.0.0.1 only (no Unix socket), and the stack starts and stops it like any other process.

PostgreSQL refuses to run as root. When the stack runs as root, the server runs as the `postgres`
user the package creates (``setpriv`` switches to it, in the same process), and that user must be
able to enter every folder above the data directory.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # the operating-system user the server runs as when we are root
DB_USER = "incident"  # the instance's superuser (created by initdb)
DB_NAME = "airflow"
INSTALL_HINT = ("install the PostgreSQL server: `sudo apt-get install postgresql` on Debian or Ubuntu "
                "(`make cluster-up` does this when apt-get is available)")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server cannot be prepared or started; the message says why and what to do."""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def server_bin_dir() -> Path:
    """The folder holding `initdb` and `postgres`: Debian's newest version first, else the PATH."""
    debian = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file()),
                    key=lambda p: _version_key(p / "postgres"), reverse=True)
    for folder in debian:
        if (folder / "initdb").is_file():
            return folder
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found:
            folder = Path(found).resolve().parent
            if (folder / "initdb").is_file() and (folder / "postgres").is_file():
                return folder
    raise PostgresUnavailable(f"the PostgreSQL server (initdb, postgres) was not found; {INSTALL_HINT}")


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL refuses to run as root and there is no `{SERVER_USER}` user to run it as; "
            f"{INSTALL_HINT} (the package creates the user), or run the stack as an ordinary user") from None


def run_as() -> list[str]:
    """Command prefix that runs the server binaries as an allowed user (nothing unless we are root)."""
    if not _as_root():
        return []
    account = _server_account()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresUnavailable("running PostgreSQL as root needs `setpriv` (package util-linux) to switch to the "
                                  f"`{SERVER_USER}` user; install util-linux or run the stack as an ordinary user")
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]


def _can_enter(folder: Path, account: pwd.struct_passwd) -> bool:
    info = folder.stat()
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    if info.st_uid == account.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


@dataclass(frozen=True)
class PostgresInstance:
    """One instance: its folder (data directory, password), address and database."""

    home: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def password(self) -> str:
        """The superuser's password, generated at first use and kept (mode 600) beside the data directory."""
        if self.password_file.is_file():
            return self.password_file.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value

    def url(self, scheme: str = "postgresql+psycopg2", database: str = DB_NAME) -> str:
        return f"{scheme}://{DB_USER}:{self.password()}@{self.host}:{self.port}/{database}"

    def display_url(self) -> str:
        return f"postgresql://{self.host}:{self.port}/{DB_NAME}"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _check_reachable(self, account: pwd.struct_passwd) -> None:
        for folder in reversed(self.home.resolve().parents):
            if not _can_enter(folder, account):
                raise PostgresUnavailable(
                    f"PostgreSQL runs as the `{SERVER_USER}` user (it refuses to run as root), which cannot enter "
                    f"{folder}; its data lives under {self.home}. Allow it (`chmod o+x {folder}`) or set RUNTIME_DIR "
                    "to a folder every user can reach.")

    def prepare(self) -> None:
        """Create the data directory with `initdb` at the first start; later starts reuse it (after a crash,
        once the dead server's processes are gone, without its stale lock file)."""
        if self.initialised():
            self.clear_stale_lock()
            return
        bin_dir = server_bin_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        password = self.password()
        prefix = run_as()
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PostgresUnavailable(f"{self.data_dir} is not empty but holds no PostgreSQL data directory (no "
                                      "PG_VERSION); remove it (make cluster-clean) and start again")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        # The password goes to initdb through a file only the server's user can read, removed afterwards.
        pwfile = self.home / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        try:
            if _as_root():
                account = _server_account()
                os.chmod(self.home, 0o711)
                self._check_reachable(account)
                for path in (self.data_dir, pwfile):
                    os.chown(path, account.pw_uid, account.pw_gid)
            result = subprocess.run(
                [*prefix, str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", DB_USER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale"],
                capture_output=True, text=True, timeout=180)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise PostgresUnavailable(f"initdb could not create {self.data_dir} (exit {result.returncode}):\n{tail}")

    def clear_stale_lock(self, timeout: float = 20.0) -> None:
        """Remove `postmaster.pid` left by a server that was killed (kill -9): the server itself refuses to
        start while the recorded process exists, and a killed server can linger as a zombie nobody reaps."""
        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + timeout
        while True:
            running = _alive(pid) or self._processes_in_data_dir()
            if not running:
                lock.unlink(missing_ok=True)
                return
            if _alive(pid) or time.monotonic() > deadline:
                # A live server (or its processes, still ending): not ours to remove; the start reports it.
                return
            time.sleep(0.3)

    def _processes_in_data_dir(self) -> list[int]:
        """Live processes working in the data directory (a server's processes, even orphaned)."""
        folder = str(self.data_dir.resolve())
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)):
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "cwd") == folder:
                        found.append(int(entry.name))
        return found

    def command(self) -> list[str]:
        """The server in the foreground: TCP on host:port only, logging to its standard error."""
        return [*run_as(), str(server_bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-h", self.host, "-k", "", "-c", "max_connections=100", "-c", "shared_buffers=64MB"]

    def connect(self, database: str = "postgres", timeout: float = 2.0):
        import psycopg2  # the Airflow environment's driver

        return psycopg2.connect(host=self.host, port=self.port, user=DB_USER, password=self.password(),
                                dbname=database, connect_timeout=max(1, int(timeout)))

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the server accepts a login and answers a query."""
        if not self.password_file.is_file():
            return False
        try:
            connection = self.connect(timeout=timeout)
        except Exception:  # psycopg2.OperationalError and friends: not answering
            return False
        with contextlib.closing(connection), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)

    def ensure_database(self, name: str = DB_NAME) -> bool:
        """Create the database if it is missing; returns True when it was created."""
        connection = self.connect()
        connection.autocommit = True
        with contextlib.closing(connection), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(f'CREATE DATABASE "{name}"')
            return True
