"""Per-service, per-event-time-bucket aggregates, computed from a pandas chunk of events at once.

A bucket holds what the detector needs from one service during one bucket: event, error and warning
counts, a latency histogram, the signatures of problem lines (errors and warnings) with a sample
message, the hosts that wrote them and the slowest requests.
Partial buckets from different chunks or micro-batches merge exactly, and ties are broken on the data
(time, then text), so the final bucket does not depend on how the events were split into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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
                if (sample_t, sample or "") < (mine[3], mine[2] or ""):
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
                self.slow, self.first_err, self.last_err, self.first_warn, self.last_warn, self.tier, self.owner]

    @classmethod
    def from_json(cls, data: list) -> BucketAgg:
        n, errors, warns, lat, sigs, hosts, slow, first_err, last_err, first_warn, last_warn, tier, owner = data
        return cls(n=n, errors=errors, warns=warns, lat=histogram.from_sparse(lat),
                   sigs={s[0]: list(s[1:]) for s in sigs}, hosts={h: c for h, c in hosts},
                   slow=[list(s) for s in slow], first_err=first_err, last_err=last_err, first_warn=first_warn,
                   last_warn=last_warn, tier=tier, owner=owner)


def merge_into(into: dict[tuple[str, int], BucketAgg], key: tuple[str, int], agg: BucketAgg,
               slowest_kept: int) -> None:
    """Add a partial bucket to a map of buckets: taken as is when new, merged into the one there otherwise."""
    mine = into.get(key)
    if mine is None:
        into[key] = agg
    else:
        mine.merge(agg, slowest_kept)


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
    """Aggregate a chunk of events into partial buckets keyed by (service, bucket number).

    Vectorised with numpy: counts and latency histograms by bincount over a (service, bucket) group
    index; only error rows and the slowest candidates are visited one by one.
    """
    if frame is None or len(frame) == 0:
        return {}
    t_ms = frame["t_ms"].to_numpy(dtype=np.int64)
    bucket = t_ms // bucket_ms
    service_codes, services = pd.factorize(frame["service"], sort=True)
    b0 = int(bucket.min())
    span = int(bucket.max()) - b0 + 1
    group_key = service_codes.astype(np.int64) * span + (bucket - b0)
    keys, group = np.unique(group_key, return_inverse=True)
    n_groups = len(keys)
    is_error = frame["is_error"].fillna(False).to_numpy(dtype=bool)
    is_warn = frame["is_warn"].fillna(False).to_numpy(dtype=bool) & ~is_error
    counts = np.bincount(group, minlength=n_groups)
    errors = np.bincount(group, weights=is_error, minlength=n_groups).astype(np.int64)
    warns = np.bincount(group, weights=is_warn, minlength=n_groups).astype(np.int64)

    labels = [(str(services[int(k // span)]), b0 + int(k % span)) for k in keys]
    tiers = _max_per_service(service_codes, services, frame["tier"])
    owners = _max_per_service(service_codes, services, frame["owner"])
    out = {label: BucketAgg(n=int(counts[i]), errors=int(errors[i]), warns=int(warns[i]), tier=tiers.get(label[0]),
                            owner=owners.get(label[0]))
           for i, label in enumerate(labels)}

    latency = frame["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    has_lat = np.isfinite(latency) & (latency >= 0)
    if has_lat.any():
        bins = histogram.bin_index(latency[has_lat])
        flat = np.bincount(group[has_lat] * histogram.NUM_BINS + bins, minlength=n_groups * histogram.NUM_BINS)
        hists = flat.reshape(n_groups, histogram.NUM_BINS).astype(np.int64)
        for i, label in enumerate(labels):
            out[label].lat = hists[i]
        _slowest(frame, out, labels, group, latency, has_lat, t_ms, slowest_kept)

    problem = is_error | is_warn
    if problem.any():
        rows = np.flatnonzero(problem)
        hosts = frame["host"].to_numpy(dtype=object)[rows]
        sig_ids = frame["signature_id"].to_numpy(dtype=object)[rows]
        sigs = frame["signature"].to_numpy(dtype=object)[rows]
        messages = frame["message"].to_numpy(dtype=object)[rows]
        for g, t, err, host, sig_id, sig, message in zip(group[rows].tolist(), t_ms[rows].tolist(),
                                                         is_error[rows].tolist(), hosts, sig_ids, sigs, messages,
                                                         strict=True):
            agg = out[labels[g]]
            if err:
                agg.first_err = t if agg.first_err is None else min(agg.first_err, t)
                agg.last_err = t if agg.last_err is None else max(agg.last_err, t)
            else:
                agg.first_warn = t if agg.first_warn is None else min(agg.first_warn, t)
                agg.last_warn = t if agg.last_warn is None else max(agg.last_warn, t)
            agg.hosts[host] = agg.hosts.get(host, 0) + 1
            message = None if message is None or message != message else message  # NaN -> None
            entry = agg.sigs.get(sig_id)
            if entry is None:
                agg.sigs[sig_id] = [sig, 1, message, t, int(err)]
            else:
                entry[1] += 1
                entry[4] += int(err)
                if (t, message or "") < (entry[3], entry[2] or ""):
                    entry[0], entry[2], entry[3] = sig, message, t
    return out


def _max_per_service(codes: np.ndarray, services: pd.Index, values: pd.Series) -> dict[str, str]:
    """The largest non-null value of a column per service (normally the one value it has)."""
    result: dict[str, str] = {}
    for code, value in set(zip(codes.tolist(), values.tolist(), strict=True)):
        if value is None or value != value:  # None or NaN
            continue
        service, value = str(services[code]), str(value)
        if service not in result or value > result[service]:
            result[service] = value
    return result


def _slowest(frame: pd.DataFrame, out: dict, labels: list, group: np.ndarray, latency: np.ndarray,
             has_lat: np.ndarray, t_ms: np.ndarray, k: int) -> None:
    """The k slowest requests of each group (ties broken on time, host, message)."""
    rows = np.flatnonzero(has_lat)
    order = rows[np.lexsort((-latency[rows], group[rows]))]  # by group, slowest first
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    hosts = frame["host"].to_numpy(dtype=object)
    sig_ids = frame["signature_id"].to_numpy(dtype=object)
    sigs = frame["signature"].to_numpy(dtype=object)
    messages = frame["message"].to_numpy(dtype=object)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        take = order[a:b]
        cutoff = latency[take[min(k, len(take)) - 1]]
        candidates = take[latency[take] >= cutoff]  # the k slowest plus any exact ties
        picked = [[float(latency[r]), int(t_ms[r]), hosts[r], sig_ids[r], sigs[r],
                   None if messages[r] is None or messages[r] != messages[r] else messages[r]] for r in candidates]
        out[labels[int(g_sorted[a])]].slow = top_slowest(picked, k)
