"""From engine blocks to LogEvent records (dicts) or to wire messages (bytes), identically.

A record's Avro encoding is ``header | event_id timestamp | service .. message | trace_id span_id |
http_method .. attributes``. The middle parts come pre-encoded with each variant; the per-event parts
(event id, timestamp, trace and span ids) are encoded for a whole block at once with numpy, so building
a message costs one join. `messages` output is byte-for-byte what ``Codec.encode(record)`` gives for
the dict `records` builds (a test checks it).
"""

from __future__ import annotations

import numpy as np

from incident_contracts.fast_encode import head_segment
from log_generator.engine import Block

EVENT_ID_LENGTH = 36
TRACE_WIDTH = 52  # 02 40 <32 hex> 02 20 <16 hex>
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(44, -1, -4, dtype=np.int64)  # 12 hex digits, most significant first
# Timestamps whose zigzag varint is exactly 6 bytes (1970-07 .. 2039-09): vectorised path.
_TS_MIN, _TS_MAX = 1 << 34, (1 << 41) - 1


def event_ids(prefix: str, seq0: int, n: int) -> list[str]:
    return [f"{prefix}{seq:012x}" for seq in range(seq0, seq0 + n)]


def records(block: Block, prefix: str, environment: str) -> list[dict]:
    """The block as LogEvent dicts (Avro schema shape, timestamp in ms)."""
    trace = block.trace.tobytes().decode("ascii")
    out = []
    append = out.append
    seq = block.seq0
    for i, (v, ts) in enumerate(zip(block.variants, block.ts.tolist(), strict=True)):
        o = 48 * i
        append({
            "event_id": f"{prefix}{seq + i:012x}",
            "timestamp": ts,
            "service": v.service,
            "environment": environment,
            "host": v.host,
            "level": v.level,
            "logger": v.logger,
            "message": v.message,
            "trace_id": trace[o:o + 32] if v.traced else None,
            "span_id": trace[o + 32:o + 48] if v.traced else None,
            "http_method": v.method,
            "http_path": v.path,
            "http_status": v.status,
            "latency_ms": v.latency,
            "error_type": v.error_type,
            "attributes": dict(v.attributes) if v.attributes else {},
        })
    return out


def heads(header: bytes, prefix: str, seq0: int, ts: np.ndarray) -> list[bytes]:
    """Wire header + event id + timestamp, encoded, for every event of a block."""
    n = len(ts)
    if n and (int(ts.min()) < _TS_MIN or int(ts.max()) > _TS_MAX):
        return [header + head_segment(f"{prefix}{seq0 + i:012x}", t) for i, t in enumerate(ts.tolist())]
    constant = np.frombuffer(header + bytes([EVENT_ID_LENGTH * 2]) + prefix.encode("ascii"), dtype=np.uint8)
    lead = len(constant)
    width = lead + 12 + 6
    out = np.empty((n, width), dtype=np.uint8)
    out[:, :lead] = constant
    seq = np.arange(seq0, seq0 + n, dtype=np.int64)
    out[:, lead:lead + 12] = _HEX[(seq[:, None] >> _SHIFTS) & 15]
    zz = ts.astype(np.int64) << 1
    for k in range(5):
        out[:, lead + 12 + k] = ((zz >> (7 * k)) & 0x7F) | 0x80
    out[:, lead + 17] = zz >> 35  # >= 1 in this range: the row never ends in a NUL byte
    return _rows(out)


def traces(trace: np.ndarray) -> list[bytes]:
    """Encoded trace_id and span_id unions (both present) for every event of a block."""
    n = len(trace)
    out = np.empty((n, TRACE_WIDTH), dtype=np.uint8)
    out[:, 0] = 2
    out[:, 1] = 64
    out[:, 2:34] = trace[:, :32]
    out[:, 34] = 2
    out[:, 35] = 32
    out[:, 36:52] = trace[:, 32:48]
    return _rows(out)


def _rows(matrix: np.ndarray) -> list[bytes]:
    """Each row as a bytes object, split in C. (numpy's S dtype drops trailing NUL bytes, so callers
    guarantee rows end in a non-zero byte; checked here to be safe.)"""
    n, width = matrix.shape
    if n and not matrix[:, -1].all():
        return [row.tobytes() for row in matrix]
    return np.ascontiguousarray(matrix).view(f"S{width}").ravel().tolist()


def messages(block: Block, header: bytes, prefix: str) -> list[bytes]:
    """The block's events as wire messages (framing header included)."""
    join = b"".join
    return [join((h, v.a, t, v.b)) if v.traced else h + v.ab
            for v, h, t in zip(block.variants, heads(header, prefix, block.seq0, block.ts), traces(block.trace),
                               strict=True)]
