"""Untrusted text inside the dashboard's Markdown: shown as the characters it is, never as Markdown or HTML.

Service names, hosts, titles, log lines, severity reasons, URL query parameters and every field of a
root-cause analysis come from whoever can write a log line (or from a model that read one). Streamlit
renders ``st.markdown``, captions, alerts, titles, badges and widget labels as GitHub-flavoured
Markdown with its own directives (``:red[...]``, ``:material/...:``, ``$...$`` math), so such text
interpolated as is would render links, images (fetched by every viewer's browser) and formatting.

The rule: the project's own labels are Markdown; anything else goes through :func:`md` (running text)
or :func:`md_code` (an inline code span), and through :func:`badge_label` where ``st.badge`` takes it.

:func:`md` backslash-escapes every ASCII punctuation character (CommonMark lets any of them be
escaped, and an escaped character is always literal text), which covers emphasis, links, images,
autolinks (``<...>``, and ``http:``/``www.`` literals, whose ``:`` and ``.`` are escaped), raw HTML,
entities (``&``), code spans, tables, headings and lists at a line start, Streamlit's directives (``:``,
``[``, ``]``) and math (``$``). Line breaks become spaces so the text cannot start a block of its own.

Escapes alone do not stop one thing: Streamlit's renderer turns URL-looking text into links after
parsing (GitHub's "autolink literals": ``http://...``, ``www.``, ``name@domain``), on the text the
escapes already resolved to. :func:`md` therefore puts an invisible WORD JOINER (U+2060) between
``:`` and ``//``, after ``www`` before ``.``, and before ``@``: the text reads the same, and no longer
matches what the renderer links. Inline code is never linked, so :func:`md_code` keeps text exact.
"""

from __future__ import annotations

import re
import string
from typing import Any

_LINE_BREAKS = re.compile(r"[\r\n]+")
_ESCAPES = {ord(c): "\\" + c for c in string.punctuation}  # all 32 ASCII punctuation characters
_BADGE_ESCAPES = {k: v for k, v in _ESCAPES.items() if chr(k) not in "[]"}  # st.badge escapes these itself
_BACKTICKS = re.compile(r"`+")
WORD_JOINER = "\u2060"
_LINK_LITERALS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)


def _one_line(value: Any) -> str:
    return "" if value is None else _LINE_BREAKS.sub(" ", str(value)).strip()


def _unlinkable(value: Any) -> str:
    return _LINK_LITERALS.sub(WORD_JOINER, _one_line(value))


def md(value: Any) -> str:
    """``value`` as Markdown that renders as its characters (on one line, never linked); ``None`` gives ``""``."""
    return _unlinkable(value).translate(_ESCAPES)


def badge_label(value: Any) -> str:
    """``value`` for ``st.badge``, which wraps its label in a directive and escapes ``[`` and ``]`` itself."""
    return _unlinkable(value).translate(_BADGE_ESCAPES)


def md_code(value: Any) -> str:
    """``value`` as an inline code span (monospace, literal); ``""`` for empty text.

    Nothing inside a code span is Markdown; the fence is one backtick longer than the longest run of
    backticks in the text, so the text cannot close it.
    """
    text = _one_line(value)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""  # CommonMark drops one space on each side
    return f"{fence}{pad}{text}{pad}{fence}"
