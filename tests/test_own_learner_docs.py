"""The own-Learner guide's example (docs/own-learner.md, docs/examples/) runs: the digits claim from Python, and the
example claim file through the pytest plugin, each with fewer seeds and epochs than the guide."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from claims.spec import Verdict

pytest_plugins = ["pytester"]
pytest.importorskip("sklearn", reason="the digits example reads scikit-learn's bundled data set")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def test_the_digits_example_judges_its_claim_from_python(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import digits

    learn = digits.make_learner()
    xb, yb = learn.dls.one_batch()
    assert tuple(xb.shape[1:]) == (1, 8, 8) and len(learn.dls.train.dataset) == 1297  # not CIFAR's 3x32x32
    d = digits.main(seeds=3, epochs=1, store=str(tmp_path / "runs.sqlite"), workers=0)
    assert d.n == 3 and d.verdict in (Verdict.SUPPORTED, Verdict.REFUTED, Verdict.INCONCLUSIVE)
    assert d.mean is not None and d.lower <= d.mean <= d.upper
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{d.verdict.value}: n = 3, d̄ = ") and out[1] == d.reason


@pytest.mark.slow  # 12 digits runs in this process
def test_the_example_claim_file_runs_through_the_plugin(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), str(EXAMPLES),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("TRICKS_STORE", raising=False)
    result = pytester.run(sys.executable, "-m", "pytest", str(EXAMPLES / "test_digits_claims.py"),
                          "-p", "claims.plugin", "--rootdir", str(pytester.path),
                          "--store", str(pytester.path / "runs.sqlite"),
                          "--report-dir", str(pytester.path / "reports"), "--max-seeds", "3", "--pilot-seeds", "0",
                          "--workers", "0", "-p", "no:cacheprovider", timeout=600)
    assert result.ret == 0, result.stdout.str()[-3000:]
    out = result.stdout.str()
    assert "claims (own profile)" in out and "DIGITS-1" in out and "DIGITS-2" in out
    (report,) = [p for p in (pytester.path / "reports").iterdir() if p.name != "latest"]
    by_id = {c["id"]: c for c in json.loads((report / "report.json").read_text())["claims"]}
    assert by_id["DIGITS-2"]["verdict"] == "SUPPORTED"  # the guard trains exactly the same: d = 0 on every seed
