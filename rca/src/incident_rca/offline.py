"""Offline analyzer: a deterministic analysis from the runbook knowledge base, with no model and no network.

Matching is BM25 over word unigrams and bigrams. The incident's side is its error signatures (the
most frequent ones weigh more), sample lines, title and trigger, plus signal tokens derived from its
numbers and topology (``sig_latency`` when p95 latency is far above baseline, ``sig_kind_database``
when the service is a database, ...). A runbook's side is its title, keywords (weighted), symptoms,
typical signatures, cause and the signal tokens in its front matter. The best runbook wins; when
nothing scores well the generic triage runbook answers and the evidence is declared insufficient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from rank_bm25 import BM25Okapi

from incident_rca.context import IncidentContext, as_float, format_pct, format_time
from incident_rca.models import (
    ActionStep,
    Category,
    EvidenceItem,
    Priority,
    RootCause,
    RootCauseAnalysis,
    RunbookMatch,
    TimelineEntry,
)
from incident_rca.runbooks import KnowledgeBase, Runbook

OFFLINE_MODEL = "runbook-bm25"
OFFLINE_VERSION = "offline-v1"
MIN_SCORE = 12.0  # BM25 score below which nothing matched convincingly (real matches score 50-700)
MIN_TERMS = 2  # distinct runbook terms a match must share with the incident
KEYWORD_WEIGHT = 3

_WORD = re.compile(r"[a-z][a-z0-9_]+")  # numbers carry no meaning once masked; raw ones mislead
_PLACEHOLDER = {"num", "hex", "uuid", "ip", "path", "id", "time", "host", "service", "method"}
_STOP = {"the", "and", "for", "from", "with", "after", "before", "was", "are", "not", "but", "this", "that",
         "has", "have", "its", "into", "of", "to", "in", "on", "at", "by", "is", "it", "or", "be", "as", "an",
         "all", "one", "per", "out", "off", "any", "via", "when", "each", "http", "https", "com", "java", "org",
         "lang", "util", "error", "errors", "request", "requests", "service",
         # access-log noise: methods, protocol and user-agent words say nothing about a cause
         "get", "post", "put", "patch", "delete", "head", "options", "mozilla", "applewebkit", "khtml", "gecko",
         "chrome", "safari", "iphone", "android", "okhttp", "like", "cpu", "os", "mac", "windows", "nt", "intel",
         "macintosh", "pixel", "ios", "shop", "client", "go", "httpx", "python", "rt", "ms"}


def tokenize(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP and w not in _PLACEHOLDER]
    return words + [f"{a}_{b}" for a, b in pairwise(words)]


@dataclass
class OfflineResult:
    result: RootCauseAnalysis
    matches: list[RunbookMatch]
    runbook: Runbook
    query: str


def signals_of(context: IncidentContext) -> list[str]:
    """Signal tokens from the incident's numbers and topology."""
    inc = context.incident
    tokens: list[str] = []
    p95, base95 = as_float(inc.get("latency_p95_ms")), as_float(inc.get("baseline_latency_p95_ms"))
    if p95 and base95 and p95 / base95 >= 3:
        tokens.append("latency")
    rate, base = as_float(inc.get("error_rate")), as_float(inc.get("baseline_error_rate"))
    if rate is not None and (not base or rate / base >= 5):
        tokens.append("error_rate")
        if rate < 0.35:
            tokens.append("error_rate_moderate")
    if "new_signature" in str(inc.get("trigger") or ""):
        tokens.append("new_signature")
    if any(e.http_status and e.http_status >= 500 for e in context.events):
        tokens.append("http_5xx")
    topology = context.topology
    tokens.append(f"kind_{topology.get('kind')}")
    for dep in topology.get("depends_on", []):
        tokens += ["depends_on", f"depends_on_{dep['kind']}"]
    if inc.get("origin_service") or any(r.relation == "dependency" for r in context.related):
        tokens.append("linked_upstream")
    if len(inc.get("affected_hosts") or []) > 1:
        tokens.append("hosts_multiple")
    if any("restart" in (e.message or "").lower() for e in context.events):
        tokens.append("restarts")
    return [f"sig_{t}" for t in tokens]


def incident_query(context: IncidentContext) -> str:
    inc = context.incident
    origin = context.origin
    parts = [str(inc.get("title") or ""), str(inc.get("trigger") or "")]
    for rank, sig in enumerate(context.signatures):
        weight = 3 if rank < 2 else (2 if rank < 5 else 1)
        parts += [sig.signature] * (weight if origin is None else max(1, weight - 1)) + [sig.sample]
    parts += [e.message for e in context.events]
    for rank, line in enumerate(context.surging):
        parts += [line.signature] * (2 if rank < 3 else 1)
    if origin is not None:  # a caller's own lines say little beyond "upstream failed": read the origin's
        parts.append(origin_query(context))
    parts += [str(r) for r in inc.get("severity_reasons") or []]
    parts += signals_of(context)
    return "\n".join(p for p in parts if p)


