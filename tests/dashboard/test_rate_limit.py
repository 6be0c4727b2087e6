"""The per-user limit on root-cause analyses (each one a Gemini call paid with the project's key)."""

from __future__ import annotations

import re
import threading

import pytest
from streamlit.testing.v1 import AppTest

from incident_contracts.settings import get_settings
from incident_dashboard.analysis.rate_limit import RateLimiter, _limiter, describe_seconds
from incident_dashboard.demo import DemoSummary


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_limit_holds_within_the_window_and_frees_up_as_it_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock=clock)
    assert [limiter.try_acquire("ann").remaining for _ in range(3)] == [2, 1, 0]
    clock.now += 10
    refused = limiter.try_acquire("ann")
    assert not refused.allowed and refused.retry_after == pytest.approx(50.0)
    assert "3 analyses in the last 1 min" in refused.message() and "possible in 50 s" in refused.message()
    clock.now += 49.5
    assert not limiter.try_acquire("ann").allowed  # the first start is still inside the window
    clock.now += 0.5  # exactly one window after the first three: they have all left it
    assert limiter.try_acquire("ann").allowed
    assert limiter.try_acquire("ann").allowed and limiter.try_acquire("ann").allowed
    assert not limiter.try_acquire("ann").allowed


def test_a_refused_attempt_does_not_push_the_next_one_further() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 100.0, clock=clock)
    assert limiter.try_acquire("bob").allowed
    for _ in range(20):  # hammering the button
        clock.now += 4
        assert not limiter.try_acquire("bob").allowed
    clock.now = 1100.0
    assert limiter.try_acquire("bob").allowed


def test_users_are_counted_apart_and_zero_means_no_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 3600.0, clock=clock)
    assert limiter.try_acquire("session:a").allowed and limiter.try_acquire("session:a").allowed
    assert not limiter.try_acquire("session:a").allowed
    assert limiter.try_acquire("session:b").allowed and limiter.try_acquire("user:carol").allowed
    unlimited = RateLimiter(0, 60.0, clock=clock)
    assert all(unlimited.try_acquire("x").allowed for _ in range(1000))
    with pytest.raises(ValueError):
        RateLimiter(-1, 60.0)


def test_forgotten_users_are_pruned() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock=clock)
    for i in range(1500):
        limiter.try_acquire(f"session:{i}")
    clock.now += 11
    limiter.try_acquire("session:new")
    assert limiter.tracked_users() < 1100


def test_concurrent_clicks_get_exactly_the_limit() -> None:
    limiter = RateLimiter(5, 3600.0)
    results: list[bool] = []
    barrier = threading.Barrier(20)

    def click() -> None:
        barrier.wait()
        results.append(limiter.try_acquire("dana").allowed)

    threads = [threading.Thread(target=click) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5


def test_describe_seconds() -> None:
    assert [describe_seconds(s) for s in (0.2, 59, 61, 3600, 5400)] == ["1 s", "59 s", "1 min 1 s", "1 h", "1 h 30 min"]


def test_the_page_refuses_an_analysis_over_the_limit_and_says_when(demo_env: DemoSummary, app: AppTest,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_gemini import VALID_KEY, FakeGemini

    fake = FakeGemini()
    try:
        monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("ANALYSIS_LIMIT_PER_USER", "1")
        monkeypatch.setenv("ANALYSIS_LIMIT_WINDOW_SECONDS", "600")
        get_settings.cache_clear()
        _limiter.cache_clear()
        app.run()
        app.query_params.update({"id": demo_env.incident_for("bad_deploy").incident_id})
        app.switch_page("views/incident.py").run()
        app.button(key="analysis_run").click().run()
        assert not app.exception and len(fake.requests) == 1
        app.button(key="analysis_rerun").click().run()  # "Run again": a second Gemini call within the window
        assert not app.exception
        errors = [e.value.replace("\\", "") for e in app.error]
        assert any("Analysis limit reached" in e and "started 1 analysis in the last 10 min" in e
                   and re.search(r"possible in (9 min 5\d s|10 min)", e) for e in errors), errors
        assert len(fake.requests) == 1  # refused before any call
        assert "Retry" not in [b.label for b in app.button]
        app.button(key="analysis_offline").click().run()  # the offline analysis is not limited
        assert not app.exception and not app.error
    finally:
        fake.close()
        _limiter.cache_clear()
