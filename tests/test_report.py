"""The report: what the table, report.md, report.json, plots and the README block hold."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from claims.declare import NotRunnable
from claims.executors import LocalExecutor
from claims.report.model import build_report, spec_hash
from claims.report.readme import main, write_readme_summary
from claims.report.schema import report_json
from claims.report.text import print_report, report_markdown, summary_markdown
from claims.report.write import write_report
from claims.schedule import Scheduler, pilot
from claims.stats import holm_status
from claims.store import RunStore
from tests.claims_example.fake import fake_recipe, fake_run

pytest.importorskip("claims.spec", reason="claims/spec.py (Claim, judge) has not landed yet")


def _claims():
    from claims.spec import Claim, Form

    base = fake_recipe("base")
    big = Claim(id="R-1", source="Doc 9, table 2", quote="The trick | adds five points.", form=Form.SUPERIORITY,
                a=fake_recipe("trick", 0.05), b=base, delta=0.01, metric="acc", alpha=0.05)
    aa = Claim(id="R-2", source="Doc 9, text", quote="Renaming the baseline changes nothing.",
               form=Form.EQUIVALENCE, a=fake_recipe("renamed"), b=base, delta=0.01, metric="acc", alpha=0.05)
    return [big, aa], base


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    claims, base = _claims()
    tmp = tmp_path_factory.mktemp("report")
    store, ex = RunStore(tmp / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run)
    p = pilot(base, store, ex, "smoke", n=3)
    sched = Scheduler(claims, store, ex, "smoke", progress=False, sigma_d_pilot=p.sigma_d)
    sched.run()
    return build_report(sched, pilot=p), sched, tmp


def test_spec_hash_is_stable_and_changes_with_any_claim():
    from dataclasses import replace

    claims, _ = _claims()
    assert spec_hash(claims) == spec_hash(list(reversed(claims)))
    assert spec_hash(claims) != spec_hash([replace(claims[0], delta=0.02), claims[1]])


def test_holm_keeps_only_the_claims_that_survive_the_step_down():
    sup = SimpleNamespace(verdict="SUPPORTED")
    ds = {k: SimpleNamespace(verdict=sup.verdict, p_seq=p) for k, p in {"a": 0.01, "b": 0.03, "c": 0.04}.items()}
    ds["d"] = SimpleNamespace(verdict="REFUTED", p_seq=0.001)
    held = holm_status(ds, 0.05)
    assert held == {"a": True, "b": False, "c": False, "d": False}  # 0.03 > 0.05/3 stops the step-down at b


def test_the_report_holds_provenance_and_every_claim(report):
    rep, sched, _ = report
    assert rep.profile == "smoke" and rep.dataset == "synthetic (fake run)" and rep.device == "cpu:fake"
    assert rep.threads == "1" and rep.versions == {"fake": "1"}
    assert [r.claim.id for r in rep.rows] == ["R-1", "R-2"]
    assert rep.rows[0].verdict == "SUPPORTED"
    assert rep.rows[0].holm is True
    assert rep.pilot is not None and not rep.pilot.aa_supported
    buf = io.StringIO()
    from rich.console import Console

    print_report(rep, Console(file=buf, width=200))
    text = buf.getvalue()
    for fact in (rep.spec_hash, "profile: smoke", "synthetic (fake run)", "cpu:fake", "A/A pilot", "R-1", "R-2",
                 "SUPPORTED", "seeds: 0, 1, 2"):
        assert fact in text


def test_report_files_hold_the_per_seed_values_joined_by_seed(report):
    rep, sched, tmp = report
    out = write_report(rep, tmp / "reports")
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.json", "summary.md", "plots"}
    data = json.loads((out / "report.json").read_text())
    assert data["spec_hash"] == rep.spec_hash and data["profile"] == "smoke"
    assert data["dataset"] == "synthetic (fake run)" and data["pilot"]["recipe_name"] == "fake/base"
    big = next(c for c in data["claims"] if c["id"] == "R-1")
    n = big["decision"]["n"]
    claim = sched.states["R-1"].claim
    for row in big["per_seed"]:
        a, b = fake_run(claim.a, row["seed"], "smoke").acc, fake_run(claim.b, row["seed"], "smoke").acc
        assert row["a_pct"] == pytest.approx(100 * a) and row["b_pct"] == pytest.approx(100 * b)
        assert row["d_pp"] == pytest.approx(100 * (a - b))
    assert [r["seed"] for r in big["per_seed"]] == list(range(n))
    assert {arm["recipe_name"] for arm in big["arms"]} == {"fake/trick", "fake/base"}
    assert all(len(arm["runs"]) == n for arm in big["arms"])
    md = (out / "report.md").read_text()
    assert "The trick \\| adds five points." in md and "| seed | A | B | A − B |" in md
    assert "![R-1](plots/R-1.png)" in md
    for png in ("R-1.png", "R-2.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latest = out.parent / "latest"
    assert (latest / "report.json").read_text() == (out / "report.json").read_text()
    assert (latest / "SOURCE").read_text().strip() == out.name


def test_every_summary_row_names_the_profile(report):
    rep, _, _ = report
    lines = summary_markdown(rep).splitlines()
    rows = [line for line in lines if line.startswith("| R-")]
    assert len(rows) == 2 and all(line.rstrip().endswith("| smoke (checks the pipeline, not the claim) |")
                                  for line in rows)
    assert "Profile **smoke**" in lines[0] and "not the published recipes" in lines[0]


def test_readme_summary_replaces_only_its_block(report, tmp_path):
    rep, _, _ = report
    out = write_report(rep, tmp_path / "reports")
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nintro\n\n<!-- claims-summary:start -->\nold table\n<!-- claims-summary:end -->\n\ntail\n")
    write_readme_summary(out, readme)
    text = readme.read_text()
    assert "old table" not in text and "| R-1 |" in text
    assert text.startswith("# T\n\nintro\n\n<!-- claims-summary:start -->\n") and text.endswith("end -->\n\ntail\n")
    write_readme_summary(tmp_path / "reports", readme)  # reports/ means its latest; twice gives the same README
    assert readme.read_text() == text


def test_a_smoke_summary_never_replaces_a_default_or_paper_one_and_the_command_names_the_report(report, tmp_path,
                                                                                                capsys):
    rep, _, _ = report  # a smoke report
    out = write_report(rep, tmp_path / "reports")
    results = tmp_path / "results.md"
    for held in ("default", "paper"):
        kept = (f"<!-- claims-summary:start -->\nProfile **{held}**, dataset d: **30 of 50 claims hold**\n"
                "<!-- claims-summary:end -->\n")
        results.write_text(kept)
        with pytest.raises(ValueError, match=f"holds a {held}-profile claims summary and .* is a smoke report"):
            write_readme_summary(out, results)
        assert main([str(out), "--readme", str(results)]) == 2
        assert results.read_text() == kept
        assert "kept the" in capsys.readouterr().err
    results.write_text("<!-- claims-summary:start -->\nProfile **smoke**, old\n<!-- claims-summary:end -->\n")
    assert main([str(out), "--readme", str(results)]) == 0  # smoke over smoke is fine
    said = capsys.readouterr().out
    assert f"claims summary replaced from {out} (profile smoke)" in said


def test_readme_without_markers_or_a_missing_report_is_a_clear_error(report, tmp_path, capsys):
    rep, _, _ = report
    out = write_report(rep, tmp_path / "reports")
    readme = tmp_path / "README.md"
    readme.write_text("# no block here\n")
    with pytest.raises(ValueError, match="claims-summary:start"):
        write_readme_summary(out, readme)
    with pytest.raises(FileNotFoundError, match="holds no claims report"):
        write_readme_summary(tmp_path / "nowhere", readme)
    assert main([str(tmp_path / "nowhere"), "--readme", str(readme)]) == 2
    assert "holds no claims report" in capsys.readouterr().err
    readme.write_text("<!-- claims-summary:start --><!-- claims-summary:end -->\n")
    assert main([str(out), "--readme", str(readme)]) == 0
    assert "| R-2 |" in Path(readme).read_text()


def test_a_compound_claim_gets_a_table_and_a_plot_row_per_part(tmp_path):
    from claims.spec import Claim, Decision, Form, Verdict

    base, wide, res = fake_recipe("base"), fake_recipe("wide", 0.01, params=5000), fake_recipe("res", 0.05, params=900)
    parts = tuple(Claim(id=f"P-{i}", source="doc", quote="part", form=Form.SUPERIORITY, a=res, b=b, delta=0.01,
                        metric="acc", alpha=0.05) for i, b in enumerate((base, wide)))
    compound = Claim(id="P", source="Doc 1", quote="Residual beats wider with fewer parameters.", form=Form.COMPOUND,
                     a=None, b=None, delta=0.01, metric="acc", alpha=0.05, parts=parts)

    def judge(claim, results, **kw):
        def dec(cid, **more):
            return Decision(claim_id=cid, verdict=Verdict.SUPPORTED, reason="every part holds", n=3, mean=2.0,
                            lower=1.0, upper=3.0, alpha_look=0.017, sign_flip_p=0.125, fragile=True, p_a_gt_b=1.0,
                            p_seq=0.01, params_a=900, params_b=5000, seeds_needed=None, final=True, **more)
        return dec(claim.id, parts=tuple(dec(p.id, parts=()) for p in claim.parts))

    sched = Scheduler([compound], RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False, judge=judge)
    sched.run()
    out = write_report(build_report(sched), tmp_path / "reports")
    md = (out / "report.md").read_text()
    assert "P-0: per seed" in md and "P-1: per seed" in md
    assert "Parameters used by the forward pass: A 900, B 5000." in md and "**fragile**" in md
    data = json.loads((out / "report.json").read_text())
    (claim,) = data["claims"]
    assert [p["id"] for p in claim["parts"]] == ["P-0", "P-1"] and len(claim["parts"][1]["per_seed"]) == 3
    assert {a["recipe_name"] for a in claim["arms"]} == {"fake/base", "fake/wide", "fake/res"}
    assert (out / "plots" / "P.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------- not runnable here

NOT_RUNNABLE = [
    NotRunnable("N-2", "Doc 9, table 5", "The trick also helps on CIFAR-100.", "needs CIFAR-100 [not loaded here]"),
    NotRunnable("N-1", "Doc 9, text", "BatchNorm smooths the loss landscape.", "a mechanism | with no measurable form"),
]


def _console_text(rep) -> str:
    from rich.console import Console

    buf = io.StringIO()
    print_report(rep, Console(file=buf, width=200))
    return buf.getvalue()


def test_not_runnable_claims_are_listed_by_id_with_their_reason_in_the_markdown(report):
    _, sched, _ = report
    rep = build_report(sched, not_runnable=NOT_RUNNABLE)
    assert [c.id for c in rep.not_runnable] == ["N-1", "N-2"]  # sorted by id
    expected = ("Not runnable here (2): **N-1** (a mechanism \\| with no measurable form); "
                "**N-2** (needs CIFAR-100 [not loaded here])")
    summary = summary_markdown(rep)
    assert expected in summary.splitlines()
    assert summary.index("| R-2 |") < summary.index("Not runnable here")  # after the claims table
    assert expected in report_markdown(rep)
    assert [r.claim.id for r in rep.rows] == ["R-1", "R-2"]  # listed beside the judged claims, not among them


def test_not_runnable_claims_are_listed_by_id_after_the_table_their_reasons_in_the_markdown(report):
    _, sched, _ = report
    text = _console_text(build_report(sched, not_runnable=NOT_RUNNABLE))
    assert text.index("R-2") < text.index("not runnable here (2): N-1, N-2")
    assert "a mechanism" not in text and "CIFAR-100" not in text


def test_not_runnable_claims_go_into_report_json_with_source_quote_and_reason(tmp_path):
    # a suite of not-runnable entries only, so that the JSON does not depend on how judged claims are written
    sched = Scheduler([], RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False)
    sched.run()
    data = json.loads(json.dumps(report_json(build_report(sched, not_runnable=NOT_RUNNABLE))))
    assert data["claims"] == []
    assert data["not_runnable"] == [
        {"id": "N-1", "source": "Doc 9, text", "quote": "BatchNorm smooths the loss landscape.",
         "reason": "a mechanism | with no measurable form"},
        {"id": "N-2", "source": "Doc 9, table 5", "quote": "The trick also helps on CIFAR-100.",
         "reason": "needs CIFAR-100 [not loaded here]"},
    ]
    out = write_report(build_report(sched, not_runnable=NOT_RUNNABLE[:1]), tmp_path / "reports")
    assert [c["id"] for c in json.loads((out / "report.json").read_text())["not_runnable"]] == ["N-2"]
    assert "Not runnable here (1): **N-2**" in (out / "summary.md").read_text()


def test_a_report_without_not_runnable_claims_says_nothing_about_them(report, tmp_path):
    _, sched, _ = report
    rep = build_report(sched)
    assert rep.not_runnable == []
    assert "Not runnable" not in summary_markdown(rep) and "not runnable" not in _console_text(rep)
    empty = Scheduler([], RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False)
    empty.run()
    assert report_json(build_report(empty))["not_runnable"] == []


# ---------------------------------------------------------------------------------------------- issue 14


def _long_report(rep):
    """The fixture's report with a long claim id and a long reason, as the real suite has."""
    from dataclasses import replace

    rows = [replace(r, claim=replace(r.claim, id=f"C000-5@code-{r.claim.id}"),
                    decision=replace(r.decision, reason="budget exhausted at n = 5 (seed cap): " + "x " * 200))
            for r in rep.rows]
    return replace(rep, rows=rows, dataset="class folders (JPEG) /a/very/long/path/" + "d" * 80 + " (sha256 0)")


