"""The SparkSession of the streaming job, configured from the settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from incident_contracts.class_data import spark_java_conf
from incident_contracts.settings import Settings
from incident_stream.logs_source import LogsSource

# Spark's own metrics in Prometheus' text format, served by the driver UI (docs/operations.md "Metrics"):
# the metrics system's PrometheusServlet sink at /metrics/prometheus (driver and streaming-query gauges
# under one stable namespace, the application name, not the per-run application id) and the executors'
# summary at /metrics/executors/prometheus.
PROMETHEUS_SERVLET_PATH = "/metrics/prometheus"
EXECUTORS_PROMETHEUS_PATH = "/metrics/executors/prometheus"
PROMETHEUS_CONF = {
    "spark.ui.prometheus.enabled": "true",
    "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
    "spark.metrics.conf.*.sink.prometheusServlet.path": PROMETHEUS_SERVLET_PATH,
    "spark.metrics.namespace": "${spark.app.name}",
    "spark.sql.streaming.metricsEnabled": "true",
}


CHECKPOINT_FILE_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
LOG4J2_FILE = Path(__file__).with_name("log4j2.properties")  # the driver's log configuration


def spark_conf(settings: Settings, *, master: str | None = None, ui: bool = True) -> dict[str, str]:
    """Spark configuration of the job (also what `spark-submit --conf` could pass)."""
    return {
        "spark.master": master or settings.spark_master,
        "spark.app.name": "incident-stream",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": "true" if ui else "false",
        "spark.ui.port": str(settings.spark_ui_port),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # The FileContext-based default resolves links with a `readlink` process per checkpoint file (Hadoop
        # without its native library); the FileSystem-based manager renames the same way without them.
        "spark.sql.streaming.checkpointFileManagerClass": CHECKPOINT_FILE_MANAGER,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Adaptive execution does not apply to streaming (left on, Spark warns at each query's analysis);
        # plan strings name every column of the wide event schema (Spark truncates them with a warning).
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.debug.maxToStringFields": "200",
        "spark.python.worker.reuse": "true",
        "spark.python.daemon.module": "incident_stream.worker_daemon",
        **spark_java_conf(settings, f"-XX:+UseG1GC -Dlog4j2.configurationFile={LOG4J2_FILE}"),
        **PROMETHEUS_CONF,
    }


def python_environment() -> None:
    """Workers must run this interpreter (the one with the project installed)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def build_session(settings: Settings, *, master: str | None = None, ui: bool = True,
                  extra: dict[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the session and register the job's source on it."""
    python_environment()
    builder = SparkSession.builder
    for key, value in {**spark_conf(settings, master=master, ui=ui), **(extra or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    quiet_spark_loggers(spark)
    spark.dataSource.register(LogsSource)
    return spark


# Spark's loggers whose warnings say nothing an operator can act on in this job, every micro-batch or query
# start: the TWS state server's "no more data to read from the socket" when the detector's task ends, and
# "current batch is falling behind" (the job's own progress line says how long each batch took).
QUIET_LOGGERS = (
    "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer",
    "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor",
)


def quiet_spark_loggers(spark: SparkSession) -> None:
    """Raise QUIET_LOGGERS to ERROR in the driver's log4j (whoever started the JVM: pyspark or spark-submit)."""
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    for name in QUIET_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)


def ui_url(spark: SparkSession) -> str | None:
    return spark.sparkContext.uiWebUrl
