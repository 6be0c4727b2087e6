"""The Gemini path against a local server speaking the real REST API: success, caching, every error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_gemini import VALID_KEY, FakeGemini

from incident_contracts.settings import Settings, load_settings
from incident_dashboard.demo import DemoSummary
from incident_rca.gemini import AnalysisError
from incident_rca.prompt import PROMPT_VERSION
from incident_rca.service import analyze, cached_analysis, store_for


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    yield server
    server.close()


def _settings(fake: FakeGemini, key: str = VALID_KEY, timeout: float = 10.0) -> Settings:
    return load_settings(gemini_api_key=key, gemini_base_url=fake.url, gemini_timeout_seconds=timeout,
                         gemini_model="gemini-2.5-flash")


def _p1(demo: DemoSummary) -> str:
    return demo.incident_for("db_pool_exhaustion").incident_id


def test_success_is_validated_stored_and_cached(demo_env: DemoSummary, fake: FakeGemini) -> None:
    settings = _settings(fake)
    incident_id = _p1(demo_env)
    analysis = analyze(incident_id, settings=settings)

    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert request.api_key == VALID_KEY
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "root_cause" in config["responseSchema"]["properties"]
    assert "untrusted_log_data" in request.system

    assert analysis.engine == "gemini" and analysis.model == "gemini-2.5-flash"
    assert analysis.prompt_version == PROMPT_VERSION
    assert analysis.result.root_cause.category == "database"
    assert [s.order for s in analysis.result.action_plan] == [1, 2]  # sorted by order
    assert analysis.usage is not None and analysis.usage.prompt_tokens == 1234 and analysis.usage.total_tokens == 1605
    assert analysis.sent.prompt == request.prompt  # what the user sees is exactly what left
    assert analysis.warnings == []

    again = analyze(incident_id, settings=settings)  # second click: from the store, no request
    assert again.analysis_id == analysis.analysis_id and len(fake.requests) == 1
    assert cached_analysis(incident_id, settings=settings).analysis_id == analysis.analysis_id
    stored = store_for(settings).path_for(incident_id, "gemini", "gemini-2.5-flash", PROMPT_VERSION)
    assert stored.is_file()

    forced = analyze(incident_id, settings=settings, force=True)
    assert len(fake.requests) == 2 and forced.analysis_id != analysis.analysis_id


def test_other_model_or_prompt_version_is_a_different_cache_entry(demo_env: DemoSummary, fake: FakeGemini) -> None:
    incident_id = _p1(demo_env)
    analyze(incident_id, settings=_settings(fake))
    other = load_settings(gemini_api_key=VALID_KEY, gemini_base_url=fake.url, gemini_model="gemini-2.5-pro")
    assert cached_analysis(incident_id, settings=other) is None
    analyze(incident_id, settings=other)
    assert [r.model for r in fake.requests] == ["gemini-2.5-flash", "gemini-2.5-pro"]


@pytest.mark.parametrize(("mode", "kind", "fragment"), [
    ("quota", "quota", "429"),
    ("safety", "safety", "SAFETY"),
    ("finish_safety", "safety", "SAFETY"),
    ("malformed", "malformed", "not valid JSON"),
    ("truncated", "malformed", "cut off"),
    ("invalid_schema", "malformed", "root_cause"),
    ("server", "server", "503"),
    ("not_found", "model", "gemini-2.5-flash"),
])
def test_each_failure_gives_a_clear_error(demo_env: DemoSummary, fake: FakeGemini, mode: str, kind: str,
                                          fragment: str) -> None:
    fake.mode = mode
    settings = _settings(fake)
    with pytest.raises(AnalysisError) as caught:
        analyze(_p1(demo_env), settings=settings)
    error = caught.value
    assert error.kind == kind
    assert fragment in error.message
    assert error.hint  # what to do next
    assert VALID_KEY not in str(error)
    assert cached_analysis(_p1(demo_env), settings=settings) is None  # nothing stored: a retry asks again
    # The SDK's own retries are off (it would retry a 429 or a 503 up to 5 times): one call, one request.
    assert len(fake.requests) == 1
    if mode == "quota":
        assert error.retry_after_seconds == 17 and "17 s" in error.hint


def test_bad_key(demo_env: DemoSummary, fake: FakeGemini) -> None:
    with pytest.raises(AnalysisError) as caught:
        analyze(_p1(demo_env), settings=_settings(fake, key="wrong-key-123"))
    assert caught.value.kind == "bad_key" and not caught.value.retryable
    assert "GEMINI_API_KEY" in caught.value.hint and "wrong-key-123" not in str(caught.value)


def test_missing_key_when_gemini_is_asked_for(demo_env: DemoSummary) -> None:
    settings = load_settings(gemini_api_key="")
    with pytest.raises(AnalysisError) as caught:
        analyze(_p1(demo_env), settings=settings, engine="gemini")
    assert caught.value.kind == "missing_key" and "GEMINI_API_KEY" in caught.value.hint
    # without a key the default engine is the offline analyzer
    assert analyze(_p1(demo_env), settings=settings).engine == "offline"


def test_timeout(demo_env: DemoSummary, fake: FakeGemini) -> None:
    fake.mode, fake.delay = "timeout", 30.0
    started = time.monotonic()
    with pytest.raises(AnalysisError) as caught:
        analyze(_p1(demo_env), settings=_settings(fake, timeout=1.0))
    assert caught.value.kind == "timeout" and "GEMINI_TIMEOUT_SECONDS" in caught.value.hint
    assert time.monotonic() - started < 15  # gave up long before the server's answer at 30 s
    assert len(fake.requests) == 1  # not asked again after the timeout


def test_unreachable_server(demo_env: DemoSummary) -> None:
    settings = load_settings(gemini_api_key=VALID_KEY, gemini_base_url="http://127.0.0.1:9", gemini_timeout_seconds=3)
    with pytest.raises(AnalysisError) as caught:
        analyze(_p1(demo_env), settings=settings)
    assert caught.value.kind == "network" and "127.0.0.1:9" in caught.value.message


def test_invented_citations_are_removed_and_reported(demo_env: DemoSummary, fake: FakeGemini) -> None:
    fake.mode = "invented"
    analysis = analyze(_p1(demo_env), settings=_settings(fake))
    assert analysis.result.evidence[0].citations == ["S1"]
    assert any("S99" in w and "E42" in w for w in analysis.warnings)


def test_fallback_to_offline(demo_env: DemoSummary, fake: FakeGemini) -> None:
    fake.mode = "server"
    analysis = analyze(_p1(demo_env), settings=_settings(fake), fallback_to_offline=True)
    assert analysis.engine == "offline"
    assert analysis.warnings[0].startswith("Gemini failed (server)")