def test_the_terminal_report_is_a_compact_table_within_100_columns_with_full_ids(report):
    from rich.console import Console

    from claims.report.text import terminal_lines

    rep = _long_report(report[0])
    lines = terminal_lines(rep)
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["claim", "form", "n", "d̄", "[L,", "U]", "pp", "verdict", "Holm", "FDR", "checks"]
    for row in rep.rows:
        (line,) = [ln for ln in table if ln.startswith(row.claim.id + " ")]  # the id in full, one line a claim
        fdr = "holds" if row.fdr else "—"  # the engine's BH flag of each SUPPORTED claim
        assert row.verdict in line and line.split()[-2:] == [fdr, "pipeline"]
    assert "x x x" not in "\n".join(lines) and "report.md" in lines[-1]  # the reasons stay in the files
    head = " ".join(ln.strip() for ln in lines[:lines.index("")])
    # the headline leads with the verdict counts, each claim at its own α, then one line on the family
    assert "Of 2 claims, each at its own α = 0.05: " in head and "SUPPORTED" in head
    assert head.index("Of 2 claims") < head.index("Across the ")
    tty, pipe = io.StringIO(), io.StringIO()
    print_report(rep, Console(file=tty, force_terminal=True, width=80))
    print_report(rep, Console(file=pipe, force_terminal=False, width=300))
    assert tty.getvalue() == pipe.getvalue() == "\n".join(lines) + "\n"  # a terminal and a pipe show the same


