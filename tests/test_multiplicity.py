"""The suite's multiplicity layer (Holm and Benjamini-Hochberg over the claims that trained, restated claims counted
once), its headline, `--confirm` sampling and the closest-first order of a round's runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from claims.report.model import build_report
from claims.report.schema import report_json
from claims.report.text import family_line, headline, report_markdown, summary_markdown
from claims.stats import multiplicity
from tests.claims_example.fake import fake_recipe
from tests.test_schedule import _calls, _claim, _scheduler, call_log  # noqa: F401 (a fixture)


def _dec(verdict: str, p: float | None):
    from claims.spec import Verdict

    return SimpleNamespace(verdict=Verdict(verdict), p_seq=p)


def _ids(*ids, restates=None):
    restates = restates or {}
    return [SimpleNamespace(id=i, restates=restates.get(i)) for i in ids]


def test_holm_and_bh_differ_where_they_should():
    # ten SUPPORTED claims at p = 0.004 each: Holm needs p <= 0.05/10 for the first, BH q = 0.004 for all
    decisions = {f"C{i}": _dec("SUPPORTED", 0.004) for i in range(10)}
    m = multiplicity(_ids(*decisions), decisions, 0.05)
    assert all(m.holm.values()) and all(m.fdr.values())
    # p = 0.006: above Holm's first level 0.005, so Holm rejects none; BH's q is 0.006 and rejects all ten
    decisions = {f"C{i}": _dec("SUPPORTED", 0.006) for i in range(10)}
    m = multiplicity(_ids(*decisions), decisions, 0.05)
    assert not any(m.holm.values()) and all(m.fdr.values())
    assert m.q["C0"] == pytest.approx(0.006)


def test_only_claims_that_trained_are_in_the_family_and_only_supported_ones_hold():
    decisions = {"S": _dec("SUPPORTED", 0.001), "R": _dec("REFUTED", 0.001), "I": _dec("INCONCLUSIVE", 0.4),
                 "G": _dec("INCONCLUSIVE", None), "N": _dec("INCONCLUSIVE", float("nan"))}
    m = multiplicity(_ids("S", "R", "I", "G", "N", "X"), decisions, 0.05)
    assert set(m.hypothesis) == {"S", "R", "I"}  # never run, not judged, no p: not in the family
    assert m.holm == {"S": True, "R": False, "I": False}  # R's small p is not a claim that holds
    assert m.fdr == {"S": True, "R": False, "I": False}


def test_a_claim_that_restates_another_is_one_hypothesis():
    decisions = {"C001-3": _dec("SUPPORTED", 0.02), "C001-14": _dec("SUPPORTED", 0.02),
                 "O": _dec("INCONCLUSIVE", 0.9)}
    m = multiplicity(_ids("C001-3", "C001-14", "O", restates={"C001-14": "C001-3"}), decisions, 0.05)
    assert m.hypothesis == {"C001-3": "C001-3", "C001-14": "C001-3", "O": "O"}
    assert set(m.p) == {"C001-3", "O"}  # two hypotheses: Holm's first level is 0.025, and 0.02 clears it
    assert m.holm["C001-3"] and m.holm["C001-14"] and m.q["C001-14"] == m.q["C001-3"]
    counted_twice = multiplicity(_ids("C001-3", "C001-14", "O"), decisions, 0.05)
    assert not counted_twice.holm["C001-3"]  # as three hypotheses 0.02 > 0.05/3: the merge matters


def test_the_engine_spec_merges_c001_14_into_c001_3():
    from claims.suite.test_pal2021b import C001_3, C001_14

    assert C001_14.restates == C001_3.id and (C001_14.a, C001_14.b) == (C001_3.a, C001_3.b)


def _report_of(tmp_path, decide_p: dict[str, tuple[int, float]], confirm=False, confirm_p=None, cap=None):
    """A scheduler over fake claims with a scripted judge: claim -> (deciding look, p_seq); `confirm_p`: claim ->
    {n: p_seq} under confirmation sampling."""
    from claims.spec import Decision, Verdict

    confirm_p = confirm_p or {}
    calls = []

    def judge(claim, results, *, last_look, device_has_gpu=False, sigma_d_pilot=None, looks=None, confirm_from=None):
        (n,) = {len(v) for v in results.values()}
        calls.append((claim.id, n, confirm_from))
        at, p = decide_p.get(claim.id, (10**9, 0.5))
        decided = n >= at
        p_conf = None
        if confirm_from is not None:
            p_conf = confirm_p.get(claim.id, {}).get(n, 0.5)
            p = min(p, p_conf)
        return Decision(claim_id=claim.id, verdict=Verdict.SUPPORTED if decided else Verdict.INCONCLUSIVE,
                        reason="scripted", n=n, mean=0.02, lower=0.01, upper=0.03, alpha_look=0.01,
                        sign_flip_p=0.1, fragile=False, p_a_gt_b=1.0, p_seq=p, seeds_needed=None,
                        final=decided or last_look, p_confirm=p_conf)

    base = fake_recipe("base")
    claims = [_claim(cid, fake_recipe(cid.lower(), 0.05), base) for cid in decide_p]
    sched = _scheduler(tmp_path, claims, judge=judge, confirm=confirm, max_seeds=cap)
    sched.run()
    return sched, build_report(sched), calls


def test_confirm_takes_a_supported_claim_that_misses_holm_to_the_cap_in_one_round(tmp_path, call_log):  # noqa: F811
    decide = {"Y": (3, 0.001), "Z": (3, 0.001), "X": (3, 0.03), "V": (3, 0.04), "W": (99, 0.5), "U": (12, 0.04)}
    plain_sched, plain, _ = _report_of(tmp_path / "a", decide)
    assert {r.claim.id for r in plain.rows if r.holm} == {"Y", "Z"}  # X's 0.03 > 0.05/4 at its rank
    sched, rep, calls = _report_of(tmp_path / "b", decide, confirm=True, confirm_p={"X": {12: 0.001}})
    assert {r.claim.id for r in rep.rows if r.holm} == {"Y", "Z", "X"}
    notes = {r.claim.id: r.confirmation for r in rep.rows}
    assert notes["X"] == ("cleared Holm by confirmation sampling: n = 3 → 12, p = 0.001 on the 9 seeds after the "
                          "decision")
    assert notes["V"] == ("confirmation sampling to the seed cap (n = 3 → 12, p = 0.5 on the 9 seeds after the "
                          "decision) did not clear Holm")
    assert notes["U"] == "does not clear Holm and has fewer than 2 seeds left below its seed cap (n = 12)"
    assert notes["Y"] == "clears Holm without confirmation sampling" and notes["W"] is None
    # one confirmation round, straight to the cap, told the seeds of the decision: no look to correct for
    assert [(n, c) for cid, n, c in calls if cid == "X" and c] == [(12, 3)]
    assert [(n, c) for cid, n, c in calls if cid == "V" and c] == [(12, 3)]
    assert all(r.verdict == "SUPPORTED" for r in rep.rows if r.claim.id != "W")  # verdicts unchanged
    runs = _calls(call_log)
    assert max(s for k, s in runs if k == fake_recipe("x", 0.05).key) == 11  # seeds 0-11: n = 12
    assert "Confirmation (--confirm): cleared Holm by confirmation sampling: n = 3 → 12" in report_markdown(rep)
    assert {c["id"]: c["confirmation"] for c in report_json(rep)["claims"]}["X"].startswith("cleared")
    assert all(r.confirmation is None for r in plain.rows) and not plain_sched.confirmations


def test_without_confirm_no_claim_samples_past_its_deciding_look(tmp_path, call_log):  # noqa: F811
    _, rep, calls = _report_of(tmp_path, {"X": (3, 0.03), "W": (99, 0.5)})
    assert not any(c for _, _, c in calls) and all(r.confirmation is None for r in rep.rows)
    assert max(n for cid, n, _ in calls if cid == "X") == 3


def test_the_headline_counts_hypotheses_at_fdr_and_after_holm(tmp_path, call_log):  # noqa: F811
    decide = {"Y": (3, 0.001), "Z": (3, 0.001), "X": (3, 0.03), "V": (3, 0.04), "W": (99, 0.5)}
    _, rep, _ = _report_of(tmp_path, decide)
    # BH over (.001, .001, .03, .04, .5): q = .0025, .0025, .05, .05, .5: four hold at 5 %; Holm keeps two
    # the headline leads with the verdicts, each at its own α, and why the open ones are open
    assert headline(rep).endswith("Of 5 claims, each at its own α = 0.05: 4 SUPPORTED, 0 REFUTED, 1 INCONCLUSIVE (1 "
                                  "at the seed cap)")
    assert family_line(rep) == ("Across the 5 hypotheses that trained: 4 hold at a false-discovery rate of 5 % "
                                "(Benjamini-Hochberg) and 2 at a family-wise error of 5 % (Holm); --confirm would let "
                                "SUPPORTED claims that miss Holm take the seeds up to their cap and count on those new "
                                "seeds alone.")
    _, confirmed, _ = _report_of(tmp_path / "c", decide, confirm=True)
    assert "with --confirm: SUPPORTED claims that missed Holm took the seeds up to their cap" in family_line(confirmed)
    md = summary_markdown(rep)
    assert "FDR (BH q)" in md and "holds (q 0.05)" in md
    data = report_json(rep)
    assert (data["holding"], data["holding_fdr"], len(data["family"])) == (2, 4, 5)


def test_a_round_trains_the_claim_closest_to_a_decision_first(tmp_path, call_log):  # noqa: F811
    from claims.spec import Decision, Verdict

    def judge(claim, results, *, last_look, device_has_gpu=False, sigma_d_pilot=None, looks=None, confirm_from=None):
        (n,) = {len(v) for v in results.values()}
        need = {"far": 11, "near": 5}[claim.id]
        return Decision(claim_id=claim.id, verdict=Verdict.INCONCLUSIVE, reason="scripted", n=n, mean=0.0,
                        lower=-0.01, upper=0.01, alpha_look=0.01, sign_flip_p=0.5, fragile=False, p_a_gt_b=0.5,
                        p_seq=0.5, seeds_needed=need, final=last_look)

    far, near = fake_recipe("far", 0.01), fake_recipe("near", 0.01)
    base = fake_recipe("base")
    claims = [_claim("far", far, base), _claim("near", near, base)]  # "far" first in the spec's order
    _scheduler(tmp_path, claims, judge=judge, max_seeds=5).run()
    order = [line.split()[0] for line in call_log.read_text().splitlines()]
    round_2 = order[9:]  # round 1: 3 seeds of far, base, near; round 2: seeds 3-4
    assert round_2.index(near.key) < round_2.index(far.key)
    assert order[:3] == [far.key] * 3  # before any look, the spec's order
