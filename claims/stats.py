"""Statistics of the claims engine: paired t bounds, a Pocock-type sequential design, exact sign-flip tests,
power and seed counts, and multiplicity (Holm, Benjamini-Hochberg).

Design (spec/claims-method.md): paired differences d_i over shared seeds, one-sided (1 - α′) t bounds checked at
looks n = 3, 5, 8, 12 with a per-look level α′ that keeps the overall false-support rate at α (Pocock 1977). α′ and
the null law of the smallest per-look p come from one seeded simulation of the t statistics at the looks, cached per
design: the same numbers in every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy import integrate, special
from scipy import stats as st

DEFAULT_LOOKS: tuple[int, ...] = (3, 5, 8, 12)
DEFAULT_SHAPE = 0.25  # Wang-Tsiatis boundary shape: 0 O'Brien-Fleming, 0.5 Pocock (docs/method.md)
# The engine designs each claim at α · SKEW_GUARD and reports p_seq / SKEW_GUARD, so a claim is still SUPPORTED
# exactly when its reported p is <= its own α. A paired t over 3-12 seeds cannot see a tail it has not sampled: with
# one arm that now and then trains badly (10 % of seeds lose 3 σ_d, skewness of d about -0.8, as real CNN arms are
# skewed) a design at α gives about 1.7 α false SUPPORTED; at α / 2 it gives α (tests/test_calibration.py).
SKEW_GUARD = 0.5
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


def prediction_half_width(sd: float, df: int, n: int, k: int = 1, level: float = 0.95) -> float:
    """Half-width of the two-sided `level` prediction interval for the mean of k new runs around a mean of n runs."""
    return _t_quantile(0.5 + level / 2, df) * sd * math.sqrt(1.0 / k + 1.0 / n)


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


def allowed_looks(looks: Sequence[int], cap: int | None) -> tuple[int, ...]:
    """The looks a seed cap allows: those <= cap, or the cap alone when it is below the first look."""
    lk = validate_looks(looks)
    if cap is None or cap >= lk[-1]:
        return lk
    if cap < 2:
        raise ValueError(f"a claim needs at least 2 seeds per arm; the cap allows {cap}")
    return tuple(n for n in lk if n <= cap) or (int(cap),)


@cache
def _null_z(looks: tuple[int, ...], n_sim: int, seed: int) -> np.ndarray:
    """z = Φ⁻¹(1 - p) of the one-sided t p-value at each look (columns), for `n_sim` null paths of standard normal
    differences: each column is exactly N(0, 1), the columns are correlated as the looks share seeds."""
    rng = np.random.default_rng(seed)
    z = np.empty((n_sim, len(looks)))
    chunk = 100_000  # bounds the memory of one draw: chunk x n_max doubles
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        d = rng.standard_normal((m, looks[-1]))
        s1, s2 = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
        for j, n in enumerate(looks):
            mean = s1[:, n - 1] / n
            var = (s2[:, n - 1] - n * mean * mean) / (n - 1)
            t = mean / np.sqrt(np.maximum(var, 1e-300) / n)
            z[start:start + m, j] = -st.norm.ppf(st.t.sf(t, n - 1))  # the ppf stays accurate far in the tail
    z.flags.writeable = False
    return z


def _weights(looks: tuple[int, ...], shape: float) -> np.ndarray:
    """Wang-Tsiatis weights (n_j / n_K)^(1/2 - shape): the z boundary at look j is c / w_j."""
    return (np.asarray(looks, dtype=float) / looks[-1]) ** (0.5 - shape)


@cache
def _null_stat(looks: tuple[int, ...], shape: float, n_sim: int, seed: int) -> np.ndarray:
    """Sorted design statistic S = max_j w_j z_j over the null paths."""
    s = np.sort((_null_z(looks, n_sim, seed) * _weights(looks, shape)).max(axis=1))
    s.flags.writeable = False
    return s


@dataclass(frozen=True)
class Design:
    """A group-sequential design: the looks (seed counts), the overall one-sided α, the boundary shape, and the
    nominal one-sided level α_j of the t test at each look. shape 0 is O'Brien-Fleming-type, 0.5 Pocock."""

    looks: tuple[int, ...]
    alpha: float
    shape: float
    levels: tuple[float, ...]

    @property
    def name(self) -> str:
        kind = {0.0: "O'Brien-Fleming-type", 0.5: "Pocock-type"}.get(self.shape, f"Wang-Tsiatis shape {self.shape}")
        return f"looks {', '.join(map(str, self.looks))} ({kind})"

    def level(self, n: int) -> float:
        """α_j of the look at n seeds (a look the design does not have gets the level of the last look below)."""
        j = max((i for i, m in enumerate(self.looks) if m <= n), default=0)
        return self.levels[j]


