"""Root-cause analysis of one incident, callable with or without Streamlit.

    from incident_rca.service import analyze
    analysis = analyze("INC-20261123-00012")            # Gemini if GEMINI_API_KEY is set, else offline
    analysis = analyze(incident_id, force=True)          # ignore the stored answer and ask again
    analysis = analyze(incident_id, engine="offline")    # the runbook knowledge base only

Answers are stored under ``DATA_DIR/analyses/`` (``RUNTIME_DIR/analyses/`` when DATA_DIR is ``s3://``)
per incident, model and prompt version: asking again returns the stored answer without a new call
(``force=True`` overrides). The dashboard shows stored answers at once, whoever produced them (a user,
or the Airflow triage task).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Literal

from incident_contracts.catalog import Catalog, default_catalog
from incident_contracts.settings import Settings, get_settings
from incident_rca import gemini
from incident_rca.context import IncidentContext, IncidentNotFound, build_context
from incident_rca.data.repository import get_repository
from incident_rca.gemini import AnalysisError
from incident_rca.models import Analysis, Engine, RootCauseAnalysis, SentRequest
from incident_rca.offline import OFFLINE_MODEL, OFFLINE_VERSION, analyze_offline
from incident_rca.prompt import PROMPT_VERSION, build_request
from incident_rca.redact import redact_all
from incident_rca.runbooks import load_knowledge_base
from incident_rca.store import AnalysisStore

__all__ = ["AnalysisError", "IncidentNotFound", "analyze", "cached_analysis", "engine_for", "prepare_request",
           "store_for"]

EngineChoice = Literal["auto", "gemini", "offline"]
_LOCKS: defaultdict[tuple, threading.Lock] = defaultdict(threading.Lock)
_LOCKS_GUARD = threading.Lock()


def store_for(settings: Settings) -> AnalysisStore:
    """Analyses are files beside the tables; with the tables in object storage, under RUNTIME_DIR."""
    return AnalysisStore(settings.files_dir / "analyses")


def engine_for(settings: Settings, engine: EngineChoice = "auto") -> tuple[Engine, str, str]:
    """(engine, model, prompt version) an analysis would use."""
    chosen: Engine = ("gemini" if settings.gemini_api_key is not None else "offline") if engine == "auto" else engine
    if chosen == "gemini":
        return "gemini", settings.gemini_model, PROMPT_VERSION
    return "offline", OFFLINE_MODEL, f"{OFFLINE_VERSION}+kb.{load_knowledge_base().version}"


def cached_analysis(incident_id: str, *, settings: Settings | None = None,
                    engine: EngineChoice = "auto") -> Analysis | None:
    """The stored answer for this incident and the current model/prompt version, if any."""
    settings = settings or get_settings()
    chosen, model, version = engine_for(settings, engine)
    return store_for(settings).get(incident_id, chosen, model, version)


def _context(settings: Settings, incident_id: str, catalog: Catalog | None) -> IncidentContext:
    repo = get_repository(settings)
    context = build_context(repo, catalog or default_catalog(), incident_id)
    notes = store_for(settings).root_causes([i.incident_id for i in context.similar + context.related])
    for item in context.similar + context.related:
        item.root_cause = notes.get(item.incident_id, "")
    return context


def prepare_request(incident_id: str, *, settings: Settings | None = None,
                    catalog: Catalog | None = None) -> SentRequest:
    """The exact request a Gemini analysis of this incident would send (for preview)."""
    settings = settings or get_settings()
    return build_request(_context(settings, incident_id, catalog))


def analyze(incident_id: str, *, settings: Settings | None = None, force: bool = False,
            engine: EngineChoice = "auto", fallback_to_offline: bool = False,
            catalog: Catalog | None = None) -> Analysis:
    """Analyse one incident and store the answer; return the stored answer when there is one.

    Raises :class:`IncidentNotFound` for an unknown ID and :class:`AnalysisError` (with ``kind``:
    missing_key, bad_key, quota, timeout, network, safety, malformed, server, model, request) when
    Gemini fails, unless ``fallback_to_offline`` is set, in which case the offline answer is
    returned with the Gemini error in its ``warnings``.
    """
    settings = settings or get_settings()
    chosen, model, version = engine_for(settings, engine)
    store = store_for(settings)
    if not force:
        found = store.get(incident_id, chosen, model, version)
        if found is not None:
            return found
    with _LOCKS_GUARD:
        lock = _LOCKS[(str(settings.data_dir), incident_id, model, version)]
    with lock:  # two clicks, or the dashboard and the triage task at once: one call
        if not force:
            found = store.get(incident_id, chosen, model, version)
            if found is not None:
                return found
        context = _context(settings, incident_id, catalog)
        try:
            analysis = (_with_gemini(settings, context, model, version) if chosen == "gemini"
                        else _offline(context, model, version))
        except AnalysisError as exc:
            if not fallback_to_offline or chosen != "gemini":
                raise
            _, off_model, off_version = engine_for(settings, "offline")
            analysis = _offline(context, off_model, off_version)
            analysis.warnings.insert(0, f"Gemini failed ({exc.kind}): {exc.message} This is the offline analysis.")
        store.save(analysis)
        return analysis


def _with_gemini(settings: Settings, context: IncidentContext, model: str, version: str) -> Analysis:
    request = build_request(context)
    answer = gemini.generate(settings, request)
    result, warnings = check_citations(answer.result, set(request.evidence_ids))
    return Analysis(analysis_id=uuid.uuid4().hex, incident_id=context.incident_id,
                    incident_update_seq=_seq(context), engine="gemini", model=model, prompt_version=version,
                    duration_ms=round(answer.duration_ms, 1), usage=answer.usage, result=result, sent=request,
                    warnings=warnings + ([f"answered by model version {answer.model_version}"]
                                         if answer.model_version and answer.model_version != model else []))


def _offline(context: IncidentContext, model: str, version: str) -> Analysis:
    started = time.perf_counter()
    outcome = analyze_offline(context, load_knowledge_base())
    query = redact_all(outcome.query)
    sent = SentRequest(
        system_instruction="Offline analysis: nothing was sent anywhere. Below is the text matched against "
                           "the runbooks in rca/runbooks/.",
        prompt=query.text, redactions=dict(query.counts), evidence_ids=context.evidence_ids)
    return Analysis(analysis_id=uuid.uuid4().hex, incident_id=context.incident_id,
                    incident_update_seq=_seq(context), engine="offline", model=model, prompt_version=version,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1), usage=None,
                    result=outcome.result, sent=sent, runbooks=outcome.matches[:5])


def _seq(context: IncidentContext) -> int | None:
    value = context.incident.get("update_seq")
    return int(value) if value is not None else None


def check_citations(result: RootCauseAnalysis, sent_ids: set[str]) -> tuple[RootCauseAnalysis, list[str]]:
    """Drop citations of IDs that were never sent (a model inventing evidence) and say so."""
    invented: set[str] = set()
    for item in [*result.evidence, *result.timeline]:
        kept = [c for c in item.citations if c in sent_ids]
        invented.update(c for c in item.citations if c not in sent_ids)
        item.citations = kept
    warnings = []
    if invented:
        warnings.append(f"The answer cited data that was never sent ({', '.join(sorted(invented))}); those "
                        "citations were removed.")
    if not result.cited_ids() and not result.insufficient_evidence:
        warnings.append("The answer cites none of the data it was given; treat it with caution.")
    return result, warnings
