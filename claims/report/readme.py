"""The README writer: generated text between two marker lines of a README or doc, and the JSON record beside it.

One writer (`publish`) serves every command that fills docs: `python -m claims.report` (a report's summary table
into docs/results.md), `python -m claims.answers` (the answer table into the README) and `python -m claims.reproduce`
(the reproduction table into docs/reproduction.md and its record). `run_writer` gives them one command-line
behaviour: the message on stdout and exit 0, or an unreadable file, a missing block or a refused replacement in one
sentence on stderr and exit 2.

`python -m claims.report [REPORT_DIR] --readme docs/results.md` copies a report's summary table into that file; a
`smoke` report (barely trained models: its verdicts check the pipeline, not the claims) never replaces the summary of
a `default` or `paper` report there.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tricks.plain import write_atomic

SUMMARY_START = "<!-- claims-summary:start -->"
SUMMARY_END = "<!-- claims-summary:end -->"
LATEST = "latest"  # the copy of the newest report in a reports folder
KEEP = ("default", "paper")  # profiles whose summary a smoke summary never replaces
_PROFILE = re.compile(r"Profile \*\*(\w+)\*\*")


def replace_block(readme_path: str | Path, start_marker: str, end_marker: str, body: str) -> None:
    """Replace what lies between two marker lines of a README with `body`; the rest of the file stays as it is."""
    readme = Path(readme_path)
    if not readme.is_file():
        raise FileNotFoundError(f"README {readme} does not exist")
    text = readme.read_text()
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README {readme} has no '{start_marker}' ... '{end_marker}' block to fill")
    readme.write_text(text[: start + len(start_marker)] + "\n" + body.strip() + "\n" + text[end:])


def publish(body: str, readme: str | Path | None, markers: tuple[str, str], record: str | Path | None = None,
            record_text: str = "") -> None:
    """Write generated docs: `record_text` to `record` first, atomically (a README without markers must not cost the
    record), then `body` between the README's two marker lines. A None path leaves that file alone."""
    if record is not None:
        out = Path(record)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, record_text)
    if readme is not None:
        replace_block(readme, *markers, body)


def md_cell(text: str) -> str:
    """Text on one line, safe in a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def run_writer(write: Callable[[], str | None]) -> int:
    """Run a docs writer for its command line: print what it did (if it says) and return 0, or print an OSError or
    ValueError as one sentence on stderr and return 2."""
    try:
        said = write()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if said:
        print(said)
    return 0


# ------------------------------------------------------------------------------------------------ the claims summary


def find_report(path: str | Path) -> Path:
    """A report folder: `path` itself, or the latest report in it; FileNotFoundError when it holds neither."""
    p = Path(path)
    if (p / "summary.md").is_file():
        return p
    if (p / LATEST / "summary.md").is_file():
        return p / LATEST
    raise FileNotFoundError(f"{p} holds no claims report (no summary.md in it or in its '{LATEST}' folder)")


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


def write_readme_summary(report_dir: str | Path, readme_path: str | Path) -> str:
    """Replace the block between the claims-summary markers of the README with the report's summary table, unless a
    smoke report would replace a default or paper summary (ValueError); returns the report used, with its profile."""
    found = find_report(report_dir)
    summary = (found / "summary.md").read_text().strip()
    check_replacement(readme_path, SUMMARY_START, SUMMARY_END, summary, found)
    publish(summary, readme_path, (SUMMARY_START, SUMMARY_END))
    return f"{found} (profile {summary_profile(summary) or 'unknown'})"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.report [REPORT_DIR] --readme README.md`: copy a report's summary into the README."""
    ap = argparse.ArgumentParser(prog="python -m claims.report", description=main.__doc__)
    ap.add_argument("report_dir", nargs="?", default="reports", help="a report folder, or reports/ for its latest")
    ap.add_argument("--readme", required=True, help="the README whose claims-summary block is replaced")
    args = ap.parse_args(argv)
    return run_writer(lambda: f"{args.readme}: claims summary replaced from "
                              f"{write_readme_summary(args.report_dir, args.readme)}")
