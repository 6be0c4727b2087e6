"""Per-service, per-event-time-bucket aggregates (BucketAgg) and how partial ones merge.

A bucket holds what the detector needs from one service during one bucket: event, error and warning
counts, a latency histogram, the signatures of problem lines (errors and warnings) with a sample
message, the hosts that wrote them and the slowest requests. Events are aggregated into buckets in
aggregate.py (Arrow group-bys); this module holds the bucket itself, its merge and its JSON form.
Partial buckets from different chunks or micro-batches merge exactly, and ties are broken on the data
(time, then text), so the final bucket does not depend on how the events were split into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from incident_stream.detection import histogram

# columns the detector reads from each event (prepared by stream.py from the events table)
INPUT_COLUMNS = ("t_ms", "service", "host", "is_error", "is_warn", "latency_ms", "signature", "signature_id",
                 "message", "tier", "owner")

# limits applied when a bucket is final (never to partial buckets, so merging stays exact)
SIGNATURES_KEPT = 20
HOSTS_KEPT = 50


@dataclass
class BucketAgg:
    n: int = 0
    errors: int = 0
    warns: int = 0  # warning lines that are not errors
    lat: np.ndarray = field(default_factory=histogram.empty)
    # problem-line signatures: signature_id -> [signature, count, sample, sample_t, errors]
    sigs: dict[str, list] = field(default_factory=dict)
    hosts: dict[str, int] = field(default_factory=dict)  # host -> problem lines
    slow: list[list] = field(default_factory=list)  # [latency, t_ms, host, signature_id, signature, message]
    first_err: int | None = None
    last_err: int | None = None
    first_warn: int | None = None
    last_warn: int | None = None
    tier: str | None = None
    owner: str | None = None
    ahead: int = 0  # events whose time was taken at their arrival (a host clock ahead; view.py)

    @property
    def lat_n(self) -> int:
        return int(self.lat.sum())

    def merge(self, other: BucketAgg, slowest_kept: int) -> None:
        self.n += other.n
        self.errors += other.errors
        self.warns += other.warns
        self.lat = self.lat + other.lat
        for sig_id, (signature, count, sample, sample_t, errors) in other.sigs.items():
            mine = self.sigs.get(sig_id)
            if mine is None:
                self.sigs[sig_id] = [signature, count, sample, sample_t, errors]
            else:
                mine[1] += count
                mine[4] += errors
                if (sample_t, *text_order(sample)) < (mine[3], *text_order(mine[2])):
                    mine[0], mine[2], mine[3] = signature, sample, sample_t
        for host, count in other.hosts.items():
            self.hosts[host] = self.hosts.get(host, 0) + count
        self.slow = top_slowest(self.slow + other.slow, slowest_kept)
        self.first_err = _min_opt(self.first_err, other.first_err)
        self.last_err = _max_opt(self.last_err, other.last_err)
        self.first_warn = _min_opt(self.first_warn, other.first_warn)
        self.last_warn = _max_opt(self.last_warn, other.last_warn)
        self.tier = _max_opt(self.tier, other.tier)
        self.owner = _max_opt(self.owner, other.owner)
        self.ahead += other.ahead

    def finalize(self) -> BucketAgg:
        """Cap the per-bucket detail lists (deterministic: by count, then by name)."""
        if len(self.sigs) > SIGNATURES_KEPT:
            keep = sorted(self.sigs.items(), key=lambda kv: (-kv[1][4], -kv[1][1], kv[0]))[:SIGNATURES_KEPT]
            self.sigs = dict(keep)
        if len(self.hosts) > HOSTS_KEPT:
            self.hosts = dict(sorted(self.hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:HOSTS_KEPT])
        return self

    # --- compact JSON form for the state store ------------------------------------------------
    def to_json(self) -> list:
        return [self.n, self.errors, self.warns, histogram.to_sparse(self.lat),
                [[k, *v] for k, v in sorted(self.sigs.items())], [[k, v] for k, v in sorted(self.hosts.items())],
                self.slow, self.first_err, self.last_err, self.first_warn, self.last_warn, self.tier, self.owner,
                self.ahead]

    @classmethod
    def from_json(cls, data: list) -> BucketAgg:
        n, errors, warns, lat, sigs, hosts, slow, first_err, last_err, first_warn, last_warn, tier, owner = data[:13]
        return cls(n=n, errors=errors, warns=warns, lat=histogram.from_sparse(lat),
                   sigs={s[0]: list(s[1:]) for s in sigs}, hosts={h: c for h, c in hosts},
                   slow=[list(s) for s in slow], first_err=first_err, last_err=last_err, first_warn=first_warn,
                   last_warn=last_warn, tier=tier, owner=owner, ahead=data[13] if len(data) > 13 else 0)


def merge_into(into: dict[tuple[str, int], BucketAgg], key: tuple[str, int], agg: BucketAgg,
               slowest_kept: int) -> None:
    """Add a partial bucket to a map of buckets: taken as is when new, merged into the one there otherwise."""
    mine = into.get(key)
    if mine is None:
        into[key] = agg
    else:
        mine.merge(agg, slowest_kept)


def top_slowest(rows: list[list], k: int) -> list[list]:
    """The k slowest (ties: earlier, then host, then message), as aggregate.py orders them."""
    rows = sorted(rows, key=lambda r: (-r[0], r[1], r[2], *text_order(r[5])))
    return rows[:k]


def text_order(text: str | None) -> tuple[bool, str]:
    """Sort key of a nullable text as Arrow sorts it (aggregate.py): by text, a null after any text."""
    return text is None, text or ""


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
