"""Doc 001: S. Pal, "More tricks to improve performance of CIFAR-10 classifier" (blog, 2021-03-27, edited 03-28) and
its notebook `tricks02_cifar10.ipynb` (final commit 48595ed).

The TF-tutorial CNN with padding 1 (122,570 parameters), Adam 1e-3, batch 64, 10 epochs, raw pixels; one change per
arm: a 512 head, a 512-256 head, BatchNorm before or after each ReLU, residual blocks, gradient-norm clipping at 1.0,
batch 128. Published test accuracies, one run each: 0.705, 0.742, 0.732, 0.752, 0.745, 0.810, 0.728, 0.707. The
notebook's own reruns of near-identical configurations spread over 0.662-0.733, so single runs cannot separate
arms a few points apart; these claims use paired seeds.
"""

import pytest

from claims.declare import NotRunnable, check, compound, equivalent, noninferior, part, superior
from claims.spec import Form

SRC = "doc 001: Pal, More tricks to improve performance of CIFAR-10 classifier (2021-03), notebook 48595ed"
P = "pal2021b/"
TRICKS = ("wider", "deeper", "bn_before_relu", "bn_after_relu", "residual", "grad_clip", "batch128")
PARAMS = {"baseline": 122_570, "wider": 586_250, "deeper": 715_018, "bn_before_relu": 122_890,
          "bn_after_relu": 122_890, "residual": 212_714, "grad_clip": 122_570, "batch128": 122_570}


def _p(a: str, b: str) -> tuple[int, int]:
    return PARAMS[a], PARAMS[b]


C001_1 = superior("C001-1", SRC, "a wider network (512 units) improves on the baseline (0.742 vs 0.705)",
                  P + "wider", P + "baseline")
C001_2 = superior("C001-2", SRC, "a deeper network (512, 256) improves on the baseline (0.732 vs 0.705)",
                  P + "deeper", P + "baseline")
C001_3 = noninferior("C001-3", SRC, "the wider network did better than the deeper one (0.742 vs 0.732)",
                     P + "wider", P + "deeper")
C001_4 = superior("C001-4", SRC, "batch normalization before the ReLU improves on the baseline (0.752 vs 0.705)",
                  P + "bn_before_relu", P + "baseline")
C001_5 = noninferior("C001-5", SRC, "BatchNorm before the activation is the better setup (0.752 vs 0.745)",
                     P + "bn_before_relu", P + "bn_after_relu",
                     note="The notebook's earlier runs gave 0.746 = 0.746 and 0.716 < 0.751; doc 003 advises the "
                          "opposite placement (see C003-7 and X-1).")
C001_6 = superior("C001-6", SRC, "batch normalization after the ReLU improves on the baseline (0.745 vs 0.705)",
                  P + "bn_after_relu", P + "baseline")
C001_7 = compound("C001-7", SRC, "residual connections gave the best result of all (0.810)",
                  [part(f"C001-7/{t}", Form.SUPERIORITY, P + "residual", P + t) for t in ("baseline", *TRICKS)
                   if t != "residual"])
C001_8 = equivalent("C001-8", SRC, "the residual network outperformed the baseline by around 14 percentage points",
                    P + "residual", P + "baseline", offset=0.14, delta=0.02, paper_only=True,
                    note="A magnitude: d − 14 pp within ±2 pp. The blog's own numbers give 10.5 pp (0.810 − 0.705); "
                         "14.7 pp came from a pre-fix run. Judged under the paper profile only.")
C001_9 = superior("C001-9", SRC, "gradient clipping gives a modest improvement (0.728 vs 0.705)",
                  P + "grad_clip", P + "baseline")
C001_10 = equivalent("C001-10", SRC, "increasing the batch size to 128 made no significant change (0.707 vs 0.705)",
                     P + "batch128", P + "baseline", delta=0.015)
C001_11 = compound("C001-11", SRC, "every trick improved on the baseline (all above 0.705)",
                   [part(f"C001-11/{t}", Form.SUPERIORITY, P + t, P + "baseline") for t in TRICKS])
