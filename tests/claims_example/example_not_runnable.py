"""Claims the suite cannot test here, marked `claims_not_runnable`, beside one ordinary claim.

Run by tests/test_plugin.py through pytester, like example_claims.py: the entries must reach the report whether their
test is skipped (the usual way, alone or parametrized) or passes.
"""

import pytest

from claims import spec
from claims.declare import NotRunnable
from tests.claims_example.fake import fake_recipe

LARGE = spec.Claim(id="NR-0", source="example document, table 1", quote="The trick adds five points of accuracy.",
                   form=spec.Form.SUPERIORITY, a=fake_recipe("trick", 0.05), b=fake_recipe("base"), delta=0.01,
                   metric="acc", alpha=0.05)

CIFAR100 = NotRunnable("NR-2", "example document, table 3", "The trick also helps on CIFAR-100.",
                       "needs CIFAR-100, which this suite does not load")
MECHANISM = NotRunnable("NR-1", "example document, text", "BatchNorm smooths the loss landscape.",
                        "a mechanism statement with no measurable form")
MORE = [NotRunnable(f"NR-{i}", "example document, appendix", f"Remark {i}.", f"reason {i}") for i in (3, 4)]


@pytest.mark.claims(LARGE)
def test_nr0_an_ordinary_claim(claim_decision):
    assert claim_decision is not None


@pytest.mark.claims_not_runnable(CIFAR100)
def test_nr2_skipped_with_its_reason():
    pytest.skip(f"{CIFAR100.id} not runnable: {CIFAR100.reason}")


@pytest.mark.claims_not_runnable(MECHANISM)
def test_nr1_a_passing_test_is_listed_too():
    pass


@pytest.mark.parametrize("entry", [pytest.param(c, marks=pytest.mark.claims_not_runnable(c), id=c.id) for c in MORE])
def test_more_not_runnable(entry):
    pytest.skip(f"{entry.id} not runnable: {entry.reason}")
