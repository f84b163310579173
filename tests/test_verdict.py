"""claims.verdict: the one table of rules, read by `judge` (through `walk`) and back by `interval_agrees` (what
`claims.declare.check` asserts), agrees with itself on random paths of every paired form; the compound rule; `gate`."""

from __future__ import annotations

import numpy as np
import pytest

from claims.spec import Form, Verdict
from claims.verdict import RULES, compound_verdict, gate, interval_agrees, judge
from tests.test_spec import claim, paired


@pytest.mark.parametrize("form", [Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE])
def test_every_decision_of_judge_agrees_with_the_table_read_back_on_its_interval(form):
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(60):
        d = rng.normal(rng.choice([-0.03, 0.0, 0.004, 0.03]), rng.choice([0.001, 0.01]), 8)
        dec = judge(claim(form, looks=(3, 5, 8)), paired(list(d)), last_look=True)
        seen.add(dec.verdict)
        assert interval_agrees(claim(form), dec.verdict.value, dec.lower, dec.upper)
        if dec.verdict is Verdict.INCONCLUSIVE:  # an open interval clears no rule of either side
            support, refute = RULES[form]
            assert not all(r.clears(dec.lower, dec.upper, r.shift(claim(form))) for r in support)
    assert {Verdict.SUPPORTED, Verdict.REFUTED} <= seen


def test_interval_agrees_rejects_an_interval_that_contradicts_the_verdict():
    c = claim(Form.SUPERIORITY, delta=0.01)
    assert interval_agrees(c, "SUPPORTED", 0.001, 0.02) and not interval_agrees(c, "SUPPORTED", -0.001, 0.02)
    assert interval_agrees(c, "REFUTED", -0.02, 0.009) and not interval_agrees(c, "REFUTED", -0.02, 0.011)
    fewer = claim(Form.FEWER_PARAMS, delta=0.01)  # refuted by the parameter rule whatever the interval
    assert interval_agrees(fewer, "REFUTED", 0.05, 0.08, params_a=2000, params_b=1000)
    assert not interval_agrees(fewer, "REFUTED", 0.05, 0.08, params_a=1000, params_b=2000)
    timed = claim(Form.ABSOLUTE, time_limit_s=300.0)  # a wall-time rule is not in the interval: taken as cleared
    assert interval_agrees(timed, "REFUTED", 0.95, 0.97)


def test_the_compound_rule_is_intersection_union_with_invalid_first():
    S, R, I, N = Verdict.SUPPORTED, Verdict.REFUTED, Verdict.INCONCLUSIVE, Verdict.INVALID
    assert compound_verdict([S, S]) is S and compound_verdict(["SUPPORTED", "INCONCLUSIVE"]) is I
    assert compound_verdict([S, R, I]) is R and compound_verdict([R, N]) is N


def test_gate_leaves_a_plain_claim_to_its_runs_and_sends_a_paper_only_claim_off_a_scaled_profile():
    plain = gate(claim(), "smoke", False)
    assert plain.claim == claim() and plain.off is None and plain.needs_runs and not plain.gpu
    off = gate(claim(paper_only=True), "smoke", False)
    assert not off.needs_runs and off.off.startswith("a published number")
    gpu = gate(claim(Form.ABSOLUTE, needs_gpu=True), "smoke", False)
    assert gpu.off is None and not gpu.needs_runs  # judged on no runs: judge says it needs a GPU
    assert gate(claim(Form.ABSOLUTE, needs_gpu=True), "smoke", False, lambda c: True).needs_runs
