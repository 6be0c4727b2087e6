"""The one data-access layer over the tables: every query the dashboard's pages and the analysis run.

The tables are Delta Lake tables under ``DATA_DIR`` (a folder or ``s3://``; see
``incident_contracts.table_store``), and the dashboard reads committed versions only:

* ``incident_updates`` and ``metrics`` and ``dead_letter`` are small and append-only: they are
  mirrored in full into DuckDB (:class:`~incident_rca.data.mirror.TableMirror`), and the
  current state of every incident (its row with the highest ``update_seq``) is kept as a table;
* ``events`` is large: it is mirrored as two rollups (per service and minute; per service, signature
  and hour) that the Overview reads, while the incident page reads raw events of a few hourly
  partitions of the mirrored version (the partitions chosen from the log, not by listing folders).

Results are cached for ``DASHBOARD_CACHE_TTL_SECONDS``, keyed by the query and the version of the
tables it reads, and mirrors ask the log for a new version at most that often. A missing table reads
as an empty one with the contract's columns; :meth:`Repository.status` says why it is empty (or why
it cannot be read, such as a table still in the layout before Delta Lake).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from incident_contracts import tables as contract
from incident_contracts.detector_counters import COUNTER_QUERY_PREFIX
from incident_contracts.settings import Settings, get_settings
from incident_contracts.table_store import TableStore
from incident_rca.data.database import Database
from incident_rca.data.files import prune_by_time
from incident_rca.data.mirror import MirrorStatus, TableMirror, Target, raw_select
from incident_rca.data.ttl import TTLCache

T = TypeVar("T")

SEVERITIES = tuple(s.value for s in contract.Severity)
STATUSES = tuple(s.value for s in contract.IncidentStatus)
RAW_PREVIEW_BYTES = 256
RAW_EVENTS = "raw_events"  # what the raw events of a query are registered as

SORTS = {
    "severity": "severity_rank ASC, status = 'open' DESC, opened_at DESC",
    "newest": "opened_at DESC",
    "oldest": "opened_at ASC",
    "longest": "active_until - opened_at DESC",
    "anomaly": "anomaly_score DESC NULLS LAST",
    "errors": "error_count DESC NULLS LAST",
}

LIST_COLUMNS = """incident_id, severity, status, service, environment, tier, owner, title, trigger,
    opened_at, first_seen, last_seen, resolved_at, active_until, event_count, error_count, error_rate,
    baseline_error_rate, latency_p95_ms, baseline_latency_p95_ms, anomaly_score, update_seq, update_time,
    origin_service, origin_incident_id, len(coalesce(linked_incident_ids, [])) AS linked, top_signature"""


@dataclass(frozen=True)
class IncidentFilter:
    """What the Incidents page asks for; None/empty means no restriction."""

    start: datetime | None = None
    end: datetime | None = None
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    text: str = ""
    sort: str = "severity"
    limit: int = 500
    only_ids: tuple[str, ...] | None = None  # None: any incident; a tuple: only these (by human status)
    excluded_ids: tuple[str, ...] = ()


@dataclass
class IncidentPage:
    rows: pd.DataFrame
    total: int


@dataclass
class Freshness:
    latest_event_time: datetime | None = None
    latest_ingest_time: datetime | None = None
    latest_incident_update: datetime | None = None
    latest_batch_time: datetime | None = None
    latest_batch_lag: int | None = None
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def reference_time(self) -> datetime:
        """'Now' for relative time windows: the newest data, so a stopped or replayed pipeline still
        shows its last hours."""
        known = [t for t in (self.latest_event_time, self.latest_incident_update) if t is not None]
        return max(known) if known else self.checked_at

    def age_seconds(self, moment: datetime | None) -> float | None:
        return None if moment is None else (self.checked_at - moment).total_seconds()


def _ts(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.to_pydatetime()


def _events_minute(source: str) -> str:
    return f"""
        SELECT _file, service, date_trunc('minute', event_time) AS minute,
               count(*) AS events, count_if(is_error) AS errors, count_if(http_status >= 500) AS errors_5xx,
               sum(latency_ms) AS latency_sum, count(latency_ms) AS latency_n, max(latency_ms) AS latency_max,
               max(event_time) AS max_event_time, max(ingest_time) AS max_ingest_time
        FROM {source} GROUP BY ALL"""


def _signatures_hour(source: str) -> str:
    return f"""
        SELECT _file, service, signature_id, date_trunc('hour', event_time) AS hour,
               any_value(signature) AS signature, count(*) AS events, count_if(is_error) AS errors,
               max(event_time) AS last_seen
        FROM {source} GROUP BY ALL"""


NOT_COUNTER = f"query_name NOT LIKE '{COUNTER_QUERY_PREFIX}%'"

CURRENT_INCIDENTS = """
    CREATE OR REPLACE TABLE incidents_current AS
    SELECT u.* EXCLUDE (_file),
        CASE severity WHEN 'P1' THEN 1 WHEN 'P2' THEN 2 WHEN 'P3' THEN 3 ELSE 4 END AS severity_rank,
        coalesce(top_signatures[1].signature, '') AS top_signature,
        list_transform(coalesce(top_signatures, []), lambda s: s.signature_id) AS signature_ids,
        coalesce(resolved_at, last_seen) AS active_until,
        lower(concat_ws(' ', incident_id, title, service, owner, trigger,
            array_to_string(list_transform(coalesce(top_signatures, []), lambda s: s.signature), ' '),
            array_to_string(coalesce(severity_reasons, []), ' '))) AS search_text
    FROM incident_updates u  -- each incident's row with the highest (update_seq, update_time)
    WHERE u.rowid IN (SELECT arg_max(rowid, (update_seq, update_time)) FROM incident_updates GROUP BY incident_id)"""


class Repository:
    """Queries over the tables of one DATA_DIR. Thread-safe; create through :func:`get_repository`."""

    def __init__(self, store: TableStore | str | Path, cache_ttl: float = 5.0) -> None:
        if not isinstance(store, TableStore):
            store = TableStore(str(store) if "://" in str(store) else str(Path(store).resolve()))
        self.store = store
        self.cache = TTLCache(cache_ttl)
        self.db = Database()

        def mirror(table: str, targets: list[Target], derived: Sequence[str] = ()) -> TableMirror:
            return TableMirror(self.db, self.store, table, targets, derived=derived, min_interval=cache_ttl)

        self.updates = mirror("incident_updates", [Target("incident_updates", raw_select())], [CURRENT_INCIDENTS])
        self.events = mirror("events", [Target("events_minute", _events_minute),
                                        Target("signatures_hour", _signatures_hour)])
        self.dead_letter = mirror("dead_letter", [Target("dead_letter", raw_select(
            {"raw_value": f"raw_value[1:{RAW_PREVIEW_BYTES}]"}))])
        self.metrics = mirror("metrics", [Target("metrics", raw_select())])
        self._mirrors = {m.table: m for m in (self.updates, self.events, self.dead_letter, self.metrics)}

    @property
    def location(self) -> str:
        """Where the tables are: a folder or an ``s3://`` URI."""
        return self.store.root

    # --- plumbing --------------------------------------------------------------------------
    def _fresh(self, *tables: str) -> tuple[tuple[int | None, int], ...]:
        return tuple(self._mirrors[name].update() for name in tables)

    def _cached(self, key: Hashable, tables: Sequence[str], compute: Callable[[], T]) -> T:
        versions = self._fresh(*tables)
        value = self.cache.get_or_compute((key, versions), compute)
        if isinstance(value, pd.DataFrame):
            return value.copy(deep=False)  # type: ignore[return-value]
        return value

    def status(self, table: str) -> MirrorStatus:
        """What the table holds: missing, empty, its version and files, or why it cannot be read."""
        return self._mirrors[table].refresh()

    def expire(self) -> None:
        """Drop cached results and make the next query of each table ask its log for a new version: the
        state every page is in once ``cache_ttl`` has passed (the benchmark measures renders from it)."""
        self.cache.clear()
        for mirror in self._mirrors.values():
            mirror.expire()

    def refresh_all(self, force: bool = False) -> None:
        for mirror in self._mirrors.values():
            mirror.refresh(force=force)
        if force:
            self.cache.clear()

    # --- freshness -------------------------------------------------------------------------
    def freshness(self) -> Freshness:
        def compute() -> Freshness:
            event_row = self.db.rows("SELECT max(max_event_time), max(max_ingest_time) FROM events_minute")[0]
            update_row = self.db.rows("SELECT max(update_time) FROM incident_updates")[0]
            batch = self.db.rows(f"SELECT timestamp, lag FROM metrics WHERE {NOT_COUNTER} "
                                 "ORDER BY timestamp DESC LIMIT 1")
            return Freshness(
                latest_event_time=_ts(event_row[0]), latest_ingest_time=_ts(event_row[1]),
                latest_incident_update=_ts(update_row[0]),
                latest_batch_time=_ts(batch[0][0]) if batch else None,
                latest_batch_lag=int(batch[0][1]) if batch and batch[0][1] is not None else None)

        return self._cached("freshness", ("events", "incident_updates", "metrics"), compute)

    # --- incidents -------------------------------------------------------------------------
    def incidents(self, flt: IncidentFilter) -> IncidentPage:
        """Current state of the incidents matching the filter, sorted, at most ``flt.limit`` rows."""
        where, params = self._incident_where(flt)
        order = SORTS.get(flt.sort, SORTS["severity"])

        def compute() -> IncidentPage:
            total = self.db.rows(f"SELECT count(*) FROM incidents_current WHERE {where}", params)[0][0]
            rows = self.db.df(f"SELECT {LIST_COLUMNS} FROM incidents_current WHERE {where} "
                              f"ORDER BY {order}, incident_id LIMIT {int(flt.limit)}", params)
            return IncidentPage(rows, int(total))

        return self._cached(("incidents", flt), ("incident_updates",), compute)

    @staticmethod
    def _incident_where(flt: IncidentFilter) -> tuple[str, dict[str, Any]]:
        clauses, params = ["TRUE"], {}
        if flt.start is not None:
            clauses.append("active_until >= $start")
            params["start"] = flt.start
        if flt.end is not None:
            clauses.append("opened_at <= $end")
            params["end"] = flt.end
        for column, values in (("severity", flt.severities), ("status", flt.statuses),
                               ("service", flt.services)):
            if values:
                clauses.append(f"{column} IN (SELECT unnest(${column}s))")
                params[f"{column}s"] = list(values)
        if flt.only_ids is not None:
            clauses.append("incident_id IN (SELECT unnest($only_ids::VARCHAR[]))")
            params["only_ids"] = list(flt.only_ids)
        if flt.excluded_ids:
            clauses.append("incident_id NOT IN (SELECT unnest($excluded_ids::VARCHAR[]))")
            params["excluded_ids"] = list(flt.excluded_ids)
        text = flt.text.strip().lower()
        if text:
            for i, word in enumerate(text.split()[:8]):
                clauses.append(f"contains(search_text, $w{i})")
                params[f"w{i}"] = word
        return " AND ".join(clauses), params

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        """The current state of one incident with every column (lists included), or None."""
        def compute() -> dict[str, Any] | None:
            frame = self.db.df("SELECT * FROM incidents_current WHERE incident_id = $id", {"id": incident_id})
            if frame.empty:
                return None
            return _row_dict(frame.iloc[0])

        return self._cached(("incident", incident_id), ("incident_updates",), compute)

    def incident_history(self, incident_id: str) -> pd.DataFrame:
        """Every lifecycle row of one incident, oldest first."""
        return self._cached(("history", incident_id), ("incident_updates",), lambda: self.db.df(
            "SELECT * EXCLUDE (_file) FROM incident_updates WHERE incident_id = $id "
            "ORDER BY update_seq, update_time", {"id": incident_id}))

    def lifecycle_rows(self, start: datetime, end: datetime) -> pd.DataFrame:
        """The lifecycle rows (a few columns) of the incidents opened between ``start`` and ``end``."""
        return self._cached(("lifecycle_rows", start, end), ("incident_updates",), lambda: self.db.df("""
            SELECT incident_id, update_seq, update_time, service, severity, status FROM incident_updates
            WHERE incident_id IN (SELECT incident_id FROM incidents_current WHERE opened_at BETWEEN $start AND $end)
            ORDER BY incident_id, update_seq""", {"start": start, "end": end}))

    def recent_incidents(self, limit: int = 200) -> pd.DataFrame:
        """Newest incidents first (for pickers)."""
        return self._cached(("recent", limit), ("incident_updates",), lambda: self.db.df(
            "SELECT incident_id, severity, status, service, title, opened_at FROM incidents_current "
            f"ORDER BY opened_at DESC LIMIT {int(limit)}"))

    def services(self) -> list[str]:
        def compute() -> list[str]:
            rows = self.db.rows("SELECT DISTINCT service FROM incidents_current UNION "
                                "SELECT DISTINCT service FROM events_minute ORDER BY 1")
            return [r[0] for r in rows if r[0]]

        return self._cached("services", ("incident_updates", "events"), compute)

    def open_by_severity(self) -> pd.DataFrame:
        """Open incidents per severity (every severity listed, zero included)."""
        return self._cached("open_by_severity", ("incident_updates",), lambda: self.db.df("""
            SELECT s.severity, count(c.incident_id) AS incidents
            FROM (SELECT unnest($sev) AS severity) s
            LEFT JOIN incidents_current c ON c.severity = s.severity AND c.status = 'open'
            GROUP BY s.severity ORDER BY s.severity""", {"sev": list(SEVERITIES)}))

    def incidents_over_time(self, start: datetime, end: datetime, bucket: str) -> pd.DataFrame:
        """Incidents opened per time bucket and severity."""
        return self._cached(("incidents_over_time", start, end, bucket), ("incident_updates",),
                            lambda: self.db.df(f"""
            SELECT time_bucket(INTERVAL '{bucket}', opened_at) AS bucket, severity, count(*) AS incidents
            FROM incidents_current WHERE opened_at BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket""", {"start": start, "end": end}))

    def incidents_by_service(self, start: datetime, end: datetime) -> pd.DataFrame:
        return self._cached(("incidents_by_service", start, end), ("incident_updates",), lambda: self.db.df("""
            SELECT service, severity, count(*) AS incidents FROM incidents_current
            WHERE active_until >= $start AND opened_at <= $end GROUP BY ALL""", {"start": start, "end": end}))

    def related_incidents(self, incident: dict[str, Any], services: Sequence[str]) -> pd.DataFrame:
        """Incidents linked to this one, or in ``services`` (its dependencies and dependents) while it
        was active (with 15 minutes of slack on both sides)."""
        start = incident["opened_at"] - timedelta(minutes=15)
        end = (incident.get("resolved_at") or incident["last_seen"]) + timedelta(minutes=15)
        linked = [i for i in (incident.get("linked_incident_ids") or []) if i]
        if incident.get("origin_incident_id"):
            linked.append(incident["origin_incident_id"])
        key = ("related", incident["incident_id"], tuple(sorted(services)), start, end, tuple(sorted(linked)))
        return self._cached(key, ("incident_updates",), lambda: self.db.df(f"""
            SELECT {LIST_COLUMNS},
                   list_contains($linked, incident_id) AS explicitly_linked,
                   list_transform(coalesce(top_signatures, []), lambda s: s.signature) AS signature_texts
            FROM incidents_current
            WHERE incident_id <> $id AND (
                list_contains($linked, incident_id)
                OR list_contains(coalesce(linked_incident_ids, []), $id)
                OR origin_incident_id = $id
                OR (list_contains($services, service) AND active_until >= $start AND opened_at <= $end))
            ORDER BY explicitly_linked DESC, opened_at""",
            {"id": incident["incident_id"], "linked": linked or [""], "services": list(services) or [""],
             "start": start, "end": end}))

    def similar_incidents(self, incident: dict[str, Any], limit: int = 5) -> pd.DataFrame:
        """Earlier incidents sharing signatures with this one (or, failing that, its service)."""
        signature_ids = [s["signature_id"] for s in (incident.get("top_signatures") or []) if s]
        key = ("similar", incident["incident_id"], tuple(signature_ids), limit)
        return self._cached(key, ("incident_updates",), lambda: self.db.df(f"""
            WITH scored AS (
                SELECT incident_id, len(list_intersect(signature_ids, $sigs)) AS shared_signatures,
                       service = $service AS same_service, opened_at AS scored_opened_at
                FROM incidents_current
                WHERE incident_id <> $id AND opened_at < $opened),
            best AS (
                SELECT * FROM scored WHERE shared_signatures > 0 OR same_service
                ORDER BY shared_signatures DESC, same_service DESC, scored_opened_at DESC LIMIT {int(limit)})
            SELECT {LIST_COLUMNS}, resolved_at - opened_at AS time_to_resolve, best.shared_signatures,
                   best.same_service
            FROM best JOIN incidents_current USING (incident_id)
            ORDER BY best.shared_signatures DESC, best.same_service DESC, opened_at DESC""",
            {"id": incident["incident_id"], "sigs": signature_ids or [""], "service": incident["service"],
             "opened": incident["opened_at"]}))

    # --- events: rollups -------------------------------------------------------------------
    def traffic(self, start: datetime, end: datetime, bucket: str, by_service: bool = True) -> pd.DataFrame:
        """Events, errors, error rate and mean/max latency per time bucket (and service)."""
        group = "bucket, service" if by_service else "bucket"
        select_service = "service," if by_service else ""
        return self._cached(("traffic", start, end, bucket, by_service), ("events",), lambda: self.db.df(f"""
            SELECT time_bucket(INTERVAL '{bucket}', minute) AS bucket, {select_service}
                   sum(events)::BIGINT AS events, sum(errors)::BIGINT AS errors,
                   sum(errors) / sum(events) AS error_rate, sum(errors_5xx)::BIGINT AS errors_5xx,
                   sum(latency_sum) / nullif(sum(latency_n), 0) AS latency_mean_ms, max(latency_max) AS latency_max_ms
            FROM events_minute WHERE minute BETWEEN $start AND $end
            GROUP BY {group} ORDER BY {group}""", {"start": start, "end": end}))

    def noisiest_services(self, start: datetime, end: datetime, limit: int = 10) -> pd.DataFrame:
        return self._cached(("noisiest", start, end, limit), ("events",), lambda: self.db.df(f"""
            SELECT service, sum(events)::BIGINT AS events, sum(errors)::BIGINT AS errors,
                   sum(errors) / sum(events) AS error_rate
            FROM events_minute WHERE minute BETWEEN $start AND $end
            GROUP BY service ORDER BY errors DESC, events DESC LIMIT {int(limit)}""",
            {"start": start, "end": end}))

    def top_signatures(self, start: datetime, end: datetime, service: str | None = None,
                       limit: int = 10, errors_only: bool = True) -> pd.DataFrame:
        where = "hour BETWEEN date_trunc('hour', $start) AND $end"
        params: dict[str, Any] = {"start": start, "end": end}
        if service:
            where += " AND service = $service"
            params["service"] = service
        having = "HAVING sum(errors) > 0" if errors_only else ""
        return self._cached(("signatures", start, end, service, limit, errors_only), ("events",),
                            lambda: self.db.df(f"""
            SELECT service, signature_id, any_value(signature) AS signature, sum(events)::BIGINT AS events,
                   sum(errors)::BIGINT AS errors, max(last_seen) AS last_seen
            FROM signatures_hour WHERE {where} GROUP BY service, signature_id {having}
            ORDER BY errors DESC, events DESC LIMIT {int(limit)}""", params))

    def event_totals(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            row = self.db.rows("SELECT sum(events)::BIGINT, sum(errors)::BIGINT, min(minute), max(max_event_time) "
                               "FROM events_minute")[0]
            return {"events": int(row[0] or 0), "errors": int(row[1] or 0), "first": _ts(row[2]),
                    "last": _ts(row[3])}

        return self._cached("event_totals", ("events",), compute)

    def data_start(self) -> datetime | None:
        """The oldest moment with data: the first event's minute or the first incident's opening."""
        def compute() -> datetime | None:
            row = self.db.rows("SELECT least((SELECT min(minute) FROM events_minute), "
                               "(SELECT min(opened_at) FROM incidents_current))")[0]
            return _ts(row[0])

        return self._cached("data_start", ("events", "incident_updates"), compute)

    # --- events: raw -----------------------------------------------------------------------
    def incident_window(self, services: Sequence[str], start: datetime, end: datetime,
                        bucket_seconds: int = 60) -> pd.DataFrame:
        """Per bucket and service: events, error rate, latency p50/p95 (raw events, few partitions)."""
        columns = ["bucket", "service", "events", "errors", "error_rate", "errors_5xx", "latency_p50_ms",
                   "latency_p95_ms"]
        key = ("window", tuple(services), start, end, bucket_seconds)
        return self._cached(key, ("events",), lambda: self._raw_df(start, end, columns, lambda raw_events: f"""
            SELECT time_bucket(INTERVAL '{int(bucket_seconds)} seconds', event_time) AS bucket, service,
                   count(*) AS events, count_if(is_error) AS errors, count_if(is_error) / count(*) AS error_rate,
                   count_if(http_status >= 500) AS errors_5xx,
                   quantile_cont(latency_ms, 0.5) AS latency_p50_ms, quantile_cont(latency_ms, 0.95) AS latency_p95_ms
            FROM {raw_events}
            WHERE service IN (SELECT unnest($services)) AND event_time BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket""",
            {"services": list(services) or [""], "start": start, "end": end}))

    def sample_events(self, service: str, start: datetime, end: datetime, signature_ids: Sequence[str] = (),
                      per_signature: int = 3, limit: int = 30) -> pd.DataFrame:
        """Error events of a service in a window: a few per listed signature, then other errors."""
        columns = ["event_time", "service", "host", "level", "message", "signature_id", "signature",
                   "http_status", "latency_ms", "error_type", "trace_id", "event_id"]
        key = ("samples", service, start, end, tuple(signature_ids), per_signature, limit)
        return self._cached(key, ("events",), lambda: self._raw_df(start, end, columns, lambda raw_events: f"""
            WITH errors AS (
                SELECT {', '.join(columns)},
                       row_number() OVER (PARTITION BY signature_id ORDER BY event_time) AS nth,
                       array_position($sigs, signature_id) AS rank
                FROM {raw_events}
                WHERE service = $service AND event_time BETWEEN $start AND $end AND is_error)
            SELECT {', '.join(columns)} FROM errors WHERE nth <= $per
            ORDER BY rank NULLS LAST, event_time LIMIT {int(limit)}""",
            {"service": service, "start": start, "end": end,
             "sigs": list(signature_ids) or [""], "per": per_signature}))

    def surging_signatures(self, service: str, opened: datetime, end: datetime, before: timedelta,
                           exclude: Sequence[str] = (), limit: int = 8) -> pd.DataFrame:
        """Warning and error lines of a service whose share of its lines tripled once the incident opened.

        The detector ranks error lines only; warnings that surge (GC pauses, TLS handshake warnings on
        the server side, slow queries) often say more about the cause than the errors they lead to.
        """
        start = opened - before
        columns = ["signature_id", "signature", "sample", "level", "before", "during", "rate_before_per_min",
                   "rate_during_per_min"]
        before_min = max(before.total_seconds() / 60, 1.0)
        during_min = max((end - opened).total_seconds() / 60, 1.0)
        key = ("surging", service, opened, end, before, tuple(exclude), limit)
        # One pass over the service's lines: per signature, its warning/error lines before and since the
        # opening, and all its lines (summed over signatures: the service's totals).
        return self._cached(key, ("events",), lambda: self._raw_df(start, end, columns, lambda raw_events: f"""
            WITH lines AS (
                SELECT signature_id, any_value(signature) FILTER (WHERE flagged) AS signature,
                       any_value(message) FILTER (WHERE flagged) AS sample, max(level) FILTER (WHERE flagged) AS level,
                       count_if(flagged AND event_time < $opened) AS before,
                       count_if(flagged AND event_time >= $opened) AS during,
                       count_if(event_time < $opened) AS all_lines_before,
                       count_if(event_time >= $opened) AS all_lines_during
                FROM (SELECT signature_id, signature, message, level, event_time,
                             is_error OR upper(level) IN ('WARN', 'WARNING', 'ERROR', 'FATAL', 'CRITICAL') AS flagged
                      FROM {raw_events}
                      WHERE service = $service AND event_time BETWEEN $start AND $end)
                GROUP BY signature_id),
            scored AS (
                SELECT *, greatest(sum(all_lines_before) OVER (), 1) AS all_before,
                       greatest(sum(all_lines_during) OVER (), 1) AS all_during
                FROM lines)
            SELECT {', '.join(columns[:6])}, before / {before_min} AS rate_before_per_min,
                   during / {during_min} AS rate_during_per_min
            FROM scored
            WHERE during >= 3
              -- its share of the service's lines tripled: more traffic alone does not make a line surge
              AND during / all_during >= 3 * (before + 1) / all_before
              AND signature_id NOT IN (SELECT unnest($exclude))
            ORDER BY during DESC, signature_id LIMIT {int(limit)}""",
            {"service": service, "opened": opened, "start": start, "end": end,
             "exclude": list(exclude) or [""]}))

    def _raw_df(self, start: datetime, end: datetime, columns: list[str], query: Callable[[str], str],
                params: dict[str, Any]) -> pd.DataFrame:
        """``query(source)`` over the raw events of the mirrored version's files that can hold events of
        [start, end] (by hour partition and event_time range, both from the log); an empty frame of
        ``columns`` when there are none."""
        files = prune_by_time(self.events.files(), start, end)
        if not files:
            return pd.DataFrame(columns=columns)
        source = self.events.scan(files, RAW_EVENTS)
        return self.db.df(query(source.sql), {**params, **source.params}, source.sources)

    # --- pipeline --------------------------------------------------------------------------
    def metrics_series(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        where, params = NOT_COUNTER, {}
        if start is not None and end is not None:
            where, params = f"{NOT_COUNTER} AND timestamp BETWEEN $start AND $end", {"start": start, "end": end}
        return self._cached(("metrics", start, end), ("metrics",), lambda: self.db.df(f"""
            SELECT query_name, batch_id, timestamp, num_input_rows, input_rows_per_second,
                   processed_rows_per_second, batch_duration_ms, state_rows, state_memory_bytes, lag,
                   latest_offsets, end_offsets
            FROM metrics WHERE {where} ORDER BY timestamp""", params))

    def detection_counters(self) -> pd.DataFrame:
        """The detector's counters (metrics rows "counter:<name>", query_id "<environment>/<service>" or
        "<environment>"), summed: environment, service (None: the environment), counter, total, last_seen."""
        def compute() -> pd.DataFrame:
            frame = self.db.df(f"""
                SELECT split_part(query_id, '/', 1) AS environment,
                       nullif(substr(query_id, length(split_part(query_id, '/', 1)) + 2), '') AS service,
                       substr(query_name, {len(COUNTER_QUERY_PREFIX) + 1}) AS counter,
                       sum(num_input_rows)::BIGINT AS total, max(timestamp) AS last_seen
                FROM metrics WHERE NOT ({NOT_COUNTER}) GROUP BY ALL ORDER BY environment, service, counter""")
            return frame

        return self._cached("detection_counters", ("metrics",), compute)

    def services_seen(self) -> pd.DataFrame:
        """Every service in the events or the incidents: service, events, incidents, untiered (an incident
        row with a null tier: the detector did not find it in the catalog)."""
        def compute() -> pd.DataFrame:
            return self.db.df("""
                WITH e AS (SELECT service, sum(events)::BIGINT AS events FROM events_minute GROUP BY service),
                     i AS (SELECT service, count(*)::BIGINT AS incidents, bool_or(tier IS NULL) AS untiered
                           FROM incidents_current GROUP BY service)
                SELECT coalesce(e.service, i.service) AS service, coalesce(e.events, 0) AS events,
                       coalesce(i.incidents, 0) AS incidents, coalesce(i.untiered, FALSE) AS untiered
                FROM e FULL OUTER JOIN i ON e.service = i.service ORDER BY service""")

        return self._cached("services_seen", ("events", "incident_updates"), compute)

    def dead_letter_summary(self) -> pd.DataFrame:
        return self._cached("dl_summary", ("dead_letter",), lambda: self.db.df("""
            SELECT reason, count(*) AS records, max(detected_at) AS last_seen, any_value(detail) AS example
            FROM dead_letter GROUP BY reason ORDER BY records DESC"""))

    def dead_letter_over_time(self, bucket: str = "10 minutes") -> pd.DataFrame:
        return self._cached(("dl_time", bucket), ("dead_letter",), lambda: self.db.df(f"""
            SELECT time_bucket(INTERVAL '{bucket}', detected_at) AS bucket, reason, count(*) AS records
            FROM dead_letter GROUP BY ALL ORDER BY bucket"""))

    def dead_letters(self, limit: int = 200, reason: str | None = None) -> pd.DataFrame:
        where, params = ("reason = $reason", {"reason": reason}) if reason else ("TRUE", {})
        return self._cached(("dl", limit, reason), ("dead_letter",), lambda: self.db.df(f"""
            SELECT detected_at, reason, detail, topic, kafka_partition, kafka_offset, kafka_timestamp,
                   value_size, hex(raw_value) AS raw_prefix_hex
            FROM dead_letter WHERE {where} ORDER BY detected_at DESC LIMIT {int(limit)}""", params))


def _row_dict(row: pd.Series) -> dict[str, Any]:
    """A DataFrame row as plain Python values (timestamps as aware datetimes, arrays as lists)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value is pd.NA or value is pd.NaT:
            out[key] = None
        elif isinstance(value, pd.Timestamp):
            out[key] = _ts(value)
        elif hasattr(value, "tolist") and not isinstance(value, str):
            out[key] = value.tolist()
        elif value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
            out[key] = None
        else:
            out[key] = value
    return out


_REPOSITORIES: dict[tuple[str, tuple, float], Repository] = {}
_REPOSITORIES_LOCK = threading.Lock()


def get_repository(settings: Settings | None = None) -> Repository:
    """The process-wide repository of the configured tables (one per DATA_DIR, storage options and TTL)."""
    settings = settings or get_settings()
    store = TableStore.from_settings(settings)
    ttl = float(settings.dashboard_cache_ttl_seconds)
    key = (store.root, tuple(sorted(store.storage_options.items())), ttl)
    with _REPOSITORIES_LOCK:
        repo = _REPOSITORIES.get(key)
        if repo is None:
            repo = Repository(store, ttl)
            _REPOSITORIES[key] = repo
        return repo
