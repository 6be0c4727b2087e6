"""Per-service, per-event-time-bucket aggregates, computed from a pandas chunk of events at once.

A bucket holds what the detector needs from one service during one bucket: event and error counts, a
latency histogram, error signatures with a sample message, hosts with errors and the slowest requests.
Partial buckets from different chunks or micro-batches merge exactly, and ties are broken on the data
(time, then text), so the final bucket does not depend on how the events were split into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from incident_stream.detection import histogram

# columns the detector reads from each event (prepared by stream.py from the events table)
INPUT_COLUMNS = ("t_ms", "service", "host", "is_error", "latency_ms", "signature", "signature_id",
                 "message", "tier", "owner")

# limits applied when a bucket is final (never to partial buckets, so merging stays exact)
SIGNATURES_KEPT = 20
HOSTS_KEPT = 50


@dataclass
class BucketAgg:
    n: int = 0
    errors: int = 0
    lat: np.ndarray = field(default_factory=histogram.empty)
    sigs: dict[str, list] = field(default_factory=dict)  # signature_id -> [signature, count, sample, sample_t]
    hosts: dict[str, int] = field(default_factory=dict)  # host -> errors
    slow: list[list] = field(default_factory=list)  # [latency, t_ms, host, signature_id, signature, message]
    first_err: int | None = None
    last_err: int | None = None
    tier: str | None = None
    owner: str | None = None

    @property
    def lat_n(self) -> int:
        return int(self.lat.sum())

    def merge(self, other: BucketAgg, slowest_kept: int) -> None:
        self.n += other.n
        self.errors += other.errors
        self.lat = self.lat + other.lat
        for sig_id, (signature, count, sample, sample_t) in other.sigs.items():
            mine = self.sigs.get(sig_id)
            if mine is None:
                self.sigs[sig_id] = [signature, count, sample, sample_t]
            else:
                mine[1] += count
                if (sample_t, sample or "") < (mine[3], mine[2] or ""):
                    mine[0], mine[2], mine[3] = signature, sample, sample_t
        for host, count in other.hosts.items():
            self.hosts[host] = self.hosts.get(host, 0) + count
        self.slow = top_slowest(self.slow + other.slow, slowest_kept)
        self.first_err = _min_opt(self.first_err, other.first_err)
        self.last_err = _max_opt(self.last_err, other.last_err)
        self.tier = _max_opt(self.tier, other.tier)
        self.owner = _max_opt(self.owner, other.owner)

    def finalize(self) -> BucketAgg:
        """Cap the per-bucket detail lists (deterministic: by count, then by name)."""
        if len(self.sigs) > SIGNATURES_KEPT:
            keep = sorted(self.sigs.items(), key=lambda kv: (-kv[1][1], kv[0]))[:SIGNATURES_KEPT]
            self.sigs = dict(keep)
        if len(self.hosts) > HOSTS_KEPT:
            self.hosts = dict(sorted(self.hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:HOSTS_KEPT])
        return self

    # --- compact JSON form for the state store ------------------------------------------------
    def to_json(self) -> list:
        return [self.n, self.errors, histogram.to_sparse(self.lat),
                [[k, *v] for k, v in self.sigs.items()], [[k, v] for k, v in self.hosts.items()],
                self.slow, self.first_err, self.last_err, self.tier, self.owner]

    @classmethod
    def from_json(cls, data: list) -> BucketAgg:
        n, errors, lat, sigs, hosts, slow, first_err, last_err, tier, owner = data
        return cls(n=n, errors=errors, lat=histogram.from_sparse(lat),
                   sigs={s[0]: list(s[1:]) for s in sigs}, hosts={h: c for h, c in hosts},
                   slow=[list(s) for s in slow], first_err=first_err, last_err=last_err, tier=tier, owner=owner)


def top_slowest(rows: list[list], k: int) -> list[list]:
    rows = sorted(rows, key=lambda r: (-r[0], r[1], r[2], r[5] or ""))
    return rows[:k]


def _min_opt(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max_opt(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def aggregate_frame(frame: pd.DataFrame, bucket_ms: int, slowest_kept: int) -> dict[tuple[str, int], BucketAgg]:
    """Aggregate a chunk of events into partial buckets keyed by (service, bucket number)."""
    if frame.empty:
        return {}
    df = frame.loc[:, list(INPUT_COLUMNS)].copy()
    df["t_ms"] = df["t_ms"].astype(np.int64)
    df["bucket"] = df["t_ms"] // bucket_ms
    df["is_error"] = df["is_error"].fillna(False).astype(bool)
    keys = ["service", "bucket"]
    out: dict[tuple[str, int], BucketAgg] = {}

    base = df.groupby(keys, sort=False).agg(n=("t_ms", "size"), errors=("is_error", "sum"),
                                              tier=("tier", "max"), owner=("owner", "max"))
    for (service, bucket), row in base.iterrows():
        out[(service, int(bucket))] = BucketAgg(
            n=int(row["n"]), errors=int(row["errors"]),
            tier=None if pd.isna(row["tier"]) else str(row["tier"]),
            owner=None if pd.isna(row["owner"]) else str(row["owner"]))

    lat = df[df["latency_ms"].notna() & (df["latency_ms"] >= 0)]
    if not lat.empty:
        bins = histogram.bin_index(lat["latency_ms"].to_numpy())
        counts = pd.DataFrame({"service": lat["service"].to_numpy(), "bucket": lat["bucket"].to_numpy(),
                               "bin": bins}).groupby(["service", "bucket", "bin"], sort=False).size()
        for (service, bucket, b), count in counts.items():
            out[(service, int(bucket))].lat[int(b)] += int(count)
        slow = lat.sort_values(["latency_ms", "t_ms", "host", "message"],
                               ascending=[False, True, True, True], na_position="last")
        slow = slow.groupby(keys, sort=False).head(slowest_kept)
        for r in slow.itertuples(index=False):
            out[(r.service, int(r.bucket))].slow.append(
                [float(r.latency_ms), int(r.t_ms), r.host, r.signature_id, r.signature, r.message])

    err = df[df["is_error"]]
    if not err.empty:
        err = err.sort_values(["t_ms", "message"], na_position="last")
        times = err.groupby(keys, sort=False)["t_ms"].agg(["min", "max"])
        for (service, bucket), row in times.iterrows():
            agg = out[(service, int(bucket))]
            agg.first_err, agg.last_err = int(row["min"]), int(row["max"])
        sigs = err.groupby([*keys, "signature_id"], sort=False).agg(
            count=("t_ms", "size"), signature=("signature", "first"), sample=("message", "first"),
            sample_t=("t_ms", "first"))
        for (service, bucket, sig_id), row in sigs.iterrows():
            out[(service, int(bucket))].sigs[str(sig_id)] = [
                row["signature"], int(row["count"]), row["sample"], int(row["sample_t"])]
        hosts = err.groupby([*keys, "host"], sort=False).size()
        for (service, bucket, host), count in hosts.items():
            out[(service, int(bucket))].hosts[str(host)] = int(count)
    return out