def _runbook_tokens(runbook: Runbook) -> list[str]:
    tokens = tokenize(runbook.text)
    for keyword in runbook.keywords:
        tokens += tokenize(keyword) * KEYWORD_WEIGHT
    tokens += [f"sig_{s}" for s in runbook.signals] * 2
    return tokens


def _rank(query: str, kb: KnowledgeBase) -> list[RunbookMatch]:
    candidates = kb.specific
    query_tokens = tokenize(query)
    bm25 = BM25Okapi([_runbook_tokens(r) for r in candidates])
    scores = bm25.get_scores(query_tokens)
    present = set(query_tokens)
    matches = []
    for runbook, score in zip(candidates, scores, strict=True):
        terms = sorted({t for t in _runbook_tokens(runbook) if t in present and "_" not in t.removeprefix("sig_")})
        matches.append(RunbookMatch(runbook_id=runbook.id, title=runbook.title, score=round(float(score), 3),
                                    matched_terms=terms[:15]))
    matches.sort(key=lambda m: -m.score)
    return matches


def origin_query(context: IncidentContext) -> str:
    """The linked origin incident's evidence (its top signatures and surging lines), if there is one."""
    origin = context.origin
    if origin is None:
        return ""
    parts: list[str] = []
    for rank, text in enumerate(origin.signatures):
        parts += [text] * (3 if rank < 2 else 1)
    for rank, text in enumerate(origin.surging):
        parts += [text] * (2 if rank < 3 else 1)
    return "\n".join(parts)


def _confident(matches: list[RunbookMatch]) -> bool:
    if not matches or matches[0].score < MIN_SCORE:
        return False
    second = matches[1].score if len(matches) > 1 else 0.0
    return (matches[0].score - second) / matches[0].score >= 0.25


def rank_runbooks(context: IncidentContext, kb: KnowledgeBase) -> tuple[list[RunbookMatch], str]:
    """Runbooks ranked for this incident, and the text they were matched against.

    A caller's incident linked to an origin incident is matched on the origin's evidence first: its
    own lines mostly say that a dependency failed, which is what linking already established.
    """
    from_origin = origin_query(context)
    if from_origin:
        query = from_origin + "\n" + "\n".join(signals_of(context))
        matches = _rank(query, kb)
        if _confident(matches):
            return matches, query
    query = incident_query(context)
    return _rank(query, kb), query


def analyze_offline(context: IncidentContext, kb: KnowledgeBase) -> OfflineResult:
    matches, query = rank_runbooks(context, kb)
    best = matches[0] if matches else None
    second = matches[1].score if len(matches) > 1 else 0.0
    if best is None or best.score < MIN_SCORE or len(best.matched_terms) < MIN_TERMS:
        runbook, insufficient, confidence = kb.generic, True, 0.15
    else:
        runbook = kb.get(best.runbook_id) or kb.generic
        margin = (best.score - second) / best.score
        insufficient = margin < 0.1
        confidence = round(min(0.85, 0.3 + 0.55 * margin + 0.01 * len(best.matched_terms)), 2)
    result = _build(context, runbook, best if runbook is not kb.generic else None, matches, confidence, insufficient)
    return OfflineResult(result, matches, runbook, query)


