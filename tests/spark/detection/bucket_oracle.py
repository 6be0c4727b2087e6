"""The reference the Arrow aggregation (incident_stream.detection.aggregate.Reduced) is checked against.

This is the detector's former pandas/numpy aggregation of a chunk of events into partial buckets, kept
here as a test oracle only: production code never imports it. It aggregates one environment's events
(buckets.INPUT_COLUMNS, no environment column) into {(service, bucket): BucketAgg}, by another route
than the Arrow group-bys (bincount over a group index, a per-row loop over problem lines), so the two
agreeing on random events is evidence that both are right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from incident_stream.detection import histogram
from incident_stream.detection.buckets import BucketAgg, text_order, top_slowest


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
    is_error = frame["is_error"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    is_warn = frame["is_warn"].astype("boolean").fillna(False).to_numpy(dtype=bool) & ~is_error
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
                if (t, *text_order(message)) < (entry[3], *text_order(entry[2])):
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
