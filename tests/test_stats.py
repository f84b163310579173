"""claims.stats: the t bounds, the sequential design's numbers from spec/claims-method.md, sign-flip tests, Holm/BH."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from claims import stats

LOOKS = (3, 5, 8, 12)
finite = hst.floats(min_value=-1.0, max_value=1.0, allow_nan=False).filter(lambda x: x == 0 or abs(x) > 1e-6)


# ---------------------------------------------------------------------------------------------- t bounds


def test_paired_bounds_match_a_hand_computed_interval():
    mean, lower, upper = stats.paired_bounds([1.0, 2.0, 3.0], 0.05)
    half = 2.919986 / math.sqrt(3)  # t(0.95, 2) = 2.919986, s_d = 1
    assert (mean, lower, upper) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-6)


def test_paired_bounds_with_no_spread_collapse_to_the_mean_without_nan():
    assert stats.paired_bounds([0.25, 0.25, 0.25, 0.25], 0.017) == (0.25, 0.25, 0.25)


def test_paired_bounds_need_two_differences_and_a_level_in_0_1():
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_bounds([0.1], 0.05)
    with pytest.raises(ValueError, match="alpha"):
        stats.paired_bounds([0.1, 0.2], 1.5)


def test_paired_bounds_of_rows_equal_the_bounds_of_each_row():
    d = np.random.default_rng(1).normal(size=(4, 6))
    mean, lower, upper = stats.paired_bounds(d, 0.02)
    for i in range(4):
        assert (mean[i], lower[i], upper[i]) == pytest.approx(stats.paired_bounds(d[i], 0.02))


@pytest.mark.parametrize("n,alpha", [(3, 0.05), (5, 0.017), (12, 0.05)])
def test_one_sided_bounds_cover_the_true_mean_at_the_nominal_rate(n, alpha):
    sims = 20_000
    d = 0.3 + 0.01 * np.random.default_rng(n).standard_normal((sims, n))
    _, lower, upper = stats.paired_bounds(d, alpha)
    tol = 3 * math.sqrt(alpha * (1 - alpha) / sims)
    assert abs(np.mean(lower <= 0.3) - (1 - alpha)) < tol
    assert abs(np.mean(upper >= 0.3) - (1 - alpha)) < tol


def test_t_pvalue_agrees_with_the_bounds_and_handles_no_spread():
    d = np.array([0.02, 0.035, 0.01, 0.03])
    p = stats.t_pvalue(d)
    _, lower, _ = stats.paired_bounds(d, p)
    assert lower == pytest.approx(0.0, abs=1e-12)  # the bound sits on 0 exactly at level p
    assert stats.t_pvalue([0.1, 0.1, 0.1]) == 0.0 and stats.t_pvalue([0.0, 0.0]) == 1.0


# ---------------------------------------------------------------------------------------------- sequential design


def test_pocock_alpha_reproduces_the_spec_levels():
    assert stats.pocock_alpha(LOOKS, 0.05) == pytest.approx(0.017, abs=0.0005)
    assert stats.pocock_alpha((5, 10), 0.05) == pytest.approx(0.029, abs=0.0005)
    assert stats.pocock_alpha((8,), 0.05) == 0.05  # one look needs no correction


def test_pocock_alpha_does_not_hinge_on_the_simulation_seed():
    other = stats.pocock_alpha(LOOKS, 0.05, n_sim=100_000, seed=7)
    assert other == pytest.approx(stats.pocock_alpha(LOOKS, 0.05), abs=0.0006)


def test_the_per_look_level_keeps_the_overall_false_support_rate_while_alpha_at_every_look_inflates_it():
    sims = 40_000  # an independent simulation from pocock_alpha's own
    d = np.random.default_rng(99).standard_normal((sims, 12))
    p_min = np.min([stats.t_pvalue(d[:, :n]) for n in LOOKS], axis=0)
    tol = 3 * math.sqrt(0.05 * 0.95 / sims)
    assert abs(np.mean(p_min <= stats.pocock_alpha(LOOKS, 0.05)) - 0.05) < tol
    assert 0.11 < np.mean(p_min <= 0.05) < 0.15  # the spec's "about 13 %"


@pytest.mark.parametrize("looks,effect,power,mean_seeds", [
    (LOOKS, 1.0, 0.86, 8.1), (LOOKS, 1.5, 0.99, 5.9), ((5, 10), 1.0, 0.84, 7.8), ((5, 10), 1.5, 0.99, 6.3)])
def test_sequential_power_and_mean_seeds_reproduce_the_spec_table(looks, effect, power, mean_seeds):
    got_power, got_seeds = stats.sequential_power(effect, 1.0, looks, n_sim=20_000, shape=0.5)  # the spec's Pocock
    assert got_power == pytest.approx(power, abs=0.015)
    assert got_seeds == pytest.approx(mean_seeds, abs=0.15)


@pytest.mark.parametrize("n,powers,tol", [(5, (0.29, 0.73, 0.95), 0.01), (8, (0.63, 0.97, 1.00), 0.01),
                                          (12, (0.85, 1.00, 1.00), 0.05)])  # the spec gives "≈ 0.85" at 12
def test_tost_power_at_a_true_difference_of_zero_reproduces_the_spec_table(n, powers, tol):
    for ratio, expected in zip((1.0, 1.5, 2.0), powers, strict=True):
        assert stats.design_power("equivalence", 1.0, ratio, n, 0.05) == pytest.approx(expected, abs=tol)


def test_tost_power_agrees_with_a_simulation_of_the_two_bounds():
    n, ratio, a = 4, 1.5, 0.03
    d = np.random.default_rng(4).standard_normal((50_000, n))
    _, lower, upper = stats.paired_bounds(d, a)
    simulated = np.mean((lower > -ratio) & (upper < ratio))
    assert stats.design_power("equivalence", 1.0, ratio, n, a) == pytest.approx(simulated, abs=0.01)


def test_the_engine_design_sits_between_obrien_fleming_and_pocock_and_buys_power_with_seeds():
    des = stats.design(LOOKS, 0.05 * stats.SKEW_GUARD)  # a claim at α = 0.05 is designed at 0.025 (the skew guard)
    assert des.shape == stats.DEFAULT_SHAPE == 0.25 and list(des.levels) == sorted(des.levels)
    assert 0.001 < des.levels[0] < 0.0016 and 0.015 < des.levels[-1] < 0.018  # little α at 3 seeds, most at 12
    power, seeds = stats.sequential_power(1.0, 1.0, LOOKS, alpha=0.025, n_sim=20_000)
    assert power == pytest.approx(0.84, abs=0.015) and seeds == pytest.approx(9.7, abs=0.15)
    obf = stats.sequential_power(1.0, 1.0, LOOKS, alpha=0.025, n_sim=20_000, shape=0.0)
    assert obf[0] > power and obf[1] > seeds  # O'Brien-Fleming: a little more power for more seeds


def test_obf_levels_keep_the_overall_false_support_rate_in_an_independent_simulation():
    sims = 40_000
    d = np.random.default_rng(98).standard_normal((sims, 12))
    levels = stats.design(LOOKS, 0.05).levels
    hit = np.any([stats.t_pvalue(d[:, :n]) <= a for n, a in zip(LOOKS, levels, strict=True)], axis=0)
    assert abs(hit.mean() - 0.05) < 3 * math.sqrt(0.05 * 0.95 / sims)


def test_a_seed_cap_gives_the_levels_of_the_looks_it_allows():
    assert stats.allowed_looks(LOOKS, 5) == (3, 5) and stats.allowed_looks(LOOKS, 4) == (3,)
    assert stats.allowed_looks(LOOKS, 2) == (2,) and stats.allowed_looks(LOOKS, None) == LOOKS
    capped = stats.design(stats.allowed_looks(LOOKS, 5), 0.05)
    assert capped.levels[-1] > stats.design(LOOKS, 0.05).levels[1]  # the cap's last look spends what is left
    sims = 40_000
    d = np.random.default_rng(97).standard_normal((sims, 5))
    hit = np.any([stats.t_pvalue(d[:, :n]) <= a for n, a in zip((3, 5), capped.levels, strict=True)], axis=0)
    assert abs(hit.mean() - 0.05) < 3 * math.sqrt(0.05 * 0.95 / sims)  # the whole α, not ~3 %


def test_sequential_p_is_alpha_at_the_per_look_level_and_monotone():
    des = stats.design(LOOKS, 0.05)
    for j, a in enumerate(des.levels):  # crossing any look's level exactly gives p_seq = α
        assert stats.sequential_p([1.0] * j + [a], LOOKS) == pytest.approx(0.05, abs=5e-4)
    ps = [1e-12, 1e-9, 1e-5, 1e-3, 0.01, 0.03, 0.2, 1.0]
    seq = [stats.sequential_p([1.0, 1.0, p], LOOKS) for p in ps]
    assert seq == sorted(seq) and seq[-1] == 1.0 and seq[0] > 0
    assert stats.sequential_p([0.4, 0.02, 0.3], LOOKS) == stats.sequential_p([1.0, 0.02], LOOKS)  # the max counts
    assert stats.sequential_p([0.02], (5,)) == 0.02  # one look: the p itself
    assert stats.sequential_p([0.01], LOOKS, shape=0.5) == pytest.approx(0.031, abs=0.002)  # Pocock: ~3·p


def test_look_sequence_is_the_looks_passed_then_n():
    assert stats.look_sequence(12, LOOKS) == LOOKS
    assert stats.look_sequence(6, LOOKS) == (3, 5, 6)
    assert stats.look_sequence(2, LOOKS) == (2,)
    with pytest.raises(ValueError, match="increasing"):
        stats.validate_looks((5, 3))


# ---------------------------------------------------------------------------------------------- sign flips


def test_sign_flip_p_enumerates_the_sign_patterns():
    assert stats.sign_flip_p([1.0, 2.0, 3.0]) == 1 / 8
    assert stats.sign_flip_p([1.0, -2.0, 3.0]) == 3 / 8  # sums 6, 4 and 2 reach the observed 2
    assert stats.sign_flip_p([-1.0, -2.0, -3.0]) == 1.0
    assert stats.sign_flip_p([0.5] * 5) == stats.sign_flip_floor(5) == 1 / 32


@settings(max_examples=60, deadline=None)
@given(hst.lists(finite, min_size=1, max_size=9))
def test_sign_flip_p_invariants(d):
    p = stats.sign_flip_p(d)
    assert stats.sign_flip_floor(len(d)) <= p <= 1.0
    assert p + stats.sign_flip_p([-x for x in d]) >= 1.0  # every pattern is at least one tail's
    assert stats.sign_flip_p([3.0 * x for x in d]) == p
    assert stats.sign_flip_p(list(reversed(d))) == p


def test_sign_flip_p_beyond_sixteen_seeds_samples_patterns():
    d = np.random.default_rng(3).normal(0.5, 1.0, 20)
    p = stats.sign_flip_p(d)
    exact_normal = 1 - 0.5 * (1 + math.erf(d.sum() / math.sqrt(2 * np.sum(d * d))))  # large-n approximation
    assert p == stats.sign_flip_p(d) and abs(p - exact_normal) < 0.02


def test_prob_a_gt_b_counts_ties_half():
    assert stats.prob_a_gt_b([0.1, -0.2, 0.0, 0.3]) == 2.5 / 4


def test_the_chance_a_beats_b_on_a_new_seed_has_a_wilson_interval():
    share, lo, hi = stats.prob_a_gt_b_interval([0.01] * 12)
    assert share == 1.0 and hi == 1.0 and lo == pytest.approx(0.7575, abs=1e-4)  # 12 of 12: [0.76, 1]
    share, lo, hi = stats.prob_a_gt_b_interval([0.01, -0.01, 0.02, -0.02, 0.0])
    assert share == 0.5 and lo == pytest.approx(1 - hi) and 0.1 < lo < 0.5 < hi < 0.9  # symmetric around a half
    with pytest.raises(ValueError, match="at least one"):
        stats.prob_a_gt_b_interval([])


def test_the_wilson_interval_covers_the_chance_a_beats_b_under_skewed_differences():
    rng = np.random.default_rng(3)
    x = 0.003 + 0.01 * rng.standard_normal((4000, 12)) - 0.03 * (rng.random((4000, 12)) < 0.1)
    truth = np.mean(0.003 + 0.01 * rng.standard_normal(2_000_000) - 0.03 * (rng.random(2_000_000) < 0.1) > 0)
    covered = np.mean([lo <= truth <= hi for _, lo, hi in map(stats.prob_a_gt_b_interval, x)])
    assert covered >= 0.93, covered


# ---------------------------------------------------------------------------------------------- multiplicity


def test_holm_steps_down_until_the_first_acceptance():
    p = {"a": 0.01, "b": 0.03, "c": 0.04, "d": 0.001}
    assert stats.holm(p, 0.05) == {"a": True, "b": False, "c": False, "d": True}
    assert stats.holm({"x": 0.04}, 0.05) == {"x": True}
    assert stats.holm({}, 0.05) == {}


def test_bh_qvalues_match_a_hand_computation():
    q = stats.bh_qvalues({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted: a 0.01, c 0.03, b 0.04, d 0.5; m·p/rank = 0.04, 0.06, 0.0533, 0.5; running minimum from the top
    assert q == pytest.approx({"a": 0.04, "b": 0.16 / 3, "c": 0.16 / 3, "d": 0.5})


@settings(max_examples=60, deadline=None)
@given(hst.lists(hst.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_every_holm_rejection_is_a_bh_rejection_and_q_values_keep_the_p_order(ps):
    p = {f"c{i}": x for i, x in enumerate(ps)}
    q = stats.bh_qvalues(p)
    held = stats.holm(p, 0.05)
    assert all(q[k] <= 0.05 for k, rejected in held.items() if rejected)
    assert all(p[k] <= q[k] + 1e-12 and q[k] <= 1.0 for k in p)
    ordered = sorted(p, key=p.get)
    assert [q[k] for k in ordered] == sorted(q[k] for k in ordered)


# ---------------------------------------------------------------------------------------------- noise and power


def test_noise_floor_reproduces_the_spec_numbers():
    assert stats.noise_floor(0.70, 10_000) == pytest.approx(0.0046, abs=0.0001)  # "about 0.46 pp"
    assert stats.noise_floor(0.70, 2_000) == pytest.approx(0.0102, abs=0.0001)  # "1.0 pp on 2,000"
    with pytest.raises(ValueError, match="test-set size"):
        stats.noise_floor(0.7, 0)
    with pytest.raises(ValueError, match="accuracy"):
        stats.noise_floor(70.0, 10_000)


@pytest.mark.parametrize("form", ["superiority", "non_inferiority", "equivalence"])
def test_seeds_needed_is_the_first_count_that_reaches_the_power(form):
    a = stats.design(LOOKS, 0.05).levels[-1]
    n = stats.seeds_needed(0.012, 0.01, form, LOOKS, 0.05)
    assert n is not None
    assert stats.design_power(form, 0.012, 0.01, n, a) >= 0.8 > stats.design_power(form, 0.012, 0.01, n - 1, a)
    assert stats.seeds_needed(0.024, 0.01, form, LOOKS, 0.05) > n  # more spread, more seeds
    assert stats.seeds_needed(0.012, 0.01, form, LOOKS, 0.05, budget=n - 1) is None


def test_predict_underpowered_compares_the_seeds_needed_with_the_last_look():
    assert not stats.predict_underpowered(0.005, 0.01, "superiority", LOOKS)
    assert stats.predict_underpowered(0.03, 0.01, "superiority", LOOKS)
    # equivalence is the expensive form: at σ_d = Δ a superiority margin fits in 12 seeds, TOST does not
    assert not stats.predict_underpowered(0.01, 0.01, "superiority", LOOKS, 0.025)
    assert stats.predict_underpowered(0.01, 0.01, "equivalence", LOOKS, 0.025)
    assert stats.seeds_needed(0.0, 0.01, "equivalence") == 2


def test_seeds_to_decide_predicts_at_the_observed_difference():
    a = stats.design(LOOKS, 0.05).levels[-1]
    # d̄ near the margin: refuting "no meaningful gain" (U < Δ) and supporting (L > 0) both crawl
    near = stats.seeds_to_decide("superiority", 0.014, 0.03, 0.015, a)
    assert near is not None and near > 30
    far = stats.seeds_to_decide("superiority", 0.05, 0.03, 0.015, a)
    assert far is not None and far < 10
    n = far
    p_sup, _ = stats.decision_power("superiority", 0.05, 0.03, 0.015, n, a)
    p_sup_less, _ = stats.decision_power("superiority", 0.05, 0.03, 0.015, n - 1, a)
    assert p_sup >= 0.8 > p_sup_less
    assert stats.seeds_to_decide("equivalence", 0.0, 0.01, 0.01, a) == stats.seeds_needed(0.01, 0.01, "equivalence")
    assert stats.seeds_to_decide("superiority", 0.0075, 0.01, 0.015, a, budget=5) is None
