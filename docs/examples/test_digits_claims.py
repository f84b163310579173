"""Claims over your own Learner in your own pytest suite (docs/own-learner.md): the digits CNN of digits.py.

    pytest docs/examples/test_digits_claims.py --pilot-seeds 0          # with the package installed (entry point)
    pytest docs/examples/test_digits_claims.py -p claims.plugin --pilot-seeds 0   # from a source checkout
"""

import pytest

from claims.compare import LearnerArm
from claims.spec import Claim

BASE = LearnerArm("digits:make_learner", epochs=3, lr=3e-3, name="digits_cnn")

BN_PLACEMENT = Claim(
    id="DIGITS-1", source="docs/own-learner.md", quote="BatchNorm before the ReLU is no worse than after it.",
    form="non_inferiority", a=BASE.with_tricks("bn_before_relu", name="bn_before_relu"),
    b=BASE.with_tricks("bn_after_relu", name="bn_after_relu"), delta=0.01)

GUARD = Claim(
    id="DIGITS-2", source="docs/own-learner.md", quote="DivergenceGuard changes nothing on a stable recipe.",
    form="equivalence", a=BASE.with_tricks("DivergenceGuard", name="with_guard"), b=BASE, delta=0.005, looks=(3,))


@pytest.mark.claims(BN_PLACEMENT)
def test_bn_before_relu_is_no_worse_than_after(claim_decision):
    assert claim_decision.n >= 3


@pytest.mark.claims(GUARD)
def test_divergence_guard_changes_nothing(claim_decision):
    assert claim_decision.mean == 0  # the guard only reads the loss: the very same training, seed by seed
