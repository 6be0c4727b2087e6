"""Removes secrets and personal data from text before it leaves the machine.

Log lines carry what applications print: bearer tokens, passwords in connection strings, API keys,
e-mail addresses, card numbers, client IP addresses. Every piece of text put into a prompt passes
through :func:`redact`, and the finished prompt passes through it once more. Replacements are
labelled (``<redacted:email>``) so the model still knows something was there.

Private (RFC 1918, loopback, link-local) addresses are kept: they name infrastructure, not people,
and they matter for diagnosis. Public addresses are treated as personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Replacement = str | Callable[[re.Match[str]], str | None]


@dataclass
class Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn_ok(digits)


def _card(match: re.Match[str]) -> str | None:
    """Redact the card number inside a run of digits (the run may carry neighbouring numbers too)."""
    text = match.group(0)
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
    spans: list[tuple[int, int]] = []
    for i in range(len(groups)):  # whole separator groups: "4111 1111 1111 1111 0"
        for j in range(len(groups), i, -1):
            start, end = groups[i][0], groups[j - 1][1]
            if _is_card(re.sub(r"\D", "", text[start:end])):
                spans.append((start, end))
    for start, end in groups:  # inside one unbroken run: its leading or trailing 13-19 digits
        for length in (16, 15, 19, 18, 17, 14, 13):
            if end - start > length:
                spans += [(s, s + length) for s in (start, end - length) if _is_card(text[s:s + length])]
    if not spans:
        return None
    start, end = max(spans, key=lambda s: s[1] - s[0])
    return text[:start] + "<redacted:card>" + text[end:]


def _public_ip(match: re.Match[str]) -> str | None:
    try:
        address = ipaddress.ip_address(match.group("ip"))
    except ValueError:
        return None
    if address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return "<redacted:ip>" + (match.group("port") or "")


_SECRET_KEYS = (r"pass(?:word|wd)?|pwd|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|"
                r"secret[_-]?key|private[_-]?key|token|access[_-]?token|refresh[_-]?token|auth[_-]?token|"
                r"session[_-]?id|sessionid|credentials?|x-api-key")

# Order matters: specific formats first, generic key=value and numbers last.
_RULES: list[tuple[str, re.Pattern[str], Replacement]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
                               re.DOTALL), "<redacted:private-key>"),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), "<redacted:jwt>"),
    ("url_credentials", re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?!<redacted)[^\s/:@]+:[^\s/@]+@"),
     lambda m: f"{m.group('scheme')}<redacted:credentials>@"),
    ("auth_header", re.compile(r"(?i)\b(?P<kind>bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
     lambda m: f"{m.group('kind')} <redacted:token>"),
    ("api_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}\b|\bsk-[A-Za-z0-9_-]{20,}\b|"
                           r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}\b|"
                           r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b|\bglpat-[A-Za-z0-9_-]{20,}\b"), "<redacted:api-key>"),
    ("secret", re.compile(rf"(?i)(?P<key>\b(?:{_SECRET_KEYS})\b)(?P<sep>\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')"
                          r"(?P<quote>[\"']?)(?!<redacted)(?P<value>[^\s\"'&,;}]+)"),
     lambda m: f"{m.group('key')}{m.group('sep')}{m.group('quote')}<redacted:secret>"),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "<redacted:email>"),
    ("card", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), _card),
    ("ip", re.compile(r"(?<![\d.])(?P<ip>(?:\d{1,3}\.){3}\d{1,3})(?P<port>:\d{1,5})?(?![\d.])"), _public_ip),
]


def redact(text: str | None, counts: Counter[str] | None = None) -> str:
    """``text`` with secrets and personal data replaced; adds what was replaced to ``counts``."""
    if not text:
        return text or ""
    for kind, pattern, replacement in _RULES:
        def substitute(match: re.Match[str], kind: str = kind, replacement: Replacement = replacement) -> str:
            value = replacement if isinstance(replacement, str) else replacement(match)
            if value is None:
                return match.group(0)
            if counts is not None:
                counts[kind] += 1
            return value

        text = pattern.sub(substitute, text)
    return text


def redact_all(text: str) -> Redaction:
    counts: Counter[str] = Counter()
    return Redaction(redact(text, counts), counts)
