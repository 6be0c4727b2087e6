"""Routes: where a notification goes, chosen by severity, service, owner and tier.

``NOTIFY_WEBHOOK_URL`` alone gives one generic JSON route for P1/P2; ``NOTIFY_RULES_FILE`` (YAML) lists
routes (docs/operations.md)::

    routes:
      - name: oncall-slack
        kind: slack                 # webhook | slack | alertmanager
        url: https://hooks.slack.com/services/T000/B000/XXXX
        severities: [P1, P2]        # default: P1, P2
        services: [order-service]   # default: any
        owners: [team-commerce]     # default: any
        tiers: ["1"]                # default: any
        events: [opened, severity_raised, resolved, ack_timeout]   # default: all four
        rate_limit_per_minute: 10   # default: NOTIFY_RATE_LIMIT_PER_MINUTE
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from incident_contracts.settings import Settings


class Kind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    ALERTMANAGER = "alertmanager"


class Event(StrEnum):
    OPENED = "opened"
    SEVERITY_RAISED = "severity_raised"
    RESOLVED = "resolved"
    ACK_TIMEOUT = "ack_timeout"


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and what is wrong."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
    kind: Kind = Kind.WEBHOOK
    # Often a credential in itself (a Slack incoming webhook's path is its key): never in a log line, an
    # error message or the repr; `target` names where it points instead.
    url: str = Field(repr=False)
    severities: tuple[str, ...] = ("P1", "P2")
    services: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    events: tuple[Event, ...] = tuple(Event)
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=10_000)] | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            scheme = value.split("://", 1)[0] + "://" if "://" in value else "no scheme"
            raise ValueError(f"url must start with http:// or https://, got {scheme[:20]!r} (the rest not shown)")
        return value

    @property
    def target(self) -> str:
        """Where the route points, for messages: the URL's scheme and host, without path, query or user."""
        return url_target(self.url)

    def scrub(self, text: str) -> str:
        """`text` (e.g. an exception's) with the route's URL, and its path, replaced by `target`."""
        return scrub_url(text, self.url)

    @field_validator("severities", "services", "owners", "tiers", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            value = [value]
        return tuple(str(v) for v in value) if isinstance(value, list | tuple) else value

    def matches(self, event: str, severity: str, service: str, owner: str | None, tier: str | None) -> bool:
        return (event in self.events and (not self.severities or severity in self.severities)
                and (not self.services or service in self.services)
                and (not self.owners or (owner or "") in self.owners)
                and (not self.tiers or (tier or "") in self.tiers))


def url_target(url: str) -> str:
    """The scheme and host (and port) of `url`: what may be shown of a URL that holds a credential."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "(unparsable URL)"


def scrub_url(text: str, url: str) -> str:
    """`text` without `url`: the whole URL, then its path and query (as some errors quote them), and any
    user and password, replaced by the URL's scheme and host or "..."."""
    if not url:
        return text
    text = text.replace(url, url_target(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    for piece in (parts.path + ("?" + parts.query if parts.query else ""), parts.path, parts.query,
                  parts.username, parts.password):
        if piece and len(piece) > 1:
            text = text.replace(piece, "/...")
    return text


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[Route] = Field(default_factory=list)


def load_routes(settings: Settings) -> list[Route]:
    """The routes of NOTIFY_RULES_FILE, plus one generic webhook for NOTIFY_WEBHOOK_URL; RulesError if invalid."""
    routes: list[Route] = []
    if settings.notify_rules_file is not None:
        routes += parse_rules(Path(settings.notify_rules_file))
    webhook = settings.notify_webhook_url.get_secret_value().strip() if settings.notify_webhook_url else ""
    if webhook:
        try:
            routes.append(Route(name="webhook", kind=Kind.WEBHOOK, url=webhook))
        except ValidationError as exc:
            raise RulesError(f"NOTIFY_WEBHOOK_URL: {exc.errors()[0]['msg']}") from None
    names = [r.name for r in routes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RulesError(f"route names must be unique; repeated: {', '.join(duplicates)} (the name 'webhook' is "
                         "taken by NOTIFY_WEBHOOK_URL)")
    return routes


def parse_rules(path: Path) -> list[Route]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise RulesError(f"NOTIFY_RULES_FILE {path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"NOTIFY_RULES_FILE {path}: not valid YAML ({exc})") from None
    try:
        return Rules.model_validate(raw).routes
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RulesError(f"NOTIFY_RULES_FILE {path}: {problems}") from None
