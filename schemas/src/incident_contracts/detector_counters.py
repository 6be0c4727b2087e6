"""The detector's counters: what detection did not judge in its own second, as the metrics table holds them.

The streaming job's detector counts them per service (or per environment) and its sink writes them to the
`metrics` table as rows whose query_name is COUNTER_QUERY_PREFIX + the counter's name and whose query_id
is "<environment>/<service>" (or "<environment>"); the dashboard's Pipeline page and the table reads show
them (docs/detection.md, *Late data*).
"""

from __future__ import annotations

COUNTER_QUERY_PREFIX = "counter:"  # metrics.query_name of a counter row: "counter:<counter>"

LATE_COUNTED = "late_counted"  # events later than the allowed lateness, counted at their arrival
LATE_EXCLUDED = "late_excluded"  # events more than late_horizon_s late: left out of detection
CLOCK_AHEAD = "clock_ahead"  # events dated after their arrival (a host clock ahead): taken at their arrival
ENVIRONMENT_SILENT = "environment_silent"  # buckets in which the whole environment fell silent
