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
    """13 to 19 digits passing the Luhn check, starting as card numbers do (2-6: Mastercard, Amex, Visa,
    Discover, UnionPay...); epoch timestamps in milli- or nanoseconds start with 1."""
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and _luhn_ok(digits)


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


_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "passcode", "secret", "token", "apikey", "credential",
    "credentials", "sig", "signature", "sessionid", "sessid", "jsessionid", "phpsessid", "privatekey",
    "secretkey", "accesskey", "accountkey", "masterkey", "clientsecret", "authkey",
})
# The last two words of a key name that make it a secret ("aws_secret_access_key", "x-api-key").
_SECRET_PAIRS = frozenset({
    ("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"), ("account", "key"),
    ("session", "id"), ("auth", "key"), ("encryption", "key"), ("signing", "key"), ("master", "key"),
    ("shared", "key"), ("license", "key"), ("webhook", "secret"), ("connection", "string"), ("sas", "url"),
})
# Glued names that end with a secret word ("PGPASSWORD", "csrftoken", "dbpass" is not one: too short).
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey", "secretkey",
                    "privatekey")
_WORD_SPLIT = re.compile(r"[_.\-\s]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(name: str) -> bool:
    """Whether a key name (``DB_PASSWORD``, ``aws_secret_access_key``, ``X-Amz-Signature``, ``userToken``)
    names a secret: its last word, or its last two words, say so."""
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_WORDS or (len(words) > 1 and (words[-2], last) in _SECRET_PAIRS):
        return True
    return len(last) > 6 and last.endswith(_SECRET_SUFFIXES)


def _key_value(match: re.Match[str]) -> str | None:
    """``key=value`` (and ``"key": "value"``, ``key => 'value'``): the value goes if the key names a secret."""
    if not is_secret_key(match.group("key")):
        return None
    value = match.group("qvalue") if match.group("qvalue") is not None else match.group("value")
    if value is None or not value.strip() or value.startswith("<redacted"):
        return None
    head = match.group(0)[:match.start("body") - match.start(0)]
    quote = match.group("q") or match.group("oq") or ""
    closing = quote if match.group("qvalue") is not None else ""
    return f"{head}{quote}<redacted:secret>{closing}"


def _scheme_token(match: re.Match[str]) -> str | None:
    """``Bearer <token>``: a token has a digit or is long ("Bearer authentication failed" is prose)."""
    token = match.group("token")
    if not (any(c.isdigit() for c in token) or len(token) >= 24):
        return None
    return f"{match.group('kind')} <redacted:token>"


def _header(label: str) -> Callable[[re.Match[str]], str | None]:
    """A credential-carrying header: its whole value goes, keeping an authorization scheme word."""
    def replace(match: re.Match[str]) -> str | None:
        value = match.group("value")
        scheme = re.match(r"(?:[A-Za-z][\w-]*\s+)(?=\S)", value) if label == "credentials" else None
        rest = value[scheme.end():] if scheme else value
        if rest.lstrip().startswith("<redacted") or not rest.strip():
            return None
        head = match.group(0)[:match.start("value") - match.start(0)]
        return f"{head}{scheme.group(0) if scheme else ''}<redacted:{label}>"
    return replace


def _xml_element(match: re.Match[str]) -> str | None:
    if not is_secret_key(match.group("tag")) or match.group("value").startswith("<redacted"):
        return None
    return f"<{match.group('tag')}><redacted:secret></{match.group('tag')}>"


# A key name: letters, digits, "_", ".", "-" (a leading "--" makes it a command-line flag), not glued
# to a preceding word.
_KEY = r"(?<![A-Za-z0-9_.\-])(?P<key>-{0,2}[A-Za-z_][A-Za-z0-9_.\-]{0,80})"
_QUOTE = r"(?:\\?[\"'])"
# The value: quoted (spaces allowed, up to the matching quote on the same line) or a bare run.
_VALUE = (rf"(?P<body>(?P<q>{_QUOTE})(?P<qvalue>(?:(?!(?P=q))[^\n])*)(?P=q)"
          r"|(?P<oq>\\?[\"']?)(?P<value>[^\s\"'&,;}\\]+))")
_API_KEYS = "|".join((
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API keys
    r"\bGOCSPX-[A-Za-z0-9_-]{20,}", r"\bya29\.[A-Za-z0-9_-]{20,}", r"(?<![\w/])1//0[A-Za-z0-9_-]{30,}",  # Google OAuth
    r"\bsk-[A-Za-z0-9_-]{20,}",  # OpenAI-style keys
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}", r"\bwhsec_[A-Za-z0-9]{20,}",  # Stripe
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{30,}", r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}", r"\bxapp-[A-Za-z0-9-]{10,}",  # Slack
    r"\bnpm_[A-Za-z0-9]{36}\b", r"\bpypi-[A-Za-z0-9_-]{50,}", r"\bhf_[A-Za-z0-9]{30,}\b",
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}", r"\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b",
    r"\bdop_v1_[a-f0-9]{64}\b", r"\bsq0(?:atp|csp)-[A-Za-z0-9_-]{22,}", r"\bkey-[0-9a-f]{32}\b",
    r"\bSK[0-9a-f]{32}\b", r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])",  # Twilio, Telegram bots
))
_WEBHOOKS = (r"https://(?:hooks\.slack\.com/services|discord(?:app)?\.com/api/webhooks|"
             r"[\w.-]+\.webhook\.office\.com/webhookb2)/[^\s\"'<>]+")

