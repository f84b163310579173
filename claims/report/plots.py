"""The report's plots, one PNG a claim and one of its training curves, titled with the claim's words.

A claim with one comparison gets two panels: the per-seed values of its arms joined by seed, and d̄ with its bounds
against 0, ±Δ and the test set's noise floor. A compound claim gets one figure of small multiples: all its parts'
intervals on one shared A − B axis (a row a part), and their per-seed panels in a grid on one shared accuracy axis,
with one legend outside the data; the figure stays within MAX_HEIGHT_PX. Training curves (test accuracy after each
epoch, integer epochs) are drawn only where some run has two epochs or more.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from claims.order import short_words
from claims.report.model import (
    _value,
    comparisons,
    noise_floor_pp,
    per_seed,
    pipeline_note,
    pipeline_only,
    pp,
)

DPI = 90
MAX_HEIGHT_PX = 1200
WIDTH_IN = 10.0
GRID_COLS = 4


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def title(rep: Any, row: Any, what: str = "") -> str:
    """The claim's id, its words (short), its verdict and profile: every figure's title."""
    note = f"; {pipeline_note(rep.profile)}" if pipeline_only(rep.profile) else ""
    return (f"{row.claim.id}{what}: “{short_words(row.claim.quote, 80)}”\n{row.verdict} ({rep.profile} profile"
            f"{note})")


def _seeds_panel(ax: Any, part: Any, rows: list[dict[str, Any]], short: bool) -> None:
    if part.b is not None:
        for r in rows:
            if r["a"] is not None and r["b"] is not None:
                ax.plot([0, 1], [r["b"], r["a"]], "-o", color="tab:blue", alpha=0.6, lw=1, ms=3)
                ax.annotate(str(r["seed"]), (1.04, r["a"]), fontsize=6, va="center")
        names = ("B", "A") if short else (f"B: {part.b.name or 'B'}", f"A: {part.a.name or 'A'}")
        ax.set_xticks([0, 1], list(names), fontsize=7)
        ax.set_xlim(-0.3, 1.3)
    else:
        ax.plot([r["seed"] for r in rows], [r["a"] for r in rows], "o", color="tab:blue")
        if getattr(part, "threshold", None) is not None:
            ax.axhline(pp(part.threshold), color="tab:red", ls="--", lw=1, label="threshold")
        ax.set_xlabel("seed", fontsize=7)


def _interval_row(ax: Any, rep: Any, part: Any, dd: Any, rows: list[dict[str, Any]], y: float) -> None:
    """One comparison's d̄ with its bounds at height y, with its own ±Δ band and noise floor."""
    delta, centre = pp(getattr(part, "delta", None)), pp(getattr(part, "offset", 0.0)) or 0.0
    band = (y - 0.35, y + 0.35)
    if part.b is not None:
        if delta:
            ax.fill_betweenx(band, centre - delta, centre + delta, color="tab:orange", alpha=0.15, lw=0,
                             label="±Δ (around the claimed offset, if any)")
        means = [r["b"] for r in rows if r["b"] is not None]
        nf = noise_floor_pp(rep.profile, part.b, sum(means) / len(means) if means else None)
        if nf:
            ax.fill_betweenx(band, -nf, nf, color="grey", alpha=0.3, lw=0, label="test-set noise floor")
    elif getattr(part, "threshold", None) is not None:
        ax.plot([pp(part.threshold)] * 2, band, color="tab:red", ls="--", lw=1, label="threshold")
    if dd is not None and getattr(dd, "mean", None) is not None and not math.isnan(dd.mean):
        mean = pp(dd.mean)
        lo = pp(dd.lower) if dd.lower is not None and math.isfinite(dd.lower) else mean
        hi = pp(dd.upper) if dd.upper is not None and math.isfinite(dd.upper) else mean
        ax.errorbar([mean], [y], xerr=[[mean - lo], [hi - mean]], fmt="o", color="tab:blue", capsize=4,
                    label="d̄ with its one-sided bounds")
        ax.annotate(f"n = {dd.n}", (hi, y), xytext=(4, 0), textcoords="offset points", fontsize=6, va="center")


