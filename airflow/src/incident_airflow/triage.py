"""Triage after a pipeline run: analyse its new P1/P2 incidents so the dashboard shows an analysis at once.

The incident ids come from the asset events that triggered the triage run (the pipeline's publish
task lists them in the event's extra). The analysis is incident_rca's, the one the dashboard shows: Gemini
when a key is configured, the offline analyzer otherwise or when Gemini fails; a stored analysis is
reused, so re-running is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from incident_contracts.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TriageResult:
    analysed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"analysed": self.analysed, "failed": self.failed}


def incidents_to_triage(asset_event_extras: Iterable[dict[str, Any]]) -> list[str]:
    """Incident ids listed under `escalate` in the triggering asset events, first seen first, no repeats."""
    ids: list[str] = []
    for extra in asset_event_extras:
        for incident_id in (extra or {}).get("escalate") or []:
            if incident_id not in ids:
                ids.append(str(incident_id))
    return ids


def default_analyzer() -> Callable[..., Any]:
    try:
        from incident_rca.service import analyze
    except ImportError as exc:
        raise RuntimeError(f"the root-cause analysis cannot be imported here ({exc}); triage needs the "
                           "incident-rca package installed next to Airflow (a dependency of incident-airflow: "
                           "`make setup` installs it locally, the Airflow image from uv.lock)") from None
    return analyze


def _describe(analysis: Any) -> str:
    result = getattr(analysis, "result", None)
    summary = str(getattr(result, "summary", "") or "")
    summary = summary if len(summary) <= 200 else summary[:197] + "..."
    return f"{getattr(analysis, 'label', type(analysis).__name__)}: {summary}"


def triage(incident_ids: list[str], settings: Settings, analyzer: Callable[..., Any] | None = None) -> TriageResult:
    """Analyse each incident; one failing analysis does not stop the others (they are reported)."""
    analyzer = analyzer or default_analyzer()
    source = "Gemini" if settings.gemini_api_key else "the offline analyzer (no GEMINI_API_KEY)"
    result = TriageResult()
    if not incident_ids:
        log.info("No new P1/P2 incidents in the triggering runs; nothing to analyse.")
        return result
    log.info("Analysing %d P1/P2 incidents with %s.", len(incident_ids), source)
    for incident_id in incident_ids:
        try:
            analysis = analyzer(incident_id, settings=settings, force=False, fallback_to_offline=True)
        except Exception as exc:  # one bad incident must not hide the others
            log.warning("Incident %s: analysis failed: %s", incident_id, exc)
            result.failed[incident_id] = str(exc)
            continue
        log.info("Incident %s: %s", incident_id, _describe(analysis))
        result.analysed.append(incident_id)
    return result
