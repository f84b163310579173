"""Doc 003: the fast.ai CIFAR-10 walkthrough of Part 1 (2018) lesson 7, `courses/dl1/lesson7-cifar10.ipynb` (fastai
v0.7; Jeremy Howard's runs 052bf67-7616a77 and C. Klukas's reruns).

SGD with momentum 0.9, batch 256, reflect-pad 4 + random crop + flip, CIFAR statistics normalization, test set as
validation; `fit(lr, n)` at a constant rate then `fit(lr, n, cycle_len=1)` one-epoch cosine cycles (v0.7's lr/100
warm-up included). Published accuracies (a Kaggle rerun): SimpleNet 47.24 %, ConvNet 58.17 %, ConvBnNet 70.16 %,
ConvBnNet2 66.4 %; the notebook's runs: 0.469-0.475, 0.584-0.601, 0.681-0.702, 0.646-0.669. The BnLayer is the
lesson's own: BN after the ReLU, no eps, the last training batch's statistics in eval.
"""

import pytest

from claims.declare import NotRunnable, check, fewer_params, noninferior, superior

SRC = "doc 003: fast.ai Part 1 (2018) lesson 7, courses/dl1/lesson7-cifar10.ipynb (fastai 0.7)"
P = "fastai2018/"

C003_1 = fewer_params(
    "C003-1", SRC, "the ConvNet (37,490 parameters) beats the fully connected SimpleNet (123,330): 58.17% vs 47.24%",
    P + "conv_net", P + "simple_net")
C003_2 = noninferior(
    "C003-2", SRC, "refactored with padding 1, the ConvNet's accuracy doesn't improve much", P + "conv_net",
    P + "conv_net2", note="As in the lesson, ConvNet trains 6 epochs and ConvNet2 4.")
C003_3 = superior(
    "C003-3", SRC, "adding batch norm (ConvBnNet) improves on the ConvNet: 70.16% vs 58.17%", P + "conv_bn_net",
    P + "conv_net")
C003_4 = noninferior(
    "C003-4", SRC, "the deeper ConvBnNet2 does no better (66.4% vs 70.16%)", P + "conv_bn_net", P + "conv_bn_net2",
    note="As in the lesson: 6 epochs at lr 3e-2 then 1e-1 against 4 epochs at 1e-2.")
C003_7 = noninferior(
    "C003-7", SRC, "put the batch norm after the ReLU", P + "bn_after_relu", P + "bn_before_relu",
    note="Doc 001's CNN with BN after vs before each ReLU, trained with this lesson's recipe; doc 001 found the "
         "opposite under its own (C001-5, X-1).")
C003_8 = superior(
    "C003-8", SRC, "a large first kernel (5x5) gives the network a richer starting point", P + "conv_bn_net",
    P + "conv_bn_net_k3", note="Never ablated in the lesson: ConvBnNet with a 5x5 against a 3x3 first conv.")

C003_5 = NotRunnable(
    "C003-5", SRC, "batch norm permits higher learning rates; without it, deeper nets at high rates blow off to NaN",
    "a claim about divergence: this engine counts a diverged run as INVALID rather than as an outcome, so a "
    "divergence-rate test would need a form the method (spec/claims-method.md) does not define")
C003_6 = NotRunnable(
    "C003-6", SRC, "batch norm regularizes, so weight decay and dropout can be reduced",
    "a recommendation with no measured comparison in the source")
C003_9 = NotRunnable(
    "C003-9", SRC, "better models give better accuracy in less time",
    "no timed comparison in the source; the lesson's times come from different machines and runs")


@pytest.mark.claims(C003_1)
def test_c003_1_convnet_beats_simplenet_with_fewer_params(claim_decision):
    check(C003_1, claim_decision, (37_490, 123_330))


@pytest.mark.claims(C003_2)
def test_c003_2_padding_does_not_help_the_convnet_much(claim_decision):
    check(C003_2, claim_decision, (37_490, 37_490))


@pytest.mark.claims(C003_3)
def test_c003_3_batchnorm_convnet_beats_convnet(claim_decision):
    check(C003_3, claim_decision, (155_970, 37_490))


@pytest.mark.claims(C003_4)
def test_c003_4_deeper_batchnorm_convnet_no_better(claim_decision):
    check(C003_4, claim_decision, (155_970, 462_570))


@pytest.mark.claims(C003_7)
def test_c003_7_bn_after_relu_at_least_as_good_as_before(claim_decision):
    check(C003_7, claim_decision, (122_890, 122_890))


@pytest.mark.claims(C003_8)
def test_c003_8_large_first_kernel_helps(claim_decision):
    check(C003_8, claim_decision, (155_970, 155_490))


@pytest.mark.parametrize("claim", [pytest.param(c, marks=pytest.mark.claims_not_runnable(c), id=c.id)
                                   for c in (C003_5, C003_6, C003_9)])
def test_c003_claims_not_runnable_here(claim):
    pytest.skip(f"{claim.id} not runnable: {claim.reason}")
