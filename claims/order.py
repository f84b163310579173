"""The order and the short words of the claims tables: the documents' order (doc 000's claims first, the claims
several documents share last), a claim's words cut to fit a table cell, and why a claim that trained nothing has no
interval, in a few words for the terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def claim_order(cid: str) -> tuple:
    """Sort key of a claim id in document order: C000-1, C000-2, ..., C000-10, C001-1, ..., then X-1, X-2, ..."""
    head, _, rest = cid.partition("-")
    return (head == "X", head, *(part.zfill(6) for part in rest.split("-")))


def in_document_order(rows: Sequence[Any]) -> list[Any]:
    """Report rows (each with `.claim.id`) in document order."""
    return sorted(rows, key=lambda r: claim_order(r.claim.id))


def short_words(text: str, limit: int = 90) -> str:
    """A claim's words on one line, cut at `limit` characters with an ellipsis."""
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def short_reason(reason: str, limit: int = 30) -> str:
    """Why a claim has no runs, in a few words: "paper profile only", "underpowered: ~96 seeds", "needs a GPU"."""
    text = " ".join(reason.split())
    if "published number" in text:
        return "paper profile only"
    m = re.search(r"needs (~\d+|more than [\d,]+) seeds", text)
    if "underpowered" in text:
        return f"underpowered: {m.group(1)} seeds" if m else "underpowered"
    if "GPU" in text:
        return "needs a GPU"
    first = text.split(":")[0].split(";")[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"