def test_terminal_and_summary_rows_follow_the_documents_and_carry_words_and_why_n_is_0(report):
    """Rows came in the suite's run order (X-1, C003-1, C002-1, ...) and an n 0 row read "n 0 INCONCLUSIVE" alone."""
    from dataclasses import replace

    from claims.order import claim_order
    from claims.report.text import terminal_table

    rep = report[0]
    ids = ["X-1", "C003-2", "C001-10", "C000-5@code", "C000-11", "C000-2"]
    rows = [replace(rep.rows[i % len(rep.rows)], claim=replace(rep.rows[i % len(rep.rows)].claim, id=cid,
                                                                quote=f"words of {cid}"))
            for i, cid in enumerate(ids)]
    from claims.spec import Verdict

    for i, why in ((2, "predicted underpowered: needs ~96 seeds at σ_d = 4.24 pp (A/A pilot)"),
                   (1, "a published number: judged only under the paper profile; no run was made")):
        rows[i] = replace(rows[i], decision=replace(rows[i].decision, n=0, verdict=Verdict.INCONCLUSIVE, reason=why,
                                                    mean=None, lower=None, upper=None))
    rep = replace(rep, rows=rows)
    want = sorted(ids, key=claim_order)
    assert want[0] == "C000-2" and want[-1] == "X-1" and want.index("C000-11") > want.index("C000-2")
    table = terminal_table(rep)[2:]
    assert [ln.split()[0] for ln in table] == want
    by_id = {ln.split()[0]: ln for ln in table}
    assert "underpowered: ~96 seeds" in by_id["C001-10"] and "paper profile only" in by_id["C003-2"]
    md = [ln for ln in summary_markdown(rep).splitlines() if ln.startswith("| C") or ln.startswith("| X")]
    assert [ln.split(" | ")[0][2:] for ln in md] == want
    assert all(f"| words of {ln.split(' | ')[0][2:]} |" in ln for ln in md)  # each claim's words


