"""A pipeline run's artefacts: a file-system-safe run key, the run's folder, and its offset ranges."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from incident_contracts.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_key(airflow_run_id: str) -> str:
    """A key for files and the generator's run id: `manual__2026-11-23T10:52:36.1+00:00` ->
    `manual__2026-11-23T10-52-36.1-00-00` (letters, digits, `._-`; at most 128 characters)."""
    key = _UNSAFE.sub("-", airflow_run_id).strip("-.")
    key = key if key and key[0].isalnum() else f"run-{key}"
    return key[:128]


def runs_root(settings: Settings) -> Path:
    """The folder whose `runs/` holds the run folders (Settings.files_dir: a run folder is a few small files
    the generator and the pipeline write as files)."""
    return settings.files_dir


def run_dir(settings: Settings, key: str) -> Path:
    """<runs root>/runs/<key>: the generator's manifest and the pipeline's reconciliation live here."""
    return runs_root(settings) / "runs" / key


def offset_ranges(produced: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """{partition: (start, end)} of the run's records, from the produce task's result (its `start_offsets`
    and `end_offsets`, JSON objects keyed by partition); a partition without a start starts at 0."""
    start = {int(p): int(o) for p, o in produced["start_offsets"].items()}
    return {int(p): (start.get(int(p), 0), int(e)) for p, e in produced["end_offsets"].items()}
