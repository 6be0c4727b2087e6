"""Failures of a Spark start that pass on their own, and are retried instead of failing a run.

Spark gives a new Python worker (a Python source process of the streaming job) 10 seconds, fixed, to
connect back to the JVM; a busy 2-core machine can miss that. The failure says nothing about the data:
the streaming job restarts the query (incident_stream.job) and the Airflow operator submits the job
again, which resumes from its checkpoint (incident_airflow.spark_job). Both match these texts anywhere
in the error message.
"""

from __future__ import annotations

TRANSIENT_START_ERRORS = (
    "Python worker failed to connect back",
    "Timed out while waiting for the Python worker",  # "... to connect back"
)


def transient_start_error(message: str) -> str | None:
    """The text of :data:`TRANSIENT_START_ERRORS` found in ``message``, or None."""
    return next((text for text in TRANSIENT_START_ERRORS if text in message), None)
