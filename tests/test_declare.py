"""claims.declare: the short claim constructors (forms, default margins, arms by name or Recipe) and `check`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from claims.declare import (
    DELTA,
    DELTA_WIDE,
    NotRunnable,
    absolute,
    check,
    compound,
    equivalent,
    fewer_params,
    noninferior,
    part,
    superior,
)
from claims.spec import Claim, Form, Verdict
from claims.verdict import judge
from tests.test_spec import A, B, C, paired, run
from tricks.recipes import get_recipe

SRC = "test document"
BASE, WIDER, DEEPER = "pal2021b/baseline", "pal2021b/wider", "pal2021b/deeper"
TIGHT_ZERO = [0.0001, -0.0001, 0.00005]


# ---------------------------------------------------------------------------------------------- constructors


@pytest.mark.parametrize("make,form,delta", [
    (superior, Form.SUPERIORITY, DELTA),
    (noninferior, Form.NONINFERIORITY, DELTA),
    (equivalent, Form.EQUIVALENCE, DELTA_WIDE),
    (fewer_params, Form.FEWER_PARAMS, DELTA),
])
def test_paired_constructors_name_arms_by_recipe_and_fill_the_form_and_default_margin(make, form, delta):
    c = make("C-1", SRC, "A beats B.", WIDER, BASE)
    assert isinstance(c, Claim) and c.form is form and c.delta == delta
    assert (c.id, c.source, c.quote) == ("C-1", SRC, "A beats B.")
    assert c.a == get_recipe(WIDER) and c.b == get_recipe(BASE) and c.a.name == WIDER
    assert c.looks == (3, 5, 8, 12) and c.alpha == 0.05 and c.offset == 0.0 and not c.paper_only


def test_the_default_margins_are_one_and_a_half_and_two_points():
    assert (DELTA, DELTA_WIDE) == (0.015, 0.02)


def test_constructors_accept_recipe_objects_and_pass_other_options_through():
    c = superior("C-2", SRC, "q", A, B, delta=0.03, note="a confound", expected=Verdict.REFUTED)
    assert c.a is A and c.b is B and c.delta == 0.03 and c.note == "a confound" and c.expected is Verdict.REFUTED
    eq = equivalent("C-3", SRC, "about 14 points", A, get_recipe(BASE), offset=0.14, delta=0.025, paper_only=True)
    assert eq.delta == 0.025 and eq.offset == 0.14 and eq.paper_only and eq.b == get_recipe(BASE)


def test_absolute_compares_one_arm_with_a_threshold():
    c = absolute("C-4", SRC, "about 75 %", BASE, 0.72, time_limit_s=300.0, needs_gpu=True)
    assert c.form is Form.ABSOLUTE and c.a == get_recipe(BASE) and c.b is None
    assert c.threshold == 0.72 and c.time_limit_s == 300.0 and c.needs_gpu and c.delta == DELTA


def test_part_and_compound_build_an_intersection_union_claim():
    parts = [part("C-5/base", Form.SUPERIORITY, WIDER, BASE), part("C-5/deeper", Form.EQUIVALENCE, WIDER, DEEPER),
             part("C-5/objects", Form.NONINFERIORITY, A, B)]
    assert [p.form for p in parts] == [Form.SUPERIORITY, Form.EQUIVALENCE, Form.NONINFERIORITY]
    assert [p.delta for p in parts] == [DELTA, DELTA_WIDE, DELTA]
    assert parts[0].source == "part" and parts[0].quote == f"{WIDER} vs {BASE}"
    assert parts[2].quote == f"{A.name} vs {B.name}"
    c = compound("C-5", SRC, "wider beats both", parts, expected="SUPPORTED")
    assert c.form is Form.COMPOUND and c.parts == tuple(parts) and c.a is None and c.b is None
    assert c.expected is Verdict.SUPPORTED
    assert c.recipes() == (get_recipe(WIDER), get_recipe(BASE), get_recipe(DEEPER), A, B)


@pytest.mark.parametrize("make", [
    lambda: superior("C-6", SRC, "q", "pal2021b/wide", BASE),
    lambda: noninferior("C-6", SRC, "q", WIDER, "pal2021b/wide"),
    lambda: absolute("C-6", SRC, "q", "pal2021b/wide", 0.7),
    lambda: part("C-6/x", Form.EQUIVALENCE, "pal2021b/wide", BASE),
])
def test_an_unknown_recipe_name_is_refused_with_a_suggestion(make):
    with pytest.raises(ValueError, match=r"unknown recipe 'pal2021b/wide'; did you mean pal2021b/wider"):
        make()


def test_a_name_nothing_resembles_is_refused_with_where_to_look():
    with pytest.raises(ValueError, match=r"unknown recipe 'zzz'; `python -m tricks.apply --list` lists them"):
        superior("C-7", SRC, "q", "zzz", BASE)


def test_not_runnable_is_a_frozen_record():
    nr = NotRunnable("C-8", SRC, "It works on CIFAR-100 too.", "needs CIFAR-100")
    assert (nr.id, nr.source, nr.quote, nr.reason) == ("C-8", SRC, "It works on CIFAR-100 too.", "needs CIFAR-100")
    with pytest.raises(AttributeError):
        nr.reason = "other"


# ---------------------------------------------------------------------------------------------- check


@pytest.mark.parametrize("make,d", [
    (superior, [0.05, 0.051, 0.049]),  # SUPPORTED
    (superior, TIGHT_ZERO),  # REFUTED
    (noninferior, TIGHT_ZERO),  # SUPPORTED
    (noninferior, [-0.05, -0.051, -0.049]),  # REFUTED
    (equivalent, TIGHT_ZERO),  # SUPPORTED
    (equivalent, [0.05, 0.051, 0.049]),  # REFUTED
    (superior, [0.035, -0.025] * 6),  # INCONCLUSIVE
])
def test_check_accepts_the_judges_own_decisions(make, d):
    c = make("K-1", SRC, "q", A, B)
    dec = judge(c, paired(d), last_look=True)
    check(c, dec)
    check(c, dec, (1000, 1000))  # the synthetic runs use 1000 parameters in both arms


def test_check_accepts_an_offset_claim_judged_at_its_offset():
    c = equivalent("K-2", SRC, "about 14 points", A, B, offset=0.14)
    dec = judge(c, paired([0.1401, 0.1399, 0.14]), last_look=False)
    assert dec.verdict is Verdict.SUPPORTED
    check(c, dec)


@pytest.mark.parametrize("make,d,bad,message", [
    (superior, [0.05, 0.051, 0.049], {"lower": -0.001}, "SUPPORTED with"),  # L < 0
    (superior, TIGHT_ZERO, {"upper": 0.02}, "REFUTED with"),  # U above Δ
    (noninferior, TIGHT_ZERO, {"lower": -0.02}, "SUPPORTED with"),  # L below −Δ
    (noninferior, [-0.05, -0.051, -0.049], {"upper": 0.0}, "REFUTED with"),
    (equivalent, TIGHT_ZERO, {"upper": 0.03}, "SUPPORTED with"),  # U outside ±Δ
    (equivalent, [0.05, 0.051, 0.049], {"lower": 0.01}, "REFUTED with"),  # inside ±Δ after all
])
def test_check_rejects_a_verdict_its_own_interval_contradicts(make, d, bad, message):
    c = make("K-3", SRC, "q", A, B)
    dec = judge(c, paired(d), last_look=False)
    check(c, dec)
    with pytest.raises(AssertionError, match=message):
        check(c, replace(dec, **bad))


def test_check_rejects_a_missing_decision_another_claims_decision_and_a_mean_outside_its_interval():
    c = superior("K-4", SRC, "q", A, B)
    dec = judge(c, paired([0.05, 0.051, 0.049]), last_look=False)
    with pytest.raises(AssertionError, match="K-4: no decision"):
        check(c, None)
    with pytest.raises(AssertionError):
        check(c, replace(dec, claim_id="K-5"))
    with pytest.raises(AssertionError):
        check(c, replace(dec, mean=dec.upper + 0.01))


def test_check_rejects_parameter_counts_other_than_the_expected_pair():
    c = fewer_params("K-6", SRC, "q", A, B)
    res = paired([0.05, 0.051, 0.049])
    res[A.key] = {s: run(A, s, r.acc, params=900) for s, r in res[A.key].items()}
    dec = judge(c, res, last_look=False)
    assert dec.verdict is Verdict.SUPPORTED and (dec.params_a, dec.params_b) == (900, 1000)
    check(c, dec, (900, 1000))
    with pytest.raises(AssertionError, match="arms use 900 and 1,000 parameters, the spec says"):
        check(c, dec, (1000, 900))
    # a decision without counts (no runs) has nothing to compare
    check(c, judge(c, {A.key: {}, B.key: {}}, last_look=False), (1, 2))


def _two_part_compound():
    return compound("K-7", SRC, "A beats B and C", [part("K-7/b", Form.SUPERIORITY, A, B),
                                                      part("K-7/c", Form.SUPERIORITY, A, C)])


def _results(d_ab, d_ac):
    res = paired(d_ab)
    res[C.key] = {s: run(C, s, 0.70 + d_ab[s] - x) for s, x in enumerate(d_ac)}
    return res


def test_check_accepts_a_compound_whose_verdict_follows_its_parts():
    c = _two_part_compound()
    supported = judge(c, _results([0.05, 0.051, 0.049], [0.04, 0.041, 0.039]), last_look=False)
    refuted = judge(c, _results([0.05, 0.051, 0.049], TIGHT_ZERO), last_look=False)
    assert (supported.verdict, refuted.verdict) == (Verdict.SUPPORTED, Verdict.REFUTED)
    check(c, supported)
    check(c, refuted)


def test_check_rejects_a_compound_inconsistent_with_its_parts():
    c = _two_part_compound()
    refuted = judge(c, _results([0.05, 0.051, 0.049], TIGHT_ZERO), last_look=False)
    with pytest.raises(AssertionError, match="REFUTED"):  # SUPPORTED although a part is refuted
        check(c, replace(refuted, verdict=Verdict.SUPPORTED))
    supported = judge(c, _results([0.05, 0.051, 0.049], [0.04, 0.041, 0.039]), last_look=False)
    with pytest.raises(AssertionError, match="SUPPORTED"):  # REFUTED although every part is supported
        check(c, replace(supported, verdict=Verdict.REFUTED))
    with pytest.raises(AssertionError):  # a part missing
        check(c, replace(supported, parts=supported.parts[:1]))
    with pytest.raises(AssertionError, match="K-7/c: SUPPORTED with"):  # a part inconsistent with its interval
        check(c, replace(supported, parts=[supported.parts[0], replace(supported.parts[1], lower=-0.01)]))


def test_check_accepts_a_compound_judged_without_its_parts():
    c = replace(_two_part_compound(), needs_gpu=True)
    dec = judge(c, {}, last_look=True, device_has_gpu=False)  # GPU-less (or off-profile): judged with no parts
    assert dec.verdict is Verdict.INCONCLUSIVE and dec.parts == []
    check(c, dec)
