"""Statistics of the claims engine: paired t bounds, a Pocock-type sequential design, exact sign-flip tests,
power and seed counts, and multiplicity (Holm, Benjamini-Hochberg).

Design (spec/claims-method.md): paired differences d_i over shared seeds, one-sided (1 - α′) t bounds checked at
looks n = 3, 5, 8, 12 with a per-look level α′ that keeps the overall false-support rate at α (Pocock 1977). α′ and
the null law of the smallest per-look p come from one seeded simulation of the t statistics at the looks, cached per
design: the same numbers in every process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from scipy import integrate
from scipy import stats as st

DEFAULT_LOOKS: tuple[int, ...] = (3, 5, 8, 12)
N_SIM = 400_000  # null paths per design: α′ to about ±0.0002 at α = 0.05
SIM_SEED = 20240601
SIGN_FLIP_EXACT_MAX = 16  # enumerate all 2^n sign patterns up to here; a seeded sample of patterns beyond
_TOL = 1e-12  # relative tolerance for ties between sign-flip statistics
_EPS = 1e-12  # relative size below which an SD or an excess over the null line is rounding error


# ------------------------------------------------------------------------------------------------ the interval


def paired_bounds(d: Sequence[float] | np.ndarray, alpha: float) -> tuple[Any, Any, Any]:
    """Mean d̄ and one-sided (1 - alpha) bounds L, U = d̄ ∓ t(1 - alpha, n - 1)·s_d/√n; s_d = 0 gives L = U = d̄.

    `d` may be a 2-D array with one comparison a row: then mean, L and U are arrays (for vectorized simulation).
    """
    x = np.asarray(d, dtype=float)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"paired bounds need at least 2 differences, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    mean, sd = _mean_sd(x)
    half = _t_quantile(1 - alpha, n - 1) * sd / math.sqrt(n)
    lower, upper = mean - half, mean + half
    if x.ndim == 1:
        return float(mean), float(lower), float(upper)
    return mean, lower, upper


def _mean_sd(x: np.ndarray) -> tuple[Any, Any]:
    """Mean and SD over the last axis; an SD that is rounding error (equal values) is exactly 0."""
    mean = x.mean(axis=-1)
    sd = x.std(axis=-1, ddof=1)
    scale = np.maximum(1.0, np.abs(x).max(axis=-1))
    return mean, np.where(sd <= _EPS * scale, 0.0, sd)


@cache
def _t_quantile(q: float, df: int) -> float:
    return float(st.t.ppf(q, df))  # scipy's ppf costs ~0.1 ms a call; a claim asks for the same few again and again


def t_pvalue(x: Sequence[float] | np.ndarray, shift: float = 0.0) -> Any:
    """One-sided t p-value for mean(x) > shift (one-sample, or paired on differences); s = 0 gives 0 or 1.

    Vectorized over the rows of a 2-D `x`, like `paired_bounds`.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"a t test needs at least 2 values, got {n}")
    mean, sd = _mean_sd(x)
    excess = mean - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        t = excess / (sd / math.sqrt(n))
    p = np.where(sd > 0, st.t.sf(t, n - 1), np.where(excess > _EPS * np.maximum(1.0, abs(shift)), 0.0, 1.0))
    return float(p) if p.ndim == 0 else p


# ------------------------------------------------------------------------------------------------ sequential design


def validate_looks(looks: Sequence[int]) -> tuple[int, ...]:
    """The looks as a tuple of ints; ValueError unless they are increasing seed counts of at least 2."""
    out = tuple(int(n) for n in looks)
    if not out or any(n < 2 for n in out) or any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"looks must be increasing seed counts of at least 2, not {tuple(looks)}")
    return out


@cache
def _null_min_p(looks: tuple[int, ...], n_sim: int, seed: int) -> np.ndarray:
    """Sorted smallest one-sided t p-value over the looks, for `n_sim` null paths of standard normal differences."""
    rng = np.random.default_rng(seed)
    n_max = looks[-1]
    best = np.ones(n_sim)
    chunk = 100_000  # bounds the memory of one draw: chunk x n_max doubles
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        z = rng.standard_normal((m, n_max))
        s1, s2 = np.cumsum(z, axis=1), np.cumsum(z * z, axis=1)
        for n in looks:
            mean = s1[:, n - 1] / n
            var = (s2[:, n - 1] - n * mean * mean) / (n - 1)
            t = mean / np.sqrt(np.maximum(var, 1e-300) / n)
            np.minimum(best[start:start + m], st.t.sf(t, n - 1), out=best[start:start + m])
    best.sort()
    best.flags.writeable = False
    return best


