"""The streaming job's summary file: what one run of the job did, for whoever started it.

The job (incident_stream.cli, option ``--summary-file``) writes one JSON object when it ends, also when
a query failed or the run was refused; the Airflow operator that submitted it reads the file once
spark-submit has exited. The file is written to a temporary name in the same folder and renamed, so a
reader finds either the whole summary or no file.

Fields every summary has: ``summary`` (always ``"incident-stream"``), ``run_id``, ``status``
(``finished``, ``failed`` or ``refused``) and ``error`` (None, or the first line names the problem).
A run that started also reports ``mode``, ``stopped_by``, ``topic``, rows written per table, ``batches``,
``input_rows``, ``end_offsets`` ({partition: next offset} committed in the checkpoint), ``detection``,
``elapsed_s``, ``commit_ms_p95`` and ``rows_per_second``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SUMMARY_KIND = "incident-stream"


class SummaryUnreadable(RuntimeError):
    """The summary file is not a summary of the streaming job (damaged, truncated, or another file)."""


class SummaryMissing(SummaryUnreadable):
    """No summary file: the job ended before it could write one (or was never started)."""


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write `summary` to `path` at once: a temporary file in the same folder, flushed, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(summary, out, default=str)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_summary(path: Path) -> dict[str, Any]:
    """The summary in `path`; SummaryMissing when there is none, SummaryUnreadable when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SummaryMissing(f"the streaming job wrote no summary to {path}: it ended before it could report "
                             "(killed, out of memory, or spark-submit could not start it); its log says why") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryUnreadable(f"the streaming job's summary {path} cannot be read: {exc}") from None
    try:
        summary = json.loads(text)
    except ValueError as exc:
        raise SummaryUnreadable(f"the streaming job's summary {path} is not JSON ({exc}; it starts with "
                                f"{text[:60]!r}); the file was changed by something other than the job") from None
    if not isinstance(summary, dict) or summary.get("summary") != SUMMARY_KIND or "status" not in summary:
        raise SummaryUnreadable(f"{path} is not a summary of the streaming job: expected a JSON object with "
                                f"\"summary\": \"{SUMMARY_KIND}\" and a status, found {text[:80]!r}")
    return summary
