"""Calibration of the verdict engine by simulation: every promise docs/statistics.md makes, checked under normal
noise and both skews (claims.calibrate.SKEWS), for every form and both seed caps (12, and the paper profile's 8).

The rates come from `claims.calibrate.simulate`, the engine's own sequential rules (`claims.verdict.walk`) on many
rows at once, checked first against `claims.verdict.judge` row by row. Every rate is compared with its bound plus three
Monte-Carlo standard errors, from a fixed generator, so a run is deterministic and a real regression fails.
`python -m claims.calibrate --docs docs/statistics.md` measures the same promises on larger samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from claims import calibrate as cal
from claims import stats
from claims.spec import Form, Verdict
from claims.verdict import design_alpha, judge, reported_p
from tests.test_spec import BASE_ACC, A, B, run

SIGMA = DELTA = 0.01  # σ_d = Δ = 1 pp
SIMS = 10_000
CAPS = cal.CAPS  # 12 and the paper profile's 8
NOISES = tuple(cal.SKEWS)  # normal, mild, strong
ALPHA = 0.05
STRONG_BOUND = 0.09  # false SUPPORTED under strong skew, which no rule on <= 12 seeds brings to α (measured ≤ 8.3 %)


def _results(c, x: np.ndarray) -> dict:
    """Run results whose A - B (or A - threshold) per seed is `x`, for the simulation's claims."""
    params = 900 if c.form is Form.FEWER_PARAMS else 1000
    if c.form is Form.ABSOLUTE:
        return {c.a.key: {s: run(A, s, c.threshold + v) for s, v in enumerate(x)}}
    return {c.a.key: {s: run(A, s, BASE_ACC + v, params=params) for s, v in enumerate(x)},
            c.b.key: {s: run(B, s, BASE_ACC) for s in range(len(x))}}


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("form", cal.FORMS)
def test_the_simulation_gives_the_verdicts_p_and_intervals_judge_gives(form, cap):
    c = cal.sim_claim(form, DELTA)
    rng = np.random.default_rng(1)
    true = rng.choice([-2 * DELTA, -DELTA, 0.0, DELTA, 2 * DELTA], size=(80, 1))
    x = true + cal.noise(rng, 80, cap, SIGMA, "mild")
    sim = cal.simulate(c, x, cap)
    looks = stats.allowed_looks(c.looks, cap)
    for i, row in enumerate(x):
        d = judge(c, _results(c, row), last_look=True, looks=looks)
        assert (d.verdict is Verdict.SUPPORTED) == sim.supported[i] and d.n == sim.n[i]
        assert d.underpowered == (sim.code[i] == cal.UNDERPOWERED)
        assert d.p_seq == pytest.approx(sim.p_seq[i], rel=1e-9, abs=1e-12)
        off = c.threshold if form is Form.ABSOLUTE else 0.0
        assert (d.ci_lower - off, d.ci_upper - off) == pytest.approx((sim.ci_lower[i], sim.ci_upper[i]), abs=1e-12)
    assert 0 < sim.supported.sum() < len(x)


# ------------------------------------------------------------------------------------------------ false SUPPORTED


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("form", cal.FORMS)
def test_false_support_at_every_null_line_stays_within_alpha_or_the_strong_skew_bound(form, kind, cap):
    """At each null line (equivalence at both +Δ and −Δ, non-inferiority at −Δ): ≤ α under normal noise and under
    mild skew (10 % of seeds lose 3 σ_d), ≤ 9 % under strong skew (5 % lose 6 σ_d)."""
    bound = STRONG_BOUND if kind == "strong" else ALPHA
    for null, rate in cal.false_support(form, kind, cap, SIMS, 11 + cap, SIGMA, DELTA).items():
        assert rate <= bound + cal.mc_error(bound, SIMS), (null, rate)


@pytest.mark.parametrize("cap", CAPS)
def test_the_cap_spends_the_whole_design_alpha_rather_than_a_fraction_of_it(cap):
    """The per-look levels come from the looks the cap allows: under normal noise at the null the rate is near the
    design's α (the claim's α times the skew guard), not far below it."""
    c = cal.sim_claim(Form.SUPERIORITY, DELTA)
    a = design_alpha(c)
    rate = cal.simulate(c, cal.noise(np.random.default_rng(9), SIMS, cap, SIGMA, "normal"), cap).supported.mean()
    assert a - cal.mc_error(a, SIMS) - 0.005 <= rate <= a + cal.mc_error(a, SIMS), rate


# ------------------------------------------------------------------------------------------------ futility