C001_12 = compound(
    "C001-12", SRC, "BatchNorm gives more accuracy than a wider or deeper head for a few hundred parameters "
                    "(+320 against +463,680 and +592,448)",
    [part(f"C001-12/{bn}>{h}", Form.FEWER_PARAMS, P + bn, P + h) for bn in ("bn_before_relu", "bn_after_relu")
     for h in ("wider", "deeper")])
C001_13 = compound(
    "C001-13", SRC, "residual connections beat the wider and deeper networks with fewer parameters "
                    "(212,714 against 586,250 and 715,018)",
    [part(f"C001-13/{h}", Form.FEWER_PARAMS, P + "residual", P + h) for h in ("wider", "deeper")])
C001_14 = noninferior(
    "C001-14", SRC, "the largest increase in parameters did not lead to a corresponding increase in performance",
    P + "wider", P + "deeper",
    note="Measurable form: the 715,018-parameter deeper head is no better than the 586,250-parameter wider one "
         "(the same comparison as C001-3, read from the parameter side).",
    restates="C001-3")
C001_15 = NotRunnable(
    "C001-15", SRC, "BatchNorm functions as a regularizer; clipping keeps the gradients from exploding",
    "a statement about mechanism with no measured quantity in the source; the accuracy effects of both tricks are "
    "tested as C001-4, C001-6 and C001-9")


@pytest.mark.claims(C001_1)
def test_c001_1_wider_head_beats_baseline(claim_decision):
    check(C001_1, claim_decision, _p("wider", "baseline"))


@pytest.mark.claims(C001_2)
def test_c001_2_deeper_head_beats_baseline(claim_decision):
    check(C001_2, claim_decision, _p("deeper", "baseline"))


@pytest.mark.claims(C001_3)
def test_c001_3_wider_at_least_as_good_as_deeper(claim_decision):
    check(C001_3, claim_decision, _p("wider", "deeper"))


@pytest.mark.claims(C001_4)
def test_c001_4_bn_before_relu_beats_baseline(claim_decision):
    check(C001_4, claim_decision, _p("bn_before_relu", "baseline"))


@pytest.mark.claims(C001_5)
def test_c001_5_bn_before_relu_at_least_as_good_as_after(claim_decision):
    check(C001_5, claim_decision, _p("bn_before_relu", "bn_after_relu"))


@pytest.mark.claims(C001_6)
def test_c001_6_bn_after_relu_beats_baseline(claim_decision):
    check(C001_6, claim_decision, _p("bn_after_relu", "baseline"))


@pytest.mark.claims(C001_7)
def test_c001_7_residual_is_the_best_arm(claim_decision):
    check(C001_7, claim_decision)


@pytest.mark.claims(C001_8)
def test_c001_8_residual_gain_is_about_14_points(claim_decision):
    check(C001_8, claim_decision, _p("residual", "baseline"))


@pytest.mark.claims(C001_9)
def test_c001_9_gradient_clipping_beats_baseline(claim_decision):
    check(C001_9, claim_decision, _p("grad_clip", "baseline"))


@pytest.mark.claims(C001_10)
def test_c001_10_batch_128_equivalent_to_64(claim_decision):
    check(C001_10, claim_decision, _p("batch128", "baseline"))


@pytest.mark.claims(C001_11)
def test_c001_11_every_trick_beats_baseline(claim_decision):
    check(C001_11, claim_decision)


@pytest.mark.claims(C001_12)
def test_c001_12_bn_beats_wider_and_deeper_with_fewer_params(claim_decision):
    check(C001_12, claim_decision)


@pytest.mark.claims(C001_13)
def test_c001_13_residual_beats_wider_and_deeper_with_fewer_params(claim_decision):
    check(C001_13, claim_decision)


@pytest.mark.claims(C001_14)
def test_c001_14_more_parameters_no_more_accuracy(claim_decision):
    check(C001_14, claim_decision, _p("wider", "deeper"))


@pytest.mark.claims_not_runnable(C001_15)
def test_c001_15_mechanism_statements_are_not_testable_here():
    pytest.skip(f"{C001_15.id} not runnable: {C001_15.reason}")
