"""A process's own Prometheus endpoint: one registry served on METRICS_HOST and a port of its own.

The streaming job and the notifier each serve their metrics this way. An endpoint that cannot have its
port is not a reason to stop the work it describes: `serve` logs a warning naming the setting and
returns False, and the process goes on without it.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_http_server


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, owner: str, port_setting: str, going_on: str,
                 log: logging.Logger) -> None:
        """`owner` names the process in its log lines ("the job"), `port_setting` the variable of its
        port, `going_on` what happens without the endpoint ("running without it"); `log` is the owner's."""
        self.registry = registry
        self.owner, self.port_setting, self.going_on, self.log = owner, port_setting, going_on, log
        self._server: Any = None

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics on host:port (0: not at all); False, with a warning, when the port cannot be had."""
        if not port:
            return False
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            self.log.warning("%s's Prometheus endpoint could not listen on %s:%d (%s): %s; %s", self.owner, host, port,
                             self.port_setting, exc, self.going_on)
            return False
        self.log.info("Prometheus metrics of %s on http://%s:%d/metrics", self.owner, host, port)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