def test_no_futility_stop_before_five_seeds():
    """Not even on three seeds that look hopeless: under every noise and form, no claim stops at 3."""
    for form in cal.FORMS:
        c = cal.sim_claim(form, DELTA)
        x = cal.noise(np.random.default_rng(5), 2_000, 12, 3 * SIGMA, "strong")
        sim = cal.simulate(c, x, 12)
        assert not ((sim.code == cal.UNDERPOWERED) & (sim.n < 5)).any(), form


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("form", cal.FORMS)
def test_the_futility_stop_rarely_ends_a_claim_the_cap_would_support(form, kind, cap):
    """At a true effect 2 σ_d inside the support region: stopped "predicted underpowered" ≤ 5 % under normal noise
    and mild skew; under any noise the stop costs ≤ 2.5 % of the SUPPORTED verdicts the cap would reach (under strong
    skew it stops more, mostly claims the cap would leave INCONCLUSIVE anyway)."""
    stopped, lost = cal.futility(form, kind, cap, SIMS, 21 + cap, SIGMA)
    if kind != "strong":
        assert stopped <= 0.05 + cal.mc_error(0.05, SIMS), stopped
    assert lost <= 0.025 + cal.mc_error(0.025, SIMS), lost


# ------------------------------------------------------------------------------------------------ coverage


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("form", cal.FORMS)
def test_the_repeated_intervals_cover_the_truth_after_sequential_stopping(form, kind, cap):
    """The two-sided 95 % repeated interval at the stopping look holds the true difference in ≥ 93 % of claims under
    normal noise and mild skew, ≥ 90 % under strong skew, at the form's null line (where stopping biases most) and,
    for superiority, at 1 and 3 σ_d."""
    bound = 0.90 if kind == "strong" else 0.93
    truths = cal.null_lines(DELTA)[form] + ((SIGMA, 3 * SIGMA) if form is Form.SUPERIORITY else ())
    for i, true_d in enumerate(truths):
        cov = cal.coverage(form, kind, cap, SIMS // 2, 31 + i, true_d, SIGMA, DELTA)
        assert cov >= bound - cal.mc_error(1 - bound, SIMS // 2), (true_d, cov)


# ------------------------------------------------------------------------------------------------ the family


def test_the_sequential_p_is_uniform_enough_under_the_null_for_holm_to_use():
    """P(p_seq <= a) <= a at the levels Holm and BH use on a family of 10 to 57 claims (normal noise)."""
    c = cal.sim_claim(Form.SUPERIORITY, DELTA)
    p = cal.simulate(c, cal.noise(np.random.default_rng(8), 20_000, 12, SIGMA, "normal"), 12).p_seq
    for a in (0.05, 0.01, 0.005, 0.001):
        assert np.mean(p <= a) <= a + cal.mc_error(max(a, 0.002), len(p)), (a, np.mean(p <= a))


def test_the_confirmation_p_of_judge_is_the_t_p_of_the_seeds_after_the_decision():
    c = cal.sim_claim(Form.SUPERIORITY, DELTA)
    x = np.array([0.05, 0.051, 0.049, 0.01, -0.005, 0.02, 0.0, 0.015, 0.004, 0.012, -0.002, 0.008])
    d = judge(c, _results(c, x), last_look=True, confirm_from=3)
    assert d.verdict is Verdict.SUPPORTED and d.n == 3  # the verdict is the deciding look's
    assert d.p_confirm == pytest.approx(reported_p(stats.t_pvalue(x[3:])))
    plain = judge(c, _results(c, x[:3]), last_look=False)
    assert d.p_seq == pytest.approx(min(plain.p_seq, d.p_confirm))


FAMILIES = 400


@pytest.mark.parametrize("confirm", [False, True])
@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("effects", [(0.0,) * 10, (0.015,) * 5 + (0.0,) * 5], ids=["global-null", "5-effects"])
def test_holm_and_bh_keep_the_family_level_with_and_without_confirm(effects, kind, confirm):
    """Families of 10 superiority claims (σ_d 2 pp, Δ 1.5 pp, cap 12): Holm's family-wise error ≤ 5 % under normal
    noise and mild skew and ≤ 7 % under strong skew, with --confirm or without; under the global null BH's FDR (the
    chance of any discovery) the same; without the layer ten claims at 5 % each find something far more often."""
    r = cal.family(kind, FAMILIES, 41, effects=effects, confirm=confirm)
    bound = 0.07 if kind == "strong" else 0.05
    assert r.fwer_holm <= bound + cal.mc_error(bound, FAMILIES), r
    if all(e == 0 for e in effects):
        assert r.fwer_bh <= bound + cal.mc_error(bound, FAMILIES), r
        assert r.fwer_raw > 0.15, r


def test_the_figures_command_rejects_bad_input_in_one_sentence(tmp_path, capsys):
    assert cal.main(["--scale", "0"]) == 2
    assert capsys.readouterr().err.strip() == "calibrate: --scale must be at least 1"
    page = tmp_path / "page.md"
    page.write_text("no block here\n")
    with pytest.raises(ValueError, match="has no <!-- calibration:start -->"):
        cal.write_figures(page, "figures")


def test_the_figures_replace_only_their_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"head\n{cal.FIG_START}\nold\n{cal.FIG_END}\ntail\n")
    cal.write_figures(page, "| a | b |")
    assert page.read_text() == f"head\n{cal.FIG_START}\n| a | b |\n{cal.FIG_END}\ntail\n"
    md = cal.figures_markdown([("promise", "case", 0.0123, "≤ 5 %")], 1, 12.0)
    assert md.startswith("Measured ") and "| promise | case | 1.23 % ± 0.23 | ≤ 5 % |" in md
