"""The training run of the class-data archive (incident_stream.class_data runs it as a child process).

    python -m incident_stream.class_data_training ARCHIVE

It starts a session with the streaming job's configuration, its JVM told to write the classes it loads into
ARCHIVE at exit, and runs the job's kinds of work in small: a Python data source read as a stream with
Trigger.AvailableNow, Arrow batches through Python workers, an event-time watermark, a
transformWithStateInPandas operator on RocksDB state with timers, and foreachBatch collecting Arrow. Then
it stops the session and waits for the JVM to exit, which is when the archive is written.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from incident_contracts.class_data import QUIET
from incident_contracts.settings import load_settings

JVM_EXIT_TIMEOUT_SECONDS = 300  # writing the archive takes a few seconds
TRAINING_BATCHES = 3
ROWS_PER_BATCH = 200
TRAINING_SCHEMA = StructType([StructField("environment", StringType()), StructField("event_time", TimestampType()),
                              StructField("value", LongType())])


class TrainingReader(DataSourceStreamReader):
    """TRAINING_BATCHES offsets of ROWS_PER_BATCH rows each, one partition per batch."""

    def initialOffset(self) -> dict:
        return {"batch": 0}

    def latestOffset(self) -> dict:
        return {"batch": TRAINING_BATCHES}

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        return [InputPartition(batch) for batch in range(start["batch"], end["batch"])]

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        from datetime import datetime, timedelta

        base = datetime(2026, 1, 1) + timedelta(seconds=10 * partition.value)
        for row in range(ROWS_PER_BATCH):
            yield (f"env-{row % 2}", base + timedelta(milliseconds=25 * row), row)

    def commit(self, end: dict) -> None:
        pass


class TrainingSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "class_data_training"

    def schema(self) -> StructType:
        return TRAINING_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return TrainingReader()


class CountingProcessor(StatefulProcessor):
    """Keeps a running count per key in a value state and registers an event-time timer."""

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.count = handle.getValueState("count", StructType([StructField("n", LongType())]))

    def handleInputRows(self, key, rows, timerValues) -> Iterator[pd.DataFrame]:
        total = (self.count.get() or (0,))[0] + sum(len(frame) for frame in rows)
        self.count.update((total,))
        self.handle.registerTimer(timerValues.getCurrentWatermarkInMs() + 60_000)
        yield pd.DataFrame({"environment": [key[0]], "rows": [total]})

    def handleExpiredTimer(self, key, timerValues, expiredTimerInfo) -> Iterator[pd.DataFrame]:
        yield pd.DataFrame({"environment": [key[0]], "rows": [-1]})

    def close(self) -> None:
        pass


def train(archive: Path) -> None:
    """Run the workload in a session whose JVM dumps its classes into `archive` at exit; wait for the dump."""
    from pyspark import SparkContext

    from incident_stream.session import build_session, spark_conf

    settings = load_settings(spark_class_data=False, spark_master="local[2]")
    driver = spark_conf(settings)["spark.driver.extraJavaOptions"]
    spark = build_session(settings, extra={"spark.ui.port": "0", "spark.driver.extraJavaOptions":
                                           f"{driver} -XX:ArchiveClassesAtExit={archive} {QUIET}"})
    spark.dataSource.register(TrainingSource)
    gateway = SparkContext._gateway
    with tempfile.TemporaryDirectory(prefix="class-data-") as checkpoint:
        frame = spark.range(2000).selectExpr("id", "cast(id % 7 as string) as key")
        frame.mapInArrow(lambda batches: batches, frame.schema).groupBy("key").count().toArrow()
        collected: list[int] = []
        stream = (spark.readStream.format(TrainingSource.name()).load()
                  .withWatermark("event_time", "10 seconds")
                  .groupBy("environment")
                  .transformWithStateInPandas(statefulProcessor=CountingProcessor(),
                                              outputStructType="environment string, rows long",
                                              outputMode="append", timeMode="EventTime"))
        query = (stream.writeStream.option("checkpointLocation", checkpoint)
                 .foreachBatch(lambda batch, _: collected.append(batch.toArrow().num_rows))
                 .trigger(availableNow=True).start())
        query.awaitTermination()
        if not collected:
            raise RuntimeError("the training query ran no micro-batch")
    spark.stop()
    # The JVM writes the archive as it exits, which it does when its standard input (the gateway's) closes.
    process = gateway.proc if gateway is not None else None
    if process is not None:
        process.stdin.close()
        process.wait(timeout=JVM_EXIT_TIMEOUT_SECONDS)


if __name__ == "__main__":
    train(Path(sys.argv[1]))
