"""The log generator as the pipeline calls it: a scenario for a bounded duration, or a file replay."""

from __future__ import annotations

import dataclasses
from typing import Any

from incident_airflow.params import RunRequest
from incident_contracts.settings import Settings


class ProducerFailed(RuntimeError):
    """The generator could not deliver every event (usually the broker was unavailable)."""


def _as_dict(summary: Any) -> dict[str, Any]:
    if hasattr(summary, "to_dict"):
        data = summary.to_dict()
    elif dataclasses.is_dataclass(summary):
        data = dataclasses.asdict(summary)
    else:
        data = dict(summary)
    return {k: (str(v) if k.endswith("_path") and v is not None else v) for k, v in data.items()}


def run_generator(settings: Settings, request: RunRequest, key: str) -> dict[str, Any]:
    """Produce the run's events to Kafka; returns the generator's summary as a dict."""
    from log_generator import api

    if request.is_replay:
        summary = api.replay(request.replay_file, request.replay_format, rate=request.rate, run_id=key,
                             settings=settings)
    else:
        summary = api.run(scenario=request.scenario, rate=request.rate, duration=request.duration,
                          seed=request.seed, run_id=key, settings=settings)
    return _as_dict(summary)