def _legend(fig: Any, axes: list[Any]) -> None:
    """One legend for the figure, below the panels, each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(3, len(seen)), fontsize=7)


def claim_figure(rep: Any, row: Any) -> Any | None:
    """The claim's figure (matplotlib), or None when no comparison has per-seed values."""
    parts = [p for p in comparisons(row.claim) if per_seed(p, row.results)]
    if not parts:
        return None
    plt = _plt()
    d = row.decision
    decisions = [d.parts[i] if d is not None and len(parts) > 1 and len(d.parts or ()) == len(parts) else d
                 for i in range(len(parts))]
    if len(parts) == 1:
        fig, (ax_seed, ax_int) = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.2), layout="constrained")
        part, rows = parts[0], per_seed(parts[0], row.results)
        _seeds_panel(ax_seed, part, rows, short=False)
        ax_seed.set_ylabel(f"accuracy % ({rep.profile})", fontsize=8)
        _interval_row(ax_int, rep, part, decisions[0], rows, 0.0)
        if part.b is not None:
            ax_int.axvline(0.0, color="black", lw=1)
        ax_int.set_yticks([])
        ax_int.set_xlabel(f"{'A − B' if part.b is not None else 'mean A'} (pp)", fontsize=8)
        axes = [ax_seed, ax_int]
    else:
        n = len(parts)
        grid_rows = math.ceil(n / GRID_COLS)
        forest_in, cell_in, fixed_in = 0.32 * n + 0.9, 2.1, 1.6  # title, legend and labels take the fixed part
        scale = min(1.0, (MAX_HEIGHT_PX / DPI - fixed_in) / (forest_in + cell_in * grid_rows))
        fig = plt.figure(figsize=(WIDTH_IN, fixed_in + scale * (forest_in + cell_in * grid_rows)),
                         layout="constrained")
        sub_forest, sub_grid = fig.subfigures(2, 1, height_ratios=[forest_in, cell_in * grid_rows])
        ax_int = sub_forest.subplots()
        grid = sub_grid.subplots(grid_rows, GRID_COLS, sharey=True, squeeze=False)
        for i, part in enumerate(parts):
            rows = per_seed(part, row.results)
            _interval_row(ax_int, rep, part, decisions[i], rows, float(n - 1 - i))
            ax = grid[i // GRID_COLS][i % GRID_COLS]
            _seeds_panel(ax, part, rows, short=True)
            verdict = _value(decisions[i].verdict) if decisions[i] is not None else "—"
            ax.set_title(f"{part.id.split('/')[-1]}: {verdict}", fontsize=7)
        for j in range(n, grid_rows * GRID_COLS):
            grid[j // GRID_COLS][j % GRID_COLS].set_visible(False)
        for r in range(grid_rows):
            grid[r][0].set_ylabel(f"accuracy % ({rep.profile})", fontsize=7)
        ax_int.axvline(0.0, color="black", lw=1)
        ax_int.set_yticks(range(n), [p.id.split("/")[-1] for p in reversed(parts)], fontsize=7)
        ax_int.set_ylim(-0.6, n - 0.4)
        ax_int.set_xlabel("A − B (pp), every part on this one axis", fontsize=8)
        axes = [ax_int, *(a for r in grid for a in r)]
    fig.suptitle(title(rep, row), fontsize=9)
    _legend(fig, axes)
    return fig


def _save(fig: Any | None, path: Path) -> Path | None:
    """Write a figure to `path` (PNG) and close it; None when there was nothing to draw."""
    if fig is None:
        return None
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def plot_claim(rep: Any, row: Any, path: Path) -> Path | None:
    """Write the claim's figure to `path` (PNG); None when there is nothing to draw."""
    return _save(claim_figure(rep, row), path)


def curves_figure(rep: Any, row: Any) -> Any | None:
    """Test accuracy after each epoch per arm (every seed thin, the arms' mean thick), or None when no run has two
    epochs or more (one point a run is no curve)."""
    arms = [(r, row.results.get(r.key, {})) for r in row.claim.recipes()]
    arms = [(r, runs) for r, runs in arms if any(len(res.acc_per_epoch or ()) >= 2 for res in runs.values())]
    if not arms:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for i, (recipe, runs) in enumerate(arms):
        color = f"C{i % 10}"
        curves = [[100.0 * a for a in res.acc_per_epoch] for res in runs.values() if res.acc_per_epoch]
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.3, lw=0.8)
        longest = max(len(cv) for cv in curves)
        mean = [sum(cv[e] for cv in curves if len(cv) > e) / sum(len(cv) > e for cv in curves) for e in range(longest)]
        ax.plot(range(1, longest + 1), mean, color=color, lw=2, marker="o", ms=3,
                label=f"{recipe.name or recipe.key[:12]} ({len(curves)} seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test accuracy % ({rep.profile})")
    fig.suptitle(title(rep, row, " training curves"), fontsize=9)
    fig.legend(loc="outside lower center", ncol=min(3, len(arms)), fontsize=7)
    return fig


def plot_curves(rep: Any, row: Any, path: Path) -> Path | None:
    """Write the training curves to `path` (PNG); None when no run has a curve of two points or more."""
    return _save(curves_figure(rep, row), path)
