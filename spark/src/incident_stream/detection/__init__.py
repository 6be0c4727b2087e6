"""Incident detection: per-service baselines, an incident lifecycle, linking along dependencies.

The streaming job runs `stream.detect_partials` on the partial buckets its source's tasks compute while
they write the events (logs_source.py, partials.py) and gets the append-only incident_updates stream. The
logic lives in plain Python (engine.py and what it uses) so it runs and is tested without Spark;
processor.py hosts it in Spark's transformWithStateInPandas. README.md explains the design.

The package itself imports nothing: the source's tasks and Spark's planning processes import only the
modules they use (partials.py and view.py need neither pandas nor the engine).
"""