# Order matters: specific formats first, generic key=value and numbers last.
_RULES: list[tuple[str, re.Pattern[str], Replacement]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----.*?"
                               r"(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|$)", re.DOTALL),
     "<redacted:private-key>"),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), "<redacted:jwt>"),
    ("webhook", re.compile(_WEBHOOKS), "<redacted:webhook>"),
    ("url_credentials", re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?!<redacted)[^\s/:@]*:[^\s/@]+@"),
     lambda m: f"{m.group('scheme')}<redacted:credentials>@"),
    ("auth_header", re.compile(r"(?i)\b(?P<kind>bearer|basic)\s+(?P<token>[A-Za-z0-9._~+/-]{8,}=*)"
                               r"(?![A-Za-z0-9._~+/=-])"), _scheme_token),
    ("api_key", re.compile(_API_KEYS), "<redacted:api-key>"),
    ("auth_header", re.compile(r"(?i)(?<![\w-])(?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?"
                               r"(?P<value>[^\"'\\\r\n]+)"), _header("credentials")),
    ("cookie", re.compile(r"(?i)(?<![\w-])(?:set-)?cookie\\?[\"']?\s*[:=]\s*\\?[\"']?(?P<value>[^\"'\\\r\n]+)"),
     _header("cookie")),
    ("secret", re.compile(r"<(?P<tag>[A-Za-z][\w.-]{0,60})>(?P<value>[^<\n]+)</(?P=tag)>"), _xml_element),
    ("secret", re.compile(rf"{_KEY}(?:{_QUOTE})?(?P<sep>\s*(?:=>|[=:])\s*){_VALUE}"), _key_value),
    ("secret", re.compile(rf"(?<![\w-])(?P<key>--[A-Za-z][\w-]{{0,60}})(?P<sep>\s+)(?=[^\s-]){_VALUE}"),
     _key_value),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "<redacted:email>"),
    ("card", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), _card),
    ("ip", re.compile(r"(?<![\d.])(?P<ip>(?:\d{1,3}\.){3}\d{1,3})(?P<port>:\d{1,5})?(?![\d.])"), _public_ip),
]


def _apply(kind: str, pattern: re.Pattern[str], replacement: Replacement, text: str,
           counts: Counter[str] | None) -> str:
    """Replace the matches of one rule. A match the rule declines (a key that names no secret) is skipped
    by one character only, so a secret inside it is still found: ``msg="login password=hunter2"``."""
    parts: list[str] = []
    copied = position = 0
    while position <= len(text):
        match = pattern.search(text, position)
        if match is None:
            break
        value = replacement if isinstance(replacement, str) else replacement(match)
        if value is None:
            position = match.start() + 1
            continue
        parts += [text[copied:match.start()], value]
        copied = position = max(match.end(), match.start() + 1)
        if counts is not None:
            counts[kind] += 1
    return "".join(parts) + text[copied:] if parts else text


def redact(text: str | None, counts: Counter[str] | None = None) -> str:
    """``text`` with secrets and personal data replaced; adds what was replaced to ``counts``."""
    if not text:
        return text or ""
    for kind, pattern, replacement in _RULES:
        text = _apply(kind, pattern, replacement, text, counts)
    return text


def redact_all(text: str) -> Redaction:
    counts: Counter[str] = Counter()
    return Redaction(redact(text, counts), counts)
