"""One streaming job at a time per checkpoint and per set of tables, held by the job itself for its whole run.

Two jobs on one checkpoint corrupt it; two jobs on one set of tables (each with its own checkpoint)
write every record twice. The job takes two locks when it starts and keeps them until it exits:

* the checkpoint's: an OS file lock (``flock``) on ``<checkpoint>/.writer.lock``;
* the tables': the same on ``<DATA_DIR>/_writer.lock`` for a folder, or, on object storage, a lease
  object ``<DATA_DIR>/_writer.lock`` created with a conditional put (``If-None-Match: *``) and renewed
  every ``LEASE_RENEW_SECONDS`` (``If-Match`` its ETag); a lease not renewed for ``LEASE_TTL_SECONDS``,
  or whose holder was a process of this host that no longer exists, belongs to a dead job and is taken
  over (``If-Match`` the dead lease's ETag, so two jobs taking over at once cannot both win).

The kernel releases a file lock when its holder dies, so a killed job never leaves a stale lock. Each
lock file records its holder (run id, pid, host, start time) for the message a refused job prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incident_contracts.table_store import TableStore

log = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"
TABLES_LOCK_NAME = "_writer.lock"
LEASE_TTL_SECONDS = 60.0
LEASE_RENEW_SECONDS = 10.0


class WriterBusy(RuntimeError):
    """Another streaming job holds the checkpoint or the tables."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    pid: int
    host: str
    started_at: str
    expires_at: float = 0.0  # leases only: epoch seconds

    @classmethod
    def me(cls, run_id: str) -> Holder:
        return cls(run_id, os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds"))

    def alive(self) -> bool:
        """A lease is live until it expires, unless its holder is a process of this host that is gone."""
        if self.expires_at <= time.time():
            return False
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started_at})"

    def to_json(self, **extra: Any) -> str:
        return json.dumps({"run_id": self.run_id, "pid": self.pid, "host": self.host,
                           "started_at": self.started_at, **extra})

    @classmethod
    def parse(cls, text: str | bytes) -> Holder | None:
        try:
            info = json.loads(text or "{}")
            return cls(str(info["run_id"]), int(info["pid"]), str(info["host"]), str(info["started_at"]),
                       float(info.get("expires_at", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None


def _busy(what: str, where: str, holder: Holder | None) -> WriterBusy:
    who = holder.describe() if holder else "another streaming job"
    stop = f"stop it (kill {holder.pid} on {holder.host}, or `make down`)" if holder else "stop it"
    return WriterBusy(f"{what} {where} is in use by {who}. One streaming job at a time may write them: "
                      f"{stop} or wait for it to finish, then start again.")


class FileLock:
    """An exclusive flock on a file; released by close() or by the process's death."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self, me: Holder) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(self.path.read_bytes())
            os.close(fd)
            raise _busy(self.what, str(self.path.parent), holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, me.to_json().encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> Holder | None:
        """Who holds the lock now (None when free)."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.parse(self.path.read_bytes()) or Holder("?", 0, "?", "?")
        finally:
            os.close(fd)
        return None


class LeaseLock:
    """A lease object in an S3 bucket, created and renewed with conditional puts."""

    def __init__(self, store: TableStore, what: str, ttl: float = LEASE_TTL_SECONDS,
                 renew_every: float = LEASE_RENEW_SECONDS):
        bucket, _, prefix = store.root.split("://", 1)[1].partition("/")
        self.bucket = bucket
        self.key = f"{prefix}/{TABLES_LOCK_NAME}" if prefix else TABLES_LOCK_NAME
        self.store = store
        self.what = what
        self.ttl = ttl
        self.renew_every = renew_every
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = _s3_client(store)

    def acquire(self, me: Holder) -> None:
        from botocore.exceptions import ClientError

        body = me.to_json(expires_at=time.time() + self.ttl)
        try:
            self._etag = self._client.put_object(Bucket=self.bucket, Key=self.key, Body=body.encode(),
                                                 IfNoneMatch="*")["ETag"]
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            current = self._client.get_object(Bucket=self.bucket, Key=self.key)
            holder = Holder.parse(current["Body"].read())
            if holder is not None and holder.alive():
                raise _busy(self.what, self.store.root, holder) from None
            log.warning("taking over the expired writer lease of %s", holder.describe() if holder else "?")
            try:  # replace exactly the expired lease; a concurrent taker makes this fail
                self._etag = self._client.put_object(Bucket=self.bucket, Key=self.key, Body=body.encode(),
                                                     IfMatch=current["ETag"])["ETag"]
            except ClientError as again:
                if _code(again) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise _busy(self.what, self.store.root, None) from None
                raise
        self._thread = threading.Thread(target=self._renew, args=(me,), name="writer-lease", daemon=True)
        self._thread.start()

    def _renew(self, me: Holder) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self._etag = self._client.put_object(
                    Bucket=self.bucket, Key=self.key, Body=me.to_json(expires_at=time.time() + self.ttl).encode(),
                    IfMatch=self._etag)["ETag"]
            except Exception as exc:  # lost the lease: say so loudly; the job's commits stay idempotent
                log.error("could not renew the writer lease %s/%s: %s", self.bucket, self.key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._etag is not None:
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=self.key)
            self._etag = None

    def holder(self) -> Holder | None:
        from botocore.exceptions import ClientError

        try:
            holder = Holder.parse(self._client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read())
        except ClientError:
            return None
        return holder if holder is not None and holder.alive() else None


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _s3_client(store: TableStore) -> Any:
    import boto3

    options = store.storage_options
    return boto3.client("s3", endpoint_url=options.get("AWS_ENDPOINT_URL") or None,
                        region_name=options.get("AWS_REGION") or None,
                        aws_access_key_id=options.get("AWS_ACCESS_KEY_ID") or None,
                        aws_secret_access_key=options.get("AWS_SECRET_ACCESS_KEY") or None)


def tables_lock(store: TableStore) -> FileLock | LeaseLock:
    if store.is_local:
        return FileLock(Path(store.root) / TABLES_LOCK_NAME, "the tables in")
    return LeaseLock(store, "the tables in")


def checkpoint_lock(checkpoint_root: Path) -> FileLock:
    return FileLock(checkpoint_root / LOCK_NAME, "the streaming checkpoint")


@contextlib.contextmanager
def writer_lock(checkpoint_root: Path, store: TableStore, run_id: str) -> Iterator[Holder]:
    """Hold the checkpoint's and the tables' locks for the block; raise WriterBusy naming the holder."""
    me = Holder.me(run_id)
    locks = [checkpoint_lock(checkpoint_root), tables_lock(store)]
    taken: list[FileLock | LeaseLock] = []
    try:
        for lock in locks:
            lock.acquire(me)
            taken.append(lock)
        yield me
    finally:
        for lock in reversed(taken):
            lock.release()


def current_writer(checkpoint_root: Path, store: TableStore) -> Holder | None:
    """The job holding the checkpoint or the tables, if any (for callers that wait before starting one)."""
    return checkpoint_lock(checkpoint_root).holder() or tables_lock(store).holder()
