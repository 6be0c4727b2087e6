"""``python -m incident_dashboard.notify``: the notifier process (``make up`` starts it), with a health
endpoint on 127.0.0.1:NOTIFY_PORT (``/healthz``) and Prometheus metrics on METRICS_HOST:NOTIFY_METRICS_PORT
(``/metrics``; 0 turns them off)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from incident_contracts.settings import SettingsError, get_settings
from incident_dashboard.notify.notifier import Notifier, health
from incident_dashboard.notify.rules import RulesError

log = logging.getLogger("incident_dashboard.notify")


def health_server(notifier: Notifier, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                self.send_error(404, "only /healthz")
                return
            body = json.dumps(health(notifier)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="notifier-health", daemon=True).start()
    return server


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"notifier: the configuration is invalid:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=str(settings.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        notifier = Notifier(settings)
    except RulesError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 2
    if not notifier.routes:
        log.info("no route configured (NOTIFY_WEBHOOK_URL, NOTIFY_RULES_FILE): the notifier idles")
    try:
        server = health_server(notifier, settings.notify_port)
    except OSError as exc:
        print(f"notifier: cannot listen on 127.0.0.1:{settings.notify_port} (NOTIFY_PORT): {exc}", file=sys.stderr)
        return 2
    notifier.metrics.serve(settings.metrics_host, settings.notify_metrics_port)  # a taken port only warns
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        notifier.run_forever(stop)
    finally:
        server.shutdown()
        notifier.metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
