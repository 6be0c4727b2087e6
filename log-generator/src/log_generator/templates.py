"""Message templates: loaded from `templates.yaml` next to this module, validated, and compiled.

Compiling turns a template text into a renderer ``render(r, lat, host, status) -> str`` for one
service (and incident): constants are substituted once, and each remaining placeholder becomes a
positional field of a ``str.format`` string, so rendering a line costs one format call.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

from log_generator.placeholders import (
    CONSTANT_DEFAULTS,
    FRAGMENTS,
    GLOBALS,
    INCIDENT_CONSTANTS,
    KNOWN,
    Context,
    Endpoint,
)

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LATENCY_PLACEHOLDERS = frozenset({"ms", "latency", "latency_s"})
ACCESS_STYLES = ("gateway", "go", "jvm", "python", "node", "native")
BACKGROUND_GROUPS = ("http", "worker", "database", "cache", "queue", "jvm", "python", "go", "node", "native")

Renderer = Callable[[int, float, str, Any, Any], str]


class TemplateError(ValueError):
    """The templates file is missing or invalid; the message says which template and why."""


@dataclass(frozen=True)
class LineTemplate:
    key: str
    text: str
    level: str
    logger: str | None = None
    error_type: str | None = None
    share: float = 1.0
    trace: bool | None = None

    @cached_property
    def uses_latency(self) -> bool:
        return bool(LATENCY_PLACEHOLDERS & set(_names(self.text)))


@dataclass(frozen=True)
class TemplateSet:
    access: dict[str, str]
    background: dict[str, tuple[LineTemplate, ...]]
    errors: dict[str, tuple[LineTemplate, ...]]
    scenarios: dict[str, LineTemplate]

    def scenario(self, key: str) -> LineTemplate:
        try:
            return self.scenarios[key]
        except KeyError:
            raise TemplateError(f"scenario line {key!r} is missing from the templates file") from None


def _names(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _line(key: str, raw: Any) -> LineTemplate:
    if not isinstance(raw, dict):
        raise TemplateError(f"template {key}: expected a mapping with text and level, got {type(raw).__name__}")
    unknown = set(raw) - {"text", "level", "logger", "error_type", "share", "trace"}
    if unknown:
        raise TemplateError(f"template {key}: unknown fields {sorted(unknown)}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"template {key}: 'text' must be a non-empty string")
    level = raw.get("level", "INFO")
    if level not in LEVELS:
        raise TemplateError(f"template {key}: level {level!r} is not one of {', '.join(LEVELS)}")
    share = raw.get("share", 1.0)
    if not isinstance(share, int | float) or share <= 0:
        raise TemplateError(f"template {key}: share must be a positive number, got {share!r}")
    try:
        names = _names(text)
    except ValueError as exc:
        raise TemplateError(f"template {key}: {exc} (write literal braces as {{{{ and }}}})") from None
    if any(spec or conversion for _, name, spec, conversion in string.Formatter().parse(text) if name):
        raise TemplateError(f"template {key}: placeholders take no format spec or conversion (write {{name}})")
    unknown_names = sorted(set(names) - KNOWN - {""})
    if "" in names:
        raise TemplateError(f"template {key}: empty placeholder {{}}; name it, e.g. {{id}}")
    if unknown_names:
        raise TemplateError(f"template {key}: unknown placeholders {unknown_names}; see the list at the top "
                            "of templates.yaml")
    trace = raw.get("trace")
    if trace is not None and not isinstance(trace, bool):
        raise TemplateError(f"template {key}: trace must be true or false")
    return LineTemplate(key=key, text=text, level=level, logger=raw.get("logger"),
                        error_type=raw.get("error_type"), share=float(share), trace=trace)


def _group(section: str, raw: Any, allowed: tuple[str, ...]) -> dict[str, tuple[LineTemplate, ...]]:
    if not isinstance(raw, dict):
        raise TemplateError(f"section {section!r} must map group names to lists of templates")
    out = {}
    for group, items in raw.items():
        if group not in allowed:
            raise TemplateError(f"{section}.{group}: unknown group; expected one of {', '.join(allowed)}")
        if not isinstance(items, list) or not items:
            raise TemplateError(f"{section}.{group}: expected a non-empty list of templates")
        out[group] = tuple(_line(f"{section}.{group}[{i}]", item) for i, item in enumerate(items))
    return out


def parse_templates(raw: Any, source: str = "templates") -> TemplateSet:
    try:
        if not isinstance(raw, dict):
            raise TemplateError("expected a mapping with access, background, errors and scenarios")
        missing = {"access", "background", "errors", "scenarios"} - set(raw)
        if missing:
            raise TemplateError(f"missing sections {sorted(missing)}")
        access = raw["access"]
        if not isinstance(access, dict) or set(ACCESS_STYLES) - set(access):
            raise TemplateError(f"access: needs a line for each of {', '.join(ACCESS_STYLES)}")
        for style, text in access.items():
            _line(f"access.{style}", {"text": text, "level": "INFO"})
        scenarios = raw["scenarios"]
        if not isinstance(scenarios, dict):
            raise TemplateError("scenarios: expected a mapping of line names to templates")
        return TemplateSet(
            access={k: str(v) for k, v in access.items()},
            background=_group("background", raw["background"], BACKGROUND_GROUPS),
            errors=_group("errors", raw["errors"], BACKGROUND_GROUPS),
            scenarios={k: _line(f"scenarios.{k}", v) for k, v in scenarios.items()},
        )
    except TemplateError as exc:
        raise TemplateError(f"{source}: {exc}") from None


def default_templates_path() -> Path:
    return Path(__file__).with_name("templates.yaml")


def load_templates(path: str | Path | None = None) -> TemplateSet:
    """Load and validate a templates file (default: the one shipped with the package)."""
    path = Path(path) if path else default_templates_path()
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise TemplateError(f"templates file {path} not found") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"templates file {path} is not valid YAML: {exc}") from None
    return parse_templates(raw, str(path))


@cache
def default_templates() -> TemplateSet:
    return load_templates()


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _fragment(name: str, ctx: Context, access: bool, namespace: dict[str, Any]) -> str:
    """The f-string fragment standing for placeholder `name` in context `ctx`."""
    constants = ctx.constants
    if name in constants:
        return _escape(constants[name])
    if name in FRAGMENTS:
        return FRAGMENTS[name]
    if name in ("service", "app", "pkg", "version"):
        return _escape(getattr(ctx, name))
    if name == "status":
        return "{status}" if access else _escape(constants.get("status", "503"))
    if name == "dep":
        namespace["DEPS"] = ctx.dependencies or ("upstream",)
        return f"{{DEPS[(r >> 3) % {len(namespace['DEPS'])}]}}"
    if name == "path" and access:
        return "{path}"
    if name in ("method", "path", "path_tail", "upstream"):
        namespace["EP"] = ctx.endpoints or (Endpoint("GET", "/", None, ctx.service),)
        pick = f"EP[(r >> 7) % {len(namespace['EP'])}]"
        return {"method": f"{{{pick}.method}}", "path": f"{{{pick}.path(r)}}",
                "path_tail": f"{{{pick}.path(r)[1:]}}", "upstream": f"{{{pick}.upstream}}"}[name]
    if name in CONSTANT_DEFAULTS:
        return CONSTANT_DEFAULTS[name]
    if name in INCIDENT_CONSTANTS:
        return "-"
    raise TemplateError(f"unknown placeholder {{{name}}}")


def compile_text(text: str, ctx: Context, access: bool = False) -> Renderer:
    """A renderer ``(r, lat, host, status, path) -> str`` for `text` in context `ctx`.

    Constants are inlined and the per-line placeholders spliced into a single f-string, compiled once.
    """
    body: list[str] = []
    namespace: dict[str, Any] = dict(GLOBALS)
    dynamic = False
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        body.append(_escape(literal))
        if name is None:
            continue
        fragment = _fragment(name, ctx, access, namespace)
        dynamic = dynamic or "{" in fragment.replace("{{", "")
        body.append(fragment)
    joined = "".join(body)
    if not dynamic:
        constant = joined.replace("{{", "{").replace("}}", "}")
        return lambda r, lat, host, status, path: constant
    source = "lambda r, lat, host, status, path: f" + repr(joined)
    return eval(compile(source, f"<template {text[:40]!r}>", "eval"), namespace)
