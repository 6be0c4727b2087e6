"""Entry file for `spark-submit spark/submit_stream.py [options]` (same options as `incident-stream --help`)."""

from __future__ import annotations

import sys

from incident_stream.cli import main

if __name__ == "__main__":
    sys.exit(main())