def pocock_alpha(looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05, n_sim: int = N_SIM,
                 seed: int = SIM_SEED) -> float:
    """Per-look one-sided level α′ of paired t tests at `looks` that keeps the overall false-support rate at `alpha`.

    α′ is the `alpha`-quantile of the smallest per-look p under the null (seeded simulation): ≈ 0.017 for 3, 5, 8, 12
    and ≈ 0.029 for 5, 10 at alpha = 0.05. A single look gets `alpha` itself.
    """
    lk = validate_looks(looks)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    if len(lk) == 1:
        return float(alpha)
    return _pocock_alpha(lk, float(alpha), int(n_sim), int(seed))


@cache
def _pocock_alpha(looks: tuple[int, ...], alpha: float, n_sim: int, seed: int) -> float:
    return float(np.quantile(_null_min_p(looks, n_sim, seed), alpha))


def sequential_p(p_seen: Sequence[float], looks: Sequence[int] = DEFAULT_LOOKS, n_sim: int = N_SIM,
                 seed: int = SIM_SEED) -> float:
    """Null probability that the design's smallest per-look p is at most the smallest p seen so far.

    Definition: p_seq = P_H0(min over all the design's looks of p_j <= min(p_seen)), with p_j the one-sided t p-value
    of the claim's support test at look j. It is a valid p-value however the claim stopped (looks not reached only
    make the observed minimum larger), and p_seq <= alpha exactly when some look reached α′ = pocock_alpha(looks,
    alpha): a claim SUPPORTED at level alpha has p_seq <= alpha. Below the simulation's resolution the Bonferroni
    bound (number of looks x p) takes over, so tiny p stay valid and monotone.
    """
    lk = validate_looks(looks)
    if not p_seen:
        raise ValueError("sequential_p needs the p-value of at least one look")
    x = float(min(p_seen))
    if math.isnan(x):
        raise ValueError("sequential_p got a NaN p-value")
    x = min(max(x, 0.0), 1.0)
    if len(lk) == 1:
        return x
    null = _null_min_p(lk, int(n_sim), int(seed))
    k = int(np.searchsorted(null, x, side="right"))
    floor = 100  # below this many null draws the empirical tail is too noisy to trust
    if k >= floor:
        return float(k / len(null))
    return float(min(len(lk) * x, floor / len(null)))


def look_sequence(n: int, looks: Sequence[int]) -> tuple[int, ...]:
    """The looks a claim with n seeds has passed: the design's looks below n, then n itself."""
    return tuple(m for m in looks if m < n) + ((n,) if n >= 1 else ())


# ------------------------------------------------------------------------------------------------ rank-free checks


def sign_flip_p(d: Sequence[float] | np.ndarray, n_patterns: int = 2**16, seed: int = SIM_SEED) -> float:
    """Exact one-sided sign-flip (paired permutation) p for mean(d) > 0: the share of the 2^n sign patterns whose sum
    is at least the observed one. The smallest reachable p is 1/2^n (0.125 at 3 seeds, 0.031 at 5).

    Above 16 differences a seeded sample of `n_patterns` patterns is used, with p = (1 + hits) / (1 + patterns).
    """
    x = np.asarray(d, dtype=float)
    n = x.size
    if n < 1:
        raise ValueError("a sign-flip test needs at least one difference")
    if not np.all(np.isfinite(x)):
        raise ValueError("a sign-flip test needs finite differences")
    mag = np.abs(x)
    observed = x.sum()
    tol = _TOL * max(1.0, mag.sum())
    if n <= SIGN_FLIP_EXACT_MAX:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        sums = (1 - 2 * bits) @ mag
        return float(np.mean(sums >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_patterns, n))
    hits = int(np.sum(signs @ mag >= observed - tol))
    return (1 + hits) / (1 + n_patterns)


def sign_flip_floor(n: int) -> float:
    """The smallest p a sign-flip test on n differences can give: 1/2^n."""
    return 2.0 ** -n


def prob_a_gt_b(d: Sequence[float] | np.ndarray) -> float:
    """P(A > B) over seeds: the share of paired differences above zero, ties counting half."""
    x = np.asarray(d, dtype=float)
    if x.size == 0:
        raise ValueError("P(A > B) needs at least one paired difference")
    return float((np.sum(x > 0) + 0.5 * np.sum(x == 0)) / x.size)


# ------------------------------------------------------------------------------------------------ multiplicity


