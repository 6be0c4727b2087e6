"""The log generator as the pipeline calls it: a scenario for a bounded duration, or a file replay."""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

from incident_airflow.params import RunRequest, replay_path
from incident_contracts.settings import Settings

log = logging.getLogger(__name__)


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
    """Produce the run's events to Kafka; returns the generator's summary as a dict.

    The broker, topic and data folder come from `settings` (the pipeline's, so the generator writes
    where the rest of the run reads). The generator's run folder is the run's (runs.run_dir).
    """
    from incident_airflow.runs import runs_root
    from log_generator import api

    common = {"bootstrap_servers": settings.kafka_bootstrap_servers, "topic": settings.kafka_topic_logs,
              "data_dir": runs_root(settings), "run_id": key, "settings": settings, "progress": False}
    if request.is_replay:
        # Checked again where the file is opened: the folder's content may have changed since the run's
        # parameters were validated (a symlink swapped for one pointing out).
        path = replay_path(str(request.replay_file), settings.replay_folder)
        summary = api.replay(str(path), request.replay_format, rate=request.rate, **common)
    else:
        seed = request.seed if request.seed is not None else random.randrange(1_000_000)
        if request.seed is None:
            log.info("No seed given: using seed %d (pass it as `seed` to replay these events).", seed)
        summary = api.run(request.scenario, rate=request.event_rate, duration_s=request.event_seconds,
                          speedup=request.speedup, seed=seed, **common)
    return _as_dict(summary)
