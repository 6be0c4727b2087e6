"""Splitting the decoded stream: events go on to enrichment, rejected records to the dead_letter table."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from incident_contracts.tables import DEAD_LETTER


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
