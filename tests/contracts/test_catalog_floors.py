"""Absolute floors in the catalog (per tier, per service) and the tier of services not in it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from incident_contracts.catalog import DEFAULT_FLOORS, CatalogError, load_catalog
from incident_contracts.settings import load_settings

SERVICES = [{"name": "api", "tier": 1, "owner": "web", "hosts": ["a1"]},
            {"name": "batch", "tier": 3, "owner": "data", "hosts": ["b1"],
             "floor": {"error_rate": 0.5, "p95_latency_ms": 60_000}}]


def _catalog(tmp_path: Path, **extra):
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump({"services": SERVICES, **extra}))
    return load_catalog(path)


def test_floors_default_per_tier_and_a_service_may_set_its_own(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, floors={2: {"error_rate": 0.15, "p95_latency_ms": 3_000, "min_events": 40}})
    assert catalog.floor_of("api") == DEFAULT_FLOORS[1]  # tier 1 left out: its default
    assert catalog.tier_floor(2).error_rate == 0.15 and catalog.tier_floor(2).min_events == 40
    assert catalog.floor_of("batch").error_rate == 0.5 and catalog.floor_of("batch").min_events == 20
    assert catalog.floor_of("unknown") is None
    # stricter tiers have lower limits
    assert DEFAULT_FLOORS[1].error_rate < DEFAULT_FLOORS[2].error_rate < DEFAULT_FLOORS[3].error_rate


def test_a_floor_for_an_unknown_tier_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="floors"):
        _catalog(tmp_path, floors={4: {"error_rate": 0.5, "p95_latency_ms": 100}})
    with pytest.raises(CatalogError, match="error_rate"):
        _catalog(tmp_path, floors={1: {"error_rate": 1.5, "p95_latency_ms": 100}})


def test_default_service_tier_is_a_middle_tier_and_validated(isolated_env: Path, monkeypatch) -> None:
    assert load_settings().default_service_tier == 2
    monkeypatch.setenv("DEFAULT_SERVICE_TIER", "4")
    with pytest.raises(Exception, match="DEFAULT_SERVICE_TIER"):
        load_settings()