def holm(pvalues: Mapping[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level `alpha` (ties keep input order)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    out = dict.fromkeys(pvalues, False)
    for i, k in enumerate(order):
        if pvalues[k] > alpha / (m - i):
            break
        out[k] = True
    return out


def bh_qvalues(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Benjamini-Hochberg q-values: the smallest false-discovery rate at which each hypothesis would be rejected."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    q: dict[str, float] = {}
    running = 1.0
    for rank in range(m, 0, -1):  # from the largest p down, so each q is the minimum over the ranks above it
        k = order[rank - 1]
        running = min(running, m * pvalues[k] / rank)
        q[k] = running
    return {k: q[k] for k in pvalues}


# ------------------------------------------------------------------------------------------------ noise and power


def noise_floor(acc: float, n_test: int) -> float:
    """Test-set noise floor of an accuracy: the binomial SD sqrt(p(1 - p)/n_test), in accuracy units."""
    if n_test <= 0:
        raise ValueError(f"the test-set size must be positive, not {n_test}")
    if not 0 <= acc <= 1:
        raise ValueError(f"accuracy must lie in [0, 1], not {acc}")
    return math.sqrt(acc * (1 - acc) / n_test)


# forms whose design alternative is a one-sided shift of Δ/σ_d: superiority (true gain Δ), non-inferiority (true
# difference 0 against margin -Δ), fewer_params (its accuracy half), absolute (true mean Δ above the threshold)
_ONE_SIDED = ("superiority", "non_inferiority", "fewer_params", "absolute")


def design_power(form: str, sigma_d: float, delta: float, n: int, alpha_look: float) -> float:
    """Probability that one analysis of n seeds at one-sided level `alpha_look` reaches SUPPORTED at the form's design
    alternative: a true effect Δ beyond the null line (one-sided forms), or a true difference 0 (equivalence, TOST).
    """
    form = getattr(form, "value", form)
    if n < 2:
        return 0.0
    if sigma_d < 0 or delta <= 0:
        raise ValueError(f"power needs sigma_d >= 0 and delta > 0, got {sigma_d} and {delta}")
    if sigma_d == 0:
        return 1.0
    tcrit = _t_quantile(1 - alpha_look, n - 1)
    if form in _ONE_SIDED:
        return float(st.nct.sf(tcrit, n - 1, delta * math.sqrt(n) / sigma_d))
    if form == "equivalence":
        return _tost_power(sigma_d, delta, n, tcrit)
    raise ValueError(f"no power calculation for form '{form}'")


def _tost_power(sigma: float, delta: float, n: int, tcrit: float, nodes: int = 201) -> float:
    """P(|d̄| + t·s/√n < Δ) at a true difference 0: Simpson's rule over w = s·√(n-1)/σ, chi-distributed with n - 1
    df (finite density at 0 even for 1 df), on its bulk up to where the half-width alone exceeds Δ."""
    df = n - 1
    w_max = delta * math.sqrt(n) * math.sqrt(df) / (tcrit * sigma)
    # the chi law's bulk: within 8 of √df holds all but ~1e-12 of it (its SD is at most 0.76)
    lo, hi = max(0.0, math.sqrt(df) - 8.0), min(w_max, math.sqrt(df) + 8.0)
    if hi <= lo:
        return 0.0
    w = np.linspace(lo, hi, nodes)
    room = delta - tcrit * sigma * w / math.sqrt(df * n)  # how far |d̄| may go for both bounds to fit
    inside = (2 * st.norm.cdf(room * math.sqrt(n) / sigma) - 1) * st.chi.pdf(w, df)
    return float(min(max(integrate.simpson(inside, x=w), 0.0), 1.0))


def seeds_needed(sigma_d: float, delta: float, form: str, looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05,
                 power: float = 0.8, *, budget: int = 100_000) -> int | None:
    """Smallest number of seeds at which one analysis at the design's per-look α′ has `power` at the form's
    design alternative (see `design_power`); None if more than `budget` seeds would be needed.

    Since the design also gets earlier looks, its power at this n is a little higher: the count is slightly cautious.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), not {power}")
    a = pocock_alpha(looks, alpha)
    hi = 2
    while design_power(form, sigma_d, delta, hi, a) < power:  # power grows with n: double, then bisect
        if hi >= budget:
            return None
        hi = min(2 * hi, budget)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if design_power(form, sigma_d, delta, mid, a) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def predict_underpowered(sigma_d: float, delta: float, form: str, looks: Sequence[int] = DEFAULT_LOOKS,
                         alpha: float = 0.05, power: float = 0.8) -> bool:
    """True when the margin cannot be resolved within the design's seed budget (its last look) at this σ_d."""
    return seeds_needed(sigma_d, delta, form, looks, alpha, power, budget=max(validate_looks(looks))) is None


def sequential_power(effect: float, sigma_d: float, looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05,
                     n_sim: int = 100_000, seed: int = SIM_SEED) -> tuple[float, float]:
    """Power and mean seeds of the sequential one-sided design (stop at the first look with L > 0, else at the last)
    at a true mean difference `effect`, by seeded simulation."""
    lk = validate_looks(looks)
    a = pocock_alpha(lk, alpha)
    rng = np.random.default_rng(seed)
    d = effect + sigma_d * rng.standard_normal((n_sim, lk[-1]))
    stopped = np.zeros(n_sim, dtype=bool)
    seeds = np.full(n_sim, float(lk[-1]))
    for n in lk:
        _, lower, _ = paired_bounds(d[:, :n], a)
        new = ~stopped & (lower > 0)
        seeds[new] = n
        stopped |= new
    return float(stopped.mean()), float(seeds.mean())
