"""Splitting the decoded stream: events go on to enrichment, rejected records to the dead_letter table.

``dead_letters`` is the definition on Spark frames of the Kafka source's ``logevent`` columns;
``dead_letter_batch`` the same on Arrow, where the tasks of the job's source write the table
(logs_source.py, ingest_files.py). A test checks both give the same rows.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from incident_contracts.tables import DEAD_LETTER
from incident_stream.enrich_arrow import iso_date


def rejected() -> Column:
    """True for source rows that are not events (they carry a reject reason)."""
    return F.col("reject_reason").isNotNull()


def events_of(decoded: DataFrame) -> DataFrame:
    return decoded.where(F.col("reject_reason").isNull())


def dead_letters(decoded: DataFrame) -> DataFrame:
    """Rejected rows with exactly the DEAD_LETTER columns.

    ``dl_date`` is the date of the record's Kafka timestamp (the time of detection when it has none), so a
    replayed micro-batch writes its dead letters to the same partition as the first attempt did.
    """
    detected = F.current_timestamp()
    return (decoded.where(rejected())
            .select(
                F.col("topic"),
                F.col("kafka_partition"),
                F.col("kafka_offset"),
                F.col("kafka_timestamp"),
                F.col("key"),
                F.col("raw_value"),
                F.col("value_size"),
                F.col("reject_reason").alias("reason"),
                F.col("reject_detail").alias("detail"),
                detected.alias("detected_at"),
                F.date_format(F.coalesce(F.col("kafka_timestamp"), detected), "yyyy-MM-dd").alias("dl_date"),
            )
            .select(*DEAD_LETTER.names))


def dead_letter_batch(rejects: pa.RecordBatch, detected_us: int | None = None) -> pa.RecordBatch:
    """A logevent batch of rejected records -> the DEAD_LETTER columns (detected_at: now, or `detected_us`)."""
    n = rejects.num_rows
    stamp = pa.timestamp("us", tz="UTC")
    detected_us = time.time_ns() // 1000 if detected_us is None else detected_us
    detected = pa.array([detected_us] * n, pa.int64()).cast(stamp)
    kafka_time = rejects.column("kafka_timestamp").cast(stamp)
    columns = {
        "topic": rejects.column("topic"),
        "kafka_partition": rejects.column("kafka_partition"),
        "kafka_offset": rejects.column("kafka_offset"),
        "kafka_timestamp": kafka_time,
        "key": rejects.column("key"),
        "raw_value": rejects.column("raw_value"),
        "value_size": rejects.column("value_size"),
        "reason": rejects.column("reject_reason"),
        "detail": rejects.column("reject_detail"),
        "detected_at": detected,
        "dl_date": iso_date(pc.coalesce(kafka_time, detected)),
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in DEAD_LETTER.names], names=DEAD_LETTER.names)
