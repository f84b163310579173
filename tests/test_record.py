"""The paper campaign's record restores a run store, carries legacy runs over to fingerprint keys only where the old
code computes the same numbers, and feeds the answer table (published recipes beside the proxy)."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from claims import answers, record
from claims.answers import Status, agreement, paper_status, proxy_status
from claims.declare import superior
from claims.spec import Form
from claims.store import RunStore
from tricks.recipe import RunResult, RunVersions
from tricks.recipes import get_recipe

DIGEST = "d009b9a61a05" + "0" * 52
REPO = Path(__file__).resolve().parents[1]


def result(name: str, seed: int, acc: float, version: str | None = None, **kw) -> RunResult:
    r = get_recipe(name)
    return RunResult(recipe_key=r.key, recipe_name=name, seed=seed, profile="paper",
                     code_version=version or RunVersions(DIGEST)(r.key), acc=acc, loss=1 - acc,
                     acc_per_epoch=[acc / 2, acc], loss_per_epoch=[1.5, 1 - acc], train_loss_per_epoch=[1.6, 1.1],
                     params_used=122_570, wall_s=600.5, img_per_s=160.0, device="cpu:x86_64", threads=1,
                     versions={"torch": "2.14.1"}, dataset=f"copy (sha256 {DIGEST[:12]})", **kw)


def test_a_record_entry_round_trips_every_field_and_a_diverged_runs_nan():
    r = result("pal2021b/baseline", 3, 0.75, scaled="", note="n")  # values the record keeps exactly
    back = record.run_from_entry(json.loads(json.dumps(record.run_entry(r))))
    assert back == r
    bad = result("pal2021b/baseline", 4, float("nan"), diverged=True)
    again = record.run_from_entry(json.loads(json.dumps(record.run_entry(bad), allow_nan=False)))
    assert math.isnan(again.acc) and again.diverged


def test_packed_entries_list_shared_values_once_leave_defaults_out_and_unpack_to_the_whole_entries():
    runs = [result("pal2021b/baseline", s, 0.7 + s / 100) for s in range(3)]
    other = replace(result("pal2021b/wider", 0, 0.5, diverged=True, note="loss nan"), versions={"torch": "2.15"})
    runs.append(other)
    entries = [record.run_entry(r) for r in runs]
    shared, packed = record.pack(entries)
    assert shared["versions"] == [{"torch": "2.14.1"}, {"torch": "2.15"}] and len(shared["dataset"]) == 1
    assert [e["versions"] for e in packed] == [0, 0, 0, 1]
    assert "note" not in packed[0] and "diverged" not in packed[0] and packed[3]["diverged"] is True
    data = json.loads(json.dumps({"shared": shared, "runs": packed}))
    assert record.unpack(data) == entries
    assert [record.run_from_entry(e) for e in record.unpack(data)] == [record.run_from_entry(e) for e in entries]
    # a record written before packing (every entry whole, no "shared") reads the same
    assert record.unpack({"runs": entries}) == entries


def test_restore_puts_the_records_runs_into_an_empty_store_once(tmp_path):
    runs = [result("pal2021b/baseline", s, 0.70 + s / 100) for s in range(3)]
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"runs": [record.run_entry(r) for r in runs]}, separators=(",", ":")))
    store = RunStore(tmp_path / "runs.sqlite")
    assert record.restore(store, record.read(path)) == (3, 0)
    assert record.restore(store, record.read(path)) == (0, 3)
    key = runs[0].recipe_key
    got = store.get(key, 2, "paper", RunVersions(DIGEST)(key))  # the key the suite asks for today
    assert got is not None and got.acc == pytest.approx(0.72)
    assert store.recipe(key) == get_recipe("pal2021b/baseline")


def test_restore_refuses_nothing_and_overwrites_nothing(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    first = result("pal2021b/baseline", 0, 0.71)
    store.put(first)
    assert record.restore(store, [result("pal2021b/baseline", 0, 0.50)]) == (0, 1)
    assert store.get(first.recipe_key, 0, "paper", first.code_version).acc == pytest.approx(0.71)


@pytest.mark.slow
def test_rekey_carries_runs_over_only_where_the_old_checkout_computes_the_committed_fingerprint():
    legacy = "0.1.0+000000000000+data." + DIGEST[:12]
    runs = [result("he2016/hidden150", 0, 0.5, legacy), result("he2016/naive", 0, 0.5, legacy)]
    # this checkout computes the committed fingerprints: both carry over to today's keys, with a note
    moved, why = record.rekey(runs, REPO)
    assert why == {} and {r.code_version for r in moved} == {RunVersions(DIGEST)(r.recipe_key) for r in runs}
    assert all("trained under 0.1.0+000000000000" in r.note for r in moved)


def test_rekey_leaves_a_run_whose_recipe_computes_other_numbers(monkeypatch):
    legacy = "0.1.0+000000000000+data." + DIGEST[:12]
    runs = [result("he2016/hidden150", 0, 0.5, legacy)]
    key = runs[0].recipe_key
    monkeypatch.setattr(record, "old_fingerprints", lambda tree, names: {"he2016/hidden150": (key, (1.0, 2.0))})
    moved, why = record.rekey(runs, "/nonexistent")
    assert moved == [] and "other numbers" in why["he2016/hidden150"]


# ------------------------------------------------------------------------------------------------ answers

CLAIM = superior("T-1", "doc 001: test", "residual beats the baseline", "pal2021b/residual", "pal2021b/baseline")


def test_a_claim_without_a_looks_worth_of_seeds_says_how_far_the_paper_campaign_got():
    runs = [result(n, s, a) for s in range(2) for n, a in (("pal2021b/residual", 0.77), ("pal2021b/baseline", 0.70))]
    st = paper_status(CLAIM, runs)
    assert st.verdict is None and st.n == 2 and not st.final and st.label == "paper: 2 seeds so far"
    assert paper_status(CLAIM, runs[:2]).label == "paper: 1 seed so far"


def test_a_clear_paper_effect_is_judged_by_the_engine_at_the_looks_the_record_allows():
    runs = [result(n, s, a + s * 0.001 + (0.0005 if n.endswith("residual") and s % 2 else 0))
            for s in range(8) for n, a in (("pal2021b/residual", 0.775), ("pal2021b/baseline", 0.705))]
    st = paper_status(CLAIM, runs)
    assert st.final and st.verdict == "SUPPORTED" and st.mean == pytest.approx(7.0, abs=0.1) and st.n in (3, 5, 8)


def test_a_resnet9_claim_under_the_paper_profile_on_a_cpu_needs_a_gpu():
    c = superior("T-2", "doc 004: test", "x", "jovian/resnet9", "jovian/resnet9-no_bn")
    st = paper_status(c, [])
    assert not st.final and st.verdict is None and "needs a GPU" in st.reason
    assert st.label == "needs a GPU: not run on a CPU"
    assert agreement(st, Status("SUPPORTED", 5, 2.0, final=True)) == "no paper verdict"
    # runs brought back from a GPU (all 8 seeds of both arms) are judged
    runs = [result(n, s, a) for s in range(8) for n, a in (("jovian/resnet9", 0.92 + s / 1000),
                                                          ("jovian/resnet9-no_bn", 0.85))]
    st = paper_status(c, runs)
    assert st.final and st.verdict == "SUPPORTED" and st.mean == pytest.approx(7.0, abs=0.5)


def test_an_inconclusive_cell_says_why_in_a_few_words():
    st = Status("INCONCLUSIVE", 8, 0.4, -1.0, 1.8, "budget exhausted at n = 8: [L, U] = ... a verdict needs ~31 seeds "
                "at the observed d̄", True)
    assert st.label == "INCONCLUSIVE, needs ~31 seeds"
    assert Status("INCONCLUSIVE", 5, reason="2 of 3 parts undecided: ...", final=True).label == (
        "INCONCLUSIVE, 2 of 3 parts undecided")
    # the undecided parts say the seeds each would need (the reason as _judge_compound words it)
    two = ("2 of 3 parts undecided: C002-3/rmsprop: budget exhausted at n = 8 (seed cap): [L, U] = [-5.04 pp, "
           "-1.46 pp] straddles the margin (Δ = 2.00 pp); a verdict needs ~24 seeds at the observed d̄ = -3.25 pp, "
           "σ_d = 1.92 pp, and ~14 if the true difference were 0; C002-3/nesterov: budget exhausted at n = 8 "
           "(seed cap): ...; a verdict needs more than 100,000 seeds at the observed d̄ = ...")
    assert Status("INCONCLUSIVE", 8, reason=two, final=True).label == (
        "INCONCLUSIVE, 2 of 3 parts undecided (rmsprop needs ~24 seeds; nesterov needs > 100,000 seeds)")
    off = proxy_status({"verdict": "INCONCLUSIVE", "n": 0, "reason": "a published number: judged only under ..."})
    assert off.label == "not judged: a published number" and agreement(Status("SUPPORTED", 3, final=True), off) == (
        "no proxy verdict")


@pytest.mark.parametrize("paper, proxy, want", [
    (Status("SUPPORTED", 5, 2.0, 0.5, 3.5, final=True), Status("SUPPORTED", 5, 9.0, 3.0, 15.0, final=True), "agree"),
    (Status("SUPPORTED", 5, 2.0, final=True), Status("REFUTED", 5, 1.0, final=True), "contradictory verdicts"),
    (Status("INCONCLUSIVE", 8, 1.8, final=True), Status("INCONCLUSIVE", 3, -2.4, final=True), "agree"),
    (Status("SUPPORTED", 8, 1.8, final=True), Status("INCONCLUSIVE", 3, -2.4, final=True), "opposite sign"),
    (Status("REFUTED", 8, 0.2, final=True), Status("INCONCLUSIVE", 3, 1.0, final=True),
     "same sign, different verdict"),
    (Status(None, 3, 1.0), Status("SUPPORTED", 5, 2.0, final=True), "pending"),
])
def test_agreement_classes(paper, proxy, want):
    assert agreement(paper, proxy) == want


def test_the_answer_table_lists_every_claim_with_its_words_and_both_columns(tmp_path):
    runs = [result(n, s, a) for s in range(3) for n, a in (("pal2021b/residual", 0.77), ("pal2021b/baseline", 0.70))]
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"generated": "2026-12-07T00:00:00Z", "runs": [record.run_entry(r) for r in runs]}))
    proxy = tmp_path / "proxy.json"
    proxy.write_text(json.dumps({"created": "2026-12-06", "code_version": "v", "source": "test",
                                 "claims": {"C001-8": {"verdict": "INCONCLUSIVE", "n": 0}}}))
    table, text = answers.build(path, proxy)
    ids = [r.id for r in table]
    assert len(ids) == len(set(ids)) and "C001-1" in ids and "X-1" in ids and ids.index("C000-1") < ids.index("X-1")
    c8 = next(r for r in table if r.id == "C001-8")
    assert c8.paper.n == 3 and c8.proxy.verdict == "INCONCLUSIVE"
    assert "the residual network outperformed the baseline" in text and "| C001-8 | doc 001 (pal2021b) |" in text
    assert "| X-1 | docs 001, 003 (pal2021b, fastai2018) |" in text  # each source by its short name
    assert "6 paper-profile runs" in text


def test_the_proxy_column_is_taken_only_from_a_default_report(tmp_path):
    rep = {"profile": "smoke", "claims": []}
    with pytest.raises(ValueError, match="default-profile report"):
        answers.proxy_from_report(rep)
    rep = {"profile": "default", "created": "2026-12-07", "code_version": "v",
           "claims": [{"id": "C001-1", "verdict": "SUPPORTED", "reason": "r",
                       "decision": {"n": 5, "mean_pp": 5.19, "lower_pp": 0.76, "upper_pp": 9.62}}]}
    got = answers.proxy_from_report(rep)["claims"]["C001-1"]
    assert got == {"verdict": "SUPPORTED", "n": 5, "reason": "r", "mean": 5.19, "lower": 0.76, "upper": 9.62}


def test_the_paper_profile_caps_at_8_seeds_and_skips_resnet9_on_a_cpu():
    from tricks.recipe import PROFILES

    p = PROFILES["paper"]
    assert p.max_seeds == 8 and p.cpu_skips_gpu_sized and not p.cpu_skips_heavy
    assert get_recipe("jovian/resnet9").gpu_sized and not get_recipe("he2016/kmeans").gpu_sized
    assert CLAIM.form is Form.SUPERIORITY


def test_the_paper_column_of_a_proxy_report_comes_from_the_record(tmp_path):
    from claims.answers import paper_column

    c = superior("T-3", "doc 001: test", "x", "pal2021b/residual", "pal2021b/baseline")
    path = tmp_path / "record.json"
    runs = [result(n, s, a + s / 1000) for s in range(5) for n, a in (("pal2021b/residual", 0.77),
                                                                     ("pal2021b/baseline", 0.70))]
    path.write_text(json.dumps({"generated": "2026-12-07T00:00:00Z", "runs": [record.run_entry(r) for r in runs]}))
    col = paper_column([c], path)
    assert col["T-3"].final and col["T-3"].verdict == "SUPPORTED" and col["T-3"].n in (3, 5)
    assert paper_column([c], tmp_path / "none.json") == {}  # no record (an installed copy): no column


def test_the_table_says_in_figures_how_the_proxy_compares_with_the_published_recipes():
    from claims.answers import Row, comparison_summary

    def row(cid, paper, proxy):
        return Row(cid, "words", "doc 001", paper, proxy, agreement(paper, proxy))

    table = [row("A", Status("SUPPORTED", 5, 2.0, 0.5, 3.5, final=True), Status("SUPPORTED", 5, 8.0, final=True)),
             row("B", Status(None, 3, -1.0), Status("SUPPORTED", 5, 3.0, final=True)),
             row("C", Status(None, 0), None)]
    text = comparison_summary(table)
    assert text.startswith("1 of 3 claims have a verdict on the published recipes; beside the proxy's verdicts: "
                           "1 agree.")
    many = [row(c, Status("SUPPORTED", 5, 2.0, 0.5, 3.5, final=True), Status("REFUTED", 5, -1.0, final=True))
            for c in "DE"] + [row("F", Status("REFUTED", 8, 1.0, final=True), Status("INCONCLUSIVE", 3, -1.0,
                                                                                      final=True))]
    assert comparison_summary(many).startswith("3 of 3 claims have a verdict on the published recipes; beside the "
                                               "proxy's verdicts: 2 contradict it (SUPPORTED against REFUTED), "
                                               "1 with the opposite sign.")
    assert "(2 claims, the paper's at 3-5 seeds so far), the proxy's has the opposite sign in 1 and is 3.5× the " \
           "paper's in size (median)" in text