def test_the_fdr_column_shows_the_engines_fdr_flag_when_there_is_one(report):
    from dataclasses import replace

    from claims.report.text import terminal_table

    rep = report[0]
    assert [(r.verdict, r.fdr) for r in rep.rows] == [("SUPPORTED", True)] * 2  # build_report applied BH
    for flag, shown in ((True, "holds"), (False, "no"), (None, "—")):
        rows = [replace(r) for r in rep.rows]
        rows[0].fdr = flag
        lines = terminal_table(replace(rep, rows=rows))
        assert lines[2].split()[-2] == shown and lines[3].split()[-2] == "holds"  # R-2 keeps its own flag


def test_every_smoke_line_card_and_headline_says_it_checks_the_pipeline(report, tmp_path):
    from dataclasses import replace

    from claims.report.text import headline, terminal_lines

    rep = report[0]
    note = "checks the pipeline, not the claim"
    assert note in headline(rep) and note in terminal_lines(rep)[0]
    md = report_markdown(rep)
    cards = md.split("\n### ")[1:]
    assert len(cards) == 2 and all("(smoke: a pipeline check)" in c.splitlines()[0] and note in c for c in cards)
    rows = [ln for ln in summary_markdown(rep).splitlines() if ln.startswith("| R-")]
    assert all(note in ln for ln in rows) and note in summary_markdown(rep).splitlines()[0]
    assert note in json.loads(json.dumps(report_json(rep)))["headline"]
    full = replace(rep, profile="default")
    assert "pipeline" not in headline(full) and "pipeline" not in report_markdown(full)
    assert all(ln.split()[-1] == "claim" for ln in terminal_lines(full)[-len(rep.rows) - 1:-1])


