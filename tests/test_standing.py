"""Where the paper campaign stands (claims/standing.py), from fake records: claims with a verdict, claims waiting for
seeds with the runs their next look lacks (a run shared by two claims counted once), the time estimate, and the
generated block in a docs page."""

import json

import pytest

from claims import record, standing
from claims.declare import superior
from tests.test_record import result

DECIDED = superior("T-1", "doc 001: test", "residual beats the baseline", "pal2021b/residual", "pal2021b/baseline")
WAITING = superior("T-2", "doc 001: test", "clipping beats the baseline", "pal2021b/grad_clip", "pal2021b/baseline")
SHARES = superior("T-3", "doc 001: test", "clipping beats wider", "pal2021b/grad_clip", "pal2021b/wider")
UNRUN = superior("T-4", "doc 003: test", "conv beats simple", "fastai2018/conv_net", "fastai2018/simple_net")
CLAIMS = [DECIDED, WAITING, SHARES, UNRUN]
NOISE = (0.012, -0.011, 0.004)  # clipping's difference to the baseline: undecided at 3 seeds
WIDER = (-0.004, 0.009, -0.006)  # and to wider


def runs():
    out = [result(n, s, a + s / 1000) for s in range(3) for n, a in (("pal2021b/residual", 0.77),
                                                                     ("pal2021b/baseline", 0.70))]
    out += [result("pal2021b/grad_clip", s, 0.70 + s / 1000 + NOISE[s]) for s in range(3)]
    out += [result("pal2021b/wider", s, 0.70 + s / 1000 + WIDER[s]) for s in range(3)]  # T-3 undecided too
    for r, wall in zip(out, (100, 300, 200, 400, 900, 500, 600, 600, 600, 50, 50, 50), strict=True):
        r.wall_s = float(wall)
    return out


def test_decided_waiting_and_unrun_claims_are_counted_per_document():
    groups = {g.name: g for g in standing.standing(runs(), CLAIMS)}
    doc1, doc3 = groups["doc 001"], groups["doc 003"]
    assert doc1.claims == 3 and dict(doc1.verdicts) == {"SUPPORTED": 1}
    assert [(w.id, w.have, w.next_look) for w in doc1.waiting] == [("T-2", 3, 5), ("T-3", 3, 5)]
    t2, t3 = doc1.waiting
    assert sorted((n, s) for _, n, s in t2.missing) == [(n, s) for n in ("pal2021b/baseline", "pal2021b/grad_clip")
                                                        for s in (3, 4)]
    assert sorted((n, s) for _, n, s in t3.missing) == [(n, s) for n in ("pal2021b/grad_clip", "pal2021b/wider")
                                                        for s in (3, 4)]
    assert doc1.runs == 12 and doc1.wall_s == pytest.approx(4350)
    assert doc3.claims == 1 and not doc3.verdicts and [w.next_look for w in doc3.waiting] == [3]
    assert len(doc3.waiting[0].missing) == 6 and doc3.runs == 0


def test_the_estimate_is_the_median_wall_time_of_each_recipes_runs_and_counts_untimed_recipes():
    rs = runs()
    walls = standing.median_walls(rs)
    base = rs[1].recipe_key
    assert walls[base] == pytest.approx(400)  # baseline seeds 0, 1, 2 took 300, 400, 900 s
    groups = {g.name: g for g in standing.standing(rs, CLAIMS)}
    doc1 = {m for w in groups["doc 001"].waiting for m in w.missing}
    seconds, untimed = standing.estimate(doc1, walls)
    assert untimed == 0 and seconds == pytest.approx(2 * 400 + 2 * 600 + 2 * 50)
    doc3 = {m for w in groups["doc 003"].waiting for m in w.missing}
    assert standing.estimate(doc3, walls) == (0, 6)


def test_the_block_has_a_row_a_document_a_total_that_counts_shared_runs_once_and_the_waiting_claims():
    rs = runs()
    text = standing.markdown(standing.standing(rs, CLAIMS), rs, "2026-12-07T00:00:00Z", "cpu:x86_64")
    rows = {line.split(" | ")[0].strip("| *"): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 1 SUPPORTED | 2 |" in rows["doc 001"] and "| 12 (1.2 h) | 6 (0.6 h) |" in rows["doc 001"]
    assert "| 0 (0.0 h) | 6 (0.0 h + 6 untimed) |" in rows["doc 003"]
    assert rows["all"].endswith("| 12 (1.2 h) | 12 (0.6 h + 6 untimed) |")  # grad_clip 3, 4 once
    assert "| T-2 | 3 | 5 | `pal2021b/grad_clip` ×2, `pal2021b/baseline` ×2 |" in text
    assert "Generated 2026-12-07T00:00:00Z" in text and "12 paper runs" in text


def test_the_command_writes_between_the_markers_and_a_page_without_them_is_one_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(standing, "all_claims", lambda: CLAIMS)
    rec = tmp_path / "record.json"
    rec.write_text(json.dumps({"generated": "2026-12-07T00:00:00Z", "runs": [record.run_entry(r) for r in runs()]}))
    page = tmp_path / "campaign.md"
    page.write_text(f"# t\n\n{standing.START}\nold\n{standing.END}\n\nafter\n")
    assert standing.main(["--record", str(rec), "--doc", str(page)]) == 0
    body = page.read_text()
    assert "old" not in body and "| T-2 | 3 | 5 |" in body and body.endswith("\nafter\n")
    assert f"12 paper runs in {rec.stat().st_size / 1000:.0f} KB, trained on cpu:x86_64" in body
    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n")
    assert standing.main(["--record", str(rec), "--doc", str(bare)]) == 2
    assert bare.read_text() == "# no markers\n"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
