"""The transient Spark start failures the streaming job and the Airflow operator both retry."""

from __future__ import annotations

from incident_contracts.spark_start import TRANSIENT_START_ERRORS, transient_start_error

# Errors as Spark words them, in the job summary and in StreamingQuery.exception().
CONNECT_BACK = ("Python worker failed to connect back.\n=== Streaming Query ===\nIdentifier: ingest [id = 1]\n"
                "Current Committed Offsets: {}\n")
TIMED_OUT = "org.apache.spark.SparkException: Timed out while waiting for the Python worker to connect back"


def test_both_wordings_of_a_python_worker_that_did_not_connect_back_are_transient() -> None:
    assert transient_start_error(CONNECT_BACK) == "Python worker failed to connect back"
    assert transient_start_error(TIMED_OUT) == "Timed out while waiting for the Python worker"
    assert all(any(text in error for text in TRANSIENT_START_ERRORS) for error in (CONNECT_BACK, TIMED_OUT))


def test_other_failures_are_not_transient() -> None:
    for error in ("", "AnalysisException: [UNRESOLVED_COLUMN] bad", "Python worker exited unexpectedly (crashed)",
                  "FileNotFoundError: checkpoint metadata is corrupt"):
        assert transient_start_error(error) is None