def design(looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05, shape: float = DEFAULT_SHAPE,
           n_sim: int = N_SIM, seed: int = SIM_SEED) -> Design:
    """The design at `looks` whose per-look levels α_j = Φ̄(c / w_j) keep the overall false-support rate at `alpha`.

    c is the (1 - alpha) quantile of S = max_j w_j z_j under the null (seeded simulation of t statistics at the
    looks, so small-sample t is exact at every look). A single look gets `alpha` itself.
    """
    lk = validate_looks(looks)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    if not 0 <= shape <= 0.5:
        raise ValueError(f"the boundary shape must lie in [0, 0.5] (0 O'Brien-Fleming, 0.5 Pocock), not {shape}")
    return _design(lk, float(alpha), float(shape), int(n_sim), int(seed))


@cache
def _design(looks: tuple[int, ...], alpha: float, shape: float, n_sim: int, seed: int) -> Design:
    if len(looks) == 1:
        return Design(looks, alpha, shape, (alpha,))
    c = float(np.quantile(_null_stat(looks, shape, n_sim, seed), 1 - alpha))
    levels = tuple(float(st.norm.sf(c / w)) for w in _weights(looks, shape))
    return Design(looks, alpha, shape, levels)


def pocock_alpha(looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05, n_sim: int = N_SIM,
                 seed: int = SIM_SEED) -> float:
    """The constant per-look level of the Pocock-type design: ≈ 0.017 for 3, 5, 8, 12 and ≈ 0.029 for 5, 10 at
    alpha = 0.05 (the method's table); the engine's default design is O'Brien-Fleming-type (`design`)."""
    return design(looks, alpha, 0.5, n_sim, seed).levels[0]


def sequential_p(p_seen: Sequence[float], looks: Sequence[int] = DEFAULT_LOOKS, shape: float = DEFAULT_SHAPE,
                 n_sim: int = N_SIM, seed: int = SIM_SEED) -> float:
    """Null probability that the design statistic reaches the value seen so far; `p_seen[j]` is the one-sided t p of
    the support test at `looks[j]` (the first looks, in order).

    Definition: p_seq = P_H0(max over all the design's looks of w_j z_j >= max over the looks seen of w_j z_j), with
    z_j = Φ⁻¹(1 - p_j). It is a valid p-value however the claim stopped (looks not reached only make the observed
    maximum smaller), and p_seq <= alpha exactly when some look reached its level α_j of `design(looks, alpha)`.
    Below the simulation's resolution the union bound Σ_j Φ̄(s / w_j) takes over, so tiny p stay valid and monotone.
    """
    lk = validate_looks(looks)
    if not p_seen:
        raise ValueError("sequential_p needs the p-value of at least one look")
    if len(p_seen) > len(lk):
        raise ValueError(f"{len(p_seen)} p-values for a design of {len(lk)} looks")
    p = np.asarray(p_seen, dtype=float)
    if np.isnan(p).any():
        raise ValueError("sequential_p got a NaN p-value")
    return float(sequential_p_rows(p[None, :], np.array([len(p)]), lk, shape, n_sim, seed)[0])


def sequential_p_rows(p: np.ndarray, seen: np.ndarray, looks: Sequence[int] = DEFAULT_LOOKS,
                      shape: float = DEFAULT_SHAPE, n_sim: int = N_SIM, seed: int = SIM_SEED) -> np.ndarray:
    """`sequential_p` of many claims at once: row i reads the first `seen[i]` p-values of `p[i]` (simulations)."""
    lk = validate_looks(looks)
    p = np.clip(np.atleast_2d(np.asarray(p, dtype=float)), 0.0, 1.0)
    seen = np.asarray(seen, dtype=int)
    if len(lk) == 1:
        return p[:, 0].copy()
    w = _weights(lk, float(shape))
    cols = np.arange(p.shape[1])
    with np.errstate(divide="ignore"):
        z = np.where(cols[None, :] < seen[:, None], -st.norm.ppf(p) * w[:p.shape[1]], -np.inf)
    s = z.max(axis=1)
    null = _null_stat(lk, float(shape), int(n_sim), int(seed))
    k = len(null) - np.searchsorted(null, s, side="left")
    floor = 100  # below this many null draws the empirical tail is too noisy to trust
    with np.errstate(invalid="ignore"):
        union = np.minimum(st.norm.sf(s[:, None] / w[None, :]).sum(axis=1), floor / len(null))
    out = np.where(k >= floor, k / len(null), union)
    return np.where(s == -np.inf, 1.0, out)


