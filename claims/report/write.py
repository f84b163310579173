"""The report folder: `<reports_root>/<timestamp>-<profile>/` with report.md, summary.md, report.json and the PNG
plots, copied to `<reports_root>/latest/`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from claims.report.model import SuiteReport
from claims.report.plots import plot_claim, plot_curves
from claims.report.readme import LATEST
from claims.report.schema import report_json
from claims.report.text import report_markdown, summary_markdown


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(rep: SuiteReport, reports_root: str | Path = "reports") -> Path:
    """Write `<reports_root>/<timestamp>-<profile>/` (report.md, report.json, summary.md, plots) and `latest/`."""
    root = Path(reports_root)
    stamp = rep.created.replace(":", "").replace("-", "")
    out = root / f"{stamp}-{rep.profile}"
    k = 1
    while out.exists():
        k += 1
        out = root / f"{stamp}-{rep.profile}-{k}"
    out.mkdir(parents=True)
    plots: dict[str, str] = {}
    curves: dict[str, str] = {}
    (out / "plots").mkdir()
    for row in rep.rows:
        p = plot_claim(rep, row, out / "plots" / f"{_safe(row.claim.id)}.png")
        if p is not None:
            plots[row.claim.id] = f"plots/{p.name}"
        p = plot_curves(rep, row, out / "plots" / f"{_safe(row.claim.id)}-curves.png")
        if p is not None:
            curves[row.claim.id] = f"plots/{p.name}"
    (out / "report.md").write_text(report_markdown(rep, plots, curves))
    (out / "summary.md").write_text(summary_markdown(rep))
    (out / "report.json").write_text(json.dumps(report_json(rep), indent=1, sort_keys=False, allow_nan=False))
    latest = root / LATEST
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(out, latest)  # a copy, not a symlink: it survives archiving and works on every platform
    (latest / "SOURCE").write_text(out.name + "\n")
    return out
