"""Stored analyses and user feedback under ``DATA_DIR/analyses/``.

One JSON file per incident, engine/model and prompt version
(``analyses/<incident>/<engine>--<model>--<prompt version>.json``), written atomically so a reader
never sees half a file; the dashboard and the Airflow triage share them. Ratings are appended to
``analyses/feedback.jsonl``, one JSON object per line.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from incident_rca.models import Analysis, Feedback

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_APPEND_LOCK = threading.Lock()


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part).strip("._") or "_"


class AnalysisStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def feedback_file(self) -> Path:
        return self.root / "feedback.jsonl"

    def path_for(self, incident_id: str, engine: str, model: str, prompt_version: str) -> Path:
        return self.root / _safe(incident_id) / f"{_safe(engine)}--{_safe(model)}--{_safe(prompt_version)}.json"

    def get(self, incident_id: str, engine: str, model: str, prompt_version: str) -> Analysis | None:
        return self._read(self.path_for(incident_id, engine, model, prompt_version))

    def save(self, analysis: Analysis) -> Path:
        path = self.path_for(analysis.incident_id, analysis.engine, analysis.model, analysis.prompt_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(analysis.model_dump_json(indent=1))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def for_incident(self, incident_id: str) -> list[Analysis]:
        """Every stored analysis of an incident, newest first."""
        folder = self.root / _safe(incident_id)
        found = [a for a in (self._read(p) for p in folder.glob("*.json")) if a is not None]
        return sorted(found, key=lambda a: a.created_at, reverse=True)

    def root_causes(self, incident_ids: list[str]) -> dict[str, str]:
        """Latest stored conclusion per incident (for 'similar past incidents')."""
        out: dict[str, str] = {}
        for incident_id in incident_ids:
            found = self.for_incident(incident_id)
            if found:
                rc = found[0].result.root_cause
                out[incident_id] = f"{rc.statement} (category {rc.category}, confidence {rc.confidence:.2f})"
        return out

    @staticmethod
    def _read(path: Path) -> Analysis | None:
        try:
            return Analysis.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return None

    # --- feedback --------------------------------------------------------------------------
    def add_feedback(self, feedback: Feedback) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = feedback.model_dump_json() + "\n"
        with _APPEND_LOCK, open(self.feedback_file, "a", encoding="utf-8") as handle:
            handle.write(line)

    def feedback(self) -> list[Feedback]:
        try:
            lines = self.feedback_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        items = []
        for line in lines:
            try:
                items.append(Feedback.model_validate(json.loads(line)))
            except (ValueError, ValidationError):
                continue  # a torn last line while another process appends
        return items

    def feedback_for(self, analysis_id: str) -> list[Feedback]:
        return [f for f in self.feedback() if f.analysis_id == analysis_id]

    def quality(self) -> pd.DataFrame:
        """Ratings per engine, model and prompt version: how often answers were found useful."""
        rows = [f.model_dump() for f in self.feedback()]
        columns = ["engine", "model", "prompt_version", "ratings", "useful", "not_useful", "useful_share"]
        if not rows:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(rows)
        grouped = frame.groupby(["engine", "model", "prompt_version"]).agg(
            ratings=("useful", "size"), useful=("useful", "sum")).reset_index()
        grouped["not_useful"] = grouped["ratings"] - grouped["useful"]
        grouped["useful_share"] = grouped["useful"] / grouped["ratings"]
        return grouped[columns]

    def all_analyses(self) -> list[Analysis]:
        found = [a for a in (self._read(p) for p in self.root.glob("*/*.json")) if a is not None]
        return sorted(found, key=lambda a: a.created_at, reverse=True)
