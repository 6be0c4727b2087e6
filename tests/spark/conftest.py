"""Fixtures of the Spark tests: one local SparkSession shared by the whole test session."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts Spark says so: `make test-fast` leaves out the `spark` and `integration` marks."""
    unmarked = [item.nodeid for item in items if "spark" in getattr(item, "fixturenames", ())
                and not (item.get_closest_marker("spark") or item.get_closest_marker("integration"))]
    if unmarked:
        raise pytest.UsageError("these tests use the spark fixture without @pytest.mark.spark (or integration): "
                                + ", ".join(unmarked))


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real SparkSession (local[2], UI off, 2 shuffle partitions) with the Kafka source registered."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from incident_contracts.settings import Settings
    from incident_stream.session import build_session

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = build_session(Settings(_env_file=None, spark_shuffle_partitions=2, spark_driver_memory="1g"),  # type: ignore[call-arg]
                            master="local[2]", ui=False,
                            extra={"spark.sql.warehouse.dir": str(warehouse),
                                   "spark.sql.streaming.noDataProgressEventInterval": "1000"})
    session.sparkContext.setLogLevel("ERROR")
    # As in the job (cli.configure_logging): py4j logs at INFO once per call, and from __del__ at interpreter
    # exit, when a handler another library installed may write to a stream that is closed by then.
    from incident_stream.cli import LOGGER_LEVELS

    for name, level in LOGGER_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    from kafka_arrow_source import register

    register(session)  # the tests' kafka_arrow source (stream_helpers.source_reader)
    yield session
    session.stop()
