"""The HTTP endpoints of log-ingest (Starlette, served by uvicorn).

* ``POST /v1/logs``: OTLP/HTTP logs, protobuf or JSON, gzip or not; answered with an
  ExportLogsServiceResponse (``partial_success`` naming rejected records) or a google.rpc.Status.
* ``POST /v1/json``: newline-delimited JSON objects or a JSON array (Fluent Bit, Vector).
* ``POST /v1/lines?format=NAME``: text lines in a named log format.
* ``GET /healthz`` (the process answers), ``/readyz`` (broker reachable, topic present), ``/metrics``.

Every ``/v1`` request is answered 2xx only after Kafka acknowledged each of its accepted records;
429 or 503 with Retry-After when Kafka cannot take them now (the client retries; at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incident_contracts.codec import default_codec
from incident_contracts.fast_encode import FastEncoder
from incident_contracts.settings import Settings, get_settings
from incident_ingest import mapping
from incident_ingest.mapping import BadRequest, Batch, Encoder, JsonFields
from incident_ingest.metrics import MULTIPROCESS_DIR, Metrics, forget_ended_workers
from incident_ingest.sink import DeliveryFailed, KafkaSink, QueueFull

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_QUEUE_FULL = 2  # seconds
RETRY_AFTER_UNAVAILABLE = 5
# google.rpc.Code values for OTLP error answers.
_RPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 503: 14}


class HttpError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.extra = extra


class Ingest:
    """The service's state: settings, codec, Kafka sink, metrics."""

    def __init__(self, settings: Settings, sink: KafkaSink | None = None):
        self.settings = settings
        self.metrics = Metrics()
        self.fields = JsonFields.from_settings(settings)
        token = settings.ingest_token.get_secret_value() if settings.ingest_token else ""
        self._token = f"Bearer {token}".encode() if token else b""
        self.max_body = settings.ingest_max_body_bytes
        codec = default_codec(settings.schema_registry_url, settings.kafka_topic_logs)
        self.encoder = Encoder(FastEncoder.for_codec(codec))
        self.sink = sink or KafkaSink(
            settings.kafka_bootstrap_servers, settings.kafka_topic_logs,
            compression=settings.kafka_compression.value,
            delivery_timeout_s=settings.ingest_delivery_timeout_seconds,
            max_queued=settings.ingest_max_queued_records,
            on_failure=lambda name, n: self.metrics.delivery_failures.labels(name).inc(n))

    # --- request plumbing -----------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self._token:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._token):
            raise HttpError(401, "missing or wrong bearer token: send 'Authorization: Bearer <INGEST_TOKEN>'")

    async def body(self, request: Request) -> bytes:
        limit = self.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"the body has {declared} bytes; at most {limit} are accepted "
                                 "(INGEST_MAX_BODY_BYTES): send smaller batches")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the body exceeds {limit} bytes (INGEST_MAX_BODY_BYTES): send smaller batches")
            chunks.append(chunk)
        raw = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding not in ("gzip", "deflate"):
            raise HttpError(415, f"Content-Encoding {encoding!r} is not supported: use gzip, deflate or none")
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise HttpError(400, f"the body is not valid {encoding} data ({exc})") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise HttpError(413, f"the body decompresses to more than {limit} bytes (INGEST_MAX_BODY_BYTES)")
        if not inflater.eof:
            raise HttpError(400, f"the {encoding} body is truncated")
        return out

    async def deliver(self, endpoint: str, batch: Batch) -> None:
        for rejection in batch.rejections:
            self.metrics.rejected.labels(endpoint, rejection.reason).inc()
        try:
            await self.sink.send(batch.values, batch.keys)
        except QueueFull as exc:
            raise HttpError(429, f"{exc}; retry later", retry_after=RETRY_AFTER_QUEUE_FULL) from None
        except DeliveryFailed as exc:
            raise HttpError(503, f"{exc}; nothing of this request counts as written: retry it (records already "
                                 "written may then appear twice)", retry_after=RETRY_AFTER_UNAVAILABLE) from None
        self.metrics.accepted.labels(endpoint).inc(batch.accepted)
        if self.metrics.multiprocess:  # /metrics may be answered by another worker: keep this one's figure current
            self.metrics.queued.set(self.sink.queued)


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _rejections_body(batch: Batch, limit: int = 1000) -> dict[str, Any]:
    return {"accepted": batch.accepted, "rejected": len(batch.rejections),
            "errors": [r.as_dict() for r in batch.rejections[:limit]],
            "message": (f"{len(batch.rejections)} of {batch.total} records rejected (not written); the other "
                        f"{batch.accepted} were written. Each error names the record's 0-based index.")}


def _otlp_error(error: HttpError, as_json: bool) -> Response:
    status = status_pb2.Status(code=_RPC_CODE.get(error.status, 2), message=error.message)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if as_json:
        return Response(json_format.MessageToJson(status, indent=None), error.status, headers, JSON)
    return Response(status.SerializeToString(), error.status, headers, PROTOBUF)


