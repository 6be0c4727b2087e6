"""Gemini through ``google-genai``: one structured request, and a clear error for every way it fails.

The request asks for JSON against :class:`RootCauseAnalysis` (``response_schema``); the answer's text
is parsed and validated here with pydantic rather than trusting ``response.parsed`` (which is
silently None on malformed JSON), so a broken answer produces a message naming what was wrong.
The SDK's own retries are off: a failed call is reported at once and the user (or the Airflow
task's retry policy) decides when to try again.

The SDK and its HTTP library are imported on the first call, not with this module: together they take
seconds to import, and every page of the dashboard imports this module (for :class:`AnalysisError`).
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from pydantic import ValidationError

from incident_contracts.settings import Settings
from incident_rca.models import RootCauseAnalysis, SentRequest, TokenUsage

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types

MAX_OUTPUT_TOKENS = 8192


def _transport_errors(*names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of the HTTP library the SDK uses: httpx, or its fork httpx2 when installed."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, name) for name in names if hasattr(module, name)]
    return tuple(found)


@cache
def _timeouts() -> tuple[type[BaseException], ...]:
    return _transport_errors("TimeoutException")


@cache
def _network_errors() -> tuple[type[BaseException], ...]:
    return _transport_errors("NetworkError", "ProtocolError", "ConnectError")


_BLOCKED_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"}


class AnalysisError(RuntimeError):
    """A failed analysis, with a message for people and whether retrying can help."""

    def __init__(self, kind: str, message: str, hint: str, *, retryable: bool = True,
                 retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds

    def __str__(self) -> str:
        return f"{self.message} {self.hint}"


@dataclass
class GeminiAnswer:
    result: RootCauseAnalysis
    usage: TokenUsage
    model_version: str
    duration_ms: float


def _client(settings: Settings) -> genai.Client:
    from google import genai
    from google.genai import types

    if settings.gemini_api_key is None:
        raise AnalysisError("missing_key", "No Gemini API key is configured.",
                            "Set GEMINI_API_KEY in .env (or the environment) and restart, or use the offline "
                            "analysis.", retryable=False)
    options = types.HttpOptions(timeout=int(settings.gemini_timeout_seconds * 1000))
    if settings.gemini_base_url:
        options.base_url = settings.gemini_base_url
    return genai.Client(api_key=settings.gemini_api_key.get_secret_value(), http_options=options)


def generate(settings: Settings, request: SentRequest) -> GeminiAnswer:
    """Send the request; return the validated answer or raise :class:`AnalysisError`."""
    client = _client(settings)
    from google.genai import errors as genai_errors
    from google.genai import types

    config = types.GenerateContentConfig(
        system_instruction=request.system_instruction,
        response_mime_type="application/json",
        response_schema=RootCauseAnalysis,
        temperature=0.2,
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    started = time.perf_counter()
    try:
        response = client.models.generate_content(model=settings.gemini_model, contents=request.prompt,
                                                   config=config)
    except genai_errors.APIError as exc:
        raise _api_error(exc, settings) from None
    except _timeouts():
        raise AnalysisError("timeout", f"Gemini did not answer within {settings.gemini_timeout_seconds:.0f} s.",
                            "Retry; if it keeps happening raise GEMINI_TIMEOUT_SECONDS or try a faster "
                            "model.") from None
    except _network_errors() as exc:
        where = settings.gemini_base_url or "generativelanguage.googleapis.com"
        raise AnalysisError("network", f"Could not reach Gemini at {where} ({type(exc).__name__}).",
                            "Check the network (or GEMINI_BASE_URL), then retry; the offline analysis works "
                            "without a network.") from None
    finally:
        client.close()
    duration_ms = (time.perf_counter() - started) * 1000
    result = _parse(response)
    usage = response.usage_metadata
    return GeminiAnswer(
        result=result,
        usage=TokenUsage(prompt_tokens=(usage and usage.prompt_token_count) or 0,
                         output_tokens=(usage and usage.candidates_token_count) or 0,
                         thinking_tokens=(usage and usage.thoughts_token_count) or 0,
                         total_tokens=(usage and usage.total_token_count) or 0),
        model_version=response.model_version or settings.gemini_model,
        duration_ms=duration_ms)


def _parse(response: types.GenerateContentResponse) -> RootCauseAnalysis:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        raise AnalysisError("safety", f"Gemini refused the request (blocked: {reason}).",
                            "Log lines in the incident may have tripped a safety filter. Retry, or use the "
                            "offline analysis.", retryable=True)
    candidate = response.candidates[0] if response.candidates else None
    finish = getattr(getattr(candidate, "finish_reason", None), "value", None) if candidate else None
    text = _text_of(candidate)
    if finish in _BLOCKED_FINISH and not text:
        raise AnalysisError("safety", f"Gemini stopped its answer (finish reason {finish}).",
                            "Retry, or use the offline analysis.", retryable=True)
    if not text:
        raise AnalysisError("malformed", "Gemini returned an empty answer.", "Retry the analysis.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (the answer was cut off at the output token limit)" if finish == "MAX_TOKENS" else ""
        raise AnalysisError("malformed", f"Gemini's answer is not valid JSON{cut}: {exc.msg} at character "
                            f"{exc.pos}.", "Retry the analysis; answers vary between attempts.") from None
    try:
        return RootCauseAnalysis.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise AnalysisError("malformed", f"Gemini's answer does not match the expected structure ({problems}).",
                            "Retry the analysis; answers vary between attempts.") from None


def _text_of(candidate: types.Candidate | None) -> str:
    if candidate is None or candidate.content is None or not candidate.content.parts:
        return ""
    return "".join(p.text for p in candidate.content.parts if p.text and not p.thought).strip()


def _api_error(exc: genai_errors.APIError, settings: Settings) -> AnalysisError:
    code, status = exc.code, (exc.status or "")
    details = json.dumps(exc.details or {})
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        retry_after = _retry_delay(exc)
        when = f"in about {retry_after:.0f} s" if retry_after else "in a minute"
        return AnalysisError("quota", "Gemini's quota or rate limit is exhausted (429 RESOURCE_EXHAUSTED).",
                             f"Retry {when}; check the quota of the API key's project, or use the offline analysis.",
                             retry_after_seconds=retry_after)
    if (code in (401, 403) or "API_KEY_INVALID" in details or status in ("UNAUTHENTICATED", "PERMISSION_DENIED")
            or (code == 400 and "api key" in (exc.message or "").lower())):
        return AnalysisError("bad_key", f"Gemini rejected the API key ({code} {status}).",
                             "Check GEMINI_API_KEY (a valid key for the Gemini API, not revoked), then restart.",
                             retryable=False)
    if code == 404:
        return AnalysisError("model", f"Gemini does not know the model {settings.gemini_model!r} (404).",
                             "Set GEMINI_MODEL to an available model, such as gemini-2.5-flash.", retryable=False)
    if code in (408, 504) or status == "DEADLINE_EXCEEDED":
        return AnalysisError("timeout", f"Gemini timed out ({code} {status}).", "Retry in a moment.")
    if code >= 500:
        return AnalysisError("server", f"Gemini is unavailable right now ({code} {status}).",
                             "Retry in a moment, or use the offline analysis.")
    return AnalysisError("request", f"Gemini rejected the request ({code} {status}: {exc.message}).",
                         "Retry; if it persists the prompt may be too large or the model misconfigured.",
                         retryable=False)


def _retry_delay(exc: genai_errors.APIError) -> float | None:
    details = exc.details
    items = details.get("error", {}).get("details", []) if isinstance(details, dict) else []
    for item in items if isinstance(items, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None
