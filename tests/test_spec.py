"""claims.spec: every row of the decision table, INVALID causes, the sequential design end to end, claim hashing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import fields, replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from claims import stats
from claims.spec import Claim, Decision, Form, Metric, Verdict, claim_needs_runs, margin_ok, next_look, off_profile
from claims.verdict import claim_design, design_alpha, judge, judge_off_profile
from tricks.recipe import PROFILES, Recipe, RunResult, kw

ROOT = Path(__file__).resolve().parents[1]
A, B, C = (Recipe("toy", kw(width=w), name=f"toy/{w}") for w in (8, 16, 32))
BASE_ACC = 0.70


@cache
def _key(recipe: Recipe) -> str:
    return recipe.key


def run(recipe: Recipe, seed: int, acc: float, *, params: int | None = 1000, wall_s: float = 10.0,
        diverged: bool = False, note: str = "", per_epoch: list[float] | None = None) -> RunResult:
    """A synthetic RunResult: no training, just the fields the judge reads."""
    return RunResult(recipe_key=_key(recipe), recipe_name=recipe.name, seed=seed, profile="test", code_version="test",
                     acc=acc, loss=1.0, acc_per_epoch=per_epoch if per_epoch is not None else [acc - 0.1, acc],
                     loss_per_epoch=[1.2, 1.0], train_loss_per_epoch=[1.3, 1.1], params_used=params, wall_s=wall_s,
                     img_per_s=1.0, device="cpu:test", threads=1, versions={}, dataset="synthetic", diverged=diverged,
                     note=note)


def paired(d, *, a: Recipe = A, b: Recipe = B, base: float = BASE_ACC, **a_kw) -> dict[str, dict[int, RunResult]]:
    """Results whose per-seed differences A - B are `d`, B at `base` on every seed."""
    return {a.key: {s: run(a, s, base + x, **a_kw) for s, x in enumerate(d)},
            b.key: {s: run(b, s, base) for s in range(len(d))}}


def claim(form: Form | str = Form.SUPERIORITY, **kw) -> Claim:
    defaults = {"id": "T-1", "source": "test", "quote": "A beats B.", "a": A, "b": B, "delta": 0.01}
    if Form(form) is Form.ABSOLUTE:
        defaults.update(b=None, threshold=0.90)
    return Claim(form=form, **{**defaults, **kw})


TIGHT_ZERO = [0.0001, -0.0001, 0.00005]  # |d̄| tiny, s_d tiny: decided at the first look
WIDE = [0.035, -0.025] * 6  # d̄ = +0.5 pp, s_d ≈ 3 pp: undecided at every look up to 12


# ---------------------------------------------------------------------------------------------- decision table


@pytest.mark.parametrize("form,d,verdict,phrase", [
    (Form.SUPERIORITY, [0.05, 0.051, 0.049], Verdict.SUPPORTED, "> 0 at n = 3"),
    (Form.SUPERIORITY, TIGHT_ZERO, Verdict.REFUTED, "no meaningful gain"),
    (Form.SUPERIORITY, [0.004, 0.006, 0.005, 0.0045, 0.0055], Verdict.SUPPORTED, "below the margin"),
    (Form.NONINFERIORITY, TIGHT_ZERO, Verdict.SUPPORTED, "> −Δ"),
    (Form.NONINFERIORITY, [-0.05, -0.051, -0.049], Verdict.REFUTED, "worse by more than the margin"),
    (Form.EQUIVALENCE, TIGHT_ZERO, Verdict.SUPPORTED, "inside ±Δ"),
    (Form.EQUIVALENCE, [0.05, 0.051, 0.049], Verdict.REFUTED, "> Δ"),
    (Form.EQUIVALENCE, [-0.05, -0.051, -0.049], Verdict.REFUTED, "< −Δ"),
])
def test_each_form_reaches_its_verdict(form, d, verdict, phrase):
    dec = judge(claim(form), paired(d), last_look=False)
    assert dec.verdict is verdict and dec.final
    assert phrase in dec.reason
    level = claim_design(claim(form)).level(dec.n)  # Wang-Tsiatis 0.25 at α / 2: ≈ 0.0013 at 3 seeds
    mean, lower, upper = stats.paired_bounds(d[:dec.n], level)
    assert (dec.mean, dec.lower, dec.upper) == pytest.approx((mean, lower, upper))
    assert dec.alpha_look == level


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS])
def test_an_interval_that_straddles_the_margin_is_inconclusive_until_the_budget_is_spent(form):
    def paired(d):
        return globals()["paired"](d, params=900)  # fewer_params: the parameter half of the claim holds

    mid = judge(claim(form), paired(WIDE[:5]), last_look=False, looks=(5, 12))
    assert mid.verdict is Verdict.INCONCLUSIVE and mid.n == 5 and mid.looks == (5, 12)
    # one look at the cap: no futility stop before it, so the budget is spent
    end = judge(claim(form), paired(WIDE), last_look=True, looks=(12,))
    assert end.verdict is Verdict.INCONCLUSIVE and end.final and end.n == 12 and not end.underpowered
    assert end.reason.startswith("budget exhausted at n = 12")
    assert end.seeds_needed is not None and end.seeds_needed > 12
    assert f"needs ~{end.seeds_needed} seeds at the observed d̄ = +0.50 pp, σ_d = 3.13 pp" in end.reason
    capped = judge(claim(form), paired(WIDE[:3]), last_look=True)
    assert capped.final and capped.reason.startswith("budget exhausted at n = 3 (seed cap)")
    assert capped.looks == (3,) and capped.alpha_look == design_alpha(claim(form))  # the whole design α


def test_a_claim_the_cap_cannot_resolve_even_averaged_over_its_effect_stops_and_says_how_many_seeds():
    # equivalence at s_d ≈ 3 pp against Δ = 1 pp: whatever the true difference, 12 seeds rarely settle it
    dec = judge(claim(Form.EQUIVALENCE), paired(WIDE), last_look=True)
    assert dec.verdict is Verdict.INCONCLUSIVE and dec.final and dec.underpowered and dec.n == 8
    assert dec.reason.startswith("predicted underpowered at n = 8")
    assert "averaged over the uncertainty of the effect, the cap of 12 seeds gives a verdict with a chance of" in \
        dec.reason
    assert f"needs ~{dec.seeds_needed} seeds at the observed d̄" in dec.reason and dec.seeds_needed > 12
    assert f"and ~{dec.seeds_needed_at_delta} if the true difference were 0" in dec.reason
    assert dec.seeds_needed_at_delta == stats.seeds_needed(float(np.std(WIDE[:8], ddof=1)), 0.01, "equivalence",
                                                           alpha=design_alpha(claim()))


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY])
def test_a_wide_one_sided_claim_is_not_stopped_on_its_point_estimate_while_a_large_effect_remains_plausible(form):
    # d̄ = +0.5 pp, s_d ≈ 3 pp: at the point estimate the cap gives a verdict < 20 % of the time, but 5 seeds leave
    # a true gain of 3 pp plausible, which 12 seeds would find: the predictive chance stays above the stop
    dec = judge(claim(form), paired(WIDE), last_look=True)
    assert dec.verdict is Verdict.INCONCLUSIVE and dec.n == 12 and not dec.underpowered
    assert dec.reason.startswith("budget exhausted at n = 12")
    truth = {"superiority": "if the true gain were Δ", "non_inferiority": "if A and B were equal"}[form.value]
    assert f"and ~{dec.seeds_needed_at_delta} {truth}" in dec.reason


def test_no_futility_stop_before_five_seeds():
    # three seeds spread over ±40 pp: the point estimate says hopeless, but 2 df say nothing; the claim samples on
    dec = judge(claim(Form.EQUIVALENCE), paired([0.4, -0.4, 0.35]), last_look=False)
    assert dec.verdict is Verdict.INCONCLUSIVE and not dec.final and not dec.underpowered and dec.n == 3


def test_seeds_needed_reads_the_observed_difference_not_a_true_difference_of_zero():
    # d̄ = +1.4 pp against Δ = 1.5 pp, σ_d = 0.5 pp: at a true 0 a few seeds would refute "no meaningful gain"; at d̄
    # the upper bound must creep under Δ, which takes hundreds (the audit's C000-8)
    d = [0.014 + 0.005 * z for z in (1.0, -1.0, 0.5, -0.5, 0.0)]
    dec = judge(claim(delta=0.015), paired(d), last_look=True, looks=(5,))
    assert dec.verdict is Verdict.SUPPORTED or dec.seeds_needed is None or dec.seeds_needed > 100
    near = judge(claim(delta=0.015), paired([0.0146 + 0.0015 * z for z in (1.0, -1.0, 0.5, -0.5, 0.0)]),
                 last_look=True, looks=(5,))
    assert near.verdict is Verdict.SUPPORTED  # L > 0: a gain, below the margin
    straddle = judge(claim(delta=0.015), paired([0.0 + 0.02 * z for z in (1.0, -1.0, 0.5, -0.5, 0.0)]),
                     last_look=True, looks=(5,))
    at_zero = stats.seeds_to_decide("superiority", 0.0, float(np.std([0.02, -0.02, 0.01, -0.01, 0.0], ddof=1)),
                                    0.015, claim_design(claim(), (5,)).levels[-1])
    assert straddle.seeds_needed == at_zero


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE])
def test_an_exhausted_budget_never_asks_for_no_more_seeds_than_were_run(form):
    """Where the power calculation at the observed d̄ says the n already run would suffice (a draw near the margin),
    the reason says more than n are needed, never "needs ~3 seeds" after 3; elsewhere it names the seeds."""
    rng = np.random.default_rng(21)
    centre = {Form.SUPERIORITY: 0.006, Form.NONINFERIORITY: -0.01, Form.EQUIVALENCE: 0.01}[form]
    named = 0
    for _ in range(150):
        dec = judge(claim(form, looks=(3,)), paired(list(centre + 0.003 * rng.standard_normal(3))), last_look=True)
        if dec.verdict is not Verdict.INCONCLUSIVE or dec.seeds_needed is None:
            continue
        if dec.seeds_needed <= dec.n:
            assert f"needs more than {dec.n} seeds" in dec.reason and f"needs ~{dec.seeds_needed} " not in dec.reason
        else:
            assert f"needs ~{dec.seeds_needed} seeds" in dec.reason
            named += 1
    assert named > 0


def test_fewer_params_needs_both_fewer_parameters_and_higher_accuracy():
    better = [0.05, 0.051, 0.049]
    ok = judge(claim(Form.FEWER_PARAMS), paired(better, params=900), last_look=False)
    assert ok.verdict is Verdict.SUPPORTED and (ok.params_a, ok.params_b) == (900, 1000)
    assert "900 < 1,000 parameters" in ok.reason
    more = judge(claim(Form.FEWER_PARAMS), paired(better, params=5000), last_look=False)
    assert more.verdict is Verdict.REFUTED and more.final and more.p_seq == 1.0 and not more.fragile
    assert "5,000 parameters, not fewer than B's 1,000" in more.reason
    no_gain = judge(claim(Form.FEWER_PARAMS), paired(TIGHT_ZERO, params=900), last_look=False)
    assert no_gain.verdict is Verdict.REFUTED and "no meaningful gain" in no_gain.reason


def test_fewer_params_without_a_parameter_count_is_invalid():
    missing = judge(claim(Form.FEWER_PARAMS), paired([0.05, 0.05, 0.05], params=None), last_look=False)
    assert missing.verdict is Verdict.INVALID and "seed 0 of arm toy/8 has no parameter count" in missing.reason
    res = paired([0.05, 0.05, 0.05], params=900)
    res[A.key][2] = run(A, 2, 0.75, params=950)
    varying = judge(claim(Form.FEWER_PARAMS), res, last_look=False)
    assert varying.verdict is Verdict.INVALID and "different parameter counts" in varying.reason
    # other forms report a missing count as unknown and go on
    assert judge(claim(), paired([0.05, 0.05, 0.05], params=None), last_look=False).verdict is Verdict.SUPPORTED


def _absolute(accs, walls=None):
    walls = walls or [10.0] * len(accs)
    return {A.key: {s: run(A, s, x, wall_s=w) for s, (x, w) in enumerate(zip(accs, walls, strict=True))}}


@pytest.mark.parametrize("accs,walls,limit,verdict,phrase", [
    ([0.92, 0.9201, 0.9199], None, None, Verdict.SUPPORTED, "> threshold 90.00 %"),
    ([0.85, 0.8501, 0.8499], None, None, Verdict.REFUTED, "< threshold 90.00 %"),
    ([0.95, 0.86, 0.93], None, None, Verdict.INCONCLUSIVE, "around the threshold 90.00 %"),
    ([0.92, 0.9201, 0.9199], [250.0, 250.1, 249.9], 300.0, Verdict.SUPPORTED, "wall time U = 251 s < 300 s"),
    ([0.92, 0.9201, 0.9199], [400.0, 400.1, 399.9], 300.0, Verdict.REFUTED, "wall time L = 399 s > limit 300 s"),
])
def test_an_absolute_claim_compares_the_mean_with_its_threshold_and_time_limit(accs, walls, limit, verdict, phrase):
    c = claim(Form.ABSOLUTE, time_limit_s=limit)
    dec = judge(c, _absolute(accs, walls), last_look=False)
    assert dec.verdict is verdict and phrase in dec.reason
    assert dec.p_a_gt_b is None and dec.mean == pytest.approx(np.mean(accs))


def test_a_gpu_claim_on_a_cpu_is_inconclusive_without_runs_and_judged_on_a_gpu():
    c = claim(Form.ABSOLUTE, needs_gpu=True, time_limit_s=300.0)
    assert not claim_needs_runs(c, device_has_gpu=False) and claim_needs_runs(c, device_has_gpu=True)
    cpu = judge(c, {}, last_look=True, device_has_gpu=False)
    assert cpu.verdict is Verdict.INCONCLUSIVE and cpu.final and cpu.n == 0 and cpu.reason.startswith("needs a GPU")
    gpu = judge(c, _absolute([0.92, 0.9201, 0.9199], [250.0, 250.1, 249.9]), last_look=False, device_has_gpu=True)
    assert gpu.verdict is Verdict.SUPPORTED


# ---------------------------------------------------------------------------------------------- compound


def _compound(*parts: Claim) -> Claim:
    return Claim(id="K", source="test", quote="Both hold.", form=Form.COMPOUND, parts=parts)


def _two_arms(d_ab, d_ac, **a_kw):
    res = paired(d_ab, **a_kw)
    res[C.key] = {s: run(C, s, BASE_ACC + d_ab[s] - x) for s, x in enumerate(d_ac)}
    return res


def test_a_compound_claim_is_an_intersection_union_of_its_parts():
    p1, p2 = claim(id="K-1"), claim(id="K-2", b=C)
    both = judge(_compound(p1, p2), _two_arms([0.05, 0.051, 0.049], [0.04, 0.041, 0.039]), last_look=False)
    assert both.verdict is Verdict.SUPPORTED and both.final and [d.claim_id for d in both.parts] == ["K-1", "K-2"]
    assert both.p_seq == max(d.p_seq for d in both.parts) and both.n == 3
    one_refuted = judge(_compound(p1, p2), _two_arms([0.05, 0.051, 0.049], TIGHT_ZERO), last_look=False)
    assert one_refuted.verdict is Verdict.REFUTED and one_refuted.reason.startswith("part K-2 is refuted")
    open_part = judge(_compound(p1, p2), _two_arms([0.05, 0.051, 0.049, 0.05, 0.05],
                                                          [0.03, 0.0, 0.015, 0.025, 0.005]), last_look=False)
    assert open_part.verdict is Verdict.INCONCLUSIVE and not open_part.final
    assert open_part.reason.startswith("1 of 2 parts undecided: K-2")
    assert open_part.parts[0].verdict is Verdict.SUPPORTED and open_part.parts[0].n == 3  # decided at its first look
    res = _two_arms([0.05, 0.051, 0.049], [0.04, 0.041, 0.039])
    res[C.key][1] = run(C, 1, float("nan"), diverged=True, note="loss is NaN at epoch 2")
    invalid = judge(_compound(p1, p2), res, last_look=False)
    assert invalid.verdict is Verdict.INVALID and "part K-2: seed 1 of arm toy/32 diverged" in invalid.reason


def test_a_compound_claim_with_an_underpowered_part_samples_on_while_another_part_may_refute_it():
    # K-1 (equivalence, s_d ≈ 3 pp against Δ = 1 pp) is predicted underpowered at 8 seeds: SUPPORTED is out of reach,
    # but K-2 (d̄ near +0.4 pp, s_d ≈ 0.7 pp) may still show "no meaningful gain", which refutes the whole claim
    comp = _compound(claim(Form.EQUIVALENCE, id="K-1"), claim(id="K-2", b=C))
    k2 = [0.015, -0.005, 0.012, -0.002, 0.01, 0.0, 0.008, -0.003, -0.004, -0.006, 0.0, -0.002]
    at8 = judge(comp, _two_arms(WIDE[:8], k2[:8]), last_look=False)
    assert at8.parts[0].underpowered and at8.parts[0].final and not at8.parts[1].final
    assert at8.verdict is Verdict.INCONCLUSIVE and not at8.final and not at8.underpowered
    at12 = judge(comp, _two_arms(WIDE, k2), last_look=True)
    assert at12.verdict is Verdict.REFUTED and at12.final and at12.reason.startswith("part K-2 is refuted")
    # once no open part can move it (both underpowered), it stops as predicted underpowered
    both_wide = _compound(claim(Form.EQUIVALENCE, id="K-1"), claim(Form.EQUIVALENCE, id="K-2", b=C))
    both = judge(both_wide, _two_arms(WIDE[:8], WIDE[:8]), last_look=False)
    assert both.verdict is Verdict.INCONCLUSIVE and both.final and both.underpowered


def test_a_compound_claim_needs_runs_unless_every_part_waits_for_a_gpu():
    gpu = claim(Form.ABSOLUTE, id="K-g", needs_gpu=True)
    assert claim_needs_runs(_compound(claim(id="K-1"), gpu), device_has_gpu=False)
    assert not claim_needs_runs(_compound(gpu, replace(gpu, id="K-h")), device_has_gpu=False)
    assert _compound(claim(id="K-1"), claim(id="K-2", b=C)).recipes() == (A, B, C)


# ---------------------------------------------------------------------------------------------- INVALID


def test_a_diverged_run_makes_the_claim_invalid_naming_seed_arm_and_note():
    res = paired([0.05, 0.05, 0.05])
    res[B.key][2] = run(B, 2, float("nan"), diverged=True, note="loss became NaN in epoch 3")
    dec = judge(claim(), res, last_look=False)
    assert dec.verdict is Verdict.INVALID and dec.final
    assert dec.reason == "seed 2 of arm toy/16 diverged: loss became NaN in epoch 3"


def test_a_run_at_chance_or_with_a_nan_accuracy_counts_as_diverged():
    res = paired([0.05, 0.05, 0.05])
    res[A.key][1] = run(A, 1, 0.10)
    assert "seed 1 of arm toy/8 is at chance" in judge(claim(), res, last_look=False).reason
    res[A.key][1] = run(A, 1, float("nan"))
    assert judge(claim(), res, last_look=False).reason == "seed 1 of arm toy/8 diverged (no note)"


def test_a_seed_present_in_one_arm_only_makes_the_claim_invalid():
    res = paired([0.05, 0.05, 0.05])
    del res[B.key][1]
    dec = judge(claim(), res, last_look=False)
    assert dec.verdict is Verdict.INVALID and dec.reason == "seed 1 has a run in arm toy/8 but not in arm toy/16"
    res = paired([0.05, 0.05, 0.05])
    del res[A.key][0]
    assert judge(claim(), res, last_look=False).reason == "seed 0 has a run in arm toy/16 but not in arm toy/8"


def test_a_metric_the_runs_cannot_give_makes_the_claim_invalid():
    dec = judge(claim(metric=Metric("acc_at_epoch", 5)), paired([0.05, 0.05, 0.05]), last_look=False)
    assert dec.verdict is Verdict.INVALID and "trained 2 epochs, fewer than the 5" in dec.reason


# ---------------------------------------------------------------------------------------------- metric


def test_metrics_read_final_per_epoch_and_mean_accuracy():
    r = run(A, 0, 0.8, per_epoch=[0.5, 0.7, 0.8])
    assert Metric().value(r) == 0.8
    assert Metric("acc_at_epoch", 2).value(r) == 0.7
    assert Metric("acc_auc").value(r) == pytest.approx(2.0 / 3)
    assert Metric.parse("acc") == Metric() and Metric.parse("acc_at_epoch:2") == Metric("acc_at_epoch", 2)
    assert Metric("acc_at_epoch", 2).label() == "acc_at_epoch:2"
    for bad in ("top5", "acc_at_epoch:x", "acc_auc:3"):
        with pytest.raises(ValueError, match="metric"):
            Metric.parse(bad)
    with pytest.raises(ValueError, match="epoch >= 1"):
        Metric("acc_at_epoch")


def test_the_metric_decides_what_is_compared():
    # A ends level with B but was far ahead after epoch 1: a convergence claim holds, a final-accuracy one does not
    res = {A.key: {s: run(A, s, 0.70, per_epoch=[0.60 + 0.001 * s, 0.70]) for s in range(3)},
           B.key: {s: run(B, s, 0.70, per_epoch=[0.50, 0.70]) for s in range(3)}}
    assert judge(claim(metric="acc_at_epoch:1"), res, last_look=False).verdict is Verdict.SUPPORTED
    assert judge(claim(), res, last_look=False).verdict is Verdict.REFUTED


# ---------------------------------------------------------------------------------------------- sequential design


def test_judging_all_seeds_at_once_gives_the_verdict_of_the_look_by_look_process():
    rng = np.random.default_rng(5)
    for i in range(40):
        d = rng.normal(rng.choice([0.0, 0.005, 0.01, 0.02]), 0.01, 12)
        c = claim([Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE][i % 3])
        for n in c.looks:  # what the scheduler does: stop at the first final look
            step = judge(c, paired(d[:n]), last_look=n == 12)
            if step.final:
                break
        once = judge(c, paired(d), last_look=True)
        assert (once.verdict, once.n, once.reason, once.p_seq) == (step.verdict, step.n, step.reason, step.p_seq)


def test_a_supported_claim_has_a_sequential_p_within_its_alpha_and_holm_can_use_it():
    sup = judge(claim(), paired([0.05, 0.051, 0.049]), last_look=False)
    inc = judge(claim(), paired(WIDE), last_look=True)
    assert sup.p_seq <= 0.05 < inc.p_seq
    assert stats.holm({"sup": sup.p_seq, "inc": inc.p_seq}, 0.1) == {"sup": True, "inc": False}


def _simulated_claims(form: Form, true_d: float, sims: int, seed: int, delta: float = 0.01) -> list[Verdict]:
    """Judge `sims` simulated claims with normal paired differences (σ_d = 1 pp) through the real judge."""
    d = true_d + 0.01 * np.random.default_rng(seed).standard_normal((sims, 12))
    c = claim(form, delta=delta)
    b_runs = {s: run(B, s, BASE_ACC) for s in range(12)}
    out = []
    for row in d:
        res = {A.key: {s: run(A, s, BASE_ACC + x) for s, x in enumerate(row)}, B.key: b_runs}
        out.append(judge(c, res, last_look=True).verdict)
    return out


@pytest.mark.parametrize("form,true_d", [(Form.SUPERIORITY, 0.0), (Form.NONINFERIORITY, -0.01),
                                         (Form.EQUIVALENCE, 0.01)])
def test_false_support_rate_stays_within_alpha_at_the_null_boundary(form, true_d):
    sims = 1000
    verdicts = _simulated_claims(form, true_d, sims, seed=11)
    rate = sum(v is Verdict.SUPPORTED for v in verdicts) / sims
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)


def test_the_same_engine_supports_a_true_effect_of_one_sigma_most_of_the_time():
    verdicts = _simulated_claims(Form.SUPERIORITY, 0.01, 400, seed=12, delta=0.005)
    assert sum(v is Verdict.SUPPORTED for v in verdicts) / 400 > 0.75  # the spec's design power is 0.86


def test_sign_flip_p_sits_beside_the_interval_and_flags_fragile_verdicts():
    one_against = [0.05, 0.06, 0.055, 0.05, -0.001]
    dec = judge(claim(looks=(5,)), paired(one_against), last_look=True)
    assert dec.verdict is Verdict.SUPPORTED and dec.sign_flip_p == 2 / 32 and dec.fragile
    agree = judge(claim(looks=(5,)), paired([0.05, 0.06, 0.055, 0.05, 0.001]), last_look=True)
    assert agree.verdict is Verdict.SUPPORTED and agree.sign_flip_p == 1 / 32 and not agree.fragile
    # three seeds all ahead, but too spread for the t interval: the sign-flip test at its floor disagrees
    spread = judge(claim(looks=(3,)), paired([0.001, 0.1, 0.002]), last_look=True)
    assert spread.verdict is Verdict.INCONCLUSIVE and spread.fragile
    assert dec.p_a_gt_b == 0.8 and agree.p_a_gt_b == 1.0


# ---------------------------------------------------------------------------------------------- before any run


def test_the_unpaired_pilot_sigma_stops_no_claim_before_its_own_paired_runs():
    # the pilot's σ_d comes from disjoint seeds; a claim's paired σ_d is often far smaller (C001-10: 0.84 pp against
    # 4.24 pp), so even a σ_d that would need hundreds of seeds leaves the claim to its own looks
    c = claim(Form.EQUIVALENCE)
    empty = {A.key: {}, B.key: {}}
    wide = judge(c, empty, last_look=False, sigma_d_pilot=0.02)
    assert wide.verdict is Verdict.INCONCLUSIVE and not wide.final and not wide.underpowered and wide.n == 0
    need = stats.seeds_needed(0.02, 0.01, "equivalence", alpha=design_alpha(c))
    assert wide.seeds_needed == need > 12
    assert wide.reason == (f"no runs yet; at the A/A pilot's unpaired σ_d = 2.00 pp Δ = 1.00 pp would need ~{need} "
                           "seeds, an upper bound: the claim is judged on its own paired differences")
    assert not judge(c, empty, last_look=False).final  # no pilot: the same
    compound = _compound(claim(Form.EQUIVALENCE, id="K-1"), claim(Form.EQUIVALENCE, id="K-2", b=C, delta=0.02))
    assert not judge(compound, {}, last_look=False, sigma_d_pilot=0.05).final
    for form in (Form.SUPERIORITY, Form.NONINFERIORITY, Form.FEWER_PARAMS):
        assert not judge(claim(form), empty, last_look=False, sigma_d_pilot=0.05).final
    # the same claim on paired runs whose σ_d is 0.3 pp: judged on them, and SUPPORTED
    tight = [0.001, -0.002, 0.003, 0.0, -0.001, 0.002, -0.003, 0.001]
    assert judge(c, paired(tight), last_look=False, sigma_d_pilot=0.02).verdict is Verdict.SUPPORTED


def test_next_look_walks_the_design_and_stops_after_the_last():
    c = claim()
    assert [next_look(c, n) for n in (0, 3, 4, 5, 8, 12)] == [3, 5, 5, 8, 12, None]


def test_margin_ok_compares_delta_with_the_test_set_noise_floor():
    assert margin_ok(claim(delta=0.005), 0.70, 10_000)  # floor 0.46 pp
    assert not margin_ok(claim(delta=0.01), 0.70, 2_000)  # floor 1.02 pp
    assert margin_ok(claim(Form.ABSOLUTE), 0.70, 100)


def test_decision_to_dict_is_json_ready_with_its_parts():
    dec = judge(_compound(claim(id="K-1"), claim(id="K-2", b=C)),
                _two_arms([0.05, 0.051, 0.049], [0.04, 0.041, 0.039]), last_look=False)
    data = json.loads(json.dumps(dec.to_dict()))
    assert data["verdict"] == "SUPPORTED" and [p["claim_id"] for p in data["parts"]] == ["K-1", "K-2"]
    assert set(data) == {f.name for f in fields(Decision)}


# ---------------------------------------------------------------------------------------------- the spec itself


@pytest.mark.parametrize("kwargs,message", [
    ({"delta": 1.0}, "accuracy units"),
    ({"alpha": 0.7}, "alpha"),
    ({"looks": (5, 3)}, "increasing"),
    ({"b": None}, "needs a Recipe or a LearnerArm as arm b"),
    ({"form": "better"}, "unknown form 'better'"),
    ({"threshold": 0.9}, "absolute claims only"),
    ({"metric": "top5"}, "unknown metric"),
    ({"expected": "TRUE"}, "unknown expected verdict"),
    ({"form": Form.ABSOLUTE, "threshold": 90.0, "b": None}, "threshold in (0, 1)"),
    ({"form": Form.ABSOLUTE, "threshold": 0.9}, "b must be None"),
    ({"form": Form.COMPOUND, "a": None, "b": None}, "needs parts"),
])
def test_a_malformed_claim_is_refused_with_one_sentence_naming_it(kwargs, message):
    base = {"id": "T-9", "source": "test", "quote": "q", "form": Form.SUPERIORITY, "a": A, "b": B}
    with pytest.raises(ValueError, match="claim T-9: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        Claim(**{**base, **kwargs})


def test_text_forms_of_form_metric_and_expected_are_the_same_claim():
    typed = claim(Form.EQUIVALENCE, metric=Metric("acc_at_epoch", 3), expected=Verdict.SUPPORTED)
    text = claim("equivalence", metric="acc_at_epoch:3", expected="SUPPORTED")
    assert text == typed and text.key == typed.key and text.form is Form.EQUIVALENCE


def test_the_claim_key_changes_with_every_field():
    base = claim(time_limit_s=None)
    other = {"id": "T-2", "source": "other", "quote": "Other words.", "form": Form.NONINFERIORITY, "a": C, "b": C,
             "delta": 0.02, "metric": Metric("acc_auc"), "alpha": 0.1, "looks": (5, 10), "needs_gpu": True,
             "expected": Verdict.REFUTED, "note": "a confound"}
    keys = {base.key}
    for name, value in other.items():
        keys.add(replace(base, **{name: value}).key)
    absolute = claim(Form.ABSOLUTE)
    keys |= {absolute.key, replace(absolute, threshold=0.91).key, replace(absolute, time_limit_s=300.0).key}
    keys.add(_compound(base, replace(base, id="T-3")).key)
    keys.add(_compound(base, replace(base, id="T-4")).key)
    assert len(keys) == len(other) + 6
    renamed = replace(base, a=Recipe("toy", kw(width=8), name="another name"))
    assert renamed.key == base.key  # recipes count by their key, not their label


def test_the_claim_key_is_the_same_in_another_process():
    code = ("from tests.test_spec import claim, _compound, Form\n"
            "print(claim(Form.EQUIVALENCE, note='n').key, _compound(claim(id='a'), claim(id='b')).key)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"})
    here = f"{claim(Form.EQUIVALENCE, note='n').key} {_compound(claim(id='a'), claim(id='b')).key}"
    assert out.stdout.split() == here.split()


# ---------------------------------------------------------------------------------------------- offset (magnitude)


def test_an_equivalence_claim_with_an_offset_is_supported_when_the_differences_sit_at_the_offset():
    c = claim(Form.EQUIVALENCE, offset=0.14, delta=0.02, quote="A beats B by about 14 points.")
    dec = judge(c, paired([0.1401, 0.1399, 0.1400]), last_look=False)
    assert dec.verdict is Verdict.SUPPORTED and dec.final and dec.n == 3
    assert dec.mean == pytest.approx(0.14)  # the decision reports d itself; the rules read d - offset
    assert dec.lower > 0.12 and dec.upper < 0.16
    assert "for d − 14.00 pp at n = 3" in dec.reason and "inside ±Δ" in dec.reason
    # the same differences without the offset are far outside ±Δ: the offset is what makes them "equal"
    assert judge(replace(c, offset=0.0), paired([0.1401, 0.1399, 0.1400]), last_look=False).verdict is Verdict.REFUTED


@pytest.mark.parametrize("d,phrase", [
    ([0.001, -0.001, 0.0005], "< −Δ = -2.00 pp for d − 14.00 pp at n = 3"),  # no gain at all
    ([0.281, 0.279, 0.280], "> Δ = 2.00 pp for d − 14.00 pp at n = 3"),  # twice the claimed gain
])
def test_an_equivalence_claim_with_an_offset_is_refuted_when_the_differences_are_far_from_it(d, phrase):
    dec = judge(claim(Form.EQUIVALENCE, offset=0.14, delta=0.02), paired(d), last_look=False)
    assert dec.verdict is Verdict.REFUTED and dec.final
    assert phrase in dec.reason


def test_an_offset_shifts_the_other_paired_forms_too():
    # "A beats B by more than 3 points": d = +5 pp supports it, d = +3.0 pp (a gain, but not beyond the offset) does not
    sup = judge(claim(offset=0.03), paired([0.05, 0.0501, 0.0499]), last_look=False)
    assert sup.verdict is Verdict.SUPPORTED and "> 0 for d − 3.00 pp at n = 3" in sup.reason
    assert sup.mean == pytest.approx(0.05)  # d̄ itself, not d̄ - offset
    ref = judge(claim(offset=0.03), paired([0.0300, 0.0299, 0.0301]), last_look=False)
    assert ref.verdict is Verdict.REFUTED and "for d − 3.00 pp" in ref.reason
    assert judge(claim(), paired([0.0300, 0.0299, 0.0301]), last_look=False).verdict is Verdict.SUPPORTED
    # a negative offset: "A loses at most 5 points" as non-inferiority of d + 5 pp
    ni = judge(claim(Form.NONINFERIORITY, offset=-0.05), paired([-0.04, -0.0401, -0.0399]), last_look=False)
    assert ni.verdict is Verdict.SUPPORTED and ni.reason.endswith("for d − -5.00 pp at n = 3")
    assert judge(claim(Form.NONINFERIORITY), paired([-0.04, -0.0401, -0.0399]), last_look=False).verdict \
        is Verdict.REFUTED


def test_a_claim_without_an_offset_does_not_mention_one():
    dec = judge(claim(), paired([0.05, 0.051, 0.049]), last_look=False)
    assert "d −" not in dec.reason and dec.reason.endswith("> 0 at n = 3")


@pytest.mark.parametrize("form,extra", [
    (Form.ABSOLUTE, {}),
    (Form.COMPOUND, {"a": None, "b": None, "parts": (claim(id="K-1"), claim(id="K-2", b=C))}),
])
def test_an_offset_on_a_claim_that_is_not_paired_is_refused(form, extra):
    with pytest.raises(ValueError, match=f"claim T-1: an offset shifts paired differences, so a {form.value} claim"):
        claim(form, offset=0.05, **extra)
    claim(form, **extra)  # the same claim without the offset is fine


@pytest.mark.parametrize("offset", [1.0, -1.0, 1.5, float("nan")])
def test_an_offset_outside_minus_one_to_one_is_refused(offset):
    with pytest.raises(ValueError, match=r"claim T-1: offset .* must lie in \(-1, 1\)"):
        claim(Form.EQUIVALENCE, offset=offset)


def test_the_claim_key_changes_with_the_offset_and_paper_only():
    base = claim(Form.EQUIVALENCE)
    keys = {base.key, replace(base, offset=0.14).key, replace(base, offset=0.1).key,
            replace(base, paper_only=True).key}
    assert len(keys) == 4


# ---------------------------------------------------------------------------------------------- paper-only claims


def test_a_paper_only_claim_needs_runs_only_under_the_paper_profile_or_when_no_profile_is_given():
    c = claim(paper_only=True)
    assert not claim_needs_runs(c, False, "smoke") and not claim_needs_runs(c, True, "default")
    assert claim_needs_runs(c, False, "paper") and claim_needs_runs(c, False, None) and claim_needs_runs(c, False)
    plain = claim()
    assert all(claim_needs_runs(plain, False, p) for p in ("smoke", "default", "paper", None))
    # a GPU claim on a CPU needs no runs whatever the profile
    gpu = claim(Form.ABSOLUTE, needs_gpu=True, paper_only=True)
    assert not claim_needs_runs(gpu, False, "paper") and claim_needs_runs(gpu, True, "paper")


def test_off_profile_gives_a_reason_only_for_a_paper_only_claim_under_another_named_profile():
    c = claim(paper_only=True)
    for profile in ("smoke", "default"):
        why = off_profile(c, profile)
        assert f"scaled by the {profile} profile" in why and "only under the paper profile" in why
        assert off_profile(c, profile, True) == why  # a GPU does not make a scaled run tell a published number
    assert off_profile(c, "paper") is None and off_profile(c, None) is None
    assert off_profile(claim(), "smoke") is None


HEAVY = Recipe("toy", kw(width=64), name="toy/heavy", heavy=True)


def test_a_heavy_arm_is_off_profile_under_a_scaled_profile_without_a_gpu_only():
    assert all(PROFILES[p].cpu_skips_heavy for p in ("smoke", "default")) and not PROFILES["paper"].cpu_skips_heavy
    c = claim(a=HEAVY)
    why = off_profile(c, "smoke")
    assert why.startswith("needs a GPU under the smoke profile: toy/heavy ")  # names the heavy arm
    assert off_profile(c, "smoke", device_has_gpu=True) is None
    assert off_profile(c, None) is None
    # under the paper profile a GPU-sized arm (heavy, not a data trick) needs a GPU; a heavy data trick does not
    assert off_profile(c, "paper").startswith("needs a GPU: not run under the paper profile on a CPU (toy/heavy ")
    assert off_profile(c, "paper", device_has_gpu=True) is None
    assert off_profile(claim(a=replace(HEAVY, features="kmeans")), "paper") is None
    assert off_profile(Claim(id="X", source="s", quote="q", form=Form.COMPOUND, parts=(claim(id="K-1"),
                                                                                        claim(id="K-2", b=HEAVY))),
                       "default") is not None  # a heavy arm in any part
    assert not claim_needs_runs(c, False, "smoke") and claim_needs_runs(c, True, "smoke")
    assert not claim_needs_runs(c, False, "paper") and claim_needs_runs(c, True, "paper") and claim_needs_runs(c, False)


def test_a_compound_of_paper_only_parts_needs_no_runs_under_a_scaled_profile():
    paper = _compound(claim(id="K-1", paper_only=True), claim(id="K-2", b=C, paper_only=True))
    mixed = _compound(claim(id="K-1", paper_only=True), claim(id="K-2", b=C))
    assert not claim_needs_runs(paper, False, "smoke") and claim_needs_runs(paper, False, "paper")
    assert claim_needs_runs(mixed, False, "smoke")


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_judge_off_profile_is_a_final_inconclusive_that_names_the_profile(profile):
    c = claim(Form.EQUIVALENCE, offset=0.14, delta=0.02, paper_only=True)
    dec = judge_off_profile(c, off_profile(c, profile))
    assert dec.claim_id == c.id and dec.verdict is Verdict.INCONCLUSIVE and dec.final
    assert dec.n == 0 and dec.mean is None and dec.lower is None and dec.upper is None and dec.parts == []
    assert dec.reason == off_profile(c, profile) and f"{profile} profile" in dec.reason
    assert "no run was made" in dec.reason
    assert json.loads(json.dumps(dec.to_dict()))["verdict"] == "INCONCLUSIVE"


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE])
def test_arms_identical_on_every_seed_are_flagged_in_the_reason(form):
    # doc 000's weight_decay arm once trained exactly like lr_schedule under smoke; a d of 0 everywhere says so
    d = judge(claim(form), paired([0.0, 0.0, 0.0]), last_look=True)
    assert "same accuracy on every seed" in d.reason
    assert "same accuracy on every seed" not in judge(claim(form), paired(TIGHT_ZERO), last_look=True).reason


def test_profile_arms_puts_the_scaled_variants_of_heavy_arms_in_a_claim_on_a_cpu_only():
    from claims.declare import compound, part, superior
    from claims.spec import profile_arms

    c = compound("K-9", "doc", "q", [part("K-9/a", Form.SUPERIORITY, "jovian/resnet9", "jovian/resnet9-no_bn"),
                                     part("K-9/b", Form.SUPERIORITY, "pal2021b/residual", "pal2021b/baseline")])
    cpu = profile_arms(c, "default", device_has_gpu=False)
    assert [r.name for r in cpu.recipes()] == ["jovian/resnet9@w16", "jovian/resnet9-no_bn@w16", "pal2021b/residual",
                                               "pal2021b/baseline"]
    assert off_profile(c, "default") is not None and off_profile(cpu, "default") is None  # now trainable here
    assert claim_needs_runs(cpu, False, "default") and cpu.id == c.id and cpu.parts[1] is c.parts[1]
    assert profile_arms(c, "default", device_has_gpu=True) is c  # full size on a GPU
    assert profile_arms(c, "paper", device_has_gpu=False) is c  # and under the paper profile
    km = superior("K-8", "doc", "q", "he2016/kmeans", "he2016/naive")
    assert profile_arms(km, "default", False).a.name == "he2016/kmeans@k400"
    assert profile_arms(km, "smoke", False) is km  # smoke skips heavy arms on a CPU
    toy = claim(id="K-7", a=HEAVY)
    assert profile_arms(toy, "default", False) is toy  # no variant: still a GPU-only claim
