"""The spread of a report's paired differences, where its noise comes from: σ_d and the skewness of the paired
differences per claim, the run-to-run SD of each arm, and a summary line (median and largest σ_d, how skewed the
differences are, claims decided, compute).

    python -m claims.spread reports/latest            # a table a claim (and part) and the summary
    python -m claims.spread reports/latest --json     # the same as one JSON object

It reads `report.json` only (the per-seed values the engine judged), so it trains nothing and can be pointed at any
earlier report, e.g. to compare profiles or engines on the same store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from claims.stats import skewness

DECIDED = ("SUPPORTED", "REFUTED")


@dataclass(frozen=True)
class Spread:
    """One paired comparison of a report: a claim, or one part of a compound claim."""

    claim: str
    n: int
    mean_pp: float
    sigma_d_pp: float | None  # SD of the paired differences (None below 2 seeds)
    skew: float | None  # sample skewness of d (adjusted Fisher-Pearson), None below 5 seeds
    sd_a_pp: float | None  # run-to-run SD of each arm over the same seeds
    sd_b_pp: float | None


def _sd(x: Sequence[float]) -> float | None:
    return statistics.stdev(x) if len(x) >= 2 else None


def spreads(report: dict[str, Any], min_skew_n: int = 5) -> list[Spread]:
    """Every paired comparison in a report with at least one seed: the claims and the parts of compound claims."""
    out = []
    for c in report["claims"]:
        for cid, rows in _comparisons(c):
            d = [r["d_pp"] for r in rows if r.get("d_pp") is not None]
            if not d:
                continue
            a = [r["a_pct"] for r in rows if r.get("a_pct") is not None]
            b = [r["b_pct"] for r in rows if r.get("b_pct") is not None]
            out.append(Spread(cid, len(d), statistics.fmean(d), _sd(d),
                              skewness(d) if len(d) >= min_skew_n else None, _sd(a), _sd(b)))
    return out


def _comparisons(c: dict[str, Any]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    if c.get("parts"):
        for p in c["parts"]:
            yield p["id"], p.get("per_seed") or []
    elif c.get("b") is not None:  # an absolute claim has no pair
        yield c["id"], c.get("per_seed") or []


def summary(report: dict[str, Any], rows: Sequence[Spread]) -> dict[str, Any]:
    """Median and largest σ_d, the skewness range, claims decided among those that trained, and compute."""
    sig = sorted(r.sigma_d_pp for r in rows if r.sigma_d_pp is not None)
    skews = [r.skew for r in rows if r.skew is not None]
    trained = [c for c in report["claims"] if (c.get("compute") or {}).get("runs")]
    decided = [c for c in trained if c.get("verdict") in DECIDED]
    return {
        "profile": report.get("profile"), "code_version": report.get("code_version"),
        "comparisons": len(rows), "median_sigma_d_pp": statistics.median(sig) if sig else None,
        "max_sigma_d_pp": sig[-1] if sig else None,
        "max_sigma_d_claim": max((r for r in rows if r.sigma_d_pp is not None), key=lambda r: r.sigma_d_pp).claim
        if sig else None,
        "skew_n": len(skews), "skew_median": statistics.median(skews) if skews else None,
        "skew_min": min(skews) if skews else None, "skew_max": max(skews) if skews else None,
        "skew_beyond_1": sum(abs(s) > 1 for s in skews),
        "claims_trained": len(trained), "claims_decided": len(decided),
        "wall_s": report.get("wall_s"), "compute_s": (report.get("total_compute") or {}).get("seconds"),
        "runs": (report.get("total_compute") or {}).get("runs"),
    }


def _f(x: float | None, nd: int = 2) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def render(rows: Sequence[Spread], s: dict[str, Any]) -> str:
    lines = ["| comparison | n | d̄ (pp) | σ_d (pp) | skew of d | SD of A, B (pp) |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(rows, key=lambda r: -(r.sigma_d_pp or 0)):
        lines.append(f"| {r.claim} | {r.n} | {r.mean_pp:+.2f} | {_f(r.sigma_d_pp)} | {_f(r.skew)} | "
                     f"{_f(r.sd_a_pp)}, {_f(r.sd_b_pp)} |")
    lines.append("")
    lines.append(f"{s['comparisons']} comparisons: median σ_d {_f(s['median_sigma_d_pp'])} pp, largest "
                 f"{_f(s['max_sigma_d_pp'])} pp ({s['max_sigma_d_claim']}); skewness of d over the {s['skew_n']} with "
                 f"≥ 5 seeds: median {_f(s['skew_median'])}, range {_f(s['skew_min'])} to {_f(s['skew_max'])}, "
                 f"{s['skew_beyond_1']} beyond ±1; {s['claims_decided']} of {s['claims_trained']} claims that trained "
                 f"decided.")
    return "\n".join(lines)


def load(path: str | Path) -> dict[str, Any]:
    """report.json of a report directory (or the file itself); a clear error when it is missing or not JSON."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise SystemExit(f"claims.spread: no report at {p}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"claims.spread: {p} is not JSON ({e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """σ_d, skewness of d and arm SDs of a claims report."""
    ap = argparse.ArgumentParser(prog="python -m claims.spread", description=main.__doc__)
    ap.add_argument("report", help="a report directory (reports/latest) or its report.json")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    rep = load(args.report)
    rows = spreads(rep)
    s = summary(rep, rows)
    if args.json:
        print(json.dumps({"summary": s, "comparisons": [asdict(r) for r in rows]}, sort_keys=True))
    else:
        print(render(rows, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
