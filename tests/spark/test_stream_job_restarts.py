"""StreamJob.wait with queries that stand in for Spark's: a query that could not start its Python source
process is started again (up to MAX_QUERY_RESTARTS), any other failure ends the run with its error."""

from __future__ import annotations

from pathlib import Path

from incident_contracts.settings import Settings
from incident_stream.job import MAX_QUERY_RESTARTS, JobOptions, StreamJob

TRANSIENT = "Python worker failed to connect back.\n=== Streaming Query ===\nIdentifier: logs [id = 1]\n"


class StandInQuery:
    """Fails with `error` at once, or runs for `polls` looks at it and then finishes."""

    name = "logs"

    def __init__(self, error: str | None = None, polls: int = 2) -> None:
        self.error, self.polls = error, polls
        self.lastProgress = None
        self.status = {"isTriggerActive": False}

    def exception(self) -> str | None:
        return self.error

    @property
    def isActive(self) -> bool:
        if self.error is not None:
            return False
        self.polls -= 1
        return self.polls > 0


def job_with(tmp_path: Path, *queries: StandInQuery) -> StreamJob:
    job = StreamJob(None, Settings(_env_file=None), JobOptions(data_dir=tmp_path / "data",  # type: ignore[arg-type, call-arg]
                                                               checkpoint=tmp_path / "checkpoint", once=True))
    starts = iter(queries)
    job._build = lambda: next(starts)  # what start() sets: the query's builder
    job._launch()
    return job


def test_a_query_whose_python_source_did_not_connect_back_is_started_again_and_the_run_finishes(
        tmp_path: Path) -> None:
    job = job_with(tmp_path, StandInQuery(TRANSIENT), StandInQuery(polls=3))
    job.wait()
    assert job.error is None and job.stop_reason == "all data processed"
    assert len(job._started_queries) == 2 and job.query is job._started_queries[1]
    assert job.query.polls <= 0  # the run ended when the restarted query finished, not before


def test_restarts_are_bounded_and_the_last_error_is_the_runs(tmp_path: Path) -> None:
    job = job_with(tmp_path, *[StandInQuery(TRANSIENT) for _ in range(MAX_QUERY_RESTARTS + 1)])
    job.wait()
    assert len(job._started_queries) == MAX_QUERY_RESTARTS + 1
    assert job.stop_reason == "query logs failed" and job.error == TRANSIENT


def test_any_other_failure_ends_the_run_without_a_restart(tmp_path: Path) -> None:
    job = job_with(tmp_path, StandInQuery("StagingError: micro-batch 4 has no entry"), StandInQuery())
    job.wait()
    assert len(job._started_queries) == 1
    assert job.stop_reason == "query logs failed" and job.error.startswith("StagingError")
