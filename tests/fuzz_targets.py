"""Coverage-guided fuzz targets (atheris) for the code that parses untrusted bytes.

Run one target for a bounded time: ``python tests/fuzz_targets.py TARGET -max_total_time=SECONDS [CORPUS]``.
A target fails (atheris exits non-zero and prints the input) when the code under test raises anything but
its own typed rejection, or breaks the invariant the target states. tests/*/test_fuzz_*.py run them in CI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris
import google.protobuf  # noqa: F401
import numpy  # noqa: F401  (libraries the targets use are imported uninstrumented: only the project's code is)
import pyarrow  # noqa: F401
import yaml  # noqa: F401

with atheris.instrument_imports(include=["incident_contracts", "log_generator", "incident_ingest"]):
    from incident_contracts.codec import Codec, DecodeError
    from incident_contracts.dead_letter import DECODE_REASONS
    from incident_contracts.fast_decode import FastDecoder
    from incident_contracts.fast_encode import FastEncoder
    from incident_ingest import mapping
    from log_generator.replay.parser import ParseOptions, load_formats, parse

CODEC = Codec()
FORMATS = load_formats()
FORMAT_NAMES = ["auto", *sorted(FORMATS)]
PARSE_OPTIONS = ParseOptions(service="fuzzed", year=2026, now_ms=1_796_000_000_000)


def codec_decode(data: bytes) -> None:
    """Any bytes decode to a LogEvent or fail with a DecodeError carrying a reason and a detail."""
    try:
        event = CODEC.decode(data)
    except DecodeError as error:
        assert error.reason in DECODE_REASONS and error.detail, error
        return
    assert CODEC.decode(CODEC.encode(event)) == event  # what decodes is a LogEvent the codec writes back


def fast_decode(data: bytes) -> None:
    """The vectorised decoder reaches the codec's verdict on every message of a batch, bad ones included."""
    split = data.find(b"\xff\xfe")
    values = [data] if split < 0 else [data[:split], data[split + 2:]]
    result = FastDecoder(CODEC).decode(values)
    failed = {index: reason for index, reason, _ in result.failures}
    assert sorted([*failed, *result.ok.tolist()]) == list(range(len(values))), "a message was lost or doubled"
    for index, value in enumerate(values):
        try:
            CODEC.decode(value)
            verdict = None
        except DecodeError as error:
            verdict = str(error.reason)
        if index in failed:
            assert verdict is not None or failed[index] == "invalid_field", (index, failed[index])
            assert verdict is None or failed[index] == verdict, (index, failed[index], verdict)
        else:
            assert verdict is None, (index, verdict)


def log_lines(data: bytes) -> None:
    """Any text parses in any format without an exception; every line is accounted for, and every event
    parsed is a LogEvent the codec accepts."""
    if not data:
        return
    fmt = FORMAT_NAMES[data[0] % len(FORMAT_NAMES)]
    lines = data[1:].decode("utf-8", errors="replace").splitlines()
    result = parse(lines, fmt, PARSE_OPTIONS, FORMATS)
    stats = result.stats
    assert stats.lines_read == len(lines), (stats, len(lines))
    assert stats.parsed + stats.unparsed + stats.blank + stats.continuation == stats.lines_read, stats
    for event in result.events:
        CODEC.decode(CODEC.encode(event))


INGEST_ENCODER = mapping.Encoder(FastEncoder.for_codec(CODEC))
JSON_FIELDS = mapping.JsonFields(timestamp=("timestamp", "date"), message=("message", "log"), level=("level",),
                                 service=("service",), host=("host",), environment=("environment",))
# The ingest service's request bodies; the first byte of the input picks the endpoint.
INGEST_KINDS = ("otlp_protobuf", "otlp_json", "json_lines", "text_lines")


def ingest_bodies(data: bytes) -> None:
    """Any request body is refused as a whole with BadRequest (a 400 naming why), or read into records that are
    each either encoded as a LogEvent the codec decodes, or rejected with a reason: none lost, none raising."""
    if not data:
        return
    kind, body = INGEST_KINDS[data[0] % len(INGEST_KINDS)], data[1:]
    digest, _ = mapping.event_ids(body)
    try:
        if kind == "otlp_protobuf":
            batch = mapping.otlp_batch(mapping.otlp_from_protobuf(body), INGEST_ENCODER, digest, "prod")
        elif kind == "otlp_json":
            batch = mapping.otlp_batch(mapping.otlp_from_json(body), INGEST_ENCODER, digest, "prod")
        elif kind == "json_lines":
            batch = mapping.json_batch(mapping.split_json(body), JSON_FIELDS, INGEST_ENCODER, digest, None, None,
                                       "prod")
        else:
            batch = mapping.lines_batch(body, "auto", INGEST_ENCODER, digest, "fuzzed", None, "prod")
    except mapping.BadRequest as refused:
        assert str(refused), "a refusal must say why"
        return
    assert batch.accepted + len(batch.rejections) == batch.total, (batch.accepted, len(batch.rejections), batch.total)
    assert len(batch.keys) == batch.accepted
    assert all(rejection.reason and rejection.detail for rejection in batch.rejections), batch.rejections
    for value in batch.values:
        CODEC.decode(value)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ingest_bodies": ingest_bodies,
    "codec_decode": codec_decode,
    "fast_decode": fast_decode,
    "log_lines": log_lines,
}


def main() -> None:
    name = sys.argv.pop(1)
    target = TARGETS[name]
    corpus = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    for folder in corpus:
        folder.mkdir(parents=True, exist_ok=True)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
