"""How `make demo` / `make trigger-dag` name the error a failed task died with."""

from __future__ import annotations

from incident_airflow.trigger import failure_line


def test_the_raised_exception_is_named_with_the_first_line_of_its_message():
    entries = [
        {"event": "Submitting the streaming job", "level": "info"},
        {"event": "Task failed with exception", "level": "error", "error_detail": [
            {"exc_type": "AirflowException", "exc_value": "the streaming job failed: DataLossError: offset 5 gone\n"
             "more detail", "frames": []},
            {"exc_type": "CalledProcessError", "exc_value": "exit 1", "frames": []}]},
        {"event": "Task instance in failure state", "level": "info"},
    ]
    assert failure_line(entries) == "AirflowException: the streaming job failed: DataLossError: offset 5 gone"


def test_without_an_exception_the_last_error_line_is_used_and_else_nothing():
    assert failure_line([{"event": "ok", "level": "info"}, {"event": "broker gone\ntrace", "level": "error"},
                         {"event": "done", "level": "info"}]) == "broker gone"
    assert failure_line([{"event": "all fine", "level": "info"}]) is None
    assert failure_line([]) is None
    assert failure_line([{"error_detail": [{"exc_type": "KeyError", "exc_value": ""}]}]) == "KeyError"
