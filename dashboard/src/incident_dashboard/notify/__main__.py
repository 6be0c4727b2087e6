"""``python -m incident_dashboard.notify``: the notifier process (``make up`` starts it)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from incident_contracts.settings import SettingsError, get_settings
from incident_dashboard.notify.notifier import Notifier
from incident_dashboard.notify.rules import RulesError


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
        logging.getLogger(__name__).info("no route configured (NOTIFY_WEBHOOK_URL, NOTIFY_RULES_FILE): the notifier "
                                         "idles")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    notifier.run_forever(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
