"""Calibration of the verdict engine by simulation: synthetic paired differences through `claims.spec.judge` (and
`claims.spec.walk`, the same sequential rules on many rows at once, checked against `judge` first), with the design's
looks and a seed cap, under normal and skewed noise; the reported repeated intervals' coverage; and the suite's
multiplicity layer (`claims.report.multiplicity`: Holm and Benjamini-Hochberg) under the global null.

Every rate is compared with its target plus three Monte-Carlo standard errors, from a fixed generator, so a run is
deterministic and a real regression (a rate well above the target) fails.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from claims import stats
from claims.report import multiplicity
from claims.spec import SUPPORTED_, Form, Verdict, claim_design, design_alpha, judge, walk
from tests.test_spec import BASE_ACC, A, B, claim, run

SIGMA = 0.01  # σ_d = 1 pp, as the spec's examples
DELTA = 0.01
CAP = 12


def _mc(rate: float, sims: int) -> float:
    """Three Monte-Carlo standard errors of a rate near `rate` over `sims` draws."""
    return 3 * math.sqrt(rate * (1 - rate) / sims)


def _noise(rng: np.random.Generator, sims: int, kind: str) -> np.ndarray:
    """Mean-zero noise of SD about σ_d: normal, or skewed the way a CNN arm that sometimes trains badly skews d.

    mild: 10 % of seeds lose 3 σ_d (the audit's case); strong: 5 % lose 6 σ_d. Centred so the true mean is exactly 0.
    """
    z = SIGMA * rng.standard_normal((sims, CAP))
    if kind == "normal":
        return z
    share, loss = {"mild": (0.10, 3.0), "strong": (0.05, 6.0)}[kind]
    bad = rng.random((sims, CAP)) < share
    return z - loss * SIGMA * bad + share * loss * SIGMA


# the null boundary of each form: the true difference at which SUPPORTED would be a false verdict
NULLS = {Form.SUPERIORITY: 0.0, Form.NONINFERIORITY: -DELTA, Form.EQUIVALENCE: DELTA, Form.FEWER_PARAMS: 0.0}


def _claim(form: Form, looks: tuple[int, ...] = (3, 5, 8, 12)):
    if form is Form.ABSOLUTE:
        return claim(Form.ABSOLUTE, threshold=BASE_ACC, looks=looks)
    return claim(form, delta=DELTA, looks=looks)


def _walk_supported(c, x: np.ndarray, cap: int) -> np.ndarray:
    """Which rows of paired values `x` the engine SUPPORTS under the looks a seed cap of `cap` allows."""
    looks = stats.allowed_looks(c.looks, cap)
    des = claim_design(c, looks, cap, last_look=True)
    shift = BASE_ACC if c.form is Form.ABSOLUTE else 0.0  # an absolute claim's values are A's accuracies
    code, _, _ = walk(c, shift + x[:, :cap], None, des, [m for m in des.looks if m <= cap])
    return code == SUPPORTED_


def _results(c, x: np.ndarray) -> dict:
    """Run results whose A - B (or A, for an absolute claim) per seed is `x` (B at BASE_ACC on every seed)."""
    params = 900 if c.form is Form.FEWER_PARAMS else 1000
    if c.form is Form.ABSOLUTE:
        return {A.key: {s: run(A, s, BASE_ACC + v) for s, v in enumerate(x)}}
    return {A.key: {s: run(A, s, BASE_ACC + v, params=params) for s, v in enumerate(x)},
            B.key: {s: run(B, s, BASE_ACC) for s in range(len(x))}}


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS,
                                  Form.ABSOLUTE])
def test_walk_gives_the_verdicts_judge_gives(form):
    """The vectorised rules the rate tests use are the judge's own: same verdict on every simulated path."""
    c = _claim(form)
    rng = np.random.default_rng(1)
    true = NULLS.get(form, 0.0) + rng.choice([-DELTA, 0.0, DELTA, 2 * DELTA], size=(120, 1))
    x = true + _noise(rng, 120, "normal")
    fast = _walk_supported(c, x, CAP)
    slow = np.array([judge(c, _results(c, row), last_look=True).verdict is Verdict.SUPPORTED for row in x])
    assert (fast == slow).all() and 0 < slow.sum() < len(slow)  # and both verdicts occur


@pytest.mark.parametrize("cap", [12, 5])
@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS,
                                  Form.ABSOLUTE])
def test_false_support_stays_within_alpha_under_normal_noise_with_the_looks_and_the_cap(form, cap):
    sims = 20_000
    c = _claim(form)
    x = NULLS.get(form, 0.0) + _noise(np.random.default_rng(2 + cap), sims, "normal")
    rate = _walk_supported(c, x, cap).mean()
    assert rate <= c.alpha + _mc(c.alpha, sims), rate


@pytest.mark.parametrize("cap", [12, 5])
def test_the_cap_spends_the_whole_design_alpha_rather_than_a_fraction_of_it(cap):
    """The per-look levels come from the looks the cap allows: at the null the rate is near the design's α (the
    claim's α times the skew guard), not far below it."""
    sims = 20_000
    c = _claim(Form.SUPERIORITY)
    a = design_alpha(c)
    rate = _walk_supported(c, _noise(np.random.default_rng(9), sims, "normal"), cap).mean()
    assert a - _mc(a, sims) - 0.005 <= rate <= a + _mc(a, sims), rate


