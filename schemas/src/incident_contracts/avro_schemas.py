"""The Avro schemas of a log event, every version, and their fingerprints.

Versions live as `.avsc` files in `schemas/avro/` (`log_event.vN.avsc`). The newest version is the
one producers write and readers resolve to; older versions stay so old messages still decode.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

_VERSION_FILE = re.compile(r"^log_event\.v(\d+)\.avsc$")


def schema_dir() -> Path:
    """Folder of the `.avsc` files: the source tree's `schemas/avro`, or the copy inside the wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "avro", here.parent / "avro"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Avro schema folder not found next to {here}; reinstall incident-contracts")


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    raw: dict[str, Any]
    parsed: dict[str, Any]
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as single-object encoding writes it

    @property
    def text(self) -> str:
        return json.dumps(self.raw)


def _load(path: Path, version: int) -> SchemaVersion:
    raw = json.loads(path.read_text(encoding="utf-8"))
    parsed = parse_schema(raw, _force=True)
    canonical = to_parsing_canonical_form(raw)
    fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")
    return SchemaVersion(version=version, raw=raw, parsed=parsed, canonical=canonical, fingerprint=fp)


@cache
def all_versions() -> tuple[SchemaVersion, ...]:
    """Every known version of the LogEvent schema, oldest first."""
    found = []
    for path in schema_dir().iterdir():
        match = _VERSION_FILE.match(path.name)
        if match:
            found.append(_load(path, int(match.group(1))))
    if not found:
        raise FileNotFoundError(f"no log_event.vN.avsc files in {schema_dir()}")
    return tuple(sorted(found, key=lambda v: v.version))


def latest() -> SchemaVersion:
    return all_versions()[-1]


def by_version(version: int) -> SchemaVersion:
    for candidate in all_versions():
        if candidate.version == version:
            return candidate
    raise KeyError(f"no LogEvent schema version {version}")


@cache
def by_fingerprint() -> dict[bytes, SchemaVersion]:
    return {v.fingerprint: v for v in all_versions()}


def level_symbols() -> tuple[str, ...]:
    """The log levels the contract allows, lowest first."""
    for field in latest().raw["fields"]:
        if field["name"] == "level":
            return tuple(field["type"]["symbols"])
    raise KeyError("level field missing from the LogEvent schema")
