"""The Prometheus alerting rules in docs/prometheus/alerts.yml: the structure Prometheus loads, and every metric an
expression names is one the code registers (read from the real registries of log-ingest, the streaming job and
the notifier), so a renamed metric cannot leave an alert that never fires. Also: docs/operations.md lists every
registered metric, and a `query` label an alert matches is the job's query. Static: no service starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from incident_dashboard.notify.metrics import NotifierMetrics
from incident_ingest.metrics import Metrics as IngestMetrics
from incident_stream.job import LOGS
from incident_stream.prometheus import JobMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "alerts.yml"
SEVERITIES = {"warning", "critical"}
DURATION = re.compile(r"^\d+[smhdwy]$")
# The sample names Prometheus' text format gives each metric type (prometheus_client's own suffixes).
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created", ""), "info": ("_info",), "stateset": ("",), "enum": ("",)}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan"}


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry can expose, from its metric families (labelled metrics without a child yet
    included)."""
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def listed_names(registry: CollectorRegistry) -> set[str]:
    """The name each metric is known by: a counter's sample name, a histogram's base name, a gauge's name."""
    return {family.name + ("_total" if family.type == "counter" else "") for family in registry.collect()}


def registered() -> dict[str, set[str]]:
    return {"log-ingest": exposed_names(IngestMetrics().registry),
            "streaming job": exposed_names(JobMetrics().registry),
            "notifier": exposed_names(NotifierMetrics().registry)}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, label names
    (in matchers and in by/on/without/ignoring/group_* lists), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        found.add(name)
    return found


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_metric_name_reader() -> None:
    expr = ('sum by (query) (rate(a_total{x="b c"}[5m])) / on (query) group_left(d) b_seconds > 0 '
            'and time() - max(c_timestamp{q=~"x|y"}) > 600 or absent(e_info)')
    assert metric_names(expr) == {"a_total", "b_seconds", "c_timestamp", "e_info"}


def test_the_rules_file_has_the_structure_prometheus_loads() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"} and document["groups"]
    group_names = [g["name"] for g in document["groups"]]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    alerts = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"], group.get("name")
        for rule in group["rules"]:
            name = rule.get("alert")
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, name
            assert isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), name
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
            assert rule["expr"].count("(") == rule["expr"].count(")"), f"{name}: unbalanced parentheses"
            assert DURATION.match(str(rule["for"])), f"{name}: `for` is not a duration"
            assert rule["labels"]["severity"] in SEVERITIES, name
            assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), name
            alerts.append(name)
    assert len(alerts) == len(set(alerts)), "alert names must be unique"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_metric_an_alert_uses_is_registered_by_the_code(rule: dict) -> None:
    known = set().union(*registered().values())
    used = metric_names(rule["expr"])
    assert used, f"{rule['alert']} names no metric"
    assert used <= known, f"{rule['alert']} uses metrics no component registers: {sorted(used - known)}"


def test_a_query_an_alert_matches_is_the_query_the_job_runs() -> None:
    """The job labels its metrics with its query's name (job.LOGS): an alert matching another name never fires."""
    matched = {(rule["alert"], value) for rule in rules()
               for value in re.findall(r'\bquery\s*=~?\s*"([^"]*)"', rule["expr"])}
    assert matched == {("StreamStalledWhileIngesting", LOGS)}


def test_the_rules_cover_the_platforms_failure_modes() -> None:
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    for metric in ("incident_stream_consumer_lag_records", "incident_stream_last_commit_timestamp_seconds",
                   "incident_stream_dead_letters_total", "incident_notifier_notifications_failed_total",
                   "ingest_records_rejected_total"):
        assert metric in used, metric


def test_operations_doc_lists_every_registered_metric() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc[doc.index("## Metrics"):]
    registries = {"log-ingest": IngestMetrics().registry, "streaming job": JobMetrics().registry,
                  "notifier": NotifierMetrics().registry}
    for component, registry in registries.items():
        names = listed_names(registry)
        assert len(names) >= 7, component
        for name in names:
            assert f"`{name}`" in section, f"docs/operations.md 'Metrics' does not list {name} ({component})"
