"""A minimal Confluent Schema Registry client: register the LogEvent schema, resolve ids to schemas.

Only two REST calls are needed, so this uses the standard library rather than pulling the
registry client's HTTP and auth dependencies into every Spark worker (see docs/decisions.md).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from incident_contracts import avro_schemas
from incident_contracts.avro_schemas import SchemaVersion

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailable(RuntimeError):
    """The Schema Registry could not be reached or answered with an error other than 'not found'."""


class SchemaRegistry:
    def __init__(self, url: str, subject: str = "logs.events-value", timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.subject = subject
        self.timeout = timeout
        self._cache: dict[int, SchemaVersion | None] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace")[:300]
            raise RegistryUnavailable(f"Schema Registry {self.url}{path} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RegistryUnavailable(
                f"Schema Registry at {self.url} is unreachable ({exc}). Check SCHEMA_REGISTRY_URL, "
                "or leave it empty to use Avro single-object encoding without a registry."
            ) from exc

    def register(self, schema: SchemaVersion) -> int:
        """Register (idempotently) the schema under the subject and return its global id."""
        answer = self._call("POST", f"/subjects/{self.subject}/versions",
                            {"schema": schema.text, "schemaType": "AVRO"})
        if not answer or "id" not in answer:
            raise RegistryUnavailable(f"Schema Registry did not return an id when registering {self.subject}")
        schema_id = int(answer["id"])
        with self._lock:
            self._cache[schema_id] = schema
        return schema_id

    def lookup(self, schema_id: int) -> SchemaVersion | None:
        """The writer schema for an id, or None if the registry does not know the id."""
        with self._lock:
            if schema_id in self._cache:
                return self._cache[schema_id]
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        schema = None
        if answer and answer.get("schemaType", "AVRO") == "AVRO":
            raw = json.loads(answer["schema"])
            canonical = to_parsing_canonical_form(raw)
            fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")
            schema = avro_schemas.by_fingerprint().get(fp) or SchemaVersion(
                version=0, raw=raw, parsed=parse_schema(raw, _force=True), canonical=canonical, fingerprint=fp)
        with self._lock:
            self._cache[schema_id] = schema
        return schema
