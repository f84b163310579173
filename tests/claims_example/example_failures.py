"""Example claims that must fail their tests: a diverged arm (INVALID), a run that raises (ERROR), a wrong pin.

Run by tests/test_plugin.py through pytester, like example_claims.py.
"""

import pytest

from claims import spec
from tests.claims_example.fake import fake_recipe

BASE = fake_recipe("base")


def _claim(cid: str, arm, **kw) -> spec.Claim:
    return spec.Claim(id=cid, source="example document", quote=f"{cid} holds.", form=spec.Form.SUPERIORITY, a=arm,
                      b=BASE, delta=0.01, metric="acc", alpha=0.05, **kw)


@pytest.mark.claims(_claim("EX-3", fake_recipe("unstable", 0.05, diverge_seeds=(2,))))
def test_ex3_a_diverged_run_makes_the_claim_invalid():
    pass


@pytest.mark.claims(_claim("EX-4", fake_recipe("broken", 0.05, fail_seeds=(0,))))
def test_ex4_a_run_that_raises_is_an_engine_error():
    pass


@pytest.mark.claims(_claim("EX-5", fake_recipe("trick", 0.05), expected=spec.Verdict.REFUTED))
def test_ex5_a_verdict_other_than_the_pinned_one_fails():
    pass


@pytest.mark.claims("not a claim")
def test_ex6_a_marker_without_a_claim_fails():
    pass
