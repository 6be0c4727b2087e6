"""A local HTTP server that answers like the Gemini REST API (generateContent), for tests.

It speaks the wire format the ``google-genai`` SDK uses: ``POST /{version}/models/{model}:generateContent``
with the key in ``x-goog-api-key``, answers ``candidates``/``usageMetadata``, and Google's error
envelope (``{"error": {"code", "message", "status", "details"}}``). ``mode`` picks the behaviour.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$")
VALID_KEY = "test-key"
MODES = ("ok", "quota", "timeout", "safety", "finish_safety", "malformed", "truncated", "invalid_schema",
         "server", "not_found", "invented")


@dataclass
class Request:
    path: str
    model: str
    api_key: str | None
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "".join(p.get("text", "") for c in self.body.get("contents", []) for p in c.get("parts", []))

    @property
    def system(self) -> str:
        parts = (self.body.get("systemInstruction") or {}).get("parts", [])
        return "".join(p.get("text", "") for p in parts)


@dataclass
class FakeGemini:
    mode: str = "ok"
    delay: float = 3.0  # seconds the "timeout" mode waits before answering
    key: str = VALID_KEY  # the one API key it accepts
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                match = PATH.match(self.path)
                request = Request(self.path, match["model"] if match else "", self.headers.get("x-goog-api-key"), body)
                fake.requests.append(request)
                status, payload = fake.answer(request, match is not None)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- answers ---------------------------------------------------------------------------
    def answer(self, request: Request, known_path: bool) -> tuple[int, dict]:
        if not known_path:
            return _error(404, "NOT_FOUND", f"Unknown path {request.path}")
        if request.api_key != self.key:
            return 400, {"error": {
                "code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                             "domain": "googleapis.com",
                             "metadata": {"service": "generativelanguage.googleapis.com"}}]}}
        mode = self.mode
        if mode == "quota":
            status, payload = _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your "
                                     "plan and billing details.")
            payload["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]
            return status, payload
        if mode == "server":
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if mode == "not_found":
            return _error(404, "NOT_FOUND", f"models/{request.model} is not found for API version v1")
        if mode == "timeout":
            time.sleep(self.delay)
        if mode == "safety":
            return 200, {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": 900, "totalTokenCount": 900}, "modelVersion": request.model}
        if mode == "finish_safety":
            return 200, {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM", "blocked": True}]}],
                "usageMetadata": {"promptTokenCount": 900, "totalTokenCount": 900}, "modelVersion": request.model}
        if mode == "malformed":
            return _text(request, '{"summary": "The pool is exhausted", "root_cause": {"statement": ', "STOP")
        if mode == "truncated":
            return _text(request, json.dumps(analysis_for(request))[:300], "MAX_TOKENS")
        if mode == "invalid_schema":
            return _text(request, json.dumps({"summary": "Something broke", "root_cause": {"statement": "x"}}), "STOP")
        answer = analysis_for(request)
        if mode == "invented":
            answer["evidence"][0]["citations"] = ["S1", "S99", "E42"]
        return _text(request, json.dumps(answer), "STOP")


def _error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _text(request: Request, text: str, finish: str) -> tuple[int, dict]:
    return 200, {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 1234, "candidatesTokenCount": 321, "thoughtsTokenCount": 50,
                          "totalTokenCount": 1605},
        "modelVersion": request.model, "responseId": "fake-response"}


def analysis_for(request: Request) -> dict:
    """A valid answer that cites items present in the prompt (the first signature and sample event)."""
    prompt = request.prompt
    sig = "S1" if '"id": "S1"' in prompt else None
    event = "E1" if '"id": "E1"' in prompt else None
    cites = [c for c in (sig, event) if c]
    return {
        "summary": "Requests fail because the order service cannot get database connections.",
        "root_cause": {"statement": "The connection pool of order-service is exhausted by slow queries.",
                       "category": "database", "confidence": 0.72,
                       "confidence_rationale": "Pool timeout signatures dominate; no deploy in the window."},
        "evidence": [{"finding": "Most errors are pool acquisition timeouts.", "citations": cites, "supports": True},
                     {"finding": "Error rate is far above baseline.", "citations": ["M1"], "supports": True}],
        "timeline": [{"time": "2026-11-23T09:08:25Z", "event": "Incident opened", "citations": ["L1"]}],
        "action_plan": [
            {"order": 2, "action": "Roll back the last deploy if it changed queries.", "priority": "high",
             "owner": "team-commerce", "rationale": "cheap and reversible"},
            {"order": 1, "action": "Kill queries running longer than 60 s.", "priority": "now",
             "owner": "team-data-platform", "rationale": "frees connections"}],
        "verification": ["Check pg_stat_activity for long-running queries."],
        "prevention": ["Set a statement timeout."],
        "insufficient_evidence": False,
        "missing_information": [],
    }
