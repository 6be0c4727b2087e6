"""The event engine: topology + schedule + templates -> blocks of log events, one per simulated second.

Time is a grid: event k of a run happens at ``start_ms + floor(k * 1000 / rate)``, so a run has
exactly ``rate`` events per simulated second and pacing against the wall clock is exact. For each
second the engine works out every service's state (traffic share, latency, failure share, scenario
lines) from the incidents active then, and draws in numpy blocks which service, which kind of line and
which host each event is.

Rendering a message costs microseconds, so at high rates lines come from *variant pools*: each (line
kind, host) keeps up to POOL_SIZE rendered variants, with their Avro encodings, and an event either
reuses one at random or renders a fresh one in its place. The fresh share is FRESH_PER_SECOND / rate
(all lines up to that rate, at least 1/64): every line is new at the rates tests and demos use, and
rendering stays a small cost per event at 100k events/s. Event id, timestamp, trace and span ids are
drawn for every event.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from incident_contracts.fast_encode import (
    LEVEL_SYMBOLS,
    encode_attributes,
    encode_long,
    encode_optional_string,
    encode_string,
    level_index,
)
from log_generator.placeholders import Context
from log_generator.scenarios import Effect
from log_generator.schedule import Incident, Schedule, target_constants
from log_generator.templates import LineTemplate, TemplateSet, compile_text
from log_generator.topology import ServiceModel, Topology

TICK_MS = 1000
POOL_SIZE = 32
FRESH_PER_SECOND = 1000.0  # fresh renders per second of event time, at most
MIN_FRESH = 1 / 64
ACCESS_SHARE = 0.72  # of a service's normal lines, for services that log requests
_DOUBLE = struct.Struct("<d").pack
_HASH = 0x9E3779B97F4A7C15
_MASK24 = (1 << 24) - 1
OK_STATUSES = ((200, 870), (201, 40), (204, 20), (304, 25), (400, 14), (401, 9), (404, 17), (409, 5))
BASELINE_ERROR_STATUSES = ((500, 0.55), (502, 0.1), (503, 0.2), (504, 0.15))
ACCESS_LOGGERS = {"jvm": "o.a.c.valves.AccessLogValve", "python": "uvicorn.access", "node": "morgan",
                  "go": "http.access"}


@cache
def _lut(weights: tuple[tuple[int, float], ...], size: int = 1000) -> tuple[int, ...]:
    """A lookup table of `size` entries in which each status appears in proportion to its weight."""
    total = sum(w for _, w in weights)
    table: list[int] = []
    for status, w in weights:
        table.extend([status] * round(size * w / total))
    table = (table + [weights[0][0]] * size)[:size]
    return tuple(table)


def _quantile(r: int) -> float:
    """A uniform (0, 1) value from r, independent of the bits placeholders read."""
    return ((((r * _HASH) >> 20) & _MASK24) + 0.5) / (1 << 24)


class Variant:
    """One rendered line: its fields, and its Avro encoding split around the per-event parts."""

    __slots__ = ("a", "ab", "attributes", "b", "error_type", "host", "latency", "level", "logger", "message",
                 "method", "path", "service", "status", "traced")

    def __init__(self, service: str, host: str, level: str, logger: str | None, message: str, traced: bool,
                 method: str | None, path: str | None, status: int | None, latency: float | None,
                 error_type: str | None, attributes: dict[str, str] | None, a: bytes, b: bytes):
        self.service, self.host, self.level, self.logger, self.message = service, host, level, logger, message
        self.traced, self.method, self.path, self.status = traced, method, path, status
        self.latency, self.error_type, self.attributes = latency, error_type, attributes
        self.a = a  # service .. message, encoded
        self.b = b  # http_method .. attributes, encoded
        self.ab = a + b"\x00\x00" + b  # untraced: null trace and span ids


class _Segments:
    """Encoded pieces of a spec that do not change from line to line."""

    def __init__(self, service: ServiceModel, environment: str, logger: str | None, error_type: str | None,
                 attributes: dict[str, str] | None):
        self.source = {h: encode_string(service.name) + encode_string(environment) + encode_string(h)
                       for h in service.hosts}
        logger_bytes = encode_optional_string(logger)
        self.level_logger = {lv: encode_long(level_index(lv)) + logger_bytes for lv in LEVEL_SYMBOLS}
        self.suffix = encode_optional_string(error_type) + encode_attributes(attributes or {})


def _latency_bytes(lat: float | None) -> bytes:
    return b"\x00" if lat is None else b"\x02" + _DOUBLE(lat)


class TextSpec:
    """A template line of one service (optionally for an incident), renderable on any host."""

    def __init__(self, service: ServiceModel, template: LineTemplate, ctx: Context, environment: str,
                 latency_factor: float = 1.0, latency_range: tuple[float, float] | None = None,
                 attributes: dict[str, str] | None = None):
        self.service = service
        self.template = template
        self.render_text = compile_text(template.text, ctx)
        self.latency_factor = latency_factor
        self.latency_range = latency_range
        self.uses_latency = template.uses_latency
        self.traced = template.trace if template.trace is not None else service.has_access
        self.logger = template.logger or service.logger
        self.attributes = attributes
        seg = _Segments(service, environment, self.logger, template.error_type, attributes)
        self.source = seg.source
        self.head = seg.level_logger[template.level]
        self.tail_const = b"\x00\x00\x00"  # no method, path, status
        self.suffix = seg.suffix

    def latency(self, r: int) -> float:
        u = _quantile(r)
        if self.latency_range:
            lo, hi = self.latency_range
            return round(lo * (hi / lo) ** u, 3)
        return round(self.service.latency.quick(u) * self.latency_factor, 3)

    def render(self, r: int, host: str) -> Variant:
        lat = self.latency(r) if self.uses_latency else None
        t = self.template
        message = self.render_text(r, lat or 0.0, host, None, None)
        a = self.source[host] + self.head + encode_string(message)
        b = self.tail_const + _latency_bytes(lat) + self.suffix
        return Variant(self.service.name, host, t.level, self.logger, message, self.traced, None, None, None,
                       lat, t.error_type, self.attributes, a, b)


class AccessSpec:
    """HTTP access lines of one service with a given status mix and latency."""

    def __init__(self, service: ServiceModel, style_text: str, environment: str, statuses: tuple[int, ...],
                 latency_factor: float = 1.0, latency_range: tuple[float, float] | None = None,
                 attributes: dict[str, str] | None = None):
        self.service = service
        self.statuses = statuses
        self.latency_factor = latency_factor
        self.latency_range = latency_range
        self.attributes = attributes
        self.endpoints = service.endpoints
        ctx = service.context
        self.renderers = [
            compile_text(style_text, Context(ctx.service, ctx.app, ctx.pkg, ctx.version, ctx.dependencies,
                                             ctx.endpoints, {"method": ep.method, "upstream": ep.upstream}),
                         access=True)
            for ep in self.endpoints
        ]
        self.methods = [b"\x02" + encode_string(ep.method) for ep in self.endpoints]
        style = service.access_style
        self.logger = service.logger if style in ("gateway", "native") else ACCESS_LOGGERS.get(style, service.logger)
        seg = _Segments(service, environment, self.logger, None, attributes)
        self.source = seg.source
        self.level_logger = seg.level_logger
        self.suffix = seg.suffix
        self.status_bytes = {s: b"\x02" + encode_long(s) for s in set(statuses)}

    def render(self, r: int, host: str) -> Variant:
        i = (r >> 7) % len(self.endpoints)
        endpoint = self.endpoints[i]
        path = endpoint.path(r)
        status = self.statuses[(r >> 50) % len(self.statuses)]
        u = _quantile(r)
        if self.latency_range:
            lo, hi = self.latency_range
            lat = round(lo * (hi / lo) ** u, 3)
        else:
            lat = round(self.service.latency.quick(u) * self.latency_factor, 3)
        level = "ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO"
        message = self.renderers[i](r, lat, host, status, path)
        a = self.source[host] + self.level_logger[level] + encode_string(message)
        b = b"".join((self.methods[i], b"\x02", encode_string(path), self.status_bytes[status],
                      b"\x02", _DOUBLE(lat), self.suffix))
        return Variant(self.service.name, host, level, self.logger, message, True, endpoint.method, path, status,
                       lat, None, self.attributes, a, b)


class Pool:
    __slots__ = ("host", "items", "spec")

    def __init__(self, spec: TextSpec | AccessSpec, host: str):
        self.spec = spec
        self.host = host
        self.items: list[Variant] = []


class Block:
    """One simulated second of events (or the part of it inside the run).

    Which variant each event gets is decided in event order, lazily (`variants`, or the sender's own
    loop through `pick`): picking a variant can render a new one into its pool.
    """

    __slots__ = ("_variants", "pool_index", "pools", "rs", "seq0", "slots", "trace", "ts")

    def __init__(self, seq0: int, ts: np.ndarray, pools: list[Pool], pool_index: list[int], rs: list[int],
                 slots: list[int], trace: np.ndarray):
        self.seq0 = seq0  # sequence number of the first event in the run
        self.ts = ts  # int64 ms, non-decreasing
        self.pools = pools
        self.pool_index = pool_index
        self.rs = rs
        self.slots = slots
        self.trace = trace  # (n, 48) uint8: ASCII hex of the trace id (32) and span id (16)
        self._variants: list[Variant] | None = None

    def __len__(self) -> int:
        return len(self.rs)

    @property
    def variants(self) -> list[Variant]:
        if self._variants is None:
            pools, pick = self.pools, fill
            out = []
            for pi, r, slot in zip(self.pool_index, self.rs, self.slots, strict=True):
                items = pools[pi].items
                out.append(items[slot] if slot < len(items) else pick(pools[pi], r, slot))
            self._variants = out
        return self._variants


def fill(pool: Pool, r: int, slot: int) -> Variant:
    """Render a variant for a slot that is empty or due for refresh, and keep it in the pool."""
    v = pool.spec.render(r, pool.host)
    items = pool.items
    if len(items) < POOL_SIZE:
        items.append(v)
    else:
        items[slot % POOL_SIZE] = v
    return v


@dataclass
class _State:
    """What incidents do to one service during one tick."""

    volume: float = 1.0
    latency: float = 1.0
    latency_tag: dict[str, str] | None = None
    latency_tag_factor: float = 1.0
    errors: list[tuple[float, tuple[tuple[int, float], ...], tuple[float, float] | None, dict[str, str],
                      tuple[str, ...]]] = field(default_factory=list)
    lines: list[tuple[str, float, tuple[float, float] | None, dict[str, str], tuple[str, ...],
                      dict[str, str]]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)


@dataclass
class _Table:
    cum_weights: np.ndarray
    global_cum: np.ndarray
    first_spec: np.ndarray
    last_spec: np.ndarray
    pool_offset: np.ndarray
    host_count: np.ndarray
    pools: list[Pool]


def event_id_prefix(seed: int, start_ms: int, scenario: str, rate: float) -> str:
    """The first 24 characters of every event id of a run (UUID-shaped; the last 12 are the sequence)."""
    h = hashlib.sha256(f"{seed}:{start_ms}:{scenario}:{rate}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-"


def _q(value: float) -> float:
    """Intensities move in steps of 1/32, so tick states repeat and their tables can be reused."""
    return round(value * 32) / 32


def _tag_key(tag: dict[str, str] | None) -> tuple | None:
    return tuple(sorted(tag.items())) if tag else None


def _signature(states: dict[int, _State]) -> tuple:
    """A hashable summary of everything a tick table depends on."""
    return tuple(
        (index, round(st.volume, 6), level_factor(st.latency), _tag_key(st.latency_tag), tuple(sorted(st.down)),
         tuple((round(p, 6), statuses, lat, _tag_key(tag), hosts) for p, statuses, lat, tag, hosts in st.errors),
         tuple((key, round(p, 6), lat, _tag_key(tag), hosts, tuple(sorted(constants.items())))
               for key, p, lat, tag, hosts, constants in st.lines))
        for index, st in sorted(states.items())
    )


def level_factor(value: float) -> float:
    """Latency factors are quantised (steps of 20%) so pools are shared between neighbouring ticks."""
    if value <= 1.05:
        return 1.0
    return round(1.2 ** round(math.log(value) / math.log(1.2)), 4)


class Engine:
    def __init__(self, topology: Topology, schedule: Schedule, templates: TemplateSet, *, rate: float,
                 start_ms: int, seed: int, total: int | None):
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of events per second, got {rate!r}")
        self.topology = topology
        self.schedule = schedule
        self.templates = templates
        self.rate = float(rate)
        self.start_ms = int(start_ms)
        self.total = total
        self.environment = topology.environment
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0xE7E7])))
        self._specs: dict[tuple, TextSpec | AccessSpec] = {}
        self._pools: dict[tuple[int, str], Pool] = {}
        self._baseline: dict[int, list[tuple[TextSpec | AccessSpec, float, tuple[str, ...]]]] = {}
        self._baseline_table: _Table | None = None
        self._pending: list[tuple[Incident, object]] = []
        self._tables: dict[tuple, _Table] = {}
        self._host_pools: dict[tuple, list[Pool]] = {}
        self._fresh_cut = round(4096 * min(1.0, max(MIN_FRESH, FRESH_PER_SECOND / self.rate)))

    # --- specs and pools -----------------------------------------------------------------------
    def _spec(self, key: tuple, factory) -> TextSpec | AccessSpec:
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = factory()
        return spec

    def _pool(self, spec: TextSpec | AccessSpec, host: str) -> Pool:
        key = (id(spec), host)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(spec, host)
        return pool

    def _access(self, svc: ServiceModel, statuses: tuple[tuple[int, float], ...], factor: float,
                latency_range: tuple[float, float] | None, tag: dict[str, str] | None) -> AccessSpec:
        key = ("access", svc.index, statuses, factor, latency_range, tuple(sorted(tag.items())) if tag else None)
        text = self.templates.access[svc.access_style]
        return self._spec(key, lambda: AccessSpec(svc, text, self.environment, _lut(statuses), factor,
                                                  latency_range, dict(tag) if tag else None))  # type: ignore[return-value]

    def _text(self, svc: ServiceModel, template: LineTemplate, factor: float = 1.0,
              latency_range: tuple[float, float] | None = None, tag: dict[str, str] | None = None,
              constants: dict[str, str] | None = None) -> TextSpec:
        factor = factor if template.uses_latency else 1.0
        key = ("text", svc.index, template.key, factor, latency_range,
               tuple(sorted(tag.items())) if tag else None, tuple(sorted(constants.items())) if constants else None)

        def build() -> TextSpec:
            ctx = svc.context
            if constants:
                # A caller's line about a failing target names one of the routes that lead to it.
                routed = tuple(ep for ep in ctx.endpoints if ep.upstream == constants.get("target"))
                ctx = Context(ctx.service, ctx.app, ctx.pkg, ctx.version, ctx.dependencies,
                              routed or ctx.endpoints, dict(constants))
            return TextSpec(svc, template, ctx, self.environment, factor, latency_range, dict(tag) if tag else None)

        return self._spec(key, build)  # type: ignore[return-value]

    def _scenario_template(self, key: str, svc: ServiceModel) -> LineTemplate:
        scenarios = self.templates.scenarios
        for candidate in (key.replace("{runtime}", svc.runtime), key.replace("_{runtime}", ""),
                          key.replace("{runtime}", "python")):
            if candidate in scenarios:
                return scenarios[candidate]
        return self.templates.scenario(key)

    # --- mixtures ------------------------------------------------------------------------------
    def _background(self, svc: ServiceModel) -> list[LineTemplate]:
        groups = self.templates.background
        return [*groups.get(svc.kind, ()), *groups.get(svc.runtime, ())]

    def _errors(self, svc: ServiceModel) -> list[LineTemplate]:
        groups = self.templates.errors
        return list(groups.get(svc.runtime, ()) or groups.get(svc.kind, ()) or groups.get("python", ()))

    def _items(self, svc: ServiceModel, state: _State | None) -> list[tuple[TextSpec | AccessSpec, float,
                                                                           tuple[str, ...]]]:
        """(spec, probability, hosts) for one service in one tick."""
        if state is None and svc.index in self._baseline:
            return self._baseline[svc.index]
        st = state or _State()
        hosts = tuple(h for h in svc.hosts if h not in st.down)
        if not hosts:
            return []
        factor = level_factor(st.latency)
        lat_tag = st.latency_tag if factor > 1.0 else None
        special = sum(p for p, *_ in st.errors if svc.has_access) + sum(p for _, p, *_ in st.lines)
        scale = 0.95 / special if special > 0.95 else 1.0
        base_err = svc.error_rate
        normal = max(0.03, 1.0 - base_err - special * scale)
        items: list[tuple[TextSpec | AccessSpec, float, tuple[str, ...]]] = []
        background = self._background(svc)
        bg_total = sum(t.share for t in background) or 1.0
        if svc.has_access:
            items.append((self._access(svc, OK_STATUSES, factor, None, lat_tag), normal * ACCESS_SHARE, hosts))
            bg_mass = normal * (1 - ACCESS_SHARE)
            items.append((self._access(svc, BASELINE_ERROR_STATUSES, factor, None, None), base_err * 0.6, hosts))
            err_mass = base_err * 0.4
        else:
            bg_mass = normal
            err_mass = base_err
        for t in background:
            items.append((self._text(svc, t, factor, tag=lat_tag if t.uses_latency else None),
                          bg_mass * t.share / bg_total, hosts))
        errors = self._errors(svc)
        err_total = sum(t.share for t in errors) or 1.0
        for t in errors:
            items.append((self._text(svc, t, factor), err_mass * t.share / err_total, hosts))
        if svc.has_access:
            for p, statuses, err_latency, tag, err_hosts in st.errors:
                usable = tuple(h for h in err_hosts if h not in st.down) or hosts
                items.append((self._access(svc, statuses, factor, err_latency, tag), p * scale, usable))
        for key, p, latency_range, tag, line_hosts, constants in st.lines:
            usable = tuple(h for h in line_hosts if h not in st.down) or hosts
            template = self._scenario_template(key, svc)
            items.append((self._text(svc, template, factor, latency_range, tag, constants), p * scale, usable))
        if state is None:
            self._baseline[svc.index] = items
        return items

    def _states(self, incidents: list[Incident], t_ms: float) -> dict[int, _State]:
        states: dict[int, _State] = {}
        for incident in incidents:
            tick_constants = incident.tick_constants(t_ms)
            for role in incident.roles:
                effect: Effect = role.effect
                intensity = _q(incident.intensity(t_ms, role.lag_ms))
                down = incident.down_hosts(t_ms - role.lag_ms)
                svc = role.service
                st = states.setdefault(svc.index, _State())
                if role.role == "origin" and down:
                    st.down |= down
                weights = {when: _q(incident.weight(when, t_ms, role.lag_ms)) for when in ("ramp", "plateau",
                                                                                         "recovery", "down")}
                weights["active"] = intensity
                if intensity <= 0 and not (down and role.role != "origin"):
                    continue
                tag = {**incident.tag, "incident_role": role.role}
                st.volume *= 1 + (effect.volume - 1) * intensity
                lat = 1 + (effect.latency - 1) * intensity
                if lat > st.latency_tag_factor:
                    st.latency_tag, st.latency_tag_factor = tag, lat
                st.latency *= lat
                err_hosts = incident.focus_hosts if (effect.focus and role.role == "origin") else svc.hosts
                error = effect.error * intensity + (effect.down_error if down and role.role != "origin" else 0.0)
                if error > 0:
                    st.errors.append((error, effect.statuses, effect.error_latency, tag, err_hosts))
                constants = {**target_constants(role, incident), **tick_constants}
                for line in effect.lines:
                    w = weights[line.when]
                    if w <= 0 or (line.only_styles and svc.access_style not in line.only_styles):
                        continue
                    line_hosts = incident.focus_hosts if (line.focus and role.role == "origin") else svc.hosts
                    st.lines.append((line.key, line.share * w, line.latency, tag, line_hosts, constants))
        return states

    def _table(self, states: dict[int, _State]) -> _Table:
        if not states and self._baseline_table is not None:
            return self._baseline_table
        signature = _signature(states)
        table = self._tables.get(signature)
        if table is None:
            if len(self._tables) >= 256:
                self._tables.clear()
            table = self._tables[signature] = self._build_table(states)
        return table

    def _build_table(self, states: dict[int, _State]) -> _Table:
        weights = []
        global_cum: list[float] = []
        first_spec: list[int] = []
        last_spec: list[int] = []
        pool_offset: list[int] = []
        host_count: list[int] = []
        pools: list[Pool] = []
        for svc in self.topology.services:
            st = states.get(svc.index)
            items = [it for it in self._items(svc, st) if it[1] > 0]
            live = len([h for h in svc.hosts if not st or h not in st.down]) / len(svc.hosts)
            volume = (st.volume if st else 1.0) * live
            weights.append(svc.weight * volume if items else 0.0)
            first_spec.append(len(global_cum))
            total = sum(p for _, p, _ in items) or 1.0
            acc = 0.0
            for spec, p, hosts in items:
                acc += p / total
                global_cum.append(svc.index + min(acc, 1.0))
                pool_offset.append(len(pools))
                host_count.append(len(hosts))
                pools.extend(self._pools_for(spec, hosts))
            if items:
                global_cum[-1] = svc.index + 1.0
            last_spec.append(len(global_cum) - 1)
        w = np.asarray(weights, dtype=np.float64)
        if w.sum() <= 0:
            w = np.asarray([s.weight for s in self.topology.services], dtype=np.float64)
        table = _Table(
            cum_weights=np.cumsum(w / w.sum()),
            global_cum=np.asarray(global_cum, dtype=np.float64),
            first_spec=np.asarray(first_spec, dtype=np.int64),
            last_spec=np.asarray(last_spec, dtype=np.int64),
            pool_offset=np.asarray(pool_offset, dtype=np.int64),
            host_count=np.asarray(host_count, dtype=np.int64),
            pools=pools,
        )
        if not states:
            self._baseline_table = table
        return table

    def _pools_for(self, spec: TextSpec | AccessSpec, hosts: tuple[str, ...]) -> list[Pool]:
        key = (id(spec), hosts)
        found = self._host_pools.get(key)
        if found is None:
            found = self._host_pools[key] = [self._pool(spec, h) for h in hosts]
        return found

    # --- generation ----------------------------------------------------------------------------
    def _full_slots(self, tick: int) -> int:
        return math.ceil((tick + 1) * self.rate - 1e-9) - math.ceil(tick * self.rate - 1e-9)

    def _slots(self, tick: int) -> tuple[int, int]:
        k0 = math.ceil(tick * self.rate - 1e-9)
        k1 = math.ceil((tick + 1) * self.rate - 1e-9)
        if self.total is not None:
            k0, k1 = min(k0, self.total), min(k1, self.total)
        return k0, k1

    def blocks(self) -> Iterator[Block]:
        """Blocks of events in event-time order until the run's total (forever when there is none)."""
        tick = 0
        rng = self.rng
        while self.total is None or self._slots(tick)[0] < self.total:
            k0, k1 = self._slots(tick)
            t0 = self.start_ms + tick * TICK_MS
            tick += 1
            n = k1 - k0
            incidents = self.schedule.active(t0, t0 + TICK_MS)
            shots = self._pending + self.schedule.one_shots_between(t0, t0 + TICK_MS)
            if n <= 0:
                self._pending = shots
                continue
            self._pending = []
            table = self._table(self._states(incidents, t0 + TICK_MS / 2) if incidents else {})
            ts = self.start_ms + np.floor(np.arange(k0, k1, dtype=np.float64) * (1000.0 / self.rate)).astype(np.int64)
            # Draw for the whole tick even when the run ends inside it, so a shorter run is a prefix.
            full = self._full_slots(tick - 1)
            u = rng.random((3, full))[:, :n]
            r = rng.integers(0, 1 << 62, size=full, dtype=np.int64)[:n]
            pick = rng.integers(0, 1 << 30, size=full, dtype=np.int64)[:n]
            raw = np.frombuffer(rng.bytes(24 * full), dtype=np.uint8).reshape(full, 24)[:n]
            svc = np.searchsorted(table.cum_weights, u[0], side="right")
            np.minimum(svc, len(table.cum_weights) - 1, out=svc)
            spec = np.searchsorted(table.global_cum, svc + u[1], side="right")
            spec = np.clip(spec, table.first_spec[svc], table.last_spec[svc])
            pool_index = table.pool_offset[spec] + (u[2] * table.host_count[spec]).astype(np.int64)
            # slot < POOL_SIZE: reuse that variant if the pool has it; a fresh pick is pushed past the end
            # (slot + POOL_SIZE) so it renders a new variant in place.
            slots = (pick % POOL_SIZE) + POOL_SIZE * ((pick // POOL_SIZE) % 4096 < self._fresh_cut)
            pools = table.pools
            if shots:
                pools = list(pools)
                self._place_one_shots(shots, ts, r, pools, pool_index, slots)
            trace = _HEX_PAIRS[raw].reshape(n, 48)
            yield Block(k0, ts, pools, pool_index.tolist(), r.tolist(), slots.tolist(), trace)

    def _place_one_shots(self, shots: list, ts: np.ndarray, r: np.ndarray, pools: list[Pool],
                         pool_index: np.ndarray, slots: np.ndarray) -> None:
        """Give the slots nearest to each one-shot line's time to that line (a one-variant pool)."""
        taken: set[int] = set()
        n = len(ts)
        for incident, shot in shots:
            i = min(int(np.searchsorted(ts, shot.ts_ms, side="left")), n - 1)
            while i in taken and i + 1 < n:
                i += 1
            if i in taken:
                self._pending.append((incident, shot))
                continue
            taken.add(i)
            svc = self.topology[shot.service]
            template = self._scenario_template(shot.key, svc)
            spec = self._text(svc, template, tag={**incident.tag, "incident_role": "origin"},
                              constants=shot.constants)
            single = Pool(spec, shot.host)
            single.items.append(spec.render(int(r[i]), shot.host))
            pool_index[i] = len(pools)
            slots[i] = 0
            pools.append(single)


_HEX_PAIRS = np.frombuffer("".join(f"{i:02x}" for i in range(256)).encode("ascii"), dtype=np.uint8).reshape(256, 2)