def _json_error(error: HttpError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": error.message, **error.extra}, error.status, headers)


def create_app(settings: Settings, sink: KafkaSink | None = None) -> Starlette:
    """The ASGI application; the Kafka producer starts with it (or `sink` is used) and is flushed at shutdown."""
    state: dict[str, Ingest] = {}

    def ingest() -> Ingest:
        return state["ingest"]

    def endpoint(name: str, otlp: bool = False) -> Callable[[Callable[[Ingest, Request], Awaitable[Response]]],
                                                          Callable[[Request], Awaitable[Response]]]:
        def wrap(handler: Callable[[Ingest, Request], Awaitable[Response]]) -> Callable[[Request],
                                                                                       Awaitable[Response]]:
            async def run(request: Request) -> Response:
                service = ingest()
                metrics = service.metrics
                started = time.perf_counter()
                metrics.in_flight.inc()
                try:
                    service.authorize(request)
                    response = await handler(service, request)
                except HttpError as error:
                    response = _otlp_error(error, _content_type(request) == JSON) if otlp else _json_error(error)
                    if error.status >= 500 or error.status == 429:
                        log.warning("%s: %d %s", name, error.status, error.message)
                except Exception:
                    log.exception("%s: unexpected error", name)
                    error = HttpError(500, "internal error while handling the request; see the service's log")
                    response = _otlp_error(error, _content_type(request) == JSON) if otlp else _json_error(error)
                finally:
                    metrics.in_flight.dec()
                metrics.requests.labels(name, str(response.status_code)).inc()
                metrics.latency.labels(name).observe(time.perf_counter() - started)
                return response
            return run
        return wrap

    @endpoint("otlp", otlp=True)
    async def otlp_logs(service: Ingest, request: Request) -> Response:
        kind = _content_type(request)
        if kind not in (PROTOBUF, JSON):
            raise HttpError(415, f"Content-Type {kind or 'none'!r}: OTLP/HTTP logs are {PROTOBUF} or {JSON}")
        body = await service.body(request)
        try:
            export = mapping.otlp_from_json(body) if kind == JSON else mapping.otlp_from_protobuf(body)
        except BadRequest as exc:
            raise HttpError(400, str(exc)) from None
        digest, _ = mapping.event_ids(body)
        batch = mapping.otlp_batch(export, service.encoder, digest, service.settings.environment)
        await service.deliver("otlp", batch)
        answer = ExportLogsServiceResponse()
        if batch.rejections:
            answer.partial_success.rejected_log_records = len(batch.rejections)
            answer.partial_success.error_message = mapping.rejection_summary(batch)
        if kind == JSON:
            return Response(json_format.MessageToJson(answer, indent=None), 200, media_type=JSON)
        return Response(answer.SerializeToString(), 200, media_type=PROTOBUF)

    def _names(request: Request) -> tuple[str | None, str | None, str]:
        query = request.query_params
        return (query.get("service") or None, query.get("host") or None,
                query.get("environment") or ingest().settings.environment)

    def _answer(batch: Batch) -> Response:
        if batch.rejections:
            return JSONResponse(_rejections_body(batch), 400)
        return JSONResponse({"accepted": batch.accepted, "rejected": 0}, 200)

    @endpoint("json")
    async def json_lines(service: Ingest, request: Request) -> Response:
        body = await service.body(request)
        name, host, environment = _names(request)
        try:
            items = mapping.split_json(body)
        except BadRequest as exc:
            raise HttpError(400, str(exc)) from None
        digest, _ = mapping.event_ids(body)
        batch = mapping.json_batch(items, service.fields, service.encoder, digest, name, host, environment)
        await service.deliver("json", batch)
        return _answer(batch)

    @endpoint("lines")
    async def text_lines(service: Ingest, request: Request) -> Response:
        fmt = request.query_params.get("format", "").strip()
        if not fmt:
            raise HttpError(400, "name the log format: /v1/lines?format=NAME (log-generator --list-formats "
                                 "lists them; auto detects it)")
        body = await service.body(request)
        name, host, environment = _names(request)
        digest, _ = mapping.event_ids(body)
        try:
            batch = mapping.lines_batch(body, fmt, service.encoder, digest, name, host, environment)
        except BadRequest as exc:
            raise HttpError(400, str(exc)) from None
        await service.deliver("lines", batch)
        return _answer(batch)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        problem = await asyncio.to_thread(ingest().sink.check)
        if problem:
            return JSONResponse({"status": "unavailable", "reason": problem}, 503,
                                {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
        return JSONResponse({"status": "ready", "topic": ingest().sink.topic})

    async def metrics(_request: Request) -> Response:
        service = ingest()
        service.metrics.queued.set(service.sink.queued)
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["ingest"] = Ingest(settings, sink)
        log.info("log-ingest: writing to topic %s on %s", settings.kafka_topic_logs,
                 settings.kafka_bootstrap_servers)
        try:
            yield
        finally:
            await asyncio.to_thread(state["ingest"].sink.close)

    return Starlette(routes=[
        Route("/v1/logs", otlp_logs, methods=["POST"]),
        Route("/v1/json", json_lines, methods=["POST"]),
        Route("/v1/lines", text_lines, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)


def worker_app() -> Starlette:
    """The application of one worker process when INGEST_WORKERS > 1 (uvicorn imports it by name in each
    process it starts): the settings from the environment, as the command read them."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.value, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        forget_ended_workers(directory)
    return create_app(settings)
