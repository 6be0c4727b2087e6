"""Parameters of a pipeline run: the Airflow Params (validated at trigger time) and their checked form.

Airflow validates each Param against its JSON schema when a run is triggered, so a wrong type or
an out-of-range number is refused before the run starts. What a schema cannot express (a scenario
name that must exist, a replay file that must be readable, scenario and replay being exclusive) is
checked by :func:`parse_run_request`, which the first task calls; its errors are final (no retry).

Whoever may trigger a run chooses `replay_file`, and the generator publishes that file's lines as events
anyone with the dashboard can read. So the file must lie inside the replay folder (REPLAY_DIR): the path
is resolved (symlinks and `..` included) before it is compared, and checked again when the file is opened.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from incident_contracts.settings import load_settings

DEFAULT_SCENARIO = "mixed"
DEFAULT_RATE = 200
DEFAULT_DURATION = 30
DEFAULT_SPEEDUP = 10.0
MAX_RATE = 200_000
MAX_DURATION = 3600
MAX_SPEEDUP = 1000.0
DEFAULT_REPLAY_FORMAT = "generic"


class BadParams(ValueError):
    """The run's parameters cannot work; retrying the same run will not help."""


def scenario_names() -> list[str]:
    """Scenarios the log generator knows, then its modes (`mixed`, `none`): the trigger form's choices."""
    from log_generator.scenarios import MODES, SCENARIOS

    return [*MODES, *sorted(SCENARIOS)]


def replay_formats() -> list[str]:
    """Log formats the generator's replay reads (`generic`, `access`, `syslog`, `jsonl`)."""
    from log_generator.replay import FORMAT_NAMES

    return list(FORMAT_NAMES)


def dag_params() -> dict[str, Any]:
    """The DAG's Params: defaults, types and limits shown in the Airflow trigger form."""
    from airflow.sdk import Param

    return {
        "scenario": Param(DEFAULT_SCENARIO, type="string", enum=scenario_names(),
                          title="Scenario", description="Synthetic incident scenario the log generator plays."),
        "rate": Param(DEFAULT_RATE, type="integer", minimum=1, maximum=MAX_RATE,
                      title="Rate", description="Events per second produced to Kafka (wall clock)."),
        "duration": Param(DEFAULT_DURATION, type="integer", minimum=1, maximum=MAX_DURATION,
                          title="Duration", description="Seconds the generator produces for (wall clock)."),
        "speedup": Param(DEFAULT_SPEEDUP, type="number", exclusiveMinimum=0, maximum=MAX_SPEEDUP,
                         title="Speed-up",
                         description="Event-time seconds per wall-clock second: at 10, a 30 s run plays 5 "
                                     "minutes of the scenario (the detector needs a minute of history per "
                                     "service before it pages). 1 = real time."),
        "seed": Param(None, type=["null", "integer"], minimum=0,
                      title="Seed", description="Random seed; the same seed replays the same events."),
        "replay_file": Param(None, type=["null", "string"],
                             title="Replay file",
                             description="A real log file to replay instead of a scenario: its path inside the "
                                         "replay folder (REPLAY_DIR), relative to that folder."),
        "replay_format": Param(DEFAULT_REPLAY_FORMAT, type="string", enum=replay_formats(),
                               title="Replay format", description="Format of the replay file."),
    }


