"""The failure families: the ids the generator, the demo data and the runbooks share."""

from __future__ import annotations

from incident_contracts.failures import FailureFamily


def test_families_keep_their_ids_categories_and_titles() -> None:
    """Run requests, ground truth files and stored analyses hold these ids: a rename would orphan them."""
    assert {f.value: f.category for f in FailureFamily} == {
        "db_pool_exhaustion": "database", "memory_leak": "memory", "slow_dependency": "dependency",
        "bad_deploy": "deployment", "disk_full": "disk", "tls_expired": "certificate", "cache_stampede": "cache",
    }
    assert FailureFamily.TLS_EXPIRED.title == "Expired TLS certificate"
    assert all(f.title for f in FailureFamily)
    assert len({f.category for f in FailureFamily}) == len(FailureFamily)  # one family per category