def _substitute(text: str, context: IncidentContext) -> str:
    topology = context.topology
    service = context.incident["service"]
    deps = topology.get("depends_on") or []
    db = next((d["service"] for d in deps if d["kind"] == "database"), None)
    cache = next((d["service"] for d in deps if d["kind"] == "cache"), None)
    host = (context.incident.get("affected_hosts") or topology.get("hosts") or ["<host>"])[0]
    values = {"<service>": service, "<service-host>": host, "<caller-host>": host,
              "<dependency>": context.incident.get("origin_service")
              or (deps[0]["service"] if deps else "<dependency>"),
              "<db-host>": db or (service if topology.get("kind") == "database" else "<db-host>"),
              "<redis-host>": cache or (service if topology.get("kind") == "cache" else "<redis-host>")}
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _build(context: IncidentContext, runbook: Runbook, match: RunbookMatch | None, matches: list[RunbookMatch],
           confidence: float, insufficient: bool) -> RootCauseAnalysis:
    inc = context.incident
    service = inc["service"]
    owner = context.topology.get("owner") or inc.get("owner") or f"on-call for {service}"
    terms = set(match.matched_terms) if match else set()
    origin_item = context.origin
    evidence: list[EvidenceItem] = []
    for sig in context.signatures[:4]:
        hit = sorted(terms & set(tokenize(sig.signature)))
        if hit:
            evidence.append(EvidenceItem(
                finding=f"Signature {sig.id} ({sig.count} events) matches the '{runbook.title}' runbook on: "
                        f"{', '.join(hit[:6])}.", citations=[sig.id]))
    for line in context.surging[:3]:
        hit = sorted(terms & set(tokenize(line.signature)))
        if len(hit) >= 2:
            evidence.append(EvidenceItem(
                finding=f"{line.level} line {line.id} rose from {line.before} lines in the 30 minutes before the "
                        f"incident to {line.during} since it opened; it matches on: {', '.join(hit[:5])}.",
                citations=[line.id]))
    shown_events = 0
    for event in context.events:
        hit = sorted(terms & set(tokenize(event.message)))
        if len(hit) >= 2 and shown_events < 2:
            shown_events += 1
            evidence.append(EvidenceItem(finding=f"Sample event {event.id} on {event.host or service} shows "
                                                 f"{', '.join(hit[:4])}.", citations=[event.id]))
    evidence += [EvidenceItem(finding=m.text, citations=[m.id]) for m in context.metrics[:3]]
    if origin_item is not None:
        hit = sorted(terms & set(tokenize(" ".join(origin_item.signatures))))
        if hit:
            evidence.append(EvidenceItem(
                finding=f"The origin incident {origin_item.incident_id} on {origin_item.service} shows "
                        f"{', '.join(hit[:6])} in its top signatures.", citations=[origin_item.id]))
    upstream = [r for r in context.related if r.relation in ("dependency", "linked by the pipeline")
                and r is not origin_item]
    for r in upstream[:3]:
        evidence.append(EvidenceItem(
            finding=f"{r.service} ({r.relation}) had incident {r.incident_id} ({r.severity}) overlapping this one, "
                    f"opened {format_time(r.opened_at)}.", citations=[r.id]))
    if not evidence:
        evidence.append(EvidenceItem(finding="No signature or sample line matched a known failure pattern.",
                                     citations=[], supports=False))

    timeline = [TimelineEntry(time=format_time(inc.get("first_seen")), event="First anomalous events seen.")]
    timeline += [TimelineEntry(time=f.text.split(" ", 1)[0], event=f.text.split(" ", 1)[1], citations=[f.id])
                 for f in context.lifecycle]
    timeline += [TimelineEntry(time=format_time(r.opened_at),
                               event=f"{r.incident_id} opened on {r.service} ({r.relation}).",
                               citations=[r.id]) for r in context.related]
    timeline.sort(key=lambda t: t.time)

    priorities = [Priority.NOW, Priority.HIGH]
    steps = [ActionStep(order=i + 1, action=_substitute(step, context),
                        priority=priorities[i] if i < len(priorities) else
                        (Priority.LOW if i == len(runbook.remediation) - 1 else Priority.MEDIUM),
                        owner=owner, rationale=f"runbook '{runbook.id}', step {i + 1}")
             for i, step in enumerate(runbook.remediation)]
    verification = [f"{c.purpose}{' ' if c.purpose.endswith(('?', ':')) else ': '}"
                    f"`{_substitute(c.command, context)}`" if c.purpose
                    else f"`{_substitute(c.command, context)}`" for c in runbook.diagnosis]

    origin = inc.get("origin_service")
    if origin_item is not None:
        statement = (f"This incident follows {origin_item.incident_id} on {origin_item.service}, which the pipeline "
                     f"links as its origin; the evidence there matches: {runbook.cause}")
    elif origin:
        statement = runbook.cause + f" The pipeline names {origin} as the likely origin."
    else:
        statement = runbook.cause
    runner_up = next((m for m in matches if m.runbook_id != runbook.id), None)
    rationale = (f"Offline match against the runbook knowledge base (BM25 score {match.score:.1f}"
                 + (f"; runner-up '{runner_up.title}' {runner_up.score:.1f}" if runner_up else "")
                 + f"). Matched terms: {', '.join(sorted(terms)[:10]) or 'none'}."
                 if match else "No runbook matched the signatures and metrics well enough.")
    try:
        category = Category(runbook.category)
    except ValueError:
        category = Category.UNKNOWN
    summary = (f"{inc.get('severity')} incident on {service} ({inc.get('status')}), opened "
               f"{format_time(inc.get('opened_at'))}: error rate {format_pct(inc.get('error_rate'))} vs baseline "
               f"{format_pct(inc.get('baseline_error_rate'))}. "
               + (f"The evidence matches the runbook '{runbook.title}'." if match
                  else "The evidence does not match a known failure type; generic triage applies."))
    missing = []
    if insufficient:
        missing.append("Signatures that point at a specific failure type (none matched a runbook clearly).")
    missing.append("Deploy history, resource metrics (CPU, memory, disk) and traces are not in the event data.")
    return RootCauseAnalysis(
        summary=summary,
        root_cause=RootCause(statement=statement, category=category, confidence=confidence,
                             confidence_rationale=rationale),
        evidence=evidence, timeline=timeline, action_plan=steps, verification=verification,
        prevention=list(runbook.prevention), insufficient_evidence=insufficient, missing_information=missing)
