"""The reproduction table (claims/reproduce.py) from a temporary store of fake paper-profile runs: its numbers, the
inside-range flag, "not run" rows, the registered explanations, the JSON record, the README block, the code-version
filter, and one-sentence errors for a missing or foreign store."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from claims import record, reproduce
from claims.published import Published
from claims.reproduce import END, JPEG_WHY, START, build_rows, main, row_cells, table_markdown
from claims.store import RunStore
from tricks.recipe import RunResult
from tricks.recipes import get_recipe


def fake(name: str, seed: int, acc: float, *, cv: str = "v1", profile: str = "paper", dataset: str = "synthetic",
         diverged: bool = False) -> RunResult:
    """A finished run of the named recipe with the given accuracy, no training."""
    r = get_recipe(name)
    return RunResult(
        recipe_key=r.key, recipe_name=name, seed=seed, profile=profile, code_version=cv, acc=acc, loss=1 - acc,
        acc_per_epoch=[acc - 0.1, acc], loss_per_epoch=[1.1 - acc, 1 - acc], train_loss_per_epoch=[1.3, 1.0],
        params_used=122_570, wall_s=480.0, img_per_s=1500.0, device="cpu:x86_64", threads=1,
        versions={"torch": "t", "fastai": "f"}, dataset=dataset, diverged=diverged,
        note="NaN loss" if diverged else "")


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "runs.sqlite"


def fill(path, runs) -> RunStore:
    store = RunStore(path)
    for r in runs:
        store.put(r)
    return store


def rows_by_recipe(runs) -> dict[str, reproduce.Row]:
    return {(r.published.recipe, r.published.over): r for r in build_rows(runs)}


def row(rows, name, over=False) -> reproduce.Row:
    return rows[(name, over)]


def test_row_shows_mean_sd_range_n_difference_and_inside_flag():
    runs = [fake("pal2021b/baseline", s, a) for s, a in enumerate((0.70, 0.71, 0.72))]
    r = row(rows_by_recipe(runs), "pal2021b/baseline")
    cells = row_cells(r)
    assert cells[:3] == ["`pal2021b/baseline`", "70.5 (runs 66.2–73.3)", "doc 001 (notebook 48595ed)"]
    assert cells[3:8] == ["71.00 ± 1.00", "[70.00, 72.00]", "3", "+0.50", "yes"]
    assert "pp below" not in cells[8] and "pp above" not in cells[8]  # within 2 pp: no explanation needed


def test_published_value_outside_our_range_is_flagged_and_a_miss_below_on_the_jpeg_copy_says_so():
    runs = [fake("pal2021b/residual", s, a, dataset="class folders (JPEG) x.tgz") for s, a in
            enumerate((0.75, 0.76, 0.77))]
    cells = row_cells(row(rows_by_recipe(runs), "pal2021b/residual"))
    assert cells[6:8] == ["-5.00", "no"]
    # SD 1 pp on 2 df: the original's 3 runs (mean 80.88) against 76 ± 4.303 · sqrt(1/3 + 1/3) = [72.49, 79.51]
    # (the published 0.810 is not the best of them: one run gave 0.8104)
    assert cells[8] == ("5.0 pp below: beyond seed noise: the mean of the original's 3 runs, 80.88, lies outside our "
                        "95% interval for a 3-run mean [72.49, 79.51] (SD 1.00 pp pooled over doc 001's 1 arm(s), 2 "
                        f"df); {JPEG_WHY}; outside the original's own runs (80.7–81.04) too")


def test_seed_noise_pools_the_documents_arms_and_explains_a_miss_it_covers():
    spread = [fake("pal2021b/baseline", s, a) for s, a in enumerate((0.64, 0.68, 0.72))]  # SD 4 pp
    tight = [fake("pal2021b/residual", s, a, dataset="JPEG") for s, a in enumerate((0.775, 0.776, 0.777))]
    rows = rows_by_recipe(spread + tight)
    noise = row(rows, "pal2021b/residual").noise
    assert noise.df == 4 and noise.sd == pytest.approx(((16e-4 + 1e-6) / 2) ** 0.5)  # pooled over both arms
    assert noise.group == "doc 001's 2 arm(s)" and row(rows, "pal2021b/baseline").noise == noise
    assert row(rows, "pal2021a/lr_schedule@code").noise is None  # no runs of doc 000
    # residual 77.6: 3.4 pp below; the pooled SD (2.83 pp, 4 df) puts the original's mean 80.88 inside 77.6 ± 6.4
    note = row(rows, "pal2021b/residual").note()
    assert "3.4 pp below: within seed noise: the mean of the original's 3 runs, 80.88" in note
    # an arm without the original's runs is checked against its one published run
    dense = rows_by_recipe([fake("pal2021a/init_weights@code", s, a) for s, a in enumerate((0.66, 0.67, 0.68))])
    within, text = row(dense, "pal2021a/init_weights@code").seed_noise()
    assert within and text.startswith("within seed noise: the published run lies in our 95% prediction interval "
                                      "for one run")
    assert JPEG_WHY not in note  # seed noise covers it: no other explanation is offered


def test_a_miss_covered_by_the_mean_of_the_originals_runs_says_the_published_run_is_their_best():
    # wider: published 74.19, the original's runs 74.19 / 70.4 / 73.7 (mean 72.76); ours 72.0 ± 0.3 on 2 df
    runs = [fake("pal2021b/wider", s, a) for s, a in enumerate((0.717, 0.720, 0.723))]
    r = row(rows_by_recipe(runs), "pal2021b/wider")
    assert r.miss and r.orig_mean == pytest.approx(0.72763, abs=1e-5)
    within, text = r.seed_noise()
    assert within and text.startswith("within seed noise: the mean of the original's 3 runs, 72.76 (the published "
                                      "run is the best of them), lies in our 95% interval for a 3-run mean")


def test_the_offset_counts_the_arms_below_their_published_values():
    runs = [fake("pal2021b/residual", s, 0.70 + s / 1000, dataset="JPEG") for s in range(3)] + \
           [fake("pal2021b/baseline", s, 0.68 + s / 1000, dataset="JPEG") for s in range(3)] + \
           [fake("pal2021b/wider", 0, 0.76, dataset="JPEG")]
    rows = rows_by_recipe(runs)
    off = row(rows, "pal2021b/residual").offset
    assert off is row(rows, "pal2021b/baseline").offset
    assert (off.below, off.arms) == (2, 3)  # residual and baseline below, wider above
    assert off.mean_pp == pytest.approx(((70.1 - 81.0) + (68.1 - 70.5) + (76.0 - 74.2)) / 3)
    note = row(rows, "pal2021b/residual").note()
    assert "beyond seed noise" in note and JPEG_WHY in note and off.text() in note


def test_a_miss_gets_the_explanation_registered_for_its_arm():
    runs = [fake("pal2021a/baseline@code", s, a) for s, a in enumerate((0.655, 0.66))]
    note = row(rows_by_recipe(runs), "pal2021a/norm_inputs@code").note()
    assert "2.9 pp below: one published run of the same recipe as baseline@code (0.667)" in note
    assert JPEG_WHY not in note  # not trained on the JPEG copy


def test_a_miss_within_the_originals_own_runs_says_so_and_an_unexplained_one_says_that():
    overlapping = row(rows_by_recipe([fake("pal2021b/baseline", s, a) for s, a in enumerate((0.73, 0.74))]),
                      "pal2021b/baseline")
    assert overlapping.miss and "3.0 pp above: our range overlaps the original's own runs (66.2–73.3)" in \
        overlapping.note()
    beyond = row(rows_by_recipe([fake("pal2021b/baseline", s, a) for s, a in enumerate((0.75, 0.76))]),
                 "pal2021b/baseline")
    assert "5.0 pp above: no explanation registered; outside the original's own runs (66.2–73.3) too" in \
        beyond.note()
    within = row(rows_by_recipe([fake("pal2021b/baseline", s, a) for s, a in enumerate((0.69, 0.70))]),
                 "pal2021b/baseline")
    assert not within.miss and within.note() == ""  # 1.0 pp below: nothing to explain


def test_arms_without_runs_read_not_run_and_show_no_number():
    rows = rows_by_recipe([fake("pal2021b/baseline", 0, 0.70)])
    cells = row_cells(row(rows, "pal2021b/wider"))
    assert cells[3:7] == ["not run"] * 4 and cells[7] == "—" and cells[8].startswith("not run")
    assert len(rows) == len(reproduce.PUBLISHED)  # every published number has its row, run or not


def test_one_seed_has_no_sd_and_diverged_runs_are_left_out_with_a_note():
    runs = [fake("pal2021b/wider", 0, 0.74), fake("pal2021b/wider", 1, float("nan"), diverged=True)]
    r = row(rows_by_recipe(runs), "pal2021b/wider")
    cells = row_cells(r)
    assert cells[3:6] == ["74.00 (one seed)", "[74.00, 74.00]", "1"]
    assert "1 diverged run(s) left out" in cells[8]


def test_a_lower_bound_is_met_only_when_every_seed_lies_above_it():
    above = rows_by_recipe([fake("jovian/resnet9", s, a) for s, a in enumerate((0.91, 0.92))])
    straddle = rows_by_recipe([fake("jovian/resnet9", s, a) for s, a in enumerate((0.89, 0.93))])
    assert row_cells(row(above, "jovian/resnet9", over=True))[7] == "all above"
    assert row_cells(row(straddle, "jovian/resnet9", over=True))[7] == "not all above"
    assert not row(straddle, "jovian/resnet9", over=True).miss  # mean 91 % is over 90 %
    assert row(straddle, "jovian/resnet9").published.value == 0.9055  # the rerun's number has its own row


def test_recipes_with_one_key_share_their_runs():
    # the bugged notebook never normalized, so norm_inputs@code is baseline@code: the same runs
    assert get_recipe("pal2021a/norm_inputs@code").key == get_recipe("pal2021a/baseline@code").key
    rows = rows_by_recipe([fake("pal2021a/baseline@code", s, 0.66 + s / 100) for s in range(3)])
    assert row(rows, "pal2021a/norm_inputs@code").n == 3
    assert row(rows, "pal2021a/baseline").n == 0  # the intended arm is another recipe


def test_every_published_row_names_a_known_recipe_and_every_doc000_arm_has_both_recipes():
    names = [p.recipe for p in reproduce.PUBLISHED]
    for n in names:
        get_recipe(n)
    arms = ("baseline", "norm_inputs", "lr_schedule", "weight_decay", "init_weights", "dropout_dense",
            "dropout_conv", "dropout_both")
    for a in arms:
        assert f"pal2021a/{a}@code" in names and f"pal2021a/{a}" in names
    assert sum(n.startswith("pal2021b/") for n in names) == 8


def test_command_writes_the_record_and_the_readme_block(store_path, tmp_path, capsys):
    fill(store_path, [fake("pal2021b/baseline", s, 0.70 + s / 100) for s in range(3)]
         + [fake("pal2021b/baseline", 3, 0.90, profile="default"), fake("he2016/naive", 0, 0.5)])
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nintro\n\n{START}\nold table\n{END}\n\ntail\n")
    out = tmp_path / "results" / "rec.json"
    assert main(["--store", str(store_path), "--readme", str(readme), "--json", str(out)]) == 0
    text = readme.read_text()
    assert text.startswith("# T\n\nintro\n\n" + START + "\n| arm |") and text.endswith(END + "\n\ntail\n")
    assert "old table" not in text and "| `pal2021b/baseline` | 70.5 (runs 66.2–73.3) |" in text
    assert "71.00 ± 1.00" in text and "4 run(s), any code version" in text  # he2016/naive has a row too
    main(["--store", str(store_path), "--readme", str(readme), "--json", str(out)])
    assert readme.read_text().count(START) == 1 and readme.read_text().count("| arm |") == 1

    rec = json.loads(out.read_text())
    assert {"schema_version", "generated", "machine", "runs"} <= set(rec)
    # every paper-profile run, published recipe or not (the record restores a store); the default run stays out
    assert len(rec["runs"]) == 4 and {r["profile"] for r in rec["runs"]} == {"paper"}
    for r in rec["runs"]:
        assert {"recipe", "seed", "profile", "acc", "code_version", "dataset", "acc_per_epoch", "wall_s", "device",
                "threads", "versions"} <= set(r)
        assert 0 <= r["acc"] <= 1
    assert sorted((r["recipe"], r["seed"]) for r in rec["runs"]) == [
        ("he2016/naive", 0), ("pal2021b/baseline", 0), ("pal2021b/baseline", 1), ("pal2021b/baseline", 2)]
    assert len(out.read_text()) < 4_000 * len(rec["runs"]) + 20_000  # a few KB a run (the published rows aside)


def test_code_versions_are_pooled_by_default_listed_and_can_be_restricted(store_path, tmp_path, capsys):
    fill(store_path, [fake("pal2021b/baseline", 0, 0.70, cv="v1"), fake("pal2021b/baseline", 1, 0.71, cv="v1"),
                      fake("pal2021b/baseline", 1, 0.72, cv="v2"), fake("pal2021b/baseline", 2, 0.74, cv="v2")])
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    out = tmp_path / "rec.json"
    assert main(["--store", str(store_path), "--readme", str(readme), "--json", str(out)]) == 0
    text = readme.read_text()
    # seed 1 was rerun under v2: its latest run counts, once
    assert "72.00 ± 2.00" in text and "[70.00, 74.00]" in text and "runs from 2 code versions" in text
    assert "`v1` (1 run(s)), `v2` (2 run(s))" in text
    rec = json.loads(out.read_text())
    assert rec["shared"]["code_version"] == ["v1", "v2"] and len(rec["runs"]) == 4
    assert [r["used_in_table"] for r in rec["runs"] if r["seed"] == 1] == [False, True]

    assert main(["--store", str(store_path), "--readme", str(readme), "--json", str(out), "--code-version",
                 "v1"]) == 0
    text = readme.read_text()
    assert "70.50 ± 0.71" in text and "restricted to code version `v1`" in text and "`v2`" not in text
    assert {r["code_version"] for r in record.unpack(json.loads(out.read_text()))} == {"v1"}

    capsys.readouterr()
    assert main(["--store", str(store_path), "--no-write", "--code-version", "v9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "v9" in err and "v1, v2" in err


def test_a_missing_or_foreign_store_is_one_sentence_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    assert main(["--store", str(missing), "--no-write"]) == 2
    assert not missing.exists()  # not created by asking
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    assert main(["--store", str(text), "--no-write"]) == 2
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    assert main(["--store", str(other), "--no-write"]) == 2
    assert other.read_bytes() == before  # a foreign database is left untouched
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert main(["--store", str(empty), "--no-write"]) == 2
    assert empty.read_bytes() == b""  # not turned into a store by asking
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 4 and all(e.startswith("error: ") and "Traceback" not in e for e in errs)
    assert "does not exist" in errs[0] and "not a usable SQLite database" in errs[1]
    assert "another program's SQLite database" in errs[2] and "empty file" in errs[3]


def test_the_default_store_is_tricks_store(store_path, monkeypatch, capsys):
    fill(store_path, [fake("pal2021b/deeper", 0, 0.73)])
    monkeypatch.setenv("TRICKS_STORE", str(store_path))
    assert main(["--no-write"]) == 0
    assert "| `pal2021b/deeper` | 73.2 (runs 70.8–73.2) | doc 001 (notebook 48595ed) | 73.00 (one seed) |" in \
        capsys.readouterr().out


def test_a_readme_without_markers_is_exit_2_and_the_record_is_still_written(store_path, tmp_path, capsys):
    fill(store_path, [fake("pal2021b/deeper", 0, 0.73)])
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    out = tmp_path / "rec.json"
    assert main(["--store", str(store_path), "--readme", str(readme), "--json", str(out)]) == 2
    assert "reproduce:start" in capsys.readouterr().err and readme.read_text() == "# no markers\n"
    assert len(json.loads(out.read_text())["runs"]) == 1


def test_paper_only_claims_are_judged_by_the_engine_from_the_paired_seeds_of_the_table_runs(store_path, tmp_path):
    # residual − baseline ≈ 7 pp on three paired seeds (two code versions): far from C001-8's 14 ± 2 pp
    runs = [fake("pal2021b/baseline", s, 0.70 + s / 100, cv=f"v{min(s, 1)}") for s in range(3)] + \
           [fake("pal2021b/residual", s, 0.77 + s / 100 + (s % 2) / 1000, cv=f"v{min(s, 1)}") for s in range(3)] + \
           [fake("pal2021b/residual", 3, 0.78)]  # a seed the baseline lacks is not paired
    lines = {c.claim.id: c for c in reproduce.judge_paper_only(runs)}
    c8 = lines["C001-8"]
    assert c8.n == 3 and str(c8.decision.verdict.value) == "REFUTED"
    assert c8.decision.mean == pytest.approx(0.07 + 1 / 3000)
    assert lines["C004-2"].decision is None and lines["C004-2"].missing == ("jovian/resnet9",)
    md = reproduce.claims_markdown(list(lines.values()))
    assert "- C001-8 (“the residual network outperformed the baseline by around 14 percentage points”): " \
           "**REFUTED** at n = 3: " in md and "C004-2" in md and "not run (`jovian/resnet9`)" in md

    fill(store_path, runs)
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    out = tmp_path / "rec.json"
    assert main(["--store", str(store_path), "--readme", str(readme), "--json", str(out)]) == 0
    assert "**REFUTED** at n = 3" in readme.read_text()
    rec = {c["id"]: c for c in json.loads(out.read_text())["paper_only_claims"]}
    assert rec["C001-8"]["verdict"] == "REFUTED" and rec["C001-8"]["n"] == 3 and rec["C004-2"]["verdict"] is None


def test_table_markdown_has_one_row_a_published_number():
    md = table_markdown(build_rows([]), generated="2026-12-03T00:00:00Z")
    assert md.count("\n| `") == len(reproduce.PUBLISHED) and "0 run(s)" in md and "2026-12-03" in md
    assert isinstance(reproduce.PUBLISHED[0], Published)


# ------------------------------------------------------------------------------------------------ paper-only claims

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]
PAPER_CLAIMS = """
import pytest
from claims.declare import check
from claims.suite.test_jovian import C004_2
from claims.suite.test_pal2021b import C001_8

