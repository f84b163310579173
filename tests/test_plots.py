"""The report's plots: a compound claim is one figure of small multiples on a shared axis within 1,200 px, every
title carries the claim's words, and training curves have integer epochs and are skipped for one-point runs."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from PIL import Image

from claims.report import plots
from claims.report.model import ClaimRow
from claims.schedule import Compute
from tests.claims_example.fake import fake_recipe, fake_run

pytest.importorskip("claims.spec")


def _row(n_parts: int, epochs: int = 2) -> tuple[object, ClaimRow]:
    from claims.spec import Claim, Decision, Form, Verdict

    base = fake_recipe("base")
    arms = [fake_recipe(f"t{i}", 0.01 * i) for i in range(n_parts)]
    parts = tuple(Claim(id=f"P/{i}", source="doc 001", quote="part", form=Form.SUPERIORITY, a=a, b=base,
                        delta=0.015, alpha=0.05) for i, a in enumerate(arms))
    claim = (Claim(id="P", source="doc 001", quote="every trick improved on the baseline (all above 0.705)",
                   form=Form.COMPOUND, a=None, b=None, delta=0.015, alpha=0.05, parts=parts) if n_parts > 1
             else replace(parts[0], id="S", quote="a wider network improves on the baseline"))

    def dec(cid, parts=()):
        return Decision(claim_id=cid, verdict=Verdict.SUPPORTED, reason="holds", n=3, mean=0.02, lower=0.01,
                        upper=0.03, alpha_look=0.01, sign_flip_p=0.125, fragile=False, p_a_gt_b=1.0, p_seq=0.01,
                        params_a=None, params_b=None, seeds_needed=None, final=True, parts=parts)

    results = {}
    for r in (base, *arms):
        runs = {s: fake_run(r, s, "smoke") for s in range(3)}
        results[r.key] = {s: replace(res, acc_per_epoch=res.acc_per_epoch[-epochs:]) for s, res in runs.items()}
    decision = dec(claim.id, tuple(dec(p.id) for p in claim.parts))
    rep = SimpleNamespace(profile="default")
    return rep, ClaimRow(claim, decision, None, results, Compute())


@pytest.mark.parametrize("n_parts", [7, 16])
def test_a_compound_claim_is_one_figure_of_small_multiples_within_1200_px(tmp_path, n_parts):
    rep, row = _row(n_parts)
    fig = plots.claim_figure(rep, row)
    forest = [ax for ax in fig.get_axes() if "every part on this one axis" in ax.get_xlabel()]
    assert len(forest) == 1  # every part's interval on one shared A − B axis
    cells = [ax for ax in fig.get_axes() if ax.get_visible() and ax not in forest]
    assert len(cells) == n_parts and all(cells[0].get_shared_y_axes().joined(cells[0], c) for c in cells)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.get_axes())  # one legend, outside
    assert "every trick improved on the baseline" in fig._suptitle.get_text()
    path = plots.plot_claim(rep, row, tmp_path / "P.png")
    width, height = Image.open(path).size
    assert height <= plots.MAX_HEIGHT_PX and width <= 1000


def test_a_single_comparison_keeps_its_paired_plot_titled_with_the_claims_words():
    rep, row = _row(1)
    fig = plots.claim_figure(rep, row)
    assert len(fig.get_axes()) == 2 and "a wider network improves on the baseline" in fig._suptitle.get_text()


def test_curves_have_integer_epochs_and_are_skipped_when_each_run_has_one_point():
    from matplotlib.ticker import MaxNLocator

    rep, row = _row(1, epochs=1)
    assert plots.curves_figure(rep, row) is None  # one dot an arm is no curve
    rep, row = _row(1, epochs=2)
    fig = plots.curves_figure(rep, row)
    (ax,) = fig.get_axes()
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert "training curves" in fig._suptitle.get_text() and "a wider network" in fig._suptitle.get_text()