CONFIRM_MIN_NEW = 2  # --confirm: a SUPPORTED claim needs this many seeds below its cap to sample for confirmation


def confirmation_p(x_new: Sequence[float] | np.ndarray, shift: float = 0.0) -> Any:
    """--confirm's p: the one-sided t p for mean > shift on the seeds added after the decision only. Those seeds are
    independent of the stretch that made the claim SUPPORTED, so selecting the claim for confirmation does not bias
    them, and one analysis at the cap (no further looks) keeps it a plain t p. Vectorized over rows, like t_pvalue.
    """
    x = np.asarray(x_new, dtype=float)
    if x.shape[-1] < CONFIRM_MIN_NEW:
        raise ValueError(f"a confirmation p needs at least {CONFIRM_MIN_NEW} new seeds, got {x.shape[-1]}")
    return t_pvalue(x, shift)


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


def prob_a_gt_b_interval(d: Sequence[float] | np.ndarray, conf: float = 0.95) -> tuple[float, float, float]:
    """P(A beats B on a new seed): the share of paired differences above zero (ties half) with its two-sided Wilson
    score interval at `conf`. Distribution-free (seeds are independent draws; nothing assumes normal or symmetric
    differences, which real arms are not), and unlike the Wald interval it stays inside [0, 1] and is not empty
    when every seed agrees: 12 of 12 seeds give [0.76, 1]."""
    x = np.asarray(d, dtype=float)
    n = x.size
    if n == 0:
        raise ValueError("P(A > B) needs at least one paired difference")
    if not 0 < conf < 1:
        raise ValueError(f"the confidence level must lie in (0, 1), not {conf}")
    share = prob_a_gt_b(x)
    z = float(st.norm.ppf(0.5 + conf / 2))
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return share, max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------------------ multiplicity


def skewness(x: Sequence[float]) -> float | None:
    """Adjusted Fisher-Pearson sample skewness G1; None below 3 values or when every value is the same."""
    n = len(x)
    if n < 3:
        return None
    m = sum(x) / n
    m2 = sum((v - m) ** 2 for v in x) / n
    if m2 <= 0:
        return None
    m3 = sum((v - m) ** 3 for v in x) / n
    return math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5


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
        return float(_tost_power(0.0, sigma_d, delta, n, tcrit))
    raise ValueError(f"no power calculation for form '{form}'")


@cache
def _chi_pdf(df: int, nodes: int, start: float) -> np.ndarray:
    w = np.linspace(start, math.sqrt(df) + 8.0, nodes)
    return st.chi.pdf(w, df)


def _tost_power(mu: Any, sigma: Any, delta: float, n: int, tcrit: float, nodes: int = 401) -> Any:
    """P(-Δ < L and U < Δ) at a true difference `mu`: Simpson's rule over w = s·√(n-1)/σ, chi-distributed with n - 1
    df, on its bulk (within 8 of √df holds all but ~1e-12 of it). Vectorized over arrays `mu`, `sigma`."""
    df = n - 1
    mu, sigma = np.asarray(mu, dtype=float)[..., None], np.asarray(sigma, dtype=float)[..., None]
    w = np.linspace(max(0.0, math.sqrt(df) - 8.0), math.sqrt(df) + 8.0, nodes)
    room = np.maximum(delta - tcrit * sigma * w / math.sqrt(df * n), 0.0)  # how far d̄ may go for both to fit
    z = math.sqrt(n) / sigma
    inside = np.maximum(special.ndtr((room - mu) * z) - special.ndtr((-room - mu) * z), 0.0) * _chi_pdf(df, nodes, w[0])
    return np.clip(integrate.simpson(inside, x=w, axis=-1), 0.0, 1.0)


