"""Ground truth of a run: which incidents were injected, where and when, so detection can be scored.

Written as ``ground_truth.json`` in the run folder (``DATA_DIR/runs/<run_id>/``)::

    {"run_id", "seed", "scenario", "rate", "start_ms", "end_ms",
     "incidents": [{"id", "scenario", "root_cause_category", "origin_service", "affected_services",
                    "start_ms", "end_ms", "expect_incident"}]}

``start_ms``/``end_ms`` of an incident span its ramp, plateau and recovery; ``phases`` gives the
boundaries inside that span. ``expect_incident`` is false for the noisy-but-harmless flapping
service: a detector that opens an incident for it has produced a false positive.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from incident_contracts.failures import FailureFamily

MANIFEST_NAME = "ground_truth.json"
SUMMARY_NAME = "summary.json"

# Root-cause categories a scenario is filed under (what an analysis should conclude): the failure
# families' (incident_contracts.failures), and flapping (noisy but harmless; not an incident).
ROOT_CAUSE_CATEGORIES = (*(family.category for family in FailureFamily), "flapping")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class GroundTruthError(ValueError):
    """A manifest file is missing or not in the expected shape."""


@dataclass
class Phases:
    """Boundaries (ms since epoch) inside an incident: ramp from start_ms to plateau_ms, plateau until
    recovery_ms, recovery until end_ms."""

    plateau_ms: int
    recovery_ms: int


@dataclass
class IncidentTruth:
    id: str
    scenario: str
    root_cause_category: str
    origin_service: str
    affected_services: list[str]
    start_ms: int
    end_ms: int
    expect_incident: bool = True
    phases: Phases | None = None
    origin_hosts: list[str] = field(default_factory=list)
    description: str = ""

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.start_ms < end_ms and start_ms < self.end_ms

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.phases is None:
            data.pop("phases")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentTruth:
        data = dict(data)
        phases = data.pop("phases", None)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        for key in unknown:  # forward compatible: ignore fields a newer writer added
            data.pop(key)
        return cls(**data, phases=Phases(**phases) if phases else None)


@dataclass
class GroundTruth:
    run_id: str
    seed: int
    scenario: str
    rate: float
    start_ms: int
    end_ms: int | None
    incidents: list[IncidentTruth] = field(default_factory=list)
    catalog_file: str = ""

    @property
    def expected(self) -> list[IncidentTruth]:
        """Incidents a detector should open (the flapping service excluded)."""
        return [i for i in self.incidents if i.expect_incident]

    def active_at(self, ts_ms: int) -> list[IncidentTruth]:
        return [i for i in self.incidents if i.start_ms <= ts_ms < i.end_ms]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "scenario": self.scenario,
            "rate": self.rate,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "catalog_file": self.catalog_file,
            "incidents": [i.to_dict() for i in self.incidents],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        try:
            return cls(
                run_id=str(data["run_id"]),
                seed=int(data["seed"]),
                scenario=str(data["scenario"]),
                rate=float(data["rate"]),
                start_ms=int(data["start_ms"]),
                end_ms=None if data.get("end_ms") is None else int(data["end_ms"]),
                catalog_file=str(data.get("catalog_file", "")),
                incidents=[IncidentTruth.from_dict(i) for i in data.get("incidents", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GroundTruthError(f"ground-truth manifest is not in the expected shape: {exc!r}") from None


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-128 letters, digits, '.', '_' or '-' "
                         "(it names a folder)")
    return run_id


def runs_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "runs"


def run_dir(data_dir: str | Path, run_id: str) -> Path:
    """The folder of one run: DATA_DIR/runs/<run_id>/."""
    return runs_dir(data_dir) / check_run_id(run_id)


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_ground_truth(truth: GroundTruth, folder: str | Path) -> Path:
    """Write ground_truth.json into `folder` (created if missing); returns the file path."""
    return _write_json(Path(folder) / MANIFEST_NAME, truth.to_dict())


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read a manifest; `path` is the file or the run folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GroundTruthError(f"no ground-truth manifest at {path}; was the run started with this DATA_DIR?") \
            from None
    except json.JSONDecodeError as exc:
        raise GroundTruthError(f"ground-truth manifest {path} is not valid JSON: {exc}") from None
    return GroundTruth.from_dict(data)


def save_summary(summary: dict[str, Any], folder: str | Path) -> Path:
    return _write_json(Path(folder) / SUMMARY_NAME, summary)


def load_summary(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GroundTruthError(f"no run summary at {path}") from None
    except json.JSONDecodeError as exc:
        raise GroundTruthError(f"run summary {path} is not valid JSON: {exc}") from None


def list_runs(data_dir: str | Path) -> list[Path]:
    """Run folders under DATA_DIR/runs holding a manifest, oldest first."""
    root = runs_dir(data_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / MANIFEST_NAME).is_file()]
    return sorted(found, key=lambda p: (p / MANIFEST_NAME).stat().st_mtime)
