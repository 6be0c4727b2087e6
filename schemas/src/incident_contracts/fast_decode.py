"""Vectorised decoding of LogEvent messages straight into Arrow, equivalent to :meth:`Codec.decode`.

``Codec.decode`` builds a Python dict per record (about 30-40k records/s per core here); a streaming job
needs several times that. :class:`FastDecoder` decodes a whole list of Kafka values at once with numpy:
every record is walked field by field *in parallel* (one position per record, advanced by vectorised
varint/length arithmetic), and string columns are assembled by Arrow from views into one shared buffer.

Correctness rule: the fast path only keeps records it is sure about. Every record with a bad header,
an unsupported writer schema, or anything unusual in its body (out-of-range lengths or indexes,
overlong varints, invalid UTF-8, duplicate map keys, trailing bytes...) is handed to ``Codec.decode``,
whose verdict - the decoded record, or the failure reason and detail - is used as is. A record that
``Codec.decode`` accepts but that cannot be represented in the Arrow schema (an ``int`` beyond 32 bits)
fails with reason ``invalid_field``. Names (service, environment, host) are checked on the whole batch
with the codec's rule (:data:`~incident_contracts.codec.NAME_PATTERN`); a record that breaks it fails
with the codec's reason ``invalid_name`` and detail. Property tests (tests/contracts/test_fast_decode.py)
check the equivalence on valid, old-version and corrupted messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_contracts.avro_schemas import SchemaVersion
from incident_contracts.codec import (
    CONFLUENT_HEADER,
    NAME_FIELDS,
    NAME_PATTERN,
    SINGLE_OBJECT_HEADER,
    Codec,
    DecodeError,
    name_problem,
)
from incident_contracts.dead_letter import DeadLetterReason

_PAD = 16  # zero bytes after the buffer so fixed-width gathers never read past its end
_MIN_TS_MS = int((dt.datetime(1, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
                 / dt.timedelta(milliseconds=1))
_MAX_TS_MS = int((dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
                  - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(milliseconds=1))
_INT32 = (-(2**31), 2**31 - 1)
_WORD_MASK = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], dtype=np.uint32)


class Unsupported(Exception):
    """A writer/reader schema pair the vectorised path does not handle (the codec decodes it instead)."""


@dataclass
class DecodeResult:
    """Decoded rows (in input order) and the records that failed, as (index, reason, detail)."""

    batch: pa.RecordBatch
    ok: np.ndarray  # input index of each row of `batch`
    failures: list[tuple[int, str, str]] = field(default_factory=list)


# --- schema handling ------------------------------------------------------------------------------

def _resolve(avro_type: Any, named: dict[str, Any], namespace: str = "") -> Any:
    """Inline named-type references so every type below is self-contained."""
    if isinstance(avro_type, str):
        if avro_type in named:
            return named[avro_type]
        qualified = f"{namespace}.{avro_type}" if namespace and "." not in avro_type else avro_type
        return named.get(qualified, avro_type)
    if isinstance(avro_type, list):
        return [_resolve(t, named, namespace) for t in avro_type]
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in ("enum", "fixed", "record"):
            name = avro_type.get("name", "")
            ns = avro_type.get("namespace", namespace)
            full = name if "." in name else (f"{ns}.{name}" if ns else name)
            named[full] = avro_type
            named[name.rsplit(".", 1)[-1]] = avro_type
            if kind == "record":
                return {**avro_type, "fields": [{**f, "type": _resolve(f["type"], named, ns)}
                                                for f in avro_type["fields"]]}
            return avro_type
        if kind == "map":
            return {**avro_type, "values": _resolve(avro_type["values"], named, namespace)}
        if kind == "array":
            return {**avro_type, "items": _resolve(avro_type["items"], named, namespace)}
        if isinstance(kind, (dict, list)) or kind in named:
            return _resolve(kind, named, namespace)
    return avro_type


def _fields(schema: SchemaVersion) -> list[dict[str, Any]]:
    return _resolve(schema.raw, {}, schema.raw.get("namespace", ""))["fields"]


def _kind(avro_type: Any) -> str:
    """A normalised name of a type: primitive name, 'timestamp-millis', 'enum', 'map:<values>', 'union'."""
    if isinstance(avro_type, list):
        return "union"
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        base = avro_type.get("type")
        if logical == "timestamp-millis" and base == "long":
            return "timestamp-millis"
        if base == "map":
            return "map:" + _kind(avro_type["values"])
        if base in ("enum", "record", "array", "fixed"):
            return base
        return _kind(base)
    return str(avro_type)


_SIMPLE = {"null", "boolean", "int", "long", "float", "double", "string", "bytes", "timestamp-millis", "enum"}
_ARROW = {
    "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
    "double": pa.float64(), "string": pa.string(), "bytes": pa.binary(), "enum": pa.string(),
    "timestamp-millis": pa.timestamp("ms", tz="UTC"), "map:string": pa.map_(pa.string(), pa.string()),
}


def _split_union(avro_type: Any) -> tuple[int, Any]:
    """For ["null", X] or [X, "null"]: (branch index of X, X). Anything else is unsupported."""
    if not isinstance(avro_type, list) or len(avro_type) != 2 or "null" not in avro_type:
        raise Unsupported(f"union {avro_type}")
    index = 1 if avro_type[0] == "null" else 0
    inner = avro_type[index]
    if _kind(inner) not in _SIMPLE - {"null"} and _kind(inner) != "map:string":
        raise Unsupported(f"union member {inner}")
    return index, inner


def arrow_schema(reader: SchemaVersion) -> pa.Schema:
    """The Arrow schema decoded records take: one column per reader field, unions as nullable columns."""
    columns = []
    for f in _fields(reader):
        nullable = isinstance(f["type"], list)
        inner = _split_union(f["type"])[1] if nullable else f["type"]
        kind = _kind(inner)
        if kind not in _ARROW:
            raise Unsupported(f"reader field {f['name']} of type {inner}")
        columns.append(pa.field(f["name"], _ARROW[kind], nullable=nullable or kind.startswith("map")))
    return pa.schema(columns)


@dataclass
class _FieldPlan:
    name: str
    writer: Any  # writer type (resolved); None when the field only exists in the reader
    reader: Any
    keep: bool  # False for writer fields the reader drops (decoded to advance, then discarded)
    default: Any = None
    enum_map: np.ndarray | None = None  # writer symbol index -> reader symbol index (-1: not resolvable)


def _plan(writer: SchemaVersion, reader: SchemaVersion) -> list[_FieldPlan]:
    """How to turn records written with `writer` into `reader`-shaped columns, or Unsupported."""
    w_fields = _fields(writer)
    r_fields = {f["name"]: f for f in _fields(reader)}
    plans: list[_FieldPlan] = []
    for wf in w_fields:
        if wf.get("aliases"):
            raise Unsupported("aliases")
        rf = r_fields.get(wf["name"])
        plans.append(_plan_field(wf, rf))
    written = {wf["name"] for wf in w_fields}
    for name, rf in r_fields.items():
        if rf.get("aliases"):
            raise Unsupported("aliases")
        if name not in written:
            if "default" not in rf:
                raise Unsupported(f"reader field {name} has no default")
            plans.append(_FieldPlan(name, None, rf["type"], True, default=rf["default"]))
    return plans


def _plan_field(wf: dict[str, Any], rf: dict[str, Any] | None) -> _FieldPlan:
    w_type = wf["type"]
    w_inner = _split_union(w_type)[1] if isinstance(w_type, list) else w_type
    w_kind = _kind(w_inner)
    if w_kind not in _SIMPLE and w_kind != "map:string":
        raise Unsupported(f"writer field {wf['name']} of type {w_type}")
    if rf is None:
        return _FieldPlan(wf["name"], w_type, None, False)
    r_type = rf["type"]
    r_inner = _split_union(r_type)[1] if isinstance(r_type, list) else r_type
    if isinstance(w_type, list) and not isinstance(r_type, list):
        raise Unsupported(f"field {wf['name']}: nullable writer, non-null reader")
    if _kind(r_inner) != w_kind:
        raise Unsupported(f"field {wf['name']}: {w_kind} -> {_kind(r_inner)} promotion")
    enum_map = None
    if w_kind == "enum":
        r_symbols = list(r_inner["symbols"])
        default = r_inner.get("default")
        enum_map = np.array([r_symbols.index(s) if s in r_symbols
                             else (r_symbols.index(default) if default in r_symbols else -1)
                             for s in w_inner["symbols"]], dtype=np.int64)
    return _FieldPlan(wf["name"], w_type, r_type, True, enum_map=enum_map)


# --- the vectorised reader -------------------------------------------------------------------------

class _Cursor:
    """Positions of many records inside one buffer, advanced together field by field."""

    def __init__(self, buf: np.ndarray, pos: np.ndarray, end: np.ndarray):
        self.buf = buf
        self.pos = pos
        self.end = end
        self.suspect = np.zeros(len(pos), dtype=bool)
        raw = buf.data
        self._f8 = np.ndarray(shape=(len(buf) - 8,), dtype="<f8", buffer=raw, strides=(1,))
        self._f4 = np.ndarray(shape=(len(buf) - 4,), dtype="<f4", buffer=raw, strides=(1,))
        self._i4 = np.ndarray(shape=(len(buf) - 4,), dtype="<i4", buffer=raw, strides=(1,))

    def flag(self, rows: np.ndarray) -> None:
        """Mark rows as suspect: they leave the fast path; keep their cursor inside the record."""
        if rows.size:
            self.suspect[rows] = True
            self.pos[rows] = np.minimum(self.pos[rows], self.end[rows])

    def _bounds(self, rows: np.ndarray) -> None:
        over = self.pos[rows] > self.end[rows]
        if over.any():
            self.flag(rows[over])

    def varint(self, rows: np.ndarray) -> np.ndarray:
        """Zig-zag varints (Avro int/long) at the cursor of `rows`."""
        p = self.pos[rows]
        b = self.buf[p]
        value = (b & 0x7F).astype(np.uint64)
        size = np.ones(len(rows), dtype=np.int64)
        more = np.flatnonzero(b & 0x80)
        shift = 7
        while more.size:
            if shift >= 63:  # 10+ byte varints: leave exact overflow behaviour to the codec
                self.flag(rows[more])
                break
            nxt = self.buf[p[more] + size[more]]
            value[more] |= (nxt & 0x7F).astype(np.uint64) << np.uint64(shift)
            size[more] += 1
            more = more[(nxt & 0x80) != 0]
            shift += 7
        self.pos[rows] = p + size
        self._bounds(rows)
        return (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)

    def span(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A length-prefixed string/bytes value: (start, length) in the buffer."""
        length = self.varint(rows)
        start = self.pos[rows]
        bad = (length < 0) | (length > self.end[rows] - start) | self.suspect[rows]
        if bad.any():
            self.flag(rows[bad])
            length = np.where(bad, 0, length)
        self.pos[rows] = start + length
        return start, length

    def fixed(self, rows: np.ndarray, width: int, view: np.ndarray) -> np.ndarray:
        p = self.pos[rows]
        values = view[np.minimum(p, len(view) - 1)]
        self.pos[rows] = p + width
        self._bounds(rows)
        return values

    def byte(self, rows: np.ndarray) -> np.ndarray:
        p = self.pos[rows]
        self.pos[rows] = p + 1
        self._bounds(rows)
        return self.buf[p]