@dataclass(frozen=True)
class RunRequest:
    """What one pipeline run produces: a scenario for `duration` seconds, or a replay of a file."""

    scenario: str
    rate: int
    duration: int
    seed: int | None
    speedup: float = DEFAULT_SPEEDUP
    replay_file: str | None = None
    replay_format: str = DEFAULT_REPLAY_FORMAT

    @property
    def is_replay(self) -> bool:
        return self.replay_file is not None

    def describe(self) -> str:
        if self.is_replay:
            return f"replay of {self.replay_file} ({self.replay_format} format) at up to {self.rate} events/s"
        seed = "random seed" if self.seed is None else f"seed {self.seed}"
        played = f"; {self.duration * self.speedup:g}s of event time" if self.speedup != 1 else ""
        return f"scenario {self.scenario!r} at {self.rate} events/s for {self.duration}s ({seed}{played})"

    @property
    def event_rate(self) -> float:
        """Events per second of event time, what the generator paces by."""
        return self.rate / self.speedup

    @property
    def event_seconds(self) -> float:
        """Seconds of event time the scenario covers."""
        return self.duration * self.speedup

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_int(params: dict[str, Any], name: str, low: int, high: int | None) -> int:
    """A whole number within limits; also accepts "42" and 42.0 (what a form or a CLI may send)."""
    value = params.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        number = int(value.strip())
    else:
        raise BadParams(f"param {name}={value!r}: expected a whole number")
    if number < low or (high is not None and number > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadParams(f"param {name}={number}: must be {limit}")
    return number


def _as_speedup(value: Any) -> float:
    if value in (None, ""):
        return DEFAULT_SPEEDUP
    try:
        speedup = float(value)
    except (TypeError, ValueError):
        raise BadParams(f"param speedup={value!r}: expected a number") from None
    if isinstance(value, bool) or not 0 < speedup <= MAX_SPEEDUP:
        raise BadParams(f"param speedup={value!r}: must be above 0 and at most {MAX_SPEEDUP:g}")
    return speedup


def replay_path(value: str, folder: Path) -> Path:
    """The file `value` names inside `folder` (a path relative to it, or an absolute one), with symlinks
    resolved; raise BadParams when it leads out of the folder or is not a regular file."""
    try:
        root = folder.resolve()
        given = Path(value)
        path = (given if given.is_absolute() else root / given).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise BadParams(f"param replay_file={value!r}: not a usable path ({exc})") from None
    if not path.is_relative_to(root):
        # Said before anything about the file itself: the answer must not tell whether it exists.
        raise BadParams(f"param replay_file={value!r}: leads outside the replay folder {root} (REPLAY_DIR). Copy "
                        "the log file into that folder and give its name relative to it; paths out of it (.., "
                        "absolute paths elsewhere, symlinks pointing out) are refused.")
    if not root.is_dir():
        raise BadParams(f"param replay_file={value!r}: the replay folder {root} does not exist. Create it (or set "
                        "REPLAY_DIR to the folder holding your log files) and put the file there.")
    if not path.is_file():
        raise BadParams(f"param replay_file={value!r}: no such file in the replay folder ({path}). Give the path "
                        f"of a log file relative to {root} (REPLAY_DIR).")
    return path


def parse_run_request(params: dict[str, Any], known_scenarios: list[str] | None = None,
                      replay_folder: Path | None = None) -> RunRequest:
    """Check a run's params and return them typed; raise BadParams naming the param and the fix.

    `replay_folder` defaults to the settings' REPLAY_DIR."""
    replay = params.get("replay_file")
    replay = str(replay).strip() if replay not in (None, "") else None
    replay_format = str(params.get("replay_format") or DEFAULT_REPLAY_FORMAT)
    if replay_format not in replay_formats():
        raise BadParams(f"param replay_format={replay_format!r}: expected one of {', '.join(replay_formats())}")
    scenario = str(params.get("scenario") or DEFAULT_SCENARIO)
    rate = _as_int(params, "rate", 1, MAX_RATE)
    duration = _as_int(params, "duration", 1, MAX_DURATION)
    speedup = _as_speedup(params.get("speedup", DEFAULT_SPEEDUP))
    seed_value = params.get("seed")
    seed = None if seed_value in (None, "") else _as_int(params, "seed", 0, None)
    if replay is not None:
        folder = replay_folder if replay_folder is not None else load_settings().replay_folder
        path = replay_path(replay, folder)
        return RunRequest(scenario=scenario, rate=rate, duration=duration, seed=seed, speedup=speedup,
                          replay_file=str(path), replay_format=replay_format)
    known = known_scenarios if known_scenarios is not None else scenario_names()
    if scenario not in known:
        raise BadParams(f"param scenario={scenario!r}: unknown scenario; choose one of {', '.join(known)}")
    return RunRequest(scenario=scenario, rate=rate, duration=duration, seed=seed, speedup=speedup)