def test_report_json_names_its_units_and_versions_its_schema(report):
    rep, sched, _ = report
    data = json.loads(json.dumps(report_json(rep)))
    assert data["schema_version"] == 2 and set(data["units"]) >= {"*_pct", "*_pp"}
    big = next(c for c in data["claims"] if c["id"] == "R-1")
    d = sched.decisions["R-1"]
    assert "mean" not in big["decision"] and big["decision"]["mean_pp"] == pytest.approx(100 * d.mean)
    assert big["decision"]["lower_pp"] == pytest.approx(100 * d.lower) and big["delta_pp"] == pytest.approx(1.0)
    (arm,) = [a for a in big["arms"] if a["recipe_name"] == "fake/trick"]
    run = arm["runs"]["0"]
    assert run["acc_pct"] == pytest.approx(100 * fake_run(sched.states["R-1"].claim.a, 0, "smoke").acc)
    assert "acc" not in run and all(0 <= a <= 100 for a in run["acc_per_epoch_pct"])
    assert data["pilot"]["sigma_d_pp"] == pytest.approx(rep.pilot.sigma_d) and "acc_a" not in data["pilot"]
    assert all(0 <= a <= 100 for a in data["pilot"]["acc_a_pct"])


def test_each_card_shows_the_training_curves_of_its_arms(report, tmp_path):
    rep, _, _ = report
    out = write_report(rep, tmp_path / "reports")
    md = (out / "report.md").read_text()
    for cid in ("R-1", "R-2"):
        assert f"![{cid} training curves](plots/{cid}-curves.png)" in md
        assert (out / "plots" / f"{cid}-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test accuracy after each epoch, per arm" in md


def test_a_claim_with_a_scaled_arm_is_marked_scaled_in_its_line_and_card(tmp_path):
    from dataclasses import replace

    from claims.spec import Claim, Form

    base = fake_recipe("base")
    small = replace(fake_recipe("resnet-like", 0.05), scaled="the net at a quarter of the width")
    claims = [Claim(id="S-1", source="Doc 9", quote="The big net wins.", form=Form.SUPERIORITY, a=small, b=base,
                    delta=0.01),
              Claim(id="S-2", source="Doc 9", quote="Nothing scaled here.", form=Form.SUPERIORITY,
                    a=fake_recipe("trick", 0.05), b=base, delta=0.01)]
    sched = Scheduler(claims, RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False)
    sched.run()
    rep = build_report(sched)
    lines = {line.split(" | ")[0]: line for line in summary_markdown(rep).splitlines() if line.startswith("| S-")}
    assert lines["| S-1"].endswith(", scaled |") and lines["| S-2"].endswith("the claim) |")
    assert "| smoke (" in lines["| S-1"] and "scaled" not in lines["| S-2"].split(" | ")[-1]  # S-2's profile cell
    md = report_markdown(rep)
    card_1, card_2 = md.split("### S-1")[1].split("### S-2")
    assert "Scaled: arm `fake/resnet-like` is a CPU stand-in for a heavy recipe: the net at a quarter of the width" \
        in card_1
    assert "Scaled:" not in card_2


def test_a_proxy_report_flags_every_verdict_that_disagrees_with_the_published_recipes(report):
    from dataclasses import replace

    from claims.answers import Status

    rep, _, _ = report
    assert rep.paper == {}  # a smoke (pipeline-only) report sets nothing beside the published recipes
    r1 = {r.claim.id: r for r in rep.rows}["R-1"]
    assert r1.verdict == "SUPPORTED"
    paper = {"R-1": Status("REFUTED", 8, -0.5, -1.0, 0.2, "U < Δ", final=True), "R-2": Status(None, 3, 0.1, -2, 2)}
    proxy = replace(rep, profile="default", paper=paper)
    assert "1 proxy verdict(s) disagree with the published recipes' (R-1)" in summary_markdown(proxy)
    md = report_markdown(proxy)
    assert "On the published recipes (paper profile, the committed record): REFUTED (-0.50 [-1.00, +0.20], n 8); " \
           "contradictory verdicts. **This verdict disagrees" in md
    assert "paper: 3 seeds so far (+0.10 [-2.00, +2.00], n 3); pending." in md
    claims = {c["id"]: c for c in report_json(proxy)["claims"]}
    assert claims["R-1"]["agreement_with_paper"] == "contradictory verdicts"
    assert claims["R-1"]["paper"]["verdict"] == "REFUTED" and claims["R-2"]["agreement_with_paper"] == "pending"
    assert "paper" not in {c["id"]: c for c in report_json(rep)["claims"]}["R-1"]


def test_each_card_gives_the_chance_a_beats_b_on_a_new_seed_with_its_interval(report):
    rep, _, _ = report
    md = report_markdown(rep)
    for row in rep.rows:
        d = row.decision
        assert d.p_a_gt_b_lower <= d.p_a_gt_b <= d.p_a_gt_b_upper
        assert (f"P(A beats B on a new seed) = {d.p_a_gt_b:.2f}, 95 % Wilson interval [{d.p_a_gt_b_lower:.2f}, "
                f"{d.p_a_gt_b_upper:.2f}]: the share of the {d.n} seeds") in md