@dataclass
class _Column:
    """Decoded values of one field for every record of a group; `present` False means null."""

    kind: str
    present: np.ndarray
    values: Any = None  # numeric array, or (start, length) spans, or map parts
    symbols: list[str] | None = None  # reader symbols of an enum column


def _read_value(cur: _Cursor, rows: np.ndarray, avro_type: Any, n: int, plan: _FieldPlan) -> _Column:
    kind = _kind(avro_type)
    present = np.zeros(n, dtype=bool)
    present[rows] = True
    if kind == "null":
        return _Column(kind, np.zeros(n, dtype=bool))
    if kind in ("int", "long", "timestamp-millis"):
        values = np.zeros(n, dtype=np.int64)
        values[rows] = cur.varint(rows)
        if kind == "int":
            out = (values < _INT32[0]) | (values > _INT32[1])
            cur.flag(np.flatnonzero(out & present))
        if kind == "timestamp-millis":
            out = (values < _MIN_TS_MS) | (values > _MAX_TS_MS)
            cur.flag(np.flatnonzero(out & present))
        return _Column(kind, present, values)
    if kind in ("float", "double"):
        values = np.zeros(n, dtype=np.float64 if kind == "double" else np.float32)
        values[rows] = cur.fixed(rows, 8, cur._f8) if kind == "double" else cur.fixed(rows, 4, cur._f4)
        return _Column(kind, present, values)
    if kind == "boolean":
        raw = np.zeros(n, dtype=np.uint8)
        raw[rows] = cur.byte(rows)
        cur.flag(np.flatnonzero(raw > 1))
        return _Column(kind, present, raw.astype(bool))
    if kind == "enum":
        index = np.zeros(n, dtype=np.int64)
        index[rows] = cur.varint(rows)
        mapping = plan.enum_map if plan.enum_map is not None else np.arange(len(avro_type["symbols"]))
        bad = (index < 0) | (index >= len(mapping))
        safe = np.where(bad, 0, index)
        mapped = mapping[safe]
        cur.flag(np.flatnonzero((bad | (mapped < 0)) & present))
        symbols = _reader_symbols(plan.reader) if plan.reader is not None else None
        return _Column(kind, present, np.where(mapped < 0, 0, mapped), symbols)
    if kind in ("string", "bytes"):
        start = np.zeros(n, dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        start[rows], length[rows] = cur.span(rows)
        return _Column(kind, present, (start, length))
    if kind == "map:string":
        return _Column(kind, present, _read_map(cur, rows, n))
    raise Unsupported(kind)


def _read_map(cur: _Cursor, rows: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Map blocks of string values: returns (entry count per record, key spans, value spans, owner, rank)."""
    count = np.zeros(n, dtype=np.int64)
    owners, ranks, k_start, k_len, v_start, v_len = [], [], [], [], [], []
    active = rows
    while active.size:
        block = cur.varint(active)
        negative = block < 0
        if negative.any():  # a negative count is followed by the block's size in bytes
            cur.varint(active[negative])
            block = np.abs(block)
        block = np.where(cur.suspect[active], 0, block)
        too_many = block > (cur.end[active] - cur.pos[active]) // 2  # each entry needs >= 2 bytes
        if too_many.any():
            cur.flag(active[too_many])
            block = np.where(too_many, 0, block)
        active, block = active[block > 0], block[block > 0]
        for item in range(int(block.max()) if block.size else 0):
            sub = active[block > item]
            ks, kl = cur.span(sub)
            vs, vl = cur.span(sub)
            owners.append(sub)
            ranks.append(count[sub])
            count[sub] += 1
            k_start.append(ks)
            k_len.append(kl)
            v_start.append(vs)
            v_len.append(vl)
    if owners:
        return (count, np.concatenate(owners), np.concatenate(ranks), np.concatenate(k_start),
                np.concatenate(k_len), np.concatenate(v_start), np.concatenate(v_len))
    empty = np.zeros(0, dtype=np.int64)
    return count, empty, empty, empty, empty, empty, empty


def _reader_symbols(reader_type: Any) -> list[str]:
    inner = _split_union(reader_type)[1] if isinstance(reader_type, list) else reader_type
    return list(inner["symbols"])


# --- Arrow assembly --------------------------------------------------------------------------------

class _Buffer:
    """The concatenated message bytes (plus zero padding) as numpy and as an Arrow buffer."""

    def __init__(self, data: bytes):
        self.np = np.frombuffer(data + bytes(_PAD), dtype=np.uint8)
        self.arrow = pa.py_buffer(self.np)
        self.u4 = np.ndarray(shape=(len(self.np) - 4,), dtype="<u4", buffer=self.np.data, strides=(1,))

    def strings(self, start: np.ndarray, length: np.ndarray, valid: np.ndarray | None,
                binary: bool) -> pa.Array:
        """A string/binary array from spans of the buffer: Arrow views, then one compacting copy."""
        n = len(start)
        size = length.astype(np.uint32)
        views = np.empty((n, 4), dtype=np.uint32)
        views[:, 0] = size
        views[:, 1] = self.u4[start]  # the 4-byte prefix (long strings) or first inline word (short)
        short = size <= 12
        inline = np.flatnonzero(short)
        if inline.size:  # Arrow wants the unused inline bytes zeroed
            where, used = start[inline], length[inline]
            views[inline, 1] &= _WORD_MASK[np.minimum(used, 4)]
            views[inline, 2] = self.u4[where + 4] & _WORD_MASK[np.clip(used - 4, 0, 4)]
            views[inline, 3] = self.u4[where + 8] & _WORD_MASK[np.clip(used - 8, 0, 4)]
        if inline.size < n:
            out_of_line = np.flatnonzero(~short)
            views[out_of_line, 2] = 0  # buffer index
            views[out_of_line, 3] = start[out_of_line]
        bitmap = None
        if valid is not None and not valid.all():
            bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
            views[~valid] = 0
        array = pa.Array.from_buffers(pa.binary_view(), n, [bitmap, pa.py_buffer(views), self.arrow])
        return array.cast(pa.binary() if binary else pa.string())

    def invalid_utf8(self, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Positions of spans that are not valid UTF-8 (slow; only after a column failed validation)."""
        bad = []
        for i in np.flatnonzero(length):
            try:
                self.np[start[i]:start[i] + length[i]].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
        return np.array(bad, dtype=np.int64)


def _bitmap(valid: np.ndarray) -> pa.Buffer | None:
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


class _Group:
    """Vectorised decoding of the records written with one writer schema."""

    def __init__(self, writer: SchemaVersion, reader: SchemaVersion, schema: pa.Schema):
        self.plans = {p.name: p for p in _plan(writer, reader)}
        self.schema = schema

    def decode(self, buf: _Buffer, pos: np.ndarray, end: np.ndarray) -> tuple[pa.RecordBatch, np.ndarray]:
        """Decode the records at [pos, end): a batch of every record and the mask of suspect ones."""
        n = len(pos)
        cur = _Cursor(buf.np, pos.copy(), end)
        everyone = np.arange(n)
        columns: dict[str, _Column] = {}
        for plan in self.plans.values():
            if plan.writer is None:
                continue
            if isinstance(plan.writer, list):
                branch_index, inner = _split_union(plan.writer)
                branch = cur.varint(everyone)
                cur.flag(np.flatnonzero((branch != 0) & (branch != 1)))
                column = _read_value(cur, np.flatnonzero(branch == branch_index), inner, n, plan)
            else:
                column = _read_value(cur, everyone, plan.writer, n, plan)
            if plan.keep:
                columns[plan.name] = column
        cur.flag(np.flatnonzero(cur.pos != end))  # trailing bytes, or a record that ran short
        arrays = []
        for target in self.schema:
            plan = self.plans[target.name]
            if plan.writer is None:
                arrays.append(_default(plan.default, target.type, n))
            else:
                arrays.append(self._arrow(cur, buf, columns[target.name], target.type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema), cur.suspect

    def _arrow(self, cur: _Cursor, buf: _Buffer, column: _Column, arrow_type: pa.DataType) -> pa.Array:
        n = len(column.present)
        valid = column.present
        kind = column.kind
        if kind == "null":
            return pa.nulls(n, type=arrow_type)
        if kind in ("string", "bytes"):
            start, length = column.values
            return _strings(cur, buf, start, length, valid, kind == "bytes", np.arange(n))
        if kind == "enum":
            return pa.array(column.symbols, type=pa.string()).take(pa.array(column.values, mask=~valid))
        if kind == "map:string":
            return _map(cur, buf, column, n, arrow_type)
        if kind == "boolean":
            data = pa.py_buffer(np.packbits(column.values, bitorder="little"))
        else:
            data = pa.py_buffer(np.ascontiguousarray(column.values, dtype=arrow_type.to_pandas_dtype()
                                                     if kind != "timestamp-millis" else np.int64))
        return pa.Array.from_buffers(arrow_type, n, [_bitmap(valid), data])


def _strings(cur: _Cursor, buf: _Buffer, start: np.ndarray, length: np.ndarray, valid: np.ndarray | None,
             binary: bool, owner: np.ndarray) -> pa.Array:
    """String column; spans with invalid UTF-8 mark their record (`owner`) suspect and become empty."""
    try:
        return buf.strings(start, length, valid, binary)
    except pa.ArrowInvalid:
        bad = buf.invalid_utf8(start, length)
        cur.flag(owner[bad])
        length = length.copy()
        length[bad] = 0
        return buf.strings(start, length, valid, binary)


def _map(cur: _Cursor, buf: _Buffer, column: _Column, n: int, arrow_type: pa.DataType) -> pa.Array:
    count, owner, rank, k_start, k_len, v_start, v_len = column.values
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=offsets[1:])
    where = offsets[owner] + rank
    total = int(offsets[-1])
    spans = np.zeros((5, total), dtype=np.int64)
    spans[0, where], spans[1, where] = k_start, k_len
    spans[2, where], spans[3, where] = v_start, v_len
    spans[4, where] = owner
    entry_owner = spans[4]
    keys = _strings(cur, buf, spans[0], spans[1], None, False, entry_owner)
    items = _strings(cur, buf, spans[2], spans[3], None, False, entry_owner)
    _flag_duplicate_keys(cur, keys, entry_owner, count)
    return pa.MapArray.from_arrays(pa.array(offsets.astype(np.int32)), keys, items, type=arrow_type)


def _flag_duplicate_keys(cur: _Cursor, keys: pa.Array, entry_owner: np.ndarray, count: np.ndarray) -> None:
    """Avro maps may repeat a key (the codec keeps the last value): leave such records to the codec."""
    multi = count[entry_owner] > 1
    if not multi.any():
        return
    codes = keys.filter(pa.array(multi)).dictionary_encode().indices.to_numpy(zero_copy_only=False)
    width = int(codes.max()) + 1
    combined = np.sort(entry_owner[multi] * width + codes.astype(np.int64))
    duplicated = combined[1:][combined[1:] == combined[:-1]]
    if duplicated.size:
        cur.flag(np.unique(duplicated // width))


def _default(value: Any, arrow_type: pa.DataType, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, type=arrow_type)
    if pa.types.is_map(arrow_type):
        value = list(value.items())
    return pa.array([value] * n, type=arrow_type)


# --- the decoder ------------------------------------------------------------------------------------

class FastDecoder:
    """Decode many LogEvent messages into one Arrow RecordBatch shaped like the newest schema.

    Accepts both wire formats, exactly like the codec it wraps (whose registry lookup resolves
    Confluent schema ids). Not thread-safe; cheap to create.
    """

    def __init__(self, codec: Codec | None = None):
        self.codec = codec or Codec()
        self.reader = self.codec.reader
        self.schema = arrow_schema(self.reader)
        self._groups: dict[tuple[str, int], _Group | None] = {}
        self._fingerprints = {int.from_bytes(fp, "little"): schema
                              for fp, schema in self.codec._by_fp.items()}

    def decode(self, values: Sequence[bytes | None]) -> DecodeResult:
        n = len(values)
        if n == 0:
            return DecodeResult(_empty(self.schema), np.zeros(0, np.int64))
        limit = self.codec.max_message_bytes
        try:
            sizes = np.fromiter(map(len, values), dtype=np.int64, count=n)  # type: ignore[arg-type]
            oversized = sizes > limit
            clean = not oversized.any()
        except TypeError:  # None values (tombstones)
            sizes = np.fromiter((len(v) if v is not None else 0 for v in values), dtype=np.int64, count=n)
            oversized = sizes > limit
            clean = False
        if clean:
            payload = b"".join(values)  # type: ignore[arg-type]
        else:  # giant messages stay out of the buffer: the codec rejects them by size alone
            payload = b"".join(b"" if v is None or len(v) > limit else v for v in values)
            sizes = np.where(oversized, 0, sizes)
        buf = _Buffer(payload)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        ends = starts + sizes
        fast = np.zeros(n, dtype=bool)
        pieces: list[tuple[np.ndarray, pa.RecordBatch]] = []
        for (fmt, key), rows in self._classify(buf.np, starts, sizes).items():
            group = self._group(fmt, key)
            if group is None:
                continue
            header = SINGLE_OBJECT_HEADER if fmt == "so" else CONFLUENT_HEADER
            batch, suspect = group.decode(buf, starts[rows] + header, ends[rows])
            if suspect.any():
                keep = ~suspect
                batch = batch.filter(pa.array(keep))
                rows = rows[keep]
            fast[rows] = True
            pieces.append((rows, batch))
        failures: list[tuple[int, str, str]] = []
        slow = np.flatnonzero(~fast)
        if slow.size:
            pieces.append(self._decode_slowly(values, slow, failures))
        return _check_names(self._assemble(pieces, failures))

    # -- header classification
    def _classify(self, buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
        """Records whose header names a known writer schema and whose body is non-empty, by schema."""
        b0 = buf[starts]
        b1 = buf[starts + 1]
        groups: dict[tuple[str, int], np.ndarray] = {}
        single = (sizes > SINGLE_OBJECT_HEADER) & (b0 == 0xC3) & (b1 == 0x01)
        if single.any():
            rows = np.flatnonzero(single)
            fp = np.ndarray(shape=(len(buf) - 8,), dtype="<u8", buffer=buf.data, strides=(1,))[starts[rows] + 2]
            for value in np.unique(fp):
                if int(value) in self._fingerprints:
                    groups[("so", int(value))] = rows[fp == value]
        confluent = (sizes > CONFLUENT_HEADER) & (b0 == 0) & ~single
        if confluent.any() and self.codec.registry_lookup is not None:
            rows = np.flatnonzero(confluent)
            ids = np.ndarray(shape=(len(buf) - 4,), dtype=">u4", buffer=buf.data, strides=(1,))[starts[rows] + 1]
            for value in np.unique(ids):
                groups[("cf", int(value))] = rows[ids == value]
        return groups

    def _group(self, fmt: str, key: int) -> _Group | None:
        if (fmt, key) not in self._groups:
            writer = (self._fingerprints.get(key) if fmt == "so"
                      else self.codec.registry_lookup(key) if self.codec.registry_lookup else None)
            group = None
            if writer is not None:
                try:
                    group = _Group(writer, self.reader, self.schema)
                except Unsupported:
                    group = None  # decoded record by record by the codec
            self._groups[(fmt, key)] = group
        return self._groups[(fmt, key)]

    # -- the codec's path, for everything the vectorised path did not keep
    def _decode_slowly(self, values: Sequence[bytes | None], rows: np.ndarray,
                       failures: list[tuple[int, str, str]]) -> tuple[np.ndarray, pa.RecordBatch]:
        decoded: list[dict[str, Any]] = []
        kept: list[int] = []
        for i in rows.tolist():
            try:
                record = self.codec.decode(values[i])
            except DecodeError as exc:
                failures.append((i, exc.reason.value, exc.detail))
                continue
            decoded.append(record)
            kept.append(i)
        batch, bad = self._to_arrow(decoded)
        if bad:
            for j, detail in bad:
                failures.append((kept[j], DeadLetterReason.INVALID_FIELD.value, detail))
            keep = np.ones(len(kept), dtype=bool)
            keep[[j for j, _ in bad]] = False
            batch = batch.filter(pa.array(keep))
            kept = [k for k, ok in zip(kept, keep, strict=True) if ok]
        return np.array(kept, dtype=np.int64), batch

    def _to_arrow(self, records: list[dict[str, Any]]) -> tuple[pa.RecordBatch, list[tuple[int, str]]]:
        """Records as Arrow; rows whose values do not fit the Arrow types are reported, not raised."""
        try:
            return pa.RecordBatch.from_pylist([_arrow_ready(r, self.schema) for r in records],
                                              schema=self.schema), []
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass
        good, bad = [], []
        for j, record in enumerate(records):
            try:
                pa.RecordBatch.from_pylist([_arrow_ready(record, self.schema)], schema=self.schema)
                good.append(_arrow_ready(record, self.schema))
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
                bad.append((j, f"a value does not fit the event schema: {type(exc).__name__}: {exc}"))
                good.append({name: None for name in self.schema.names} | {"attributes": []})
        return pa.RecordBatch.from_pylist(good, schema=self.schema), bad

    def _assemble(self, pieces: list[tuple[np.ndarray, pa.RecordBatch]],
                  failures: list[tuple[int, str, str]]) -> DecodeResult:
        pieces = [(rows, batch) for rows, batch in pieces if len(rows)]
        failures.sort()
        if not pieces:
            return DecodeResult(_empty(self.schema), np.zeros(0, np.int64), failures)
        if len(pieces) == 1:
            rows, batch = pieces[0]
            if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
                return DecodeResult(batch, rows, failures)
        rows = np.concatenate([r for r, _ in pieces])
        table = pa.Table.from_batches([b for _, b in pieces], schema=self.schema)
        order = np.argsort(rows, kind="stable")
        merged = table.take(pa.array(order)).combine_chunks()
        batch = merged.to_batches()[0] if merged.num_rows else _empty(self.schema)
        return DecodeResult(batch, rows[order], failures)


def _check_names(result: DecodeResult) -> DecodeResult:
    """Rows whose service, environment or host breaks the codec's name rule become ``invalid_name`` failures."""
    batch = result.batch
    if batch.num_rows == 0:
        return result
    bad = None
    for name in NAME_FIELDS:
        column = batch.column(name)
        blank = pc.equal(pc.utf8_trim(column, " \t"), "")
        ok = pc.or_(pc.match_substring_regex(column, NAME_PATTERN), blank)
        broken = pc.invert(pc.fill_null(ok, True))
        bad = broken if bad is None else pc.or_(bad, broken)
    rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
    if rows.size == 0:
        return result
    failures = list(result.failures)
    for row in rows.tolist():
        record = {name: batch.column(name)[row].as_py() for name in NAME_FIELDS}
        failures.append((int(result.ok[row]), DeadLetterReason.INVALID_NAME.value,
                         name_problem(record) or "name outside the name rule"))
    failures.sort()
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[rows] = False
    return DecodeResult(batch.filter(pa.array(keep)), result.ok[keep], failures)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _arrow_ready(record: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A codec record with maps as item lists (what pyarrow expects for map columns)."""
    out = {}
    for f in schema:
        value = record.get(f.name)
        if pa.types.is_map(f.type) and isinstance(value, dict):
            value = list(value.items())
        out[f.name] = value
    return out
