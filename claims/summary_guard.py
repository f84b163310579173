"""Which claims summary may replace which: `nox -s readme` copies a report's summary into docs/results.md, and a
`smoke` report (barely trained models: its verdicts check the pipeline, not the claims) never replaces the summary
of a `default` or `paper` report there."""

from __future__ import annotations

import re
from pathlib import Path

_PROFILE = re.compile(r"Profile \*\*(\w+)\*\*")
KEEP = ("default", "paper")  # profiles whose summary a smoke summary never replaces


def summary_profile(text: str) -> str | None:
    """The profile a summary block names in its caption ("Profile **default**, ..."), or None."""
    m = _PROFILE.search(text)
    return m.group(1) if m else None


def check_replacement(target: str | Path, start: str, end: str, summary: str, folder: Path) -> None:
    """ValueError, in one sentence, when `summary` (a smoke report's) would replace a default or paper summary held
    between the markers of `target`; anything else may replace anything."""
    path = Path(target)
    if not path.is_file():
        return  # replace_block says the file is missing
    text = path.read_text()
    if start not in text or end not in text:
        return  # replace_block says the markers are missing
    held = summary_profile(text[text.index(start) + len(start):text.index(end)])
    new = summary_profile(summary)
    if new == "smoke" and held in KEEP:
        raise ValueError(f"{path} holds a {held}-profile claims summary and {folder} is a smoke report, whose "
                         f"verdicts check the pipeline, not the claims: kept the {held} summary (pass a {held} "
                         f"report's folder to replace it)")


def describe(folder: Path, summary: str) -> str:
    """The report a summary came from, for the line `nox -s readme` prints: its folder and profile."""
    return f"{folder} (profile {summary_profile(summary) or 'unknown'})"
