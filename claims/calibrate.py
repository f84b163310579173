"""Calibration of the verdict engine by vectorized simulation: many simulated claims at once through the engine's
own sequential rules (`claims.verdict.walk`), its sequential p (`stats.sequential_p_rows`), its repeated intervals and
its --confirm rule (`stats.confirmation_p`), under normal noise and two skews of the paired differences.

`tests/test_calibration.py` checks each promise of docs/statistics.md on a few thousand simulated claims;
`python -m claims.calibrate --docs docs/statistics.md` measures them on many more and writes the figures, with the
date and the machine, into that page.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from claims import stats
from claims.spec import Claim, Form
from claims.verdict import SUPPORTED_, UNDERPOWERED, claim_design, reported_p, walk
from tricks.plain import cpu_model
from tricks.recipe import Recipe, kw

# the skews of the paired differences: (share of seeds, loss in σ_d). mild: 10 % of seeds lose 3 σ_d (skewness of d
# about -0.8, the range measured on real CNN arms); strong: 5 % lose 6 σ_d (skewness about -2.1)
SKEWS: dict[str, tuple[float, float] | None] = {"normal": None, "mild": (0.10, 3.0), "strong": (0.05, 6.0)}
CAPS = (12, 8)  # the default seed cap and the paper profile's
FORMS = (Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS, Form.ABSOLUTE)
BASE_ACC = 0.70  # B's accuracy (and an absolute claim's threshold) in simulated claims


def noise(rng: np.random.Generator, sims: int, n: int, sigma: float, kind: str) -> np.ndarray:
    """Mean-zero paired noise of SD about `sigma`, `sims` rows of `n` seeds: normal, or skewed the way a CNN arm that
    sometimes trains badly skews d (SKEWS), centred so that the true mean is exactly 0."""
    if kind not in SKEWS:
        raise ValueError(f"unknown noise '{kind}' (known: {', '.join(SKEWS)})")
    z = sigma * rng.standard_normal((sims, n))
    if SKEWS[kind] is None:
        return z
    share, loss = SKEWS[kind]
    return z - loss * sigma * (rng.random((sims, n)) < share) + share * loss * sigma


def sim_claim(form: Form, delta: float = 0.01, alpha: float = 0.05, looks: Sequence[int] = (3, 5, 8, 12)) -> Claim:
    """A claim of `form` between two placeholder recipes (B at BASE_ACC; an absolute claim's threshold)."""
    a, b = (Recipe("toy", kw(width=w), name=f"toy/{w}") for w in (8, 16))
    if form is Form.ABSOLUTE:
        return Claim(id="S-1", source="simulation", quote="-", form=form, a=a, threshold=BASE_ACC, alpha=alpha,
                     looks=tuple(looks))
    return Claim(id="S-1", source="simulation", quote="-", form=form, a=a, b=b, delta=delta, alpha=alpha,
                 looks=tuple(looks))


# the true difference at which SUPPORTED would be a false verdict (for an absolute claim: its threshold, 0 here)
def null_lines(delta: float) -> dict[Form, tuple[float, ...]]:
    return {Form.SUPERIORITY: (0.0,), Form.NONINFERIORITY: (-delta,), Form.EQUIVALENCE: (delta, -delta),
            Form.FEWER_PARAMS: (0.0,), Form.ABSOLUTE: (0.0,)}


@dataclass
class Sim:
    """What the engine decides on each simulated row."""

    code: np.ndarray  # verdict code of `walk` (SUPPORTED_, REFUTED_, UNDERPOWERED, OPEN)
    n: np.ndarray  # seeds at the deciding look (or at the cap, when none decided)
    p_seq: np.ndarray  # the reported sequential p of the support test (claim's α scale)
    ci_lower: np.ndarray  # two-sided (1 - α) repeated interval of the mean at the deciding look
    ci_upper: np.ndarray

    @property
    def supported(self) -> np.ndarray:
        return self.code == SUPPORTED_


def simulate(claim: Claim, x: np.ndarray, cap: int, futility: bool = True) -> Sim:
    """The engine's verdicts on rows of paired differences `x` (A - B - offset; an absolute claim's A - threshold)
    under the looks a seed cap of `cap` allows: what `judge` gives row by row (tests check it), vectorized.
    `futility=False`: without the futility stop (what it costs)."""
    looks = stats.allowed_looks(claim.looks, cap)
    des = claim_design(claim, looks, cap, last_look=True)
    examined = [m for m in des.looks if m <= cap]
    shift = claim.threshold if claim.form is Form.ABSOLUTE else 0.0
    v = shift + np.asarray(x, dtype=float)[:, :cap]
    w = walk(claim, v, None, des, examined, futility=futility)
    code, at, p = w.code, w.at, w.p
    p_seq = np.array([reported_p(q) for q in stats.sequential_p_rows(p, at + 1, des.looks, des.shape)])
    n = np.asarray(examined)[at]
    lo, hi = np.empty(len(v)), np.empty(len(v))
    ci_des = stats.design(des.looks, claim.alpha / 2, des.shape)
    for m in set(n.tolist()):
        rows = n == m
        _, lo[rows], hi[rows] = stats.paired_bounds(v[rows, :m], ci_des.level(m))
    return Sim(code, n, p_seq, lo - shift, hi - shift)


def mc_error(rate: float, sims: int) -> float:
    """Three Monte-Carlo standard errors of a rate near `rate` over `sims` draws."""
    return 3 * math.sqrt(max(rate, 1e-4) * (1 - rate) / sims)


# ------------------------------------------------------------------------------------------------ single claims


def false_support(form: Form, kind: str, cap: int, sims: int, seed: int, sigma: float = 0.01,
                  delta: float = 0.01) -> dict[float, float]:
    """Share of claims SUPPORTED at each null line of the form (a true difference at which SUPPORTED is false)."""
    c = sim_claim(form, delta)
    out = {}
    for i, null in enumerate(null_lines(delta)[form]):
        x = null + noise(np.random.default_rng(seed + i), sims, cap, sigma, kind)
        out[null] = float(simulate(c, x, cap).supported.mean())
    return out


def futility(form: Form, kind: str, cap: int, sims: int, seed: int, sigma: float = 0.01) -> tuple[float, float]:
    """At a truth 2 σ_d inside the support region (2 σ_d beyond the null line for the one-sided forms; for
    equivalence a true difference 0 with Δ = 2 σ_d): the share of claims stopped "predicted underpowered", and the
    share it cost, stopped although the cap would have SUPPORTED them."""
    delta = 2 * sigma if form is Form.EQUIVALENCE else sigma
    c = sim_claim(form, delta)
    truth = 0.0 if form is Form.EQUIVALENCE else null_lines(delta)[form][0] + 2 * sigma
    x = truth + noise(np.random.default_rng(seed), sims, cap, sigma, kind)
    stopped = simulate(c, x, cap).code == UNDERPOWERED
    return float(stopped.mean()), float((stopped & simulate(c, x, cap, futility=False).supported).mean())


def coverage(form: Form, kind: str, cap: int, sims: int, seed: int, true_d: float = 0.0, sigma: float = 0.01,
             delta: float = 0.01) -> float:
    """Share of claims whose reported two-sided repeated interval, at the look that stopped them, holds the truth."""
    c = sim_claim(form, delta)
    x = true_d + noise(np.random.default_rng(seed), sims, cap, sigma, kind)
    s = simulate(c, x, cap)
    return float(((s.ci_lower <= true_d) & (true_d <= s.ci_upper)).mean())


def wilson_coverage(kind: str, n: int, sims: int, seed: int, effect: float = 0.003, sigma: float = 0.01) -> float:
    """Share of n-seed samples whose 95 % Wilson interval of P(A beats B on a new seed) holds the true chance."""
    rng = np.random.default_rng(seed)
    truth = float(np.mean(effect + noise(rng, 200, 10_000, sigma, kind) > 0))
    x = effect + noise(rng, sims, n, sigma, kind)
    cover = [lo <= truth <= hi for _, lo, hi in map(stats.prob_a_gt_b_interval, x)]
    return float(np.mean(cover))


# ------------------------------------------------------------------------------------------------ families


def holm_rows(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down on each row of p-values (one family a row): which hypotheses are rejected."""
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    ok = sorted_p <= alpha / (m - np.arange(m))
    keep = np.cumprod(ok, axis=1).astype(bool)  # rejected up to the first failure
    out = np.zeros_like(keep)
    np.put_along_axis(out, order, keep, axis=1)
    return out


def bh_rows(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg on each row: q-value <= alpha."""
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    q = np.minimum.accumulate((m * sorted_p / np.arange(1, m + 1))[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(out, order, q <= alpha, axis=1)
    return out


@dataclass
class FamilyResult:
    fwer_holm: float  # share of families with a true null SUPPORTED and held by Holm
    fwer_bh: float  # share with a true null held by BH (its FDR under the global null)
    fwer_raw: float  # share with a true null SUPPORTED at its own α
    power_holm: float  # share of true effects held by Holm
    families: int


def family(kind: str, families: int, seed: int, *, effects: Sequence[float] = (0.0,) * 10, sigma: float = 0.02,
           delta: float = 0.015, cap: int = 12, confirm: bool = False, alpha_family: float = 0.05) -> FamilyResult:
    """Families of superiority claims (one a true effect in `effects`, 0 a true null) judged by the engine, Holm and
    BH over their sequential p, with or without --confirm (`Scheduler._confirm`): a SUPPORTED claim that misses Holm
    takes the seeds up to the cap and its p becomes the smaller of its decision's and its confirmation p."""
    c = sim_claim(Form.SUPERIORITY, delta)
    eff = np.asarray(effects, dtype=float)
    m = len(eff)
    x = eff[None, :, None] + noise(np.random.default_rng(seed), families * m, cap, sigma, kind).reshape(
        families, m, cap)
    s = simulate(c, x.reshape(families * m, cap), cap)
    sup = s.supported.reshape(families, m)
    p = s.p_seq.reshape(families, m)
    held = holm_rows(p, alpha_family) & sup
    if confirm:
        n0 = s.n.reshape(families, m)
        todo = sup & ~held & (cap - n0 >= stats.CONFIRM_MIN_NEW)
        p_conf = np.ones_like(p)
        for k in set(n0[todo].tolist()):
            rows = todo & (n0 == k)
            p_conf[rows] = [reported_p(q) for q in stats.confirmation_p(x[rows][:, k:cap])]
        p = np.where(todo, np.minimum(p, p_conf), p)
        held = holm_rows(p, alpha_family) & sup
    null = eff == 0
    return FamilyResult(float((held & null).any(axis=1).mean()),
                        float((bh_rows(p, alpha_family) & sup & null).any(axis=1).mean()),
                        float((sup & null).any(axis=1).mean()),
                        float((held & ~null).sum() / max(1, families * (~null).sum())), families)


# ------------------------------------------------------------------------------------------------ the figures


def figures(scale: int = 1) -> list[tuple[str, str, float, str]]:
    """Every promise of docs/statistics.md measured: (promise, case, measured rate, its bound). `scale` multiplies
    the simulation sizes (1: about a minute on one core)."""
    sims, fams = 20_000 * scale, 4_000 * scale
    rows: list[tuple[str, str, float, str]] = []
    for cap in CAPS:
        for kind in SKEWS:
            for form in FORMS:
                for null, rate in false_support(form, kind, cap, sims, 100 + cap).items():
                    bound = {"normal": "≤ 5 %", "mild": "≤ 5 %", "strong": "≤ 9 %"}[kind]
                    rows.append(("false SUPPORTED at the null line", f"{form.value} at {100 * null:+.0f} pp (σ_d 1 pp, "
                                 f"Δ 1 pp), {kind} noise, cap {cap}", rate, bound))
            for form in FORMS:
                stopped, lost = futility(form, kind, cap, sims, 200 + cap)
                case = f"{form.value}, true effect 2 σ_d inside the support region, {kind} noise, cap {cap}"
                rows.append(("stopped 'predicted underpowered' at a 2 σ_d effect", case, stopped,
                             "≤ 5 %" if kind != "strong" else "(reported)"))
                rows.append(("SUPPORTED verdicts the futility stop cost", case, lost, "≤ 2.5 %"))
            for true_d in (0.0, 0.01, 0.03):
                bound = "≥ 93 %" if kind != "strong" else "≥ 90 %"
                rows.append(("two-sided repeated 95 % interval covers the truth", f"superiority at d = "
                             f"{100 * true_d:+.0f} pp, {kind} noise, cap {cap}",
                             coverage(Form.SUPERIORITY, kind, cap, sims, 300 + cap, true_d), bound))
        for kind in SKEWS:
            rows.append(("95 % Wilson interval of P(A beats B on a new seed) covers the true chance",
                         f"{cap} seeds, true d̄ +0.3 σ_d, {kind} noise",
                         wilson_coverage(kind, cap, sims // 4, 500 + cap), "≥ 92 %"))
    c = sim_claim(Form.SUPERIORITY)
    p = simulate(c, noise(np.random.default_rng(600), sims, 12, 0.01, "normal"), 12).p_seq
    for a in (0.05, 0.01, 0.005):
        rows.append(("sequential p is valid: P(p ≤ a) ≤ a under the null", f"a = {a}, superiority, normal noise, "
                     "cap 12", float(np.mean(p <= a)), f"≤ {100 * a:g} %"))
    for kind in SKEWS:
        for confirm in (False, True):
            for label, eff in (("global null", (0.0,) * 10), ("5 effects of Δ, 5 nulls", (0.015,) * 5 + (0.0,) * 5)):
                r = family(kind, fams, 400, effects=eff, confirm=confirm)
                bound = "≤ 5 %" if kind != "strong" else "≤ 7 %"
                case = f"10 superiority claims, {label}, σ_d 2 pp, Δ 1.5 pp, cap 12, {kind} noise" + (
                    ", --confirm" if confirm else "")
                rows.append(("Holm family-wise error", case, r.fwer_holm, bound))
                if label == "global null":
                    rows.append(("BH false-discovery rate (global null)", case, r.fwer_bh, bound))
    return rows


FIG_START, FIG_END = "<!-- calibration:start -->", "<!-- calibration:end -->"


def figures_markdown(rows: list[tuple[str, str, float, str]], scale: int, seconds: float) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node() or 'unknown host'} ({cpu_model()}, {os.cpu_count()} cores), " \
              f"Python {platform.python_version()}, numpy {np.__version__}"
    sims, fams = 20_000 * scale, 4_000 * scale
    out = [f"Measured {stamp} on {machine} by `python -m claims.calibrate --docs docs/statistics.md"
           + (f" --scale {scale}" if scale != 1 else "") + f"` in {seconds:.0f} s "
           f"({sims:,} simulated claims a case, {sims // 4:,} samples a Wilson case, {fams:,} families a family "
           "case; ± is three Monte-Carlo standard errors).", "",
           "| promise | case | measured | bound |", "| --- | --- | ---: | --- |"]
    for promise, case, rate, bound in rows:
        family = "famil" in promise or "false-discovery" in promise
        size = fams if family else sims // 4 if "Wilson" in promise else sims
        out.append(f"| {promise} | {case} | {100 * rate:.2f} % ± {100 * mc_error(rate, size):.2f} | {bound} |")
    return "\n".join(out)




def write_figures(path: str | Path, text: str) -> None:
    """Replace the figures block of the page at `path` (between FIG_START and FIG_END)."""
    p = Path(path)
    page = p.read_text()
    if FIG_START not in page or FIG_END not in page:
        raise ValueError(f"{p} has no {FIG_START} … {FIG_END} block for the figures")
    head, rest = page.split(FIG_START, 1)
    _, tail = rest.split(FIG_END, 1)
    p.write_text(f"{head}{FIG_START}\n{text}\n{FIG_END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claims.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", help="write the figures into this page's calibration block (docs/statistics.md)")
    ap.add_argument("--scale", type=int, default=1, help="multiply the simulation sizes (default 1)")
    args = ap.parse_args(argv)
    if args.scale < 1:
        print("calibrate: --scale must be at least 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = figures(args.scale)
    text = figures_markdown(rows, args.scale, time.perf_counter() - t0)
    if args.docs:
        try:
            write_figures(args.docs, text)
        except (OSError, ValueError) as e:
            print(f"calibrate: {e}", file=sys.stderr)
            return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
