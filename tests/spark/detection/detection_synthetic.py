"""Small synthetic event streams for the detector tests: steady services plus injected episodes."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

T0_MS = 1_790_000_000_000  # a fixed, bucket-aligned start


@dataclass
class Profile:
    rate: float  # events per second
    error_rate: float = 0.005
    p50_ms: float = 20.0
    p95_ms: float = 80.0
    hosts: tuple[str, ...] = ("h1", "h2")
    tier: str | None = "2"
    owner: str = "team"
    start_s: float = 0.0  # the service sends nothing before this (a new service)


@dataclass
class Episode:
    service: str
    start_s: float
    end_s: float
    error_rate: float | None = None  # overrides the profile while active
    latency_factor: float = 1.0
    warn_rate: float | None = None  # share of lines that become warnings while active
    signature: str = "ConnectionPoolTimeout: pool exhausted after <n> ms"
    warn_signature: str = "TLS handshake error from <ip>: bad certificate"
    hosts: tuple[str, ...] | None = None  # errors only on these hosts
    error_rate_end: float | None = None  # with error_rate: a linear ramp from error_rate to this
    rate_factor: float = 1.0  # traffic times this while active (5: a surge; 0.02: near silence)


@dataclass
class Scenario:
    profiles: dict[str, Profile]
    duration_s: float
    episodes: list[Episode] = field(default_factory=list)
    environment: str = "prod"


def events(scenario: Scenario, seed: int = 0, start_ms: int = T0_MS) -> pd.DataFrame:
    """All events of the scenario, sorted by time, with the detector's input columns."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, prof in sorted(scenario.profiles.items()):
        count = rng.poisson(prof.rate * scenario.duration_s)
        t = np.sort(rng.uniform(0, scenario.duration_s, count))
        t, count = _reshape_traffic(rng, t, prof, [ep for ep in scenario.episodes if ep.service == name])
        err_p = np.full(count, prof.error_rate)
        warn_p = np.zeros(count)
        warn_sig = np.array([""] * count, dtype=object)
        lat_factor = np.ones(count)
        sig = np.array(["GET /api <path> 500 upstream error"] * count, dtype=object)
        host = rng.choice(np.array(prof.hosts, dtype=object), count)
        for ep in scenario.episodes:
            if ep.service != name:
                continue
            active = (t >= ep.start_s) & (t < ep.end_s)
            if ep.hosts is not None:
                active &= np.isin(host, np.array(ep.hosts, dtype=object))
            if ep.error_rate is not None:
                err_p[active] = ep.error_rate
                if ep.error_rate_end is not None:
                    progress = (t[active] - ep.start_s) / max(ep.end_s - ep.start_s, 1e-9)
                    err_p[active] = ep.error_rate + (ep.error_rate_end - ep.error_rate) * progress
                sig[active] = ep.signature
            if ep.warn_rate is not None:
                warn_p[active] = ep.warn_rate
                warn_sig[active] = ep.warn_signature
            lat_factor[active] *= ep.latency_factor
        is_error = rng.uniform(size=count) < err_p
        is_warn = ~is_error & (rng.uniform(size=count) < warn_p)
        sig = np.where(is_warn, warn_sig, sig)
        sigma = np.log(prof.p95_ms / prof.p50_ms) / 1.645
        latency = prof.p50_ms * np.exp(rng.normal(0, sigma, count)) * lat_factor
        signature = np.where(is_error | is_warn, sig, "request ok")
        uniques = {s: (f"sig-{zlib.crc32(s.encode()):08x}", f"ERROR {s}") for s in set(signature.tolist())}
        signature_id = np.array([uniques[s][0] for s in signature], dtype=object)
        message = np.where(is_error | is_warn, np.array([uniques[s][1] for s in signature], dtype=object),
                           "request ok")
        frames.append(pd.DataFrame({
            "t_ms": (start_ms + t * 1000).astype(np.int64),
            "service": name, "environment": scenario.environment, "host": host, "is_error": is_error,
            "is_warn": is_warn,
            "latency_ms": latency, "signature": signature, "signature_id": signature_id,
            "message": message, "tier": prof.tier, "owner": prof.owner,
        }))
    return pd.concat(frames, ignore_index=True).sort_values(["t_ms", "service"], kind="stable").reset_index(drop=True)


def _reshape_traffic(rng: np.random.Generator, t: np.ndarray, prof: Profile,
                     episodes: list[Episode]) -> tuple[np.ndarray, int]:
    """Event times after the service's start and the episodes' traffic changes (no random draw when
    there are none, so scenarios without them keep their events)."""
    if prof.start_s > 0:
        t = t[t >= prof.start_s]
    for ep in episodes:
        if ep.rate_factor > 1:
            extra = rng.poisson(prof.rate * (ep.rate_factor - 1) * (ep.end_s - ep.start_s))
            t = np.sort(np.concatenate([t, rng.uniform(ep.start_s, ep.end_s, extra)]))
        elif ep.rate_factor < 1:
            inside = (t >= ep.start_s) & (t < ep.end_s)
            t = t[~inside | (rng.uniform(size=len(t)) < ep.rate_factor)]
    return t, len(t)


def task_partials(frame: pd.DataFrame, *, tasks: int = 1, batch_rows: int = 97,
                  arrival: pd.Series | None = None) -> pd.DataFrame:
    """What the reading tasks hand the stateful processor for `frame` (stream.py): the partial buckets of
    `tasks` tasks, each reading every tasks-th event in Arrow batches of `batch_rows`. With `arrival` (epoch
    ms per event, the records' Kafka timestamps), times are taken no later than that, as the view takes them."""
    import pyarrow as pa

    from incident_stream.detection.params import DetectionParams
    from incident_stream.detection.partials import PARTIALS_ARROW_SCHEMA, READ_COLUMNS, PartialBuckets
    from incident_stream.detection.view import no_later_than_arrival

    params = DetectionParams()
    batches = []
    for task in range(tasks):
        buckets = PartialBuckets(params.bucket_ms, params.slowest_kept)
        table = pa.Table.from_pandas(frame.iloc[task::tasks][list(READ_COLUMNS)], preserve_index=False)
        if arrival is not None:
            table = no_later_than_arrival(table, pa.array(arrival.iloc[task::tasks].to_numpy(), pa.int64()),
                                          params.arrival_tolerance_ms)
        for batch in table.to_batches(max_chunksize=batch_rows):
            buckets.add(batch)
        task_batch = buckets.batch()
        if task_batch is not None:
            batches.append(task_batch)
    return pa.Table.from_batches(batches, schema=PARTIALS_ARROW_SCHEMA).to_pandas()


def aggregate(frame: pd.DataFrame, bucket_ms: int, slowest_kept: int, environment: str = "prod") -> dict:
    """The partial buckets {(service, bucket): BucketAgg} of one environment's events (the detector's input
    columns), aggregated at once as the job aggregates a batch (aggregate.Reduced)."""
    import pyarrow as pa

    from incident_stream.detection.aggregate import Reduced
    from incident_stream.detection.view import VIEW_SCHEMA

    frame = frame if "ahead" in frame else frame.assign(ahead=False)
    table = pa.Table.from_pandas(frame.assign(environment=environment)[VIEW_SCHEMA.names], schema=VIEW_SCHEMA,
                                 preserve_index=False)
    return Reduced.of_events(table, bucket_ms, slowest_kept).parts().get(environment, {})
