"""Background processes with pid files: start once, recognise our own, stop exactly what we started.

A pid file records the pid and the process's start time (from /proc), so a recycled pid that now
belongs to an unrelated process is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[1].split()
    state = fields[0]
    if state == "Z":
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    pid: int
    start_ticks: int
    command: list[str]
    log_file: str

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks

    def started_at(self) -> float:
        """When the process started, in seconds since the epoch (boot time plus its start ticks)."""
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + self.start_ticks / os.sysconf("SC_CLK_TCK")


class ProcessTable:
    """pid files under RUNTIME_DIR/pids, logs under RUNTIME_DIR/logs."""

    def __init__(self, runtime_dir: Path):
        self.pid_dir = runtime_dir / "pids"
        self.log_dir = runtime_dir / "logs"
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.json"

    def get(self, name: str) -> ManagedProcess | None:
        """The recorded process if it is still the one we started; stale records are removed."""
        path = self._pid_file(name)
        try:
            record = ManagedProcess(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if record.alive():
            return record
        path.unlink(missing_ok=True)
        return None

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> ManagedProcess:
        log_path = self.log_file(name)
        with open(log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=cwd, start_new_session=True)
        ticks = None
        for _ in range(50):
            ticks = _start_ticks(process.pid)
            if ticks is not None:
                break
            time.sleep(0.01)
        record = ManagedProcess(name, process.pid, ticks or 0, command, str(log_path))
        self._pid_file(name).write_text(json.dumps(record.__dict__))
        return record

    def stop(self, name: str, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Send `sig` (SIGTERM) to the process group, then SIGKILL after `timeout`. False if nothing was running."""
        record = self.get(name)
        if record is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (record.alive() or _group_alive(record.pid)):
            time.sleep(0.2)
        if record.alive() or _group_alive(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
            time.sleep(0.3)
        self._pid_file(name).unlink(missing_ok=True)
        return True

    def kill(self, name: str, sig: int = signal.SIGKILL) -> ManagedProcess | None:
        """Send `sig` to the process group at once, without waiting (a crash, for fault tests); the record
        is dropped by the next `get` once the process is gone. Returns the process signalled, if any."""
        record = self.get(name)
        if record is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, sig)
        return record

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.json"))


def processes_of(runtime_dir: Path, workdirs: tuple[Path, ...] = ()) -> list[int]:
    """Live processes started for `runtime_dir`: those whose environment names it as RUNTIME_DIR, or whose
    working directory is one of `workdirs` (a database server rewrites its environment for its process
    titles but works in its data directory). Only processes this user may inspect are seen."""
    marker = f"RUNTIME_DIR={runtime_dir.resolve()}".encode()
    folders = [str(folder.resolve()) for folder in workdirs]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in environ or any(cwd == f or cwd.startswith(f + os.sep) for f in folders):
            found.append(int(entry.name))
    return sorted(found)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group is alive (children can outlive their leader)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg succeeds for zombies too; look for a live member.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