def decision_power(form: str, mean: Any, sd: Any, delta: float, n: int, level: float, *,
                   fast: bool = False) -> tuple[Any, Any]:
    """Chances that one analysis of n seeds at one-sided `level` reaches SUPPORTED and REFUTED, if the true mean
    difference is `mean` and its SD `sd` (vectorized over arrays of both). `mean` is of d - offset for the paired
    forms and of A - threshold for absolute claims (whose Δ is unused)."""
    form = getattr(form, "value", form)
    mean, sd = np.asarray(mean, dtype=float), np.maximum(np.asarray(sd, dtype=float), 1e-12)
    tcrit, df, root = _t_quantile(1 - level, n - 1), n - 1, math.sqrt(n)

    def one(effect: Any) -> Any:  # power of one one-sided t test whose true excess over its null line is `effect`
        if fast:  # the normal approximation of the noncentral t (Abramowitz-Stegun 26.7.10): within 0.005 at df >= 7
            return special.ndtr((effect * root / sd - tcrit * (1 - 1 / (4 * df))) / math.sqrt(1 + tcrit**2 / (2 * df)))
        return st.nct.sf(tcrit, df, effect * root / sd)

    if form in ("superiority", "fewer_params"):
        return one(mean), one(delta - mean)
    if form == "non_inferiority":
        return one(mean + delta), one(-delta - mean)
    if form == "equivalence":
        return _tost_power(mean, sd, delta, n, tcrit, 41 if fast else 401), one(mean - delta) + one(-delta - mean)
    if form == "absolute":
        return one(mean), one(-mean)
    raise ValueError(f"no power calculation for form '{form}'")


ASSURANCE_NODES = 21  # equal-probability nodes of the t posterior of the true mean that `assurance` averages over


@cache
def _t_nodes(df: int, nodes: int) -> np.ndarray:
    """Midpoint quantiles of Student's t with `df` degrees of freedom: `nodes` points of equal probability."""
    q = st.t.ppf((np.arange(nodes) + 0.5) / nodes, df)
    q.flags.writeable = False
    return q


def assurance(form: str, mean: Any, sd: Any, n_obs: int, delta: float, n: int, level: float,
              nodes: int = ASSURANCE_NODES) -> Any:
    """Predictive chance that one analysis of n seeds at one-sided `level` reaches a verdict (SUPPORTED or REFUTED),
    averaged over what n_obs seeds say of the true mean rather than taken at their point estimate.

    The true mean is drawn from its t posterior, mean + sd/√n_obs · T(n_obs - 1) (flat prior), at `nodes` quantiles
    of equal probability; σ is held at `sd`. The chance of a verdict at each true mean is the sum of the chances of
    SUPPORTED and of REFUTED (`decision_power`), capped at 1: an upper bound, so a futility rule reading it stops
    no more often than the exact chance would. The one-sided powers use the normal approximation of the noncentral
    t and TOST a coarser quadrature (`decision_power(fast=True)`: within 0.005 at 7 df or more, 0.02 at 4), so that
    simulations of many claims stay fast. Vectorized over arrays `mean`, `sd` (one claim each).
    """
    if n_obs < 2:
        raise ValueError(f"assurance needs at least 2 observed seeds, got {n_obs}")
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    q = _t_nodes(n_obs - 1, nodes)
    mu = mean[..., None] + (sd / math.sqrt(n_obs))[..., None] * q
    p_sup, p_ref = decision_power(form, mu, np.broadcast_to(sd[..., None], mu.shape), delta, n, level, fast=True)
    return np.minimum(1.0, np.asarray(p_sup) + np.asarray(p_ref)).mean(axis=-1)