@pytest.mark.parametrize("cap", [12, 5])
@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS])
def test_false_support_stays_within_alpha_under_mild_skew(form, cap):
    """One arm that now and then trains badly (10 % of seeds lose 3 σ_d; skewness of d about -0.8, the range the
    profile study measured on real runs): a design at α gave 8.4 % here; the skew guard's α / 2 brings it to α."""
    sims = 20_000
    c = _claim(form)
    x = NULLS.get(form, 0.0) + _noise(np.random.default_rng(3), sims, "mild")
    rate = _walk_supported(c, x, cap).mean()
    assert rate <= c.alpha + _mc(c.alpha, sims), rate


def test_false_support_under_strong_skew_is_bounded():
    """Regression guard on what no data rule over 12 seeds can fix: 5 % of seeds lose 6 σ_d (skewness about -2.1).
    Measured 8.0 % with the guard (13 % at a design of α); pinned from growing."""
    sims = 20_000
    c = _claim(Form.SUPERIORITY)
    rate = _walk_supported(c, _noise(np.random.default_rng(3), sims, "strong"), CAP).mean()
    assert rate <= 0.09, rate


@pytest.mark.parametrize("true_d", [0.0, DELTA, 3 * DELTA])
def test_the_reported_repeated_intervals_cover_the_true_difference_after_sequential_stopping(true_d):
    sims = 1_000
    c = _claim(Form.SUPERIORITY)
    x = true_d + _noise(np.random.default_rng(4), sims, "normal")
    covered = []
    for row in x:
        d = judge(c, _results(c, row), last_look=True)
        covered.append(d.ci_lower <= true_d <= d.ci_upper)
    assert np.mean(covered) >= 0.93, np.mean(covered)


def _null_family(rng: np.random.Generator, m: int) -> dict[str, SimpleNamespace]:
    """m superiority claims with no true effect, judged by the engine: their decisions (verdict and sequential p)."""
    c = _claim(Form.SUPERIORITY)
    x = _noise(rng, m, "normal")
    out = {}
    for i, row in enumerate(x):
        d = judge(c, _results(c, row), last_look=True)
        out[f"N-{i}"] = SimpleNamespace(verdict=d.verdict, p_seq=d.p_seq)
    return out


def test_holm_and_bh_keep_their_levels_under_the_global_null():
    """Families of 10 claims all without an effect: Holm's family-wise error and BH's false-discovery rate (which
    under the global null is the chance of any discovery) stay at 5 %, and both are tighter than per-claim α."""
    families, m = 300, 10
    rng = np.random.default_rng(6)
    any_holm = any_bh = any_raw = 0
    for _ in range(families):
        decisions = _null_family(rng, m)
        claims = [SimpleNamespace(id=k, restates=None) for k in decisions]
        mult = multiplicity(claims, decisions, 0.05)
        any_holm += any(mult.holm.values())
        any_bh += any(mult.fdr.values())
        any_raw += any(d.verdict is Verdict.SUPPORTED for d in decisions.values())
    assert any_holm / families <= 0.05 + _mc(0.05, families)
    assert any_bh / families <= 0.05 + _mc(0.05, families)
    assert any_raw / families > 0.15  # without the layer, ten claims at 5 % each find something far more often


def test_the_sequential_p_is_uniform_enough_under_the_null_for_holm_to_use():
    """P(p_seq <= a) <= a at the levels Holm and BH use on a family of 10 to 57 claims."""
    rng = np.random.default_rng(8)
    decisions = _null_family(rng, 1_500)
    p = np.array([d.p_seq for d in decisions.values()])
    for a in (0.05, 0.01, 0.005, 0.001):
        assert np.mean(p <= a) <= a + _mc(max(a, 0.002), len(p)), (a, np.mean(p <= a))


def test_holm_after_confirm_sampling_keeps_the_family_level_under_the_global_null():
    """--confirm lets SUPPORTED claims that miss Holm take more looks (the sequential p then reads them); under the
    global null the family error after that sampling stays at 5 % (3.7 % measured over 300 families)."""
    c = _claim(Form.SUPERIORITY)
    looks = tuple(c.looks)
    rng = np.random.default_rng(17)
    families, m, errors = 200, 10, 0
    for _ in range(families):
        x = _noise(rng, m, "normal")
        dec = {f"N{i}": judge(c, _results(c, row), last_look=True) for i, row in enumerate(x)}
        seen = {k: d.n for k, d in dec.items()}  # seeds each claim has run (a Decision's n is its deciding look)
        claims = [SimpleNamespace(id=k, restates=None) for k in dec]
        while True:  # what Scheduler._confirm does, on simulated claims
            held = multiplicity(claims, dec, 0.05).holm
            todo = [k for k, d in dec.items() if d.verdict is Verdict.SUPPORTED and not held[k]
                    and seen[k] < looks[-1]]
            if not todo:
                break
            for k in todo:
                seen[k] = n = looks[looks.index(seen[k]) + 1]
                dec[k] = judge(c, _results(c, x[int(k[1:]), :n]), last_look=n == looks[-1], confirm=True)
        errors += any(multiplicity(claims, dec, 0.05).holm.values())
    assert errors / families <= 0.05 + _mc(0.05, families), errors / families
