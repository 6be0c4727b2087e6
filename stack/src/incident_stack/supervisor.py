"""Start and stop a set of services: each once what it requires answers, independent ones in parallel.

Used by the embedded stack (`make up`, one service after another) and by the cluster tier
(`make cluster-up`, a dozen processes whose start-up overlaps). Every process goes through the
same :class:`~incident_stack.processes.ProcessTable`, so `down` stops exactly what `up` started.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from incident_contracts.settings import Settings
from incident_stack.processes import ProcessTable
from incident_stack.services import Service

Output = Callable[[str], None]
GREEN, RED, YELLOW, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"


class StartFailed(RuntimeError):
    """A service did not start or did not answer in time; the message says which, why, and the log's tail."""


class PortTaken(StartFailed):
    """A port a service needs is held by another process."""


def say(line: str) -> None:
    """Print a line at once (output often goes to a pipe: make, a test, a log)."""
    print(line, flush=True)


def color(text: str, code: str) -> str:
    return f"{code}{text}{RESET}" if sys.stdout.isatty() else text


def synchronized(out: Output) -> Output:
    """`out` made safe for several threads (whole lines, never interleaved)."""
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            out(line)

    return write


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_healthy(service: Service, settings: Settings, table: ProcessTable, out: Output = say) -> float:
    """Poll until the service answers; returns the seconds it took. Raises StartFailed if it exits or times out."""
    started = time.monotonic()
    deadline = started + service.start_timeout
    last_print = started
    log = table.log_file(service.name)
    while time.monotonic() < deadline:
        if service.healthy(settings):
            took = time.monotonic() - started
            out(f"  {service.name}: {color('up', GREEN)} at {service.url(settings)} ({took:.1f}s)")
            return took
        if table.get(service.name) is None:
            raise StartFailed(f"{service.name} exited during start; see {log}:\n" + tail(log, 15))
        if time.monotonic() - last_print > 15:
            out(f"  {service.name}: waiting for it to answer ({time.monotonic() - started:.0f}s)...")
            last_print = time.monotonic()
        time.sleep(0.5)
    raise StartFailed(f"{service.name} did not answer within {service.start_timeout:.0f}s; see {log}:\n"
                      + tail(log, 15))


def start_service(service: Service, settings: Settings, table: ProcessTable, out: Output = say,
                  cwd: Path | None = None, wait: bool = True) -> str:
    """Start one service unless it runs already; wait until it answers. Returns "started" or "running"."""
    running = table.get(service.name)
    if running is not None:
        out(f"  {service.name}: already running (pid {running.pid}) at {service.url(settings)}")
        if wait and not service.healthy(settings):
            wait_healthy(service, settings, table, out)
        return "running"
    for port in service.listen_ports(settings):
        if port_taken(port):
            raise PortTaken(f"port {port} needed by {service.name} is already in use by another process. Stop "
                            "that process, or change the port in .env (see .env.example).")
    service.prepare(settings)
    record = table.start(service.name, service.command(settings), service.environment(settings), cwd or Path.cwd())
    out(f"  {service.name}: started (pid {record.pid}), log {record.log_file}")
    if wait:
        wait_healthy(service, settings, table, out)
    return "started"


def _run_threads(names: Sequence[str], work: Callable[[str], None]) -> None:
    threads = [threading.Thread(target=work, args=(name,), name=f"supervise-{name}", daemon=True) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)


def start_all(services: Sequence[Service], settings: Settings, table: ProcessTable, out: Output = say,
              cwd: Path | None = None) -> dict[str, str]:
    """Start every service once those it requires (within `services`) answer; independent ones in parallel.

    Returns {name: "started" | "running"}. Raises StartFailed naming every service that failed (and those
    not started because a requirement failed) after the others have finished starting.
    """
    out = synchronized(out)
    by_name = {s.name: s for s in services}
    answered = {name: threading.Event() for name in by_name}
    outcome: dict[str, str] = {}
    failures: dict[str, str] = {}

    def start(name: str) -> None:
        service = by_name[name]
        try:
            for required in service.requires:
                if required in answered:
                    answered[required].wait()
                    if required in failures:
                        failures[name] = f"not started: it requires {required}, which did not start"
                        return
            outcome[name] = start_service(service, settings, table, out, cwd)
        except Exception as exc:  # reported together below; the other services go on starting
            failures[name] = str(exc)
        finally:
            answered[name].set()

    _run_threads(list(by_name), start)
    if failures:
        first = [f"{name}: {why}" for name, why in failures.items() if not why.startswith("not started")]
        knock_on = [f"{name}: {why}" for name, why in failures.items() if why.startswith("not started")]
        raise StartFailed("\n".join(first + knock_on))
    return outcome


def stop_all(services: Sequence[Service], settings: Settings, table: ProcessTable,
             out: Output = say) -> dict[str, bool]:
    """Stop every service once those that require it have stopped; independent ones in parallel.

    Returns {name: whether it was running}.
    """
    out = synchronized(out)
    by_name = {s.name: s for s in services}
    stopped = {name: threading.Event() for name in by_name}
    dependents = {name: [s.name for s in services if name in s.requires] for name in by_name}
    result: dict[str, bool] = {}

    def stop(name: str) -> None:
        service = by_name[name]
        try:
            for dependent in dependents[name]:
                stopped[dependent].wait()
            started = time.monotonic()
            result[name] = table.stop(name, timeout=service.stop_timeout, sig=service.stop_signal)
            took = f" ({time.monotonic() - started:.1f}s)" if result[name] else ""
            out(f"  {name}: {'stopped' if result[name] else 'not running'}{took}")
        finally:
            stopped[name].set()

    _run_threads(list(by_name), stop)
    return result


def with_requirements(services: dict[str, Service], names: Sequence[str]) -> list[str]:
    """`names` and everything they require, directly or not, in the order of `services`."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(services[name].requires)
    return [name for name in services if name in wanted]


def with_dependents(services: dict[str, Service], names: Sequence[str]) -> list[str]:
    """`names` and every service that requires them, directly or not, in the order of `services`."""
    wanted = set(names)
    grew = True
    while grew:
        extra = {s.name for s in services.values() if wanted & set(s.requires)} - wanted
        wanted |= extra
        grew = bool(extra)
    return [name for name in services if name in wanted]
