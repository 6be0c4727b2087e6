"""The offline analyzer: the runbook knowledge base, and the right runbook for every failure scenario."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from incident_contracts.catalog import default_catalog
from incident_contracts.failures import FailureFamily
from incident_dashboard.demo import SCENARIOS, DemoSummary
from incident_rca.context import build_context
from incident_rca.data import Repository
from incident_rca.models import Category
from incident_rca.offline import analyze_offline
from incident_rca.runbooks import RunbookError, load_knowledge_base, parse_runbook


def test_knowledge_base_is_complete() -> None:
    """One runbook per failure family, named and titled by it, and the generic one."""
    kb = load_knowledge_base()
    assert sorted(r.id for r in kb.specific) == sorted(FailureFamily)
    for family in FailureFamily:
        runbook = kb.get(family)
        assert runbook is not None and runbook.path is not None and runbook.path.name == f"{family}.md"
        assert (runbook.title, runbook.category) == (family.title, family.category)
        assert Category(runbook.category) == family.category  # a category the analysis can report
    assert kb.generic.id == "generic" and kb.generic.title and kb.generic.category == "unknown"
    for runbook in kb.runbooks:
        assert runbook.symptoms and runbook.diagnosis and runbook.remediation, runbook.id
        assert all(check.command for check in runbook.diagnosis), runbook.id
        if not runbook.generic:
            assert runbook.keywords and runbook.signatures and runbook.prevention, runbook.id


def test_a_broken_runbook_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.md"
    bad.write_text("# no front matter\n")
    with pytest.raises(RunbookError, match=r"broken\.md"):
        parse_runbook(bad)
    bad.write_text("---\nid: x\ntitle: t\n---\n# body\n")
    with pytest.raises(RunbookError, match="category, cause"):
        parse_runbook(bad)
    bad.write_text("---\nid: disk_full\ntitle: Disk trouble\ncause: c\n---\n# body\n")
    with pytest.raises(RunbookError, match=r"broken\.md: the title of failure family disk_full come from"):
        parse_runbook(bad)


def test_a_family_runbook_takes_title_and_category_from_the_family(tmp_path: Path) -> None:
    path = tmp_path / "disk_full.md"
    path.write_text("---\nid: disk_full\ncause: full\n---\n# Disk\n\n## Symptoms\n- writes fail\n")
    runbook = parse_runbook(path)
    assert (runbook.id, runbook.title, runbook.category) == ("disk_full", FailureFamily.DISK_FULL.title, "disk")


def test_each_demo_scenario_gets_its_runbook(demo_env: DemoSummary) -> None:
    repo = Repository(demo_env.data_dir, cache_ttl=60)
    kb = load_knowledge_base()
    catalog = default_catalog()
    checked = set()
    for plan in demo_env.incidents:
        outcome = analyze_offline(build_context(repo, catalog, plan.incident_id), kb)
        assert outcome.runbook.id == plan.scenario.family, (plan.incident_id, plan.service,
                                                             [m.runbook_id for m in outcome.matches])
        assert not outcome.result.insufficient_evidence
        assert outcome.result.evidence and all(e.citations for e in outcome.result.evidence if e.supports)
        assert outcome.result.action_plan[0].priority == "now"
        assert outcome.result.action_plan[0].owner == catalog.get(plan.service).owner
        checked.add(plan.scenario.family)
    assert checked == set(SCENARIOS)


def test_disk_full_is_found_from_the_log_lines_not_the_title(demo_env: DemoSummary) -> None:
    """The demo incident's title says "no space left on device"; here the title and the severity reasons
    say nothing about the failure, so only the signatures and sample lines can point at the disk."""
    repo = Repository(demo_env.data_dir, cache_ttl=60)
    kb = load_knowledge_base()
    plan = demo_env.incident_for("disk_full")
    context = build_context(repo, default_catalog(), plan.incident_id)
    neutral = {**context.incident, "title": f"{plan.service}: error rate above baseline",
               "severity_reasons": ["error rate above baseline"]}
    outcome = analyze_offline(replace(context, incident=neutral), kb)
    assert outcome.runbook.id == FailureFamily.DISK_FULL
    cause = outcome.result.root_cause
    assert cause.category == "disk" and cause.statement == kb.get("disk_full").cause
    # The evidence is what decides: without the lines and signatures the same incident is not found disk-full.
    blind = analyze_offline(replace(context, incident=neutral, signatures=[], events=[], surging=[]), kb)
    assert blind.runbook.id != FailureFamily.DISK_FULL


def test_unknown_failure_falls_back_to_generic_triage(demo_env: DemoSummary) -> None:
    from incident_rca.context import IncidentContext, SignatureItem

    repo = Repository(demo_env.data_dir, cache_ttl=60)
    context = build_context(repo, default_catalog(), demo_env.incidents[0].incident_id)
    odd = IncidentContext({**context.incident, "title": "quux", "trigger": "volume", "severity_reasons": [],
                           "error_rate": None, "latency_p95_ms": None, "origin_service": None,
                           "origin_incident_id": None, "affected_hosts": []},
                          [], [SignatureItem("S1", "Frobnicator wobble <num> exceeded", "x", 5, "Frobnicator wobble")],
                          [], [], {**context.topology, "kind": "worker", "depends_on": []}, [], [])
    outcome = analyze_offline(odd, load_knowledge_base())
    assert outcome.runbook.id == "generic"
    assert outcome.result.insufficient_evidence
    assert outcome.result.root_cause.confidence < 0.3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    from generated_tables import build_generated_tables

    from log_generator.scenarios import REAL_SCENARIOS

    folder = tmp_path_factory.mktemp("generated") / "data"
    planned = build_generated_tables(folder, default_catalog(), list(REAL_SCENARIOS), rate=15.0)
    return folder, planned


def test_each_log_generator_scenario_gets_its_runbook(generated) -> None:
    """Events of the real log generator, signatures from the Spark job's function: origin incidents and the
    callers linked to them must each be matched to the runbook of the scenario's failure family."""
    from log_generator.scenarios import REAL_SCENARIOS

    folder, planned = generated
    repo = Repository(folder, cache_ttl=60)
    kb = load_knowledge_base()
    catalog = default_catalog()
    assert {p.scenario for p in planned if p.is_origin} == set(REAL_SCENARIOS)
    wrong = []
    for plan in planned:
        outcome = analyze_offline(build_context(repo, catalog, plan.incident_id), kb)
        if outcome.runbook.id != plan.scenario:  # the scenario's failure family names its runbook
            wrong.append((plan.scenario, plan.service, plan.is_origin,
                          [(m.runbook_id, round(m.score)) for m in outcome.matches[:3]]))
    assert not wrong
    assert sum(not p.is_origin for p in planned) >= 7  # callers were exercised too
