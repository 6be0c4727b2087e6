"""Untrusted text in the dashboard's Markdown renders as exactly its characters: no link, image, HTML or formatting.

The renderer is markdown-it-py with its GitHub-like preset (raw HTML on, autolinked URLs on, tables,
strikethrough), installed with Streamlit. Two behaviours of Streamlit's own renderer have no Python
counterpart and are asserted by rule: its directives (``:red[...]``, ``:material/x:``, ``$math$``) need
bare punctuation, and it links URL-looking text after parsing (GitHub's autolink literals), escapes or not.
"""

from __future__ import annotations

import re
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from incident_dashboard.ui.safe_text import WORD_JOINER, badge_label, md, md_code

RENDERER = MarkdownIt("gfm-like")
assert RENDERER.options["html"] and RENDERER.options["linkify"]

# Pieces of Markdown, HTML and Streamlit syntax, so examples are mostly hostile rather than random letters.
PIECES = ["![", "](", "[", "]", "(", ")", "<", ">", "http://127.0.0.1:9/x", "https://", "www.example.com",
          "javascript:alert(1)", "mailto:a@b.io", "a@b.io", "`", "``", "*", "**", "_", "~~", "&amp;", "&#60;",
          "&lt;", "$", "$$", ":red[", ":material/warning:", ":smile:", "\\", "|", "---", "#", "- ", "1. ", "> ",
          "\n", "\r\n", "\n\n", "    ", "\t", " ", "x", "é", "<img src=x onerror=alert(1)>", "<script>", "</p>",
          "<!--", "-->", "<![CDATA[", "=", "+", "!", "\"", "'", "{", "}", "^", "?", "%", ";", "/", ".", ","]
HOSTILE = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)
TEXT = st.one_of(HOSTILE, st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=80))
ALLOWED = {"paragraph_open", "paragraph_close", "inline", "text", "text_special"}
# What GitHub-flavoured Markdown links in plain text (mdast-util-gfm-autolink-literal's patterns, loosened:
# any occurrence counts, whatever precedes it).
AUTOLINK_LITERALS = re.compile(r"https?://|www\.|[-.\w+]@", re.IGNORECASE)


def _tokens(tokens: list[Token]) -> list[Token]:
    out = []
    for token in tokens:
        out.append(token)
        out += _tokens(token.children or [])
    return out


def _shown(markdown: str) -> tuple[set[str], str]:
    """The token types the renderer produced, and the text a reader sees."""
    tokens = _tokens(RENDERER.parse(markdown))
    return {t.type for t in tokens}, "".join(t.content for t in tokens if t.type in ("text", "text_special"))


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text).strip()


@settings(max_examples=400, deadline=None)
@given(TEXT)
@example("![x](http://127.0.0.1:9/b) [phish](https://example.com) <img src=http://127.0.0.1:9/i> www.example.com")
@example("<script>fetch('http://127.0.0.1:9/s')</script>")
@example("checkout-api")
@example("mail ops@example.com or WWW.example.com or HTTPS://example.com")
def test_escaped_text_renders_as_itself_and_nothing_else(text: str) -> None:
    escaped = md(text)
    kinds, shown = _shown(escaped)
    assert kinds <= ALLOWED, (escaped, kinds - ALLOWED)  # no link, image, html, code, emphasis, heading, list...
    assert shown.replace(WORD_JOINER, "") == _one_line(text).replace(WORD_JOINER, "")  # reads as the original
    assert not AUTOLINK_LITERALS.search(shown), shown  # and Streamlit finds no URL in it to link
    html = RENDERER.render(escaped)
    assert not re.search(r"<(?!/?p>)", html), html  # the only tags are the paragraph's


@settings(max_examples=300, deadline=None)
@given(TEXT)
@example("a ``` b `` c ` d")
@example("`start and end`")
def test_code_span_is_one_literal_code_element(text: str) -> None:
    code = md_code(text)
    tokens = _tokens(RENDERER.parse(code))
    kinds = {t.type for t in tokens}
    if not _one_line(text):
        assert code == ""
        return
    assert kinds == {"paragraph_open", "paragraph_close", "inline", "code_inline"}, (code, kinds)
    (span,) = [t for t in tokens if t.type == "code_inline"]
    assert span.content == _one_line(text)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_every_markdown_metacharacter_is_escaped(text: str) -> None:
    """Streamlit's directives (``:color[...]``, ``:material/...:``, badges) and ``$`` math use ASCII punctuation
    too: once the escapes are taken out, none is left bare."""
    escaped = md(text)
    assert not set(re.sub(r"\\.", "", escaped)) & set(string.punctuation)
    assert "\n" not in escaped and "\r" not in escaped


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_a_badge_gets_the_same_escaped_label(text: str) -> None:
    """st.badge escapes ``[`` and ``]`` of its label itself (streamlit/elements/markdown.py); with
    badge_label the directive it builds carries exactly md's escaping."""
    label = badge_label(text)
    assert label.replace("[", "\\[").replace("]", "\\]") == md(text)


def test_none_and_empty() -> None:
    assert md(None) == "" and md_code(None) == "" and badge_label(None) == ""
    assert md("checkout-api") == "checkout\\-api"
    assert md("see http://x.io") == f"see http\\:{WORD_JOINER}\\/\\/x\\.io"
    assert md_code("host-1") == "`host-1`"


def test_the_markdown_export_keeps_an_answer_s_links_and_images_as_text() -> None:
    from incident_dashboard.analysis.export import to_markdown
    from incident_rca.models import (
        ActionStep,
        Analysis,
        EvidenceItem,
        RootCause,
        RootCauseAnalysis,
        SentRequest,
        TimelineEntry,
    )

    bad = "![x](http://127.0.0.1:9/i.png) [docs](https://example.com) <img src=x> www.example.com | a@b.io"
    result = RootCauseAnalysis(
        summary=bad, root_cause=RootCause(statement=bad, category="database", confidence=0.4,
                                          confidence_rationale=bad),
        evidence=[EvidenceItem(finding=bad, citations=[bad])], timeline=[TimelineEntry(time=bad, event=bad,
                                                                                        citations=[bad])],
        action_plan=[ActionStep(order=1, action=bad, priority="now", owner=bad)], verification=[bad],
        prevention=[bad], insufficient_evidence=True, missing_information=[bad])
    document = to_markdown(Analysis(analysis_id="a", incident_id="INC-1", engine="gemini", model="m",
                                    prompt_version="v", result=result, warnings=[bad],
                                    sent=SentRequest(system_instruction="", prompt="")))
    kinds = {t.type for t in _tokens(RENDERER.parse(document))}
    assert not kinds & {"link_open", "image", "html_inline", "html_block"}, kinds
    assert {"table_open", "heading_open", "bullet_list_open"} <= kinds  # the document's own structure stays
    shown = "".join(t.content for t in _tokens(RENDERER.parse(document)) if t.type in ("text", "text_special"))
    assert bad in shown.replace(WORD_JOINER, "")  # shown as written
    assert not AUTOLINK_LITERALS.search(shown)
