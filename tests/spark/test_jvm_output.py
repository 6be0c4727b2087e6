"""The job's log: its own lines at INFO; what Spark's driver-side Python worker prints goes to DEBUG."""

from __future__ import annotations

import io
import logging

import pytest

from incident_stream.jvm_output import WORKER_BANNER, LineFilter, filter_jvm_stderr

# What pyspark's transform_with_state_driver_worker prints when the detection query starts (print() of
# strings that end in a newline of their own: each line is followed by a blank one).
WORKER_LINES = [
    f"Starting {WORKER_BANNER}.\n", "\n",
    f"{WORKER_BANNER} finish init stage of Python runner. Received UDF from JVM: <bound method ...>\n", "\n",
    f"{WORKER_BANNER} received parameters for UDF. State server port/path: 38853, key schema: ...\n", "\n",
]


def test_worker_banners_and_their_blank_lines_go_to_debug_other_lines_pass_unchanged() -> None:
    out: list[str] = []
    debug: list[str] = []
    line_filter = LineFilter(out.append, debug.append)
    for line in ["26/12/06 20:07:04 WARN MicroBatchExecution: Disabling AQE\n", *WORKER_LINES, "\n",
                 "Traceback (most recent call last):\n", "ValueError: boom"]:
        line_filter.feed(line)
    assert out == ["26/12/06 20:07:04 WARN MicroBatchExecution: Disabling AQE\n", "\n",
                   "Traceback (most recent call last):\n", "ValueError: boom\n"]
    assert [line.split(" ")[0] for line in debug] == ["Starting", "Streaming", "Streaming"]
    assert all(not line.endswith("\n") for line in debug)


def test_the_job_logs_its_own_lines_at_info_and_py4j_at_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_stream.cli import configure_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig only acts on a root logger without handlers
    monkeypatch.setattr(root, "level", root.level)
    for name in ("py4j", "py4j.clientserver", "incident_stream.spark"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    configure_logging()
    assert logging.getLogger("incident_stream").getEffectiveLevel() == logging.INFO
    # py4j logs a line per JVM call at INFO, and "Closing down clientserver connection" from __del__ at exit.
    assert not logging.getLogger("py4j.clientserver").isEnabledFor(logging.INFO)
    assert not logging.getLogger("incident_stream.spark").isEnabledFor(logging.DEBUG)
    root.handlers.clear()


@pytest.mark.integration
def test_the_jvms_standard_error_passes_through_the_filter(spark, caplog: pytest.LogCaptureFixture) -> None:
    """Lines written to the driver JVM's System.err (as Spark copies its Python workers' output there)."""
    out = io.StringIO()
    jvm = spark.sparkContext._jvm
    original = jvm.java.lang.System.err
    stderr_filter = filter_jvm_stderr(spark, out)
    assert stderr_filter is not None
    with caplog.at_level(logging.DEBUG, logger="incident_stream.spark"):
        err = jvm.java.lang.System.err
        err.println(f"Starting {WORKER_BANNER}.")
        err.println("")
        err.println("a line of the JVM")
        stderr_filter.close()
    assert out.getvalue() == "a line of the JVM\n"
    assert [r.getMessage() for r in caplog.records if r.name == "incident_stream.spark"] == [
        f"Starting {WORKER_BANNER}."]
    assert jvm.java.lang.System.err.equals(original)


@pytest.mark.spark
def test_sparks_per_batch_warnings_are_raised_to_error_in_the_drivers_log4j(spark) -> None:
    """Each of QUIET_LOGGERS has a logger configuration of its own at ERROR (not the root's level)."""
    from incident_stream.session import QUIET_LOGGERS

    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    loggers = log4j.LogManager.getContext(False).getConfiguration().getLoggers()
    for name in QUIET_LOGGERS:
        assert loggers.containsKey(name), name
        assert loggers.get(name).getLevel().toString() == "ERROR", name


@pytest.mark.spark
def test_the_driver_jvm_started_with_the_jobs_log_configuration(spark) -> None:
    from incident_stream.session import LOG4J2_FILE

    configured = spark.sparkContext._jvm.java.lang.System.getProperty("log4j2.configurationFile")
    assert configured == str(LOG4J2_FILE) and LOG4J2_FILE.is_file()
