"""The runbook knowledge base: one Markdown file per failure family in ``rca/runbooks/``.

A runbook starts with YAML front matter (``id``, ``cause``, ``keywords``, ``signals``) followed by
``## Symptoms``, ``## Typical signatures``, ``## Diagnosis`` (shell commands in a fenced block, each
preceded by a ``#`` comment saying what it shows), ``## Remediation`` (an ordered list) and
``## Prevention``. The runbook of a failure family (incident_contracts.failures) is ``<id>.md`` with the
family's id; its title and category are the family's. Any other runbook (``generic``, or one for a kind
of incident the families do not name) gives its own ``title`` and ``category`` in the front matter.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from incident_contracts.failures import FailureFamily

_FRONT_MATTER = re.compile(r"^---\s*\n(.*?)\n---\s*\n(.*)$", re.DOTALL)
_SECTION = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)
_ITEM = re.compile(r"^\s*(?:\d+\.|[-*])\s+(.*)$")


class RunbookError(ValueError):
    """A runbook file cannot be parsed; the message names the file."""


@dataclass(frozen=True)
class Check:
    purpose: str
    command: str


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    category: str
    cause: str
    keywords: tuple[str, ...]
    signals: tuple[str, ...]
    symptoms: tuple[str, ...]
    signatures: tuple[str, ...]
    diagnosis: tuple[Check, ...]
    remediation: tuple[str, ...]
    prevention: tuple[str, ...]
    generic: bool = False
    path: Path | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """The text the matcher indexes."""
        return " ".join([self.title, *self.symptoms, *self.signatures, self.cause])


def default_runbook_dir() -> Path:
    """``incident_rca/knowledge_base`` inside an installed wheel, else ``rca/runbooks`` in a checkout.

    (Inside the package the folder cannot be called ``runbooks``: that is this module's name.)"""
    here = Path(__file__).resolve()
    for candidate in (here.parent / "knowledge_base", here.parents[2] / "runbooks"):
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "runbooks"


def _items(body: str) -> tuple[str, ...]:
    items: list[str] = []
    for line in body.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append(match.group(1).strip())
        elif items and line.startswith("   ") and line.strip():
            items[-1] += " " + line.strip()
    return tuple(items)


def _checks(body: str) -> tuple[Check, ...]:
    checks: list[Check] = []
    purpose = ""
    in_code = False
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if not in_code or not stripped:
            continue
        if stripped.startswith("#"):
            purpose = stripped.lstrip("# ").strip()
            continue
        command, _, comment = stripped.partition("  # ")
        checks.append(Check(comment.strip() or purpose, command.strip()))
    return tuple(checks)


def parse_runbook(path: Path) -> Runbook:
    text = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise RunbookError(f"{path}: missing YAML front matter (--- ... ---) at the top")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise RunbookError(f"{path}: front matter is not valid YAML: {exc}") from None
    family = next((f for f in FailureFamily if f.value == str(meta.get("id"))), None)
    if family is not None:
        given = [k for k in ("title", "category") if k in meta]
        if given:
            raise RunbookError(f"{path}: the {' and '.join(given)} of failure family {family} come from "
                               "incident_contracts.failures; remove them from the front matter")
        meta = {**meta, "title": family.title, "category": family.category}
    missing = [k for k in ("id", "title", "category", "cause") if not meta.get(k)]
    if missing:
        raise RunbookError(f"{path}: front matter lacks {', '.join(missing)}")
    sections: dict[str, str] = {}
    parts = _SECTION.split(match.group(2))
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        sections[name.strip().lower()] = body
    return Runbook(
        id=str(meta["id"]), title=str(meta["title"]), category=str(meta["category"]),
        cause=" ".join(str(meta["cause"]).split()),
        keywords=tuple(str(k) for k in meta.get("keywords") or ()),
        signals=tuple(str(s) for s in meta.get("signals") or ()),
        symptoms=_items(sections.get("symptoms", "")),
        signatures=tuple(s.strip("`") for s in _items(sections.get("typical signatures", ""))),
        diagnosis=_checks(sections.get("diagnosis", "")),
        remediation=_items(sections.get("remediation", "")),
        prevention=_items(sections.get("prevention", "")),
        generic=bool(meta.get("generic")), path=path)


@dataclass(frozen=True)
class KnowledgeBase:
    runbooks: tuple[Runbook, ...]
    version: str  # changes whenever a runbook file changes

    @property
    def generic(self) -> Runbook:
        found = next((r for r in self.runbooks if r.generic), None)
        if found is None:
            raise RunbookError("the runbook knowledge base has no generic runbook (front matter `generic: true`)")
        return found

    @property
    def specific(self) -> list[Runbook]:
        return [r for r in self.runbooks if not r.generic]

    def get(self, runbook_id: str) -> Runbook | None:
        return next((r for r in self.runbooks if r.id == runbook_id), None)


def load_knowledge_base(folder: Path | None = None) -> KnowledgeBase:
    folder = folder or default_runbook_dir()
    files = sorted(folder.glob("*.md"))
    if not files:
        raise RunbookError(f"no runbooks (*.md) in {folder}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return _load(folder, digest.hexdigest()[:10])


@lru_cache(maxsize=4)
def _load(folder: Path, version: str) -> KnowledgeBase:
    runbooks = tuple(parse_runbook(p) for p in sorted(folder.glob("*.md")) if p.name.lower() != "readme.md")
    return KnowledgeBase(runbooks, version)
