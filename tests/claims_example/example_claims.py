"""Two example claims over fake recipes: a large effect (SUPPORTED) and an A/A comparison (not SUPPORTED).

Not collected by the unit tests (the name does not start with test_): tests/test_plugin.py copies it into a pytester
folder beside a conftest that loads the claims plugin, and runs it with `--run-fn tests.claims_example.fake:fake_run`.
"""

import pytest

from claims import spec
from tests.claims_example.fake import fake_recipe

BASE = fake_recipe("base")

LARGE = spec.Claim(id="EX-1", source="example document, table 1", quote="The trick adds five points of accuracy.",
                   form=spec.Form.SUPERIORITY, a=fake_recipe("trick", 0.05), b=BASE, delta=0.01, metric="acc",
                   alpha=0.05, expected=spec.Verdict.SUPPORTED)

A_VS_A = spec.Claim(id="EX-2", source="example document, text", quote="A renamed baseline beats the baseline.",
                    form=spec.Form.SUPERIORITY, a=fake_recipe("renamed"), b=BASE, delta=0.01, metric="acc", alpha=0.05)


@pytest.mark.claims(LARGE)
def test_ex1_the_trick_beats_the_baseline(claim_decision):
    assert claim_decision.n == 3  # a five-point effect is decided at the first look


@pytest.mark.claims(A_VS_A)
def test_ex2_a_renamed_baseline_does_not_beat_itself(claim_decision):
    assert claim_decision.verdict != spec.Verdict.SUPPORTED
