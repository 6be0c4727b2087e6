"""The service catalog and the message templates: realistic content, validated on load with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from incident_contracts.catalog import CatalogError, load_catalog
from log_generator.scenarios import SCENARIOS
from log_generator.templates import TemplateError, load_templates, parse_templates
from log_generator.topology import Topology


def test_catalog_is_a_realistic_fleet() -> None:
    catalog = load_catalog()
    kinds = {s.kind for s in catalog.services}
    assert len(catalog.services) >= 12
    assert {"http", "database", "cache", "queue", "worker"} <= kinds
    names = set(catalog.names)
    for needed in ("api-gateway", "auth-service", "user-service", "order-service", "payment-service",
                   "inventory-service", "search-service", "notification-service", "shipping-service",
                   "postgres-primary", "redis-cache", "message-queue"):
        assert needed in names
    assert [s.name for s in catalog.services if s.flapping] == ["feature-flags"]
    assert set(catalog.dependents_of("postgres-primary")) >= {"order-service", "payment-service"}
    for service in catalog.services:
        assert service.hosts and service.owner and 1 <= service.tier <= 3


def test_topology_routes_gateway_paths_to_upstreams() -> None:
    topology = Topology(load_catalog())
    gateway = topology["api-gateway"]
    routes = {ep.head: ep.upstream for ep in gateway.endpoints}
    assert routes["/api/v1/orders"] == "order-service" and routes["/api/v1/search"] == "search-service"
    assert topology.upstream_of("postgres-primary")[0] in ("api-gateway", "notification-service")


def _write_catalog(tmp_path: Path, services: list[dict]) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump({"services": services}), encoding="utf-8")
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoints": ["FETCH /x"]}, "services[web].endpoints: Value error, endpoint 'FETCH /x' must be"),
    ({"runtime": "cobol"}, "services[web].runtime"),
    ({"depends_on": ["ghost"]}, "depends on unknown services ['ghost']"),
    ({"latency": {"p50_ms": 50, "p95_ms": 10, "p99_ms": 60}}, "p50_ms <= p95_ms <= p99_ms"),
])
def test_catalog_errors_name_the_service_and_field(tmp_path: Path, change: dict, message: str) -> None:
    web = {"name": "web", "tier": 1, "owner": "me", "hosts": ["w-1"], **change}
    with pytest.raises(CatalogError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_catalog(_write_catalog(tmp_path, [web]))


def test_templates_cover_every_scenario_line_for_every_runtime() -> None:
    """Each runtime that can write a scenario line has its own variant: a JVM service never prints another
    runtime's stack trace through the engine's fallback to the Python variant."""
    templates = load_templates()
    catalog = load_catalog()
    # Scenario lines come from origins (HTTP services and workers) and their callers; the other services
    # (databases, caches, queues: runtime "native") call nothing.
    writers = {s.runtime for s in catalog.services if s.kind in ("http", "worker") or s.depends_on}
    assert writers == {"jvm", "python", "go", "node"}
    missing = []
    for scenario in SCENARIOS.values():
        effects = [scenario.origin, scenario.dependents, scenario.upstream, *(e for _, e in scenario.related)]
        keys = [line.key for effect in effects if effect for line in effect.lines]
        keys += [shot.key for shot in scenario.one_shots]
        for key in keys:
            variants = {key.replace("{runtime}", rt) for rt in writers} if "{runtime}" in key else {key}
            missing += [f"{scenario.name}: {v}" for v in sorted(variants) if v not in templates.scenarios]
    assert missing == []


def test_template_errors_are_explained(tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(load_templates.__code__.co_filename).with_name("templates.yaml")).read_text())
    raw["scenarios"]["db_lock_wait"]["text"] = "waiting on {nonsense}"
    with pytest.raises(TemplateError, match=r"scenarios.db_lock_wait: unknown placeholders \['nonsense'\]"):
        parse_templates(raw)
    raw["scenarios"]["db_lock_wait"] = {"text": "ok", "level": "LOUD"}
    with pytest.raises(TemplateError, match="level 'LOUD' is not one of"):
        parse_templates(raw)
    raw["scenarios"]["db_lock_wait"] = {"text": "brace { alone", "level": "INFO"}
    with pytest.raises(TemplateError, match="literal braces"):
        parse_templates(raw)
    del raw["access"]["go"]
    with pytest.raises(TemplateError, match="access: needs a line for each of"):
        parse_templates(raw)
    with pytest.raises(TemplateError, match="not found"):
        load_templates(tmp_path / "missing.yaml")
