"""Scoring detected incidents against a run's ground truth: precision, recall, false positives, latency.

The ground truth is the generator's manifest (``ground_truth.json``: ``{"incidents": [{"id",
"scenario", "origin_service", "affected_services", "start_ms", "end_ms", "expect_incident"}, ...]}``),
read as plain JSON so the Spark job does not depend on the generator package.

Matching. A detected incident matches an injected one when its service is the origin or one of the
affected services (or the detector linked it to that origin) and its span [opened_at, resolved_at or
last_seen] overlaps the injected span widened by `slack_before_s` / `slack_after_s`.

* precision = detected incidents matching an expected injected incident / all detected incidents
* recall    = expected injected incidents matched by at least one detected incident
* origin recall = expected incidents with a matching detected incident on the origin service itself
* false positives are split into those on a service injected as flapping (expect_incident false)
  during its flapping span, and the rest ("normal traffic").
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Truth:
    id: str
    scenario: str
    origin_service: str
    affected_services: tuple[str, ...]
    start_ms: int
    end_ms: int
    expect_incident: bool = True

    @property
    def services(self) -> frozenset[str]:
        return frozenset((self.origin_service, *self.affected_services))


@dataclass(frozen=True)
class Detected:
    incident_id: str
    service: str
    opened_at_ms: int
    end_ms: int
    origin_service: str | None
    first_update_ms: int | None = None  # update_time of the opened row (processing time)


@dataclass(frozen=True)
class ScoringParams:
    slack_before_s: float = 30.0
    slack_after_s: float = 150.0


@dataclass
class Score:
    detected: int
    expected: int
    true_positives: int  # detected incidents matching an expected incident
    found: int  # expected incidents matched
    origin_found: int
    false_positives_flapping: list[str] = field(default_factory=list)
    false_positives_normal: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # ids of expected incidents not matched
    matches: dict[str, list[str]] = field(default_factory=dict)  # truth id -> detected incident ids

    @property
    def precision(self) -> float:
        return self.true_positives / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0

    @property
    def origin_recall(self) -> float:
        return self.origin_found / self.expected if self.expected else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "origin_recall": self.origin_recall,
                "detected": self.detected, "expected": self.expected, "true_positives": self.true_positives,
                "false_positives_flapping": self.false_positives_flapping,
                "false_positives_normal": self.false_positives_normal, "missed": self.missed,
                "matches": self.matches}


# --- inputs ----------------------------------------------------------------------------------------
def truths_from_manifest(manifest: Mapping[str, Any] | str | Path) -> list[Truth]:
    """The injected incidents of a ground-truth manifest (a dict, or the path of the JSON file)."""
    if not isinstance(manifest, Mapping):
        manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
    try:
        return [Truth(id=str(i["id"]), scenario=str(i.get("scenario", "")), origin_service=str(i["origin_service"]),
                      affected_services=tuple(i.get("affected_services") or ()), start_ms=int(i["start_ms"]),
                      end_ms=int(i["end_ms"]), expect_incident=bool(i.get("expect_incident", True)))
                for i in manifest.get("incidents", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"ground-truth manifest is not in the expected shape ({exc!r}); expected "
                         '{"incidents": [{"id", "origin_service", "start_ms", "end_ms", ...}]}') from None


def detected_from_updates(updates: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Detected]:
    """One Detected per incident id from incident_updates rows (a frame read from Parquet, or dicts)."""
    frame = updates if isinstance(updates, pd.DataFrame) else pd.DataFrame(list(updates))
    if frame.empty:
        return []
    frame = frame.copy()
    for column in ("opened_at", "last_seen", "resolved_at", "update_time"):
        if column in frame:
            frame[column] = _to_ms(frame[column])
    result = []
    for incident_id, rows in frame.sort_values("update_seq").groupby("incident_id", sort=True):
        last = rows.iloc[-1]
        ends = [v for v in (rows["resolved_at"].max(), rows["last_seen"].max()) if pd.notna(v)]
        opened = rows[rows["update_type"] == "opened"]
        first_update = opened["update_time"].min() if "update_time" in rows and not opened.empty else None
        result.append(Detected(
            incident_id=str(incident_id), service=str(last["service"]), opened_at_ms=int(rows["opened_at"].min()),
            end_ms=int(max(ends)) if ends else int(rows["opened_at"].min()),
            origin_service=_origin(rows),
            first_update_ms=None if first_update is None or pd.isna(first_update) else int(first_update)))
    return result


def _origin(rows: pd.DataFrame) -> str | None:
    origins = [o for o in rows["origin_service"].tolist() if isinstance(o, str) and o]
    return origins[-1] if origins else None


def _to_ms(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        values = pd.to_datetime(series, utc=True)
        return (values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return series


# --- matching --------------------------------------------------------------------------------------
def matches(d: Detected, t: Truth, params: ScoringParams) -> bool:
    related = d.service in t.services or (d.origin_service is not None and d.origin_service == t.origin_service)
    lo = t.start_ms - int(params.slack_before_s * 1000)
    hi = t.end_ms + int(params.slack_after_s * 1000)
    return related and d.opened_at_ms <= hi and lo <= d.end_ms


def score(detected: list[Detected], truths: list[Truth], params: ScoringParams | None = None) -> Score:
    params = params or ScoringParams()
    expected = [t for t in truths if t.expect_incident]
    noise = [t for t in truths if not t.expect_incident]
    result = Score(detected=len(detected), expected=len(expected), true_positives=0, found=0, origin_found=0)
    for t in expected:
        hits = [d for d in detected if matches(d, t, params)]
        result.matches[t.id] = sorted(d.incident_id for d in hits)
        if hits:
            result.found += 1
            if any(d.service == t.origin_service for d in hits):
                result.origin_found += 1
        else:
            result.missed.append(t.id)
    for d in detected:
        if any(matches(d, t, params) for t in expected):
            result.true_positives += 1
        elif any(d.service == t.origin_service and matches(d, t, params) for t in noise):
            result.false_positives_flapping.append(d.incident_id)
        else:
            result.false_positives_normal.append(d.incident_id)
    return result


# --- latency ---------------------------------------------------------------------------------------
def detection_latencies_ms(first_error_ms: Mapping[str, int], readable_ms: Mapping[str, int],
                           detected: list[Detected], truths: list[Truth],
                           params: ScoringParams | None = None) -> dict[str, float]:
    """Per expected incident: time from its first error to the first matching `opened` row being readable.

    `first_error_ms`: truth id -> wall time its first error was produced; `readable_ms`: detected incident
    id -> wall time its opened row was first read back from Parquet. Incidents without both are left out.
    """
    params = params or ScoringParams()
    out: dict[str, float] = {}
    for t in truths:
        if not t.expect_incident or t.id not in first_error_ms:
            continue
        seen = [readable_ms[d.incident_id] for d in detected
                if d.incident_id in readable_ms and matches(d, t, params)]
        if seen:
            out[t.id] = float(min(seen) - first_error_ms[t.id])
    return out


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    rank = max(1, min(len(data), int(-(-q * len(data) // 100))))
    return float(data[rank - 1])


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return float(statistics.median(data)) if data else None
