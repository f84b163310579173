"""claims/suite/test_cross.py: each document's part of a cross-document claim states what that document says, so a world
in which every document is right supports the claim, and one in which a document is wrong refutes it."""

from __future__ import annotations

import pytest

from claims.spec import Form, Verdict
from claims.suite.test_cross import X_4, X_7
from claims.verdict import judge
from tests.test_spec import run

# five seeds: the O'Brien-Fleming-type design decides nothing at its first look of three on data this clean
TIGHT_ZERO = [0.001, -0.001, 0.0005, -0.0005, 0.0]
GAIN = [0.05, 0.051, 0.049, 0.0505, 0.0495]  # five points, every seed


def _world(claim, diffs: dict[str, list[float]]) -> dict:
    """Results in which part `id` has paired differences A - B of `diffs[id]` on every seed."""
    out: dict = {}
    for p in claim.parts:
        d = diffs[p.id]
        out.setdefault(p.b.key, {s: run(p.b, s, 0.6) for s in range(len(d))})
        out.setdefault(p.a.key, {s: run(p.a, s, 0.6 + x) for s, x in enumerate(d)})
    return out


def test_x4_doc_000_part_says_weight_decay_does_not_help_as_doc_000_found():
    p000 = next(p for p in X_4.parts if p.id == "X-4/000")
    assert p000.form is Form.NONINFERIORITY
    assert (p000.a.name, p000.b.name) == ("pal2021a/lr_schedule", "pal2021a/weight_decay")


@pytest.mark.parametrize("wd_gain_000,expected", [(TIGHT_ZERO, Verdict.SUPPORTED),
                                                  ([-x for x in GAIN], Verdict.SUPPORTED),
                                                  (GAIN, Verdict.REFUTED)])
def test_x4_holds_when_weight_decay_fails_under_doc_000_and_helps_under_doc_004(wd_gain_000, expected):
    """wd_gain_000 is weight_decay - lr_schedule: no gain (doc 000's finding) or a loss support it; a gain refutes."""
    world = _world(X_4, {"X-4/000": [-x for x in wd_gain_000], "X-4/004": GAIN})
    assert judge(X_4, world, last_look=False).verdict is expected


def test_x7_doc_002_part_is_an_equivalence_in_the_two_layer_net():
    p002 = next(p for p in X_7.parts if p.id == "X-7/002")
    assert p002.form is Form.EQUIVALENCE


@pytest.mark.parametrize("kaiming_gain_002,expected", [(TIGHT_ZERO, Verdict.SUPPORTED), (GAIN, Verdict.REFUTED)])
def test_x7_holds_when_kaiming_helps_under_doc_000_and_changes_nothing_under_doc_002(kaiming_gain_002, expected):
    world = _world(X_7, {"X-7/000": GAIN, "X-7/002": kaiming_gain_002})
    assert judge(X_7, world, last_look=False).verdict is expected