def seeds_to_decide(form: str, mean: float, sd: float, delta: float, level: float, power: float = 0.8, *,
                    budget: int = 100_000) -> int | None:
    """Smallest n at which one analysis at `level` reaches a verdict (SUPPORTED or REFUTED, the likelier one) with
    chance `power` if the truth is the observed `mean` and `sd` (see `decision_power`); None beyond `budget`.

    This is the "needs ~N seeds" of an inconclusive claim: at the observed d̄, not at a true difference of 0, so a
    d̄ that sits near a null line asks for many seeds even when σ_d is small.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), not {power}")
    if sd <= 0:
        return 2

    return _smallest_n(lambda n: max(float(v) for v in decision_power(form, mean, sd, delta, n, level)) >= power,
                       budget)


def _smallest_n(enough: Callable[[int], bool], budget: int) -> int | None:
    """The smallest n >= 2 with `enough(n)`, for a condition that stays true once true (power grows with n): double,
    then bisect; None if even `budget` is not enough."""
    hi = 2
    while not enough(hi):
        if hi >= budget:
            return None
        hi = min(2 * hi, budget)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def seeds_needed(sigma_d: float, delta: float, form: str, looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05,
                 power: float = 0.8, *, budget: int = 100_000, shape: float = DEFAULT_SHAPE) -> int | None:
    """Smallest number of seeds at which one analysis at the design's last-look level has `power` at the form's
    design alternative (see `design_power`); None if more than `budget` seeds would be needed. Used before any run
    (the pilot's σ_d, no d̄ yet); once runs exist, `seeds_to_decide` predicts at the observed d̄.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), not {power}")
    a = design(looks, alpha, shape).levels[-1]
    return _smallest_n(lambda n: design_power(form, sigma_d, delta, n, a) >= power, budget)


def predict_underpowered(sigma_d: float, delta: float, form: str, looks: Sequence[int] = DEFAULT_LOOKS,
                         alpha: float = 0.05, power: float = 0.8) -> bool:
    """True when the margin cannot be resolved within the design's seed budget (its last look) at this σ_d."""
    return seeds_needed(sigma_d, delta, form, looks, alpha, power, budget=max(validate_looks(looks))) is None


def sequential_power(effect: float, sigma_d: float, looks: Sequence[int] = DEFAULT_LOOKS, alpha: float = 0.05,
                     n_sim: int = 100_000, seed: int = SIM_SEED, shape: float = DEFAULT_SHAPE) -> tuple[float, float]:
    """Power and mean seeds of the sequential one-sided design (stop at the first look with L > 0 at its level α_j,
    else at the last) at a true mean difference `effect`, by seeded simulation."""
    des = design(looks, alpha, shape)
    rng = np.random.default_rng(seed)
    d = effect + sigma_d * rng.standard_normal((n_sim, des.looks[-1]))
    stopped = np.zeros(n_sim, dtype=bool)
    seeds = np.full(n_sim, float(des.looks[-1]))
    for n, a in zip(des.looks, des.levels, strict=True):
        _, lower, _ = paired_bounds(d[:, :n], a)
        new = ~stopped & (lower > 0)
        seeds[new] = n
        stopped |= new
    return float(stopped.mean()), float(seeds.mean())


# ------------------------------------------------------------------------------------------------ the suite's family


@dataclass
class Multiplicity:
    """Holm and Benjamini-Hochberg over the family of hypotheses that trained, mapped back to the claims."""

    hypothesis: dict[str, str]  # claim id -> the hypothesis it counts as (its own id, or the id it restates)
    p: dict[str, float]  # hypothesis -> its sequential p-value
    holm: dict[str, bool]  # claim id -> SUPPORTED and rejected by Holm at the family-wise level
    fdr: dict[str, bool]  # claim id -> SUPPORTED and rejected by BH at the false-discovery rate
    q: dict[str, float]  # claim id -> its hypothesis's BH q-value


def multiplicity(claims: Sequence[Any], decisions: Mapping[str, Any], alpha: float) -> Multiplicity:
    """The suite's multiplicity layer over the sequential p-values of the claims that trained.

    A claim with no decision or no finite sequential p (never run, not runnable here, needs a GPU) is not in the
    family. A claim that restates another (`Claim.restates`) is the same hypothesis: the family holds it once, with
    the restated claim's p when that claim trained (else its own), and both claims share its outcome. Each claim's
    flag is True only where its own verdict is SUPPORTED and its hypothesis is rejected: a REFUTED claim with a small
    p of its support test cannot "hold"."""

    def p_of(cid: str) -> float | None:
        d = decisions.get(cid)
        p = getattr(d, "p_seq", None)
        return None if p is None or math.isnan(float(p)) else float(p)

    hyp: dict[str, str] = {}
    pvals: dict[str, float] = {}
    by_id = {c.id: c for c in claims}
    for c in claims:
        if p_of(c.id) is None:
            continue
        h = getattr(c, "restates", None) or c.id
        h = h if h in by_id else c.id
        hyp[c.id] = h
        own = p_of(h)
        pvals[h] = own if own is not None else pvals.get(h, p_of(c.id))
    rejected_holm = holm(pvals, alpha) if pvals else {}
    q = bh_qvalues(pvals) if pvals else {}

    def supported(cid: str) -> bool:
        verdict = decisions[cid].verdict
        return str(getattr(verdict, "value", verdict)) == "SUPPORTED"

    return Multiplicity(hyp, pvals, {c: bool(rejected_holm[h]) and supported(c) for c, h in hyp.items()},
                        {c: q[h] <= alpha and supported(c) for c, h in hyp.items()}, {c: q[h] for c, h in hyp.items()})


def holm_status(decisions: Mapping[str, Any], alpha: float) -> dict[str, bool]:
    """Holm over the claims' sequential p-values: True where a SUPPORTED claim still holds at family level `alpha`
    (every decision its own hypothesis; `multiplicity` merges restated claims)."""
    from types import SimpleNamespace

    return multiplicity([SimpleNamespace(id=cid) for cid in decisions], decisions, alpha).holm
