"""Error signatures, the definition: a log message with its variable parts masked, so the same failure
groups together.

Masked, in this order: UUIDs, URLs, e-mail addresses, IPv4 addresses (with port), paths, hex numbers
and long hex tokens (trace ids, hashes), numbers with a unit (``812ms``), identifiers mixing letters
and digits (``req-8f3a2``, ``pay-1``), then any remaining number; whitespace is collapsed and trimmed,
and the result cut to 256 characters. The id of a signature is the first 16 hex digits of its MD5.

The masks are regular expressions written so that Python's ``re``, Java's regex and RE2 (Arrow's
string kernels) find exactly the same matches: ASCII classes only, no look-arounds (RE2 has none), no
``\\b``, the end of the text spelt per engine. Where a mask must see the character before or after a
token, it matches that character as a group and writes it back; since that character may also border
the next token, such a mask is applied twice (a masked token never matches again).

This module holds the definition and the reference implementation (:func:`mask_message`, one message
at a time, plain Python) for every component; ``incident_stream.signature`` adds the vectorised (Arrow)
and Spark implementations the job runs, and tests check all three agree on arbitrary text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_SIGNATURE_CHARS = 256
_TOKEN = "A-Za-z0-9_"
_NOT_TOKEN = "[^A-Za-z0-9_-]"
_END = "{END}"  # the end of the text: \Z in Python, \z in Java, $ in RE2 (all three: absolute end)
_SPACE = "[ \\t\\n\\x0b\\f\\r]"


def _hex_token() -> str:
    """A token of 8 or more hex digits with at least one digit and one letter a-f."""
    digit, letter, anyhex = "[0-9]", "[a-fA-F]", "[0-9a-fA-F]"
    shapes = []
    for first, then in ((digit, letter), (letter, digit)):
        shapes += [f"{first}{{{k}}}{then}{anyhex}{{{7 - k},}}" for k in range(1, 7)]
        shapes.append(f"{first}{{7,}}{then}{anyhex}*")
    return "(?:" + "|".join(shapes) + ")"


@dataclass(frozen=True)
class Mask:
    pattern: str  # with _END for the end of the text
    replacement: str  # groups as \\1
    needs: tuple[str, ...] | None = None  # a match needs one of these literals in the text (None: no test)
    passes: int = 1  # 2 when the pattern consumes a bordering character
    probe: str | None = None  # a simpler regex every text with a match also matches (a quick test first)

    def regex(self, engine: str) -> str:
        return self.pattern.replace(_END, {"python": "\\Z", "java": "\\z", "re2": "$"}[engine])

    def java_replacement(self) -> str:
        return re.sub(r"\\(\d)", r"$\1", self.replacement)


MASKS: tuple[Mask, ...] = (
    Mask("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>", ("-",)),
    Mask("[A-Za-z][A-Za-z0-9+.-]*://[^ \\t\\n\\x0b\\f\\r\"'<>]+", "<url>", ("://",)),
    Mask("[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}", "<email>", ("@",)),
    Mask(f"(^|[^0-9.])((?:[0-9]{{1,3}}\\.){{3}}[0-9]{{1,3}}(?::[0-9]{{1,5}})?)([^0-9]|{_END})", "\\1<ip>\\3",
         (".",), passes=2, probe="[0-9]\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]"),
    Mask(f"(^|[^{_TOKEN}.~-])((?:/[{_TOKEN}.~%@+{{}}:-]+)+/?)", "\\1<path>", ("/",), passes=2,
         probe=f"/[{_TOKEN}.~%@+{{}}:-]"),
    Mask("0[xX][0-9a-fA-F]+", "<hex>", ("0x", "0X")),
    Mask(f"(^|{_NOT_TOKEN})({_hex_token()})({_NOT_TOKEN}|{_END})", "\\1<hex>\\3", passes=2,
         probe="[0-9a-fA-F]{8}"),
    Mask(f"(^|{_NOT_TOKEN})[0-9]+(?:\\.[0-9]+)?([A-Za-z]{{1,3}})({_NOT_TOKEN}|{_END})", "\\1<num>\\2\\3",
         passes=2, probe="[0-9][A-Za-z]"),  # 812ms, 30s
    Mask(f"(^|{_NOT_TOKEN})([_-]*(?:[0-9][0-9_-]*[A-Za-z]|[A-Za-z][A-Za-z_-]*[0-9])[A-Za-z0-9_-]*)"
         f"({_NOT_TOKEN}|{_END})", "\\1<id>\\3", passes=2, probe="[0-9][_-]*[A-Za-z]|[A-Za-z][_-]*[0-9]"),
    Mask("[0-9]+(?:[.,][0-9]+)*", "<num>"),
    # Collapsing changes nothing unless some whitespace is not a single plain space.
    Mask(f"{_SPACE}+", " ", ("  ", "\t", "\n", "\x0b", "\f", "\r")),
)

_COMPILED = tuple((re.compile(m.regex("python")), m.replacement, m.passes, m.needs,
                   re.compile(m.probe) if m.probe else None) for m in MASKS)


# --- one message (Python) ----------------------------------------------------------------------

def mask_message(message: str | None) -> str:
    """The signature of a message (the reference; same result as :func:`mask_array`, :func:`mask_column`)."""
    text = message or ""
    for pattern, replacement, passes, needs, probe in _COMPILED:
        if (needs and not any(literal in text for literal in needs)) or (probe and not probe.search(text)):
            continue  # cannot match: skip the (slower) full pattern
        for _ in range(passes):
            text, count = pattern.subn(replacement, text)
            if not count:
                break
    return text.strip(" ")[:MAX_SIGNATURE_CHARS]


def signature_id(signature: str) -> str:
    """A short stable id of a signature: the first 16 hex digits of its MD5."""
    return hashlib.md5(signature.encode("utf-8")).hexdigest()[:16]
