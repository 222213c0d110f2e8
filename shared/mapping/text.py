"""Text clean-up shared by every mapping: Sugar sends HTML-escaped strings and Xero caps lengths."""

from __future__ import annotations

import html
import unicodedata


def clean(value: object, limit: int | None = None) -> str | None:
    """Unescape Sugar's HTML entities, trim, drop control characters, cap at ``limit``.

    Returns None for empty values so mappings can leave the Xero field out entirely.
    """
    if value is None:
        return None
    text = str(value)
    if "&" in text:
        text = html.unescape(text)
    if not text.isprintable():  # the per-character check only for text that has something to drop
        text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = text.strip()
    if not text:
        return None
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip()
    return text


def split_lines(value: object, *, max_lines: int = 4, limit: int = 500) -> list[str]:
    """Split a multi-line street into at most ``max_lines`` lines; overflow joins the last."""
    text = clean(value)
    if text is None:
        return []
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [", ".join(lines[max_lines - 1:])]
    return [ln[:limit] for ln in lines]


def cut_at_word(text: str | None, limit: int) -> str | None:
    """Cut at a word boundary when one is near the limit, else at the limit; never mid-space."""
    if text is None or len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() or text[:limit]


def fit(text: str | None, limit: int, label: str, notes: list[str]) -> str | None:
    """``text`` cut to Xero's ``limit`` at a word boundary; when cut, a note for the CRM user
    (it reaches the job's warnings and the record's sync status and last error)."""
    if text is None or len(text) <= limit:
        return text
    notes.append(f"{label} was {len(text)} characters; Xero takes {limit}, so it was cut")
    return cut_at_word(text, limit)
