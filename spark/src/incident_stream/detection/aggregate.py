"""Events -> per-(environment, service, bucket) aggregates (buckets.BucketAgg), computed with Arrow's group-bys.

A reading task calls this on every Arrow batch of its range, so the cost per event must stay a small
share of decoding it: every step is a vectorised Arrow (C++) or numpy operation, and Python objects are
built once per final group, not per event or per batch.

Each batch is reduced to five small tables (:class:`Reduced`): counts and error/warning times per group,
latency histogram bins, problem-line signatures with their earliest sample, hosts of problem lines, and
the slowest requests. Reductions are associative, so the reduced tables of many batches are concatenated
and reduced again with the same functions (:meth:`Reduced.combine`); :meth:`Reduced.parts` then builds
one BucketAgg per group. The result equals aggregating all events at once, whatever the batching (ties
are broken on the data: time, then text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incident_stream.detection import histogram
from incident_stream.detection.buckets import BucketAgg

KEYS = ["environment", "service", "bucket"]
AHEAD = "ahead"  # optional input column: the event's time was moved back to its arrival (view.py)
KEEP_NULLS = pc.ScalarAggregateOptions(skip_nulls=False)  # "first" of the earliest line, even when null

Parts = dict[tuple[str, int], BucketAgg]


@dataclass
class Reduced:
    counts: pa.Table  # KEYS, n, errors, warns, tier, owner, first_err, last_err, first_warn, last_warn, newest,
    # ahead
    latency: pa.Table  # KEYS, bin, count
    signatures: pa.Table  # KEYS, signature_id, count, errors, t, message, signature (sample: the earliest)
    hosts: pa.Table  # KEYS, host, count
    slowest: pa.Table  # KEYS, latency_ms, t_ms, host, signature_id, signature, message

    @classmethod
    def of_events(cls, events: pa.Table | pa.RecordBatch, bucket_ms: int, slowest_kept: int) -> Reduced:
        """Reduce events (columns: environment and buckets.INPUT_COLUMNS, optionally AHEAD)."""
        table = events if isinstance(events, pa.Table) else pa.Table.from_batches([events])
        t = table.column("t_ms").cast(pa.int64())
        err = pc.fill_null(table.column("is_error"), False)
        warn = pc.and_(pc.fill_null(table.column("is_warn"), False), pc.invert(err))
        bucket = np.floor_divide(t.to_numpy(zero_copy_only=False), bucket_ms)
        keys = {"environment": table.column("environment"), "service": table.column("service"),
                "bucket": pa.array(bucket, pa.int64())}
        none = pa.nulls(len(t), pa.int64())
        ahead = pc.fill_null(table.column(AHEAD), False) if AHEAD in table.column_names else \
            pa.repeat(pa.scalar(False), len(t))
        counts = pa.table({**keys, "n": pa.repeat(pa.scalar(1, pa.int64()), len(t)), "errors": err.cast(pa.int64()),
                           "warns": warn.cast(pa.int64()), "tier": table.column("tier"), "owner": table.column("owner"),
                           "first_err": pc.if_else(err, t, none), "last_err": pc.if_else(err, t, none),
                           "first_warn": pc.if_else(warn, t, none), "last_warn": pc.if_else(warn, t, none),
                           "newest": t, AHEAD: ahead.cast(pa.int64())})
        latency = table.column("latency_ms").cast(pa.float64())
        has_latency = pc.fill_null(pc.and_(pc.greater_equal(latency, 0.0), pc.is_finite(latency)), False)
        timed = {k: v.filter(has_latency) for k, v in keys.items()}
        measured = latency.filter(has_latency)
        bins = histogram.bin_index(measured.to_numpy(zero_copy_only=False)) if len(measured) else \
            np.zeros(0, np.int64)
        latency_rows = pa.table({**timed, "bin": pa.array(bins, pa.int64()),
                                 "count": pa.repeat(pa.scalar(1, pa.int64()), len(bins))})
        problem = pc.or_(err, warn)
        lines = {k: v.filter(problem) for k, v in keys.items()}
        signatures = pa.table({**lines, "signature_id": table.column("signature_id").filter(problem),
                               "count": pa.repeat(pa.scalar(1, pa.int64()), len(lines["bucket"])),
                               "errors": err.filter(problem).cast(pa.int64()), "t": t.filter(problem),
                               "message": table.column("message").filter(problem),
                               "signature": table.column("signature").filter(problem)})
        hosts = pa.table({**lines, "host": table.column("host").filter(problem),
                          "count": pa.repeat(pa.scalar(1, pa.int64()), len(lines["bucket"]))})
        slowest = pa.table({**timed, "latency_ms": measured, "t_ms": t.filter(has_latency),
                            **{c: table.column(c).filter(has_latency)
                               for c in ("host", "signature_id", "signature", "message")}})
        return cls(counts, latency_rows, signatures, hosts, slowest).reduce(slowest_kept)

    def reduce(self, slowest_kept: int) -> Reduced:
        counts = self.counts.group_by(KEYS, use_threads=False).aggregate(
            [("n", "sum"), ("errors", "sum"), ("warns", "sum"), ("tier", "max"), ("owner", "max"),
             ("first_err", "min"), ("last_err", "max"), ("first_warn", "min"), ("last_warn", "max"),
             ("newest", "max"), (AHEAD, "sum")])
        latency = self.latency.group_by([*KEYS, "bin"], use_threads=False).aggregate([("count", "sum")])
        # the sample of a signature is its earliest line (ties: the smallest text): sorted first, "first" keeps it
        ordered = self.signatures.sort_by([("t", "ascending"), ("message", "ascending"), ("signature", "ascending")])
        signatures = ordered.group_by([*KEYS, "signature_id"], use_threads=False).aggregate(
            [("count", "sum"), ("errors", "sum"), ("t", "first"), ("message", "first", KEEP_NULLS),
             ("signature", "first", KEEP_NULLS)])
        hosts = self.hosts.group_by([*KEYS, "host"], use_threads=False).aggregate([("count", "sum")])
        return Reduced(_named(counts, self.counts), _named(latency, self.latency),
                       _named(signatures, self.signatures), _named(hosts, self.hosts),
                       _top(self.slowest, slowest_kept))

    @staticmethod
    def combine(parts: Sequence[Reduced], slowest_kept: int) -> Reduced:
        """One reduction of several (of different batches)."""
        if len(parts) == 1:
            return parts[0]
        return Reduced(*(pa.concat_tables([getattr(p, name) for p in parts]) for name in _TABLES)).reduce(
            slowest_kept)

    def newest(self) -> dict[str, int]:
        """The newest event time per environment."""
        by_env = self.counts.group_by("environment", use_threads=False).aggregate([("newest", "max")])
        return dict(zip(by_env.column("environment").to_pylist(), by_env.column("newest_max").to_pylist(),
                        strict=True))

    def parts(self) -> dict[str, Parts]:
        """{environment: {(service, bucket): BucketAgg}}."""
        out: dict[str, Parts] = {}
        c = self.counts.to_pydict()
        for i, (env, service, bucket) in enumerate(zip(c["environment"], c["service"], c["bucket"], strict=True)):
            out.setdefault(env, {})[(service, bucket)] = BucketAgg(
                n=c["n"][i], errors=c["errors"][i], warns=c["warns"][i], tier=c["tier"][i], owner=c["owner"][i],
                first_err=c["first_err"][i], last_err=c["last_err"][i], first_warn=c["first_warn"][i],
                last_warn=c["last_warn"][i], ahead=c[AHEAD][i])
        lat = self.latency.to_pydict()
        for env, service, bucket, index, count in zip(lat["environment"], lat["service"], lat["bucket"], lat["bin"],
                                                      lat["count"], strict=True):
            out[env][(service, bucket)].lat[index] += count
        s = self.signatures.to_pydict()
        for env, service, bucket, sig_id, count, errors, t, message, signature in zip(
                s["environment"], s["service"], s["bucket"], s["signature_id"], s["count"], s["errors"], s["t"],
                s["message"], s["signature"], strict=True):
            out[env][(service, bucket)].sigs[sig_id] = [signature, count, message, t, errors]
        h = self.hosts.to_pydict()
        for env, service, bucket, host, count in zip(h["environment"], h["service"], h["bucket"], h["host"],
                                                     h["count"], strict=True):
            out[env][(service, bucket)].hosts[host] = count
        w = self.slowest.to_pydict()
        for env, service, bucket, latency, t, host, sig_id, signature, message in zip(
                w["environment"], w["service"], w["bucket"], w["latency_ms"], w["t_ms"], w["host"], w["signature_id"],
                w["signature"], w["message"], strict=True):
            out[env][(service, bucket)].slow.append([latency, t, host, sig_id, signature, message])
        return out


_TABLES = ("counts", "latency", "signatures", "hosts", "slowest")


def _named(aggregated: pa.Table, like: pa.Table) -> pa.Table:
    """The aggregate's columns under their input names, in the input's order ("n_sum" -> "n")."""
    names = {name.rsplit("_", 1)[0] if name not in like.column_names else name: name
             for name in aggregated.column_names}
    return pa.table({name: aggregated.column(names[name]) for name in like.column_names})


def _top(rows: pa.Table, k: int) -> pa.Table:
    """The k slowest rows of each group (ties: earlier, then host, then text), in that order."""
    if rows.num_rows == 0:
        return rows
    rows = rows.filter(pa.array(_top_candidates(rows, k)))
    ordered = rows.sort_by([("environment", "ascending"), ("service", "ascending"), ("bucket", "ascending"),
                            ("latency_ms", "descending"), ("t_ms", "ascending"), ("host", "ascending"),
                            ("message", "ascending")])
    same = np.ones(ordered.num_rows, dtype=bool)
    same[0] = False
    for key in KEYS:
        column = ordered.column(key).combine_chunks()
        same[1:] &= pc.equal(column[1:], column[:-1]).to_numpy(zero_copy_only=False)
    position = np.arange(ordered.num_rows)
    group_start = np.maximum.accumulate(np.where(same, 0, position))
    return ordered.filter(pa.array(position - group_start < k))


def _top_candidates(rows: pa.Table, k: int) -> np.ndarray:
    """Rows that can be among their group's k slowest: the k slowest by latency alone plus every row as slow
    as the k-th (the ties the text order decides). Found with numeric sorts, so the sort on text keys that
    follows sees a few rows per group instead of all."""
    codes = [pc.dictionary_encode(rows.column(key).combine_chunks()).indices.to_numpy(zero_copy_only=False)
             for key in ("environment", "service")]
    bucket = rows.column("bucket").to_numpy()
    latency = rows.column("latency_ms").to_numpy()
    order = np.lexsort((-latency, bucket, codes[1], codes[0]))
    group = np.stack([codes[0][order], codes[1][order], bucket[order]])
    first = np.ones(len(order), dtype=bool)
    first[1:] = (group[:, 1:] != group[:, :-1]).any(axis=0)
    position = np.arange(len(order))
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    group_id = np.cumsum(first) - 1
    kth = np.full(group_id[-1] + 1, -np.inf)  # the k-th largest latency of each group (-inf: fewer rows)
    at_k = rank == k - 1
    kth[group_id[at_k]] = latency[order][at_k]
    keep = np.zeros(len(order), dtype=bool)
    keep[order] = (rank < k) | (latency[order] >= kth[group_id])
    return keep