@pytest.mark.claims(C001_8)
def test_c001_8(claim_decision):
    check(C001_8, claim_decision)

@pytest.mark.claims(C004_2)
def test_c004_2(claim_decision):
    check(C004_2, claim_decision)
"""


def must_not_train(recipe, seed, profile, **_):
    """A run function for sessions that must judge from the store alone."""
    raise RuntimeError("this session was meant to train nothing")


@pytest.fixture(scope="module")
def preloaded() -> None:
    """The sessions run in this process, and pytester drops the modules each one imports; numpy, torch (the heavy
    arm's GPU check) and matplotlib (plots) cannot be imported twice, so they are imported before any session."""
    for mod in ("numpy", "scipy.stats", "torch", "matplotlib.pyplot"):
        importlib.import_module(mod)


@pytest.fixture
def paper_suite(preloaded: None, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder holding the paper-only claims C001-8 (residual − baseline ≈ 14 pp) and C004-2 (> 90 %)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("TRICKS_STORE", raising=False)
    monkeypatch.delenv("TRICKS_DATA", raising=False)
    pytester.makeconftest("from claims.plugin import *  # noqa: F403\n")
    pytester.makepyfile(test_paper_claims=PAPER_CLAIMS)
    return pytester


def store_paper_runs(path, cv: str) -> None:
    """Three seeds of each arm: residual 14 pp above baseline, ResNet9 above 90 %."""
    fill(path, [run for s in range(3) for run in (
        fake("pal2021b/baseline", s, 0.70 + s / 100, cv=cv), fake("pal2021b/residual", s, 0.84 + s / 100 + s / 1000,
                                                                  cv=cv),
        fake("jovian/resnet9", s, 0.915 + s / 1000, cv=cv))])


def _claims_run(pt: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pt.runpytest_inprocess("--store", str(pt.path / "runs.sqlite"), "--report-dir", str(pt.path / "rep"),
                                     "--profile", "paper", "--max-seeds", "3", "--pilot-seeds", "0", "--workers", "0",
                                     "-p", "no:cacheprovider", *args)
    data = json.loads((pt.path / "rep" / "latest" / "report.json").read_text())  # this session's report
    return result, {c["id"]: (c["verdict"], c["reason"] or "") for c in data["claims"]}


def test_paper_only_claims_are_judged_from_stored_paper_runs(paper_suite):
    from tricks.recipe import CODE_VERSION

    store_paper_runs(paper_suite.path / "runs.sqlite", CODE_VERSION)  # the version a --run-fn session stores under
    result, verdicts = _claims_run(paper_suite, "--run-fn", "tests.test_reproduce:must_not_train")
    result.assert_outcomes(passed=2)
    assert verdicts["C001-8"][0] == "SUPPORTED" and verdicts["C004-2"][0] == "SUPPORTED"


def test_runs_of_an_earlier_code_version_are_judged_with_code_version_and_train_nothing(paper_suite):
    store_paper_runs(paper_suite.path / "runs.sqlite", "0.1.0+old")
    # without the option the session looks under the current code version, finds nothing and would train
    result, verdicts = _claims_run(paper_suite, "--run-fn", "tests.test_reproduce:must_not_train")
    result.assert_outcomes(failed=1, passed=1)
    assert "meant to train nothing" in verdicts["C001-8"][1]
    # ResNet9 is GPU-sized: with its runs missing under this version, a CPU session says so and trains nothing
    assert verdicts["C004-2"][0] == "INCONCLUSIVE" and verdicts["C004-2"][1].startswith("needs a GPU")

    result, verdicts = _claims_run(paper_suite, "--code-version", "0.1.0+old")
    result.assert_outcomes(passed=2)
    assert verdicts["C001-8"][0] == "SUPPORTED" and verdicts["C004-2"][0] == "SUPPORTED"

    result, verdicts = _claims_run(paper_suite, "--code-version", "0.1.0+none")  # nothing stored there
    result.assert_outcomes(failed=1, passed=1)  # C004-2: needs a GPU, as above
    assert "not in the run store under the --code-version given" in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_the_published_recipes_no_claim_trains_are_listed_for_the_campaign(capsys):
    """Doc 002's 'Dropout' 55 % is the original's buggy mask, an arm no claim uses: the campaign trains it with
    tricks.apply (`nox -s campaign`'s unclaimed step), or its reproduction row would stay "not run"."""
    from claims.answers import all_claims

    names = reproduce.unclaimed()
    assert "he2016/dropout_p5@code" in names and "pal2021a/baseline@code" in names
    assert "pal2021a/norm_inputs@code" not in names  # baseline@code's recipe under another name: trained once
    claimed = {r.key for c in all_claims() for r in c.recipes()}
    assert all(get_recipe(n).key not in claimed for n in names)
    assert {"he2016/naive", "pal2021b/baseline", "pal2021a/dropout_conv@code"}.isdisjoint(names)  # claims train them
    assert main(["--unclaimed"]) == 0 and capsys.readouterr().out.split() == names
    nox = (Path(__file__).resolve().parents[1] / "noxfile.py").read_text()
    assert '"claims.reproduce", "--unclaimed"' in nox and "UNCLAIMED_SEEDS" in nox


@functools.cache
def _noxfile():
    """The project's noxfile as a module (nox itself need not run), loaded once: each load registers its sessions
    with nox again, which nox warns will become an error."""
    spec = importlib.util.spec_from_file_location("noxfile_", Path(__file__).resolve().parents[1] / "noxfile.py")
    nox_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nox_mod)
    return nox_mod


def test_the_campaign_passes_its_store_to_the_unclaimed_runs_and_trains_them_after_doc_002():
    nox_mod = _noxfile()
    assert nox_mod._option(["--workers", "2", "--store", "s.sqlite"], "--store") == "s.sqlite"
    assert nox_mod._option(["--store=t.sqlite"], "--store") == "t.sqlite"
    assert nox_mod._option(["--workers", "2", "--store"], "--store") is None
    steps = [s[0] for s in nox_mod.CAMPAIGN]
    assert steps.index("unclaimed") == steps.index("claims/suite/test_he2016.py") + 1


def test_the_unclaimed_runs_go_workers_at_a_time_and_each_exit_code_comes_back_in_order(tmp_path):
    nox_mod = _noxfile()
    # each command notes its start, waits until a second one could start beside it, notes its end, exits with its code
    script = ("import os, sys, time; d = sys.argv[1]; open(os.path.join(d, 's' + sys.argv[2]), 'w').close(); "
              "time.sleep(1.0); open(os.path.join(d, 'e' + sys.argv[2]), 'w').close(); sys.exit(int(sys.argv[3]))")
    codes = [0, 1, 2, 0, 0]
    cmds = [[sys.executable, "-c", script, str(tmp_path), str(i), str(c)] for i, c in enumerate(codes)]
    logged = []
    assert nox_mod._run_pool(cmds, 2, logged.append) == codes
    assert len(logged) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{k}{i}" for k in "se" for i in range(5)])
    starts = sorted(p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name[0] == "s")
    ends = sorted(p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name[0] == "e")
    assert starts[1] < ends[0]  # two at once
    assert all(t >= e for t, e in zip(starts[2:], ends, strict=False))  # never three: a third start waited for an end


def test_the_unclaimed_step_trains_a_process_a_seed_with_the_campaigns_store_data_and_width(monkeypatch):
    nox_mod = _noxfile()
    seen = {}

    class Session:
        posargs = ["--workers", "2", "--store", "s.sqlite", "--data=d.tgz"]

        def run(self, *args, **kw):
            return "he2016/dropout_p5@code\npal2021a/baseline@code\n"

        def log(self, line):
            pass

        def error(self, message):
            raise RuntimeError(message)

    def pool(cmds, workers, log):
        seen.update(cmds=cmds, workers=workers)
        return [0, 1] + [2] + [0] * (len(cmds) - 3)

    monkeypatch.setattr(nox_mod, "_run_pool", pool)
    with pytest.raises(RuntimeError, match=r"^1 of the 6 unclaimed run\(s\) failed: he2016/dropout_p5@code seed 2 "
                                           r"\(exit 2\)$"):  # exit 1 (a diverged run) is not a failure
        nox_mod._train_unclaimed(Session())
    assert seen["workers"] == 2 and len(seen["cmds"]) == 2 * reproduce.UNCLAIMED_SEEDS
    first = seen["cmds"][0]
    assert first[:3] == ["nice", "-n", "19"] and first[first.index("--seed") + 1] == "0"
    assert first[first.index("--store") + 1] == "s.sqlite" and first[first.index("--data") + 1] == "d.tgz"
