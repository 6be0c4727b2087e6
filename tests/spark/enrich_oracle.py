"""A second implementation of the job's enrichment, in Spark SQL built-ins only: the oracle the job's Arrow
enrichment (incident_stream.enrich_arrow), the detector's view (detection/view.py) and the offline
detector's (detection/offline.py) are checked against, row for row. :func:`prepare` and :func:`detect` take
the same path to the detector: its input per event in Spark, then the job's partial buckets and
``detect_partials``. It shares only the definitions (incident_stream.message_fields: level names and the
message patterns, run here as JVM regular expressions; incident_contracts.signature: the masks).

``enrich(decoded, catalog)`` takes the columns of the Kafka source in ``logevent`` format (see
kafka_source.py) and returns exactly the columns of ``incident_contracts.tables.EVENTS``, in order:

* level normalised to TRACE/DEBUG/INFO/WARN/ERROR/FATAL (synonyms such as WARNING, CRITICAL, SEVERE
  mapped), ``is_error`` = ERROR/FATAL or an HTTP status of 500 or more;
* HTTP method (upper case), path (without query string), status and latency: taken from the event's
  fields, or parsed from the message when the producer left them empty (``GET /orders 503 in 81ms``);
* the error signature and its id: taken from the frame's ``signature``/``signature_id`` columns where
  they are set, else computed with Spark built-ins (:func:`with_signature`, :func:`mask_column`);
* the service's tier and owner from the service catalog;
* ``event_date``/``event_hour`` (UTC) for partitioning; ``ingest_time`` = the frame's ``read_time``, or the
  time of the micro-batch for frames without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from incident_contracts.catalog import Catalog
from incident_contracts.settings import Settings
from incident_contracts.signature import MASKS, MAX_SIGNATURE_CHARS, Mask
from incident_contracts.tables import EVENTS
from incident_stream.detection.params import DetectionParams
from incident_stream.detection.partials import PARTIALS_SCHEMA, PartialBuckets
from incident_stream.detection.stream import detect_partials, params_from_settings
from incident_stream.message_fields import LATENCY_PATTERN, LEVEL_SYNONYMS, LEVELS, REQUEST_PATTERN, STATUS_PATTERN


def normalise_level(level: Column) -> Column:
    upper = F.upper(F.trim(level))
    mapped = F.coalesce(F.element_at(F.create_map(*[F.lit(x) for kv in LEVEL_SYNONYMS.items() for x in kv]),
                                     upper), upper)
    return F.when(mapped.isin(*LEVELS), mapped).otherwise(F.lit("INFO"))


def _extract(message: Column, pattern: str, group: int) -> Column:
    found = F.regexp_extract(message, pattern, group)
    return F.when(found != "", found)


def _request(group: int) -> Column:
    """A group of the request line in the message; the regex only runs on messages with a " /" in them
    (a request line has one), as most messages have none and a JVM regex costs microseconds per row."""
    message = F.col("message")
    return F.when(message.contains(" /"), _extract(message, REQUEST_PATTERN, group))


def http_method(df: DataFrame) -> Column:
    return F.upper(F.coalesce(F.col("http_method"), _request(1)))


def http_path(df: DataFrame) -> Column:
    path = F.coalesce(F.col("http_path"), _request(2))
    return F.when(path.contains("?"), F.substring_index(path, "?", 1)).otherwise(path)


def http_status(df: DataFrame) -> Column:
    lower = F.lower(F.col("message"))
    status = F.when(lower.contains("status") | lower.contains("code"), _extract(F.col("message"), STATUS_PATTERN, 1))
    return F.coalesce(F.col("http_status"), F.coalesce(_request(3), status).cast("int"))


def latency_ms(df: DataFrame) -> Column:
    value = _extract(F.col("message"), LATENCY_PATTERN, 1).cast("double")
    unit = F.lower(_extract(F.col("message"), LATENCY_PATTERN, 2))
    factor = (F.when(unit.isin("s", "sec"), F.lit(1000.0)).when(unit.isin("us", "µs"), F.lit(0.001))
              .otherwise(F.lit(1.0)))
    return F.coalesce(F.col("latency_ms"), value * factor)


def ingest_time(df: DataFrame) -> Column:
    """The source's read_time (set on every row it yields); current_timestamp() for other frames.

    current_timestamp() is folded into a constant that Spark writes into the generated code, so each
    micro-batch would compile (and warm up) new code for the whole enrichment; a column does not."""
    return F.col("read_time") if "read_time" in df.columns else F.current_timestamp()


def catalog_lookup(catalog: Catalog, service: Column) -> tuple[Column, Column]:
    """(tier, owner) of a service from the catalog; null for services the catalog does not list."""
    if not catalog.services:
        return F.lit(None).cast("string"), F.lit(None).cast("string")
    tiers = F.create_map(*[F.lit(x) for s in catalog.services for x in (s.name, str(s.tier))])
    owners = F.create_map(*[F.lit(x) for s in catalog.services for x in (s.name, s.owner)])
    return F.element_at(tiers, service), F.element_at(owners, service)


def enrich(decoded: DataFrame, catalog: Catalog, keep: Sequence[str] = ()) -> DataFrame:
    """Decoded events -> rows with exactly the EVENTS columns (see the module docstring), followed by the
    input columns named in `keep` (the reject columns, say, to split one enriched frame into events and
    dead letters)."""
    service = F.trim(F.col("service"))
    level = normalise_level(F.col("level"))
    status = http_status(decoded)
    tier, owner = catalog_lookup(catalog, service)
    # Frames with signatures (as the Kafka source's): Spark's masks only run for rows without one, inside a
    # coalesce. Other frames get them from Spark.
    computed = "signature" in decoded.columns and "signature_id" in decoded.columns
    signature = [F.coalesce(F.col("signature"), mask_column(F.col("message"))).alias("signature"),
                 F.col("signature_id").alias("_signature_id")] if computed else []
    staged = decoded.select(
        F.col("event_id"),
        F.col("timestamp").alias("event_time"),
        ingest_time(decoded).alias("ingest_time"),
        service.alias("service"),
        F.trim(F.col("environment")).alias("environment"),
        F.col("host"),
        level.alias("level"),
        F.col("logger"),
        F.col("message"),
        F.col("trace_id"),
        F.col("span_id"),
        http_method(decoded).alias("http_method"),
        http_path(decoded).alias("http_path"),
        status.alias("http_status"),
        latency_ms(decoded).alias("latency_ms"),
        F.col("error_type"),
        tier.alias("tier"),
        owner.alias("owner"),
        F.col("attributes"),
        F.col("topic"),
        F.col("kafka_partition"),
        F.col("kafka_offset"),
        *signature,
        *[F.col(name) for name in keep],
    )
    signature_id = signature_id_column(F.col("signature"))
    if computed:
        signature_id = F.coalesce(F.col("_signature_id"), signature_id)
    else:
        staged = with_signature(staged, "message", "signature")
    derived = {
        "is_error": F.col("level").isin("ERROR", "FATAL") | F.coalesce(F.col("http_status") >= 500, F.lit(False)),
        "signature_id": signature_id,
        "event_date": F.date_format(F.col("event_time"), "yyyy-MM-dd"),
        "event_hour": F.hour(F.col("event_time")).cast("int"),
    }
    # Few DataFrame operations: each one costs an analysis of the whole plan on the driver.
    return staged.select(*[derived[name].alias(name) if name in derived else F.col(name) for name in EVENTS.names],
                         *[F.col(name) for name in keep])


# --- signatures with Spark built-ins -------------------------------------------------------------

def _java_mask(text: Column, mask: Mask) -> Column:
    pattern, replacement = F.lit(mask.regex("java")), F.lit(mask.java_replacement())
    for _ in range(mask.passes):
        text = F.regexp_replace(text, pattern, replacement)
    return text


def mask_column(message: Column) -> Column:
    """The signature of a message column, with Spark built-in functions only."""
    text = F.coalesce(message, F.lit(""))
    for mask in MASKS:
        text = _java_mask(text, mask)
    return F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)


def with_signature(df: DataFrame, message: str, signature: str, computed: str | None = None) -> DataFrame:
    """`df` with a column `signature` = :func:`mask_column` of column `message`, computed the fast way.

    `computed`: a column that already holds the signature for some rows (the source's); the masks then
    only run where it is null.
    """
    work = f"__{signature}_masked"
    start = F.coalesce(F.col(message), F.lit(""))
    if computed is not None:
        start = F.when(F.col(computed).isNull(), start)  # null text: every mask below skips the row
    df = df.withColumn(work, start)
    text = F.col(work)
    for mask in MASKS:
        masked = _java_mask(text, mask)
        if mask.needs is not None:
            needed = text.contains(mask.needs[0])
            for literal in mask.needs[1:]:
                needed = needed | text.contains(literal)
            masked = F.when(needed, masked).otherwise(text)
        # One projection per mask, so that the text is computed once however often a mask refers to it.
        df = df.withColumn(work, masked)
    result = F.substring(F.trim(text), 1, MAX_SIGNATURE_CHARS)
    if computed is not None:
        result = F.coalesce(F.col(computed), result)
    return df.withColumn(signature, result).drop(work)


def signature_id_column(signature: Column) -> Column:
    return F.substring(F.md5(signature), 1, 16)


# --- the detector's input and detection from enriched events ---------------------------------------

REQUIRED_COLUMNS = ("event_time", "service", "environment", "host", "level", "is_error", "latency_ms",
                    "message", "signature", "signature_id", "tier", "owner")


def prepare(events: DataFrame, params: DetectionParams) -> DataFrame:
    """The columns the detector reads, per event (built-in expressions only): environment, event_time and
    buckets.INPUT_COLUMNS. Events without a time, service or environment are left out."""
    return events.select(
        F.col("environment").cast("string").alias("environment"),
        F.col("event_time"),
        F.unix_millis(F.col("event_time")).alias("t_ms"),
        F.col("service").cast("string").alias("service"),
        F.coalesce(F.col("host").cast("string"), F.lit("unknown")).alias("host"),
        F.coalesce(F.col("is_error").cast("boolean"), F.lit(False)).alias("is_error"),
        F.coalesce(F.upper(F.col("level")) == F.lit("WARN"), F.lit(False)).alias("is_warn"),
        F.col("latency_ms").cast("double").alias("latency_ms"),
        F.coalesce(F.col("signature").cast("string"), F.lit("")).alias("signature"),
        F.coalesce(F.col("signature_id").cast("string"), F.lit("")).alias("signature_id"),
        F.substring(F.col("message").cast("string"), 1, params.message_max_chars).alias("message"),
        F.col("tier").cast("string").alias("tier"),
        F.col("owner").cast("string").alias("owner"),
    ).where(F.col("event_time").isNotNull() & F.col("service").isNotNull() & F.col("environment").isNotNull())


def partial_buckets(bucket_ms: int, slowest_kept: int) -> Callable[[Iterator[pa.RecordBatch]],
                                                                    Iterator[pa.RecordBatch]]:
    """The mapInArrow function: a task's events (the detector's input columns, :func:`prepare`) in, its
    partial buckets (PARTIALS_SCHEMA) out, as the job source's tasks compute them (logs_source.py)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        buckets = PartialBuckets(bucket_ms, slowest_kept)
        for batch in batches:
            buckets.add(batch)
        result = buckets.batch()
        if result is not None:
            yield result

    return run


def detect(events: DataFrame, catalog: Catalog, settings: Settings,
           params: DetectionParams | None = None) -> DataFrame:
    """Incident lifecycle rows (opened / updated / resolved) for a stream (or batch) of events.

    `events` has the columns of incident_contracts.tables.EVENTS (at least REQUIRED_COLUMNS). The
    result has exactly the columns of INCIDENT_UPDATES and is meant for append output mode.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"detect() needs the events columns {missing}, which the input lacks; pass the "
                         "decoded and enriched events stream (columns of incident_contracts.tables.EVENTS)")
    params = params or params_from_settings(settings)
    partials = prepare(events, params).mapInArrow(partial_buckets(params.bucket_ms, params.slowest_kept),
                                                  PARTIALS_SCHEMA)
    return detect_partials(partials, catalog, params)
