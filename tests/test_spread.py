"""claims.spread: σ_d, skewness and arm SDs read from a report's per-seed values (synthetic report dicts)."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from claims.spread import main, spreads, summary
from claims.stats import skewness


def _rows(a, b):
    return [{"seed": s, "a_pct": x, "b_pct": y, "d_pp": x - y} for s, (x, y) in enumerate(zip(a, b, strict=True))]


def _report():
    paired = {"id": "P-1", "b": "kb", "parts": [], "verdict": "SUPPORTED", "compute": {"runs": 10},
              "per_seed": _rows([51, 52, 50, 53, 40], [50, 50, 50, 50, 50])}
    compound = {"id": "K-1", "b": None, "verdict": "INCONCLUSIVE", "compute": {"runs": 9},
                "parts": [{"id": "K-1/a", "per_seed": _rows([60, 61, 62], [59, 59, 59])}]}
    absolute = {"id": "A-1", "b": None, "parts": [], "verdict": "REFUTED", "compute": {"runs": 3},
                "per_seed": [{"seed": 0, "a_pct": 90.0}]}
    never = {"id": "G-1", "b": "kg", "parts": [], "verdict": "INCONCLUSIVE", "compute": {"runs": 0}, "per_seed": []}
    return {"profile": "default", "code_version": "v", "wall_s": 12.0, "total_compute": {"runs": 22, "seconds": 30.0},
            "claims": [paired, compound, absolute, never]}


def test_skewness_matches_the_adjusted_fisher_pearson_formula_and_its_sign():
    x = [0.0, 0.1, 0.2, 0.1, -3.0]  # one bad seed: a long left tail
    n, m = len(x), statistics.fmean(x)
    m2 = sum((v - m) ** 2 for v in x) / n
    m3 = sum((v - m) ** 3 for v in x) / n
    assert skewness(x) == pytest.approx(math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5)
    assert skewness(x) < -1 and skewness([-v for v in x]) > 1
    assert skewness([1.0, 1.0, 1.0]) is None and skewness([1.0, 2.0]) is None


def test_spreads_cover_paired_claims_and_compound_parts_but_not_absolute_or_unrun_claims():
    rows = {r.claim: r for r in spreads(_report())}
    assert set(rows) == {"P-1", "K-1/a"}
    p = rows["P-1"]
    d = [1, 2, 0, 3, -10]
    assert p.n == 5 and p.mean_pp == pytest.approx(statistics.fmean(d))
    assert p.sigma_d_pp == pytest.approx(statistics.stdev(d)) and p.skew < -1  # the bad seed at 40 %
    assert p.sd_b_pp == 0.0 and rows["K-1/a"].skew is None  # 3 seeds: too few for a skewness


def test_summary_counts_decided_among_claims_that_trained():
    rep = _report()
    s = summary(rep, spreads(rep))
    assert (s["claims_trained"], s["claims_decided"]) == (3, 2)  # G-1 never ran; A-1 (REFUTED) did
    assert s["max_sigma_d_claim"] == "P-1" and s["skew_n"] == 1 and s["skew_beyond_1"] == 1
    assert s["median_sigma_d_pp"] == pytest.approx(statistics.median([statistics.stdev([1, 2, 0, 3, -10]), 1.0]))


def test_main_prints_json_and_refuses_a_missing_report(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    assert main([str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["comparisons"] == 2
    with pytest.raises(SystemExit, match="no report at"):
        main([str(tmp_path / "nowhere")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text("{")
    with pytest.raises(SystemExit, match="is not JSON"):
        main([str(tmp_path / "bad")])
