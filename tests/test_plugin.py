"""The pytest plugin, run for real through pytester: example claims go store -> scheduler -> verdict -> report.

The example claims use the fake run function (tests/claims_example/fake.py), not real training: `tricks.data` and
`tricks.models` were not in the tree when this was written, so no tiny real run could be part of the path yet.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.claims_example.fake import LOG_ENV, fake_recipe, fake_run

pytest_plugins = ["pytester"]
pytest.importorskip("claims.spec", reason="claims/spec.py (Claim, judge) has not landed yet")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).parent / "claims_example"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with a conftest loading the plugin; the repository importable from the subprocess."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(LOG_ENV, str(pytester.path / "calls.log"))
    monkeypatch.delenv("TRICKS_STORE", raising=False)
    pytester.makeconftest("from claims.plugin import *  # noqa: F403\n")
    return pytester


def _run(pt: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pt.runpytest_subprocess(
        "--store", str(pt.path / "runs.sqlite"), "--report-dir", str(pt.path / "reports"), "--profile", "smoke",
        "--run-fn", "tests.claims_example.fake:fake_run", "--pilot-seeds", "3", "-p", "no:cacheprovider", *args,
        timeout=180,
    )


def _calls(pt: pytest.Pytester) -> Counter:
    log = pt.path / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((line.split()[0], int(line.split()[1])) for line in lines)


def test_example_claims_run_together_and_reach_a_verdict_with_a_report(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    result = _run(suite, "--workers", "2")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "claims (smoke profile)" in out and "EX-1" in out and "EX-2" in out

    base, trick = fake_recipe("base"), fake_recipe("trick", 0.05)
    calls = _calls(suite)
    assert calls.pop((base.key, 0)) == 2  # the pilot's determinism check trains seed 0 a second time
    assert set(calls.values()) == {1}  # the baseline shared by both claims and the pilot: once per seed
    assert {s for k, s in calls if k == base.key} >= {1, 2, 1000, 1001, 1002}

    (report_dir,) = [p for p in (suite.path / "reports").iterdir() if p.name != "latest"]
    data = json.loads((report_dir / "report.json").read_text())
    assert data["profile"] == "smoke" and data["dataset"] == "synthetic (fake run)"
    assert data["pilot"]["recipe_name"] == "fake/base" and data["pilot"]["aa_supported"] is False
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["EX-1"]["verdict"] == "SUPPORTED" and by_id["EX-2"]["verdict"] != "SUPPORTED"
    for row in by_id["EX-1"]["per_seed"]:
        assert row["a"] == pytest.approx(100 * fake_run(trick, row["seed"], "smoke").acc)
        assert row["b"] == pytest.approx(100 * fake_run(base, row["seed"], "smoke").acc)
    md = (report_dir / "report.md").read_text()
    assert "The trick adds five points of accuracy." in md
    assert (report_dir / "plots" / "EX-1.png").stat().st_size > 0
    assert (suite.path / "reports" / "latest" / "summary.md").exists()


def test_only_selected_claims_are_scheduled(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    result = _run(suite, "--workers", "0", "--pilot-seeds", "0", "-k", "ex1")
    result.assert_outcomes(passed=1, deselected=1)
    assert not any(k == fake_recipe("renamed").key for k, _ in _calls(suite))
    (report_dir,) = [p for p in (suite.path / "reports").iterdir() if p.name != "latest"]
    assert [c["id"] for c in json.loads((report_dir / "report.json").read_text())["claims"]] == ["EX-1"]


def test_invalid_errors_wrong_pins_and_bad_markers_fail_with_their_reason(suite):
    suite.makepyfile(test_failures=(EXAMPLES / "example_failures.py").read_text())
    result = _run(suite, "--workers", "0", "--pilot-seeds", "0")
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert "EX-3: INVALID" in out
    assert "EX-4: ERROR: run of fake/broken with seed 0 (smoke) failed: RuntimeError: fake failure on seed 0" in out
    assert "expected REFUTED, got EX-5: SUPPORTED" in out
    assert "marked claims but its marker holds str, not a Claim" in out
    assert "Traceback" not in out


def test_a_pinned_verdict_missed_only_because_of_the_seed_cap_is_an_xfail(suite):
    suite.makepyfile(test_subtle="""
import pytest
from claims.spec import Claim, Form, Verdict
from tests.claims_example.fake import fake_recipe

SUBTLE = Claim(id="EX-7", source="example", quote="A one-point gain.", form=Form.SUPERIORITY,
               a=fake_recipe("subtle", 0.01, jitter=0.03), b=fake_recipe("base"), delta=1.0, metric="acc",
               alpha=0.05, expected=Verdict.SUPPORTED)

@pytest.mark.claims(SUBTLE)
def test_ex7(claim_decision):
    assert claim_decision.n == 3
""")
    result = _run(suite, "--workers", "0", "--pilot-seeds", "0", "--max-seeds", "3", "-rx")
    result.assert_outcomes(xfailed=1)
    assert "expected SUPPORTED, got EX-7: INCONCLUSIVE" in result.stdout.str()
    assert "seed budget capped at 3" in result.stdout.str()


def test_a_pilot_that_cannot_train_is_a_warning_not_a_crash(suite):
    suite.makepyfile(test_pilot="""
import pytest
from claims.spec import Claim, Form
from tests.claims_example.fake import fake_recipe

CLAIM = Claim(id="EX-8", source="example", quote="Five points.", form=Form.SUPERIORITY,
              a=fake_recipe("trick", 0.05), b=fake_recipe("base", fail_seeds=(1001,)), delta=1.0, metric="acc",
              alpha=0.05)

@pytest.mark.claims(CLAIM)
def test_ex8():
    pass
""")
    result = _run(suite, "--workers", "0")
    result.assert_outcomes(passed=1)
    assert "no A/A pilot: the A/A pilot could not train its runs: run of fake/base with seed 1001" in \
        result.stdout.str()


def test_a_session_without_claim_tests_does_nothing(suite):
    suite.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = _run(suite)
    result.assert_outcomes(passed=1)
    assert not (suite.path / "runs.sqlite").exists() and not (suite.path / "reports").exists()
    assert "claims (" not in result.stdout.str()


def test_a_bad_option_is_one_clear_sentence_and_a_non_zero_exit(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    result = _run(suite, "--max-seeds", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--max-seeds must be at least 2, not 1" in result.stderr.str()
    folder = suite.mkdir("a_folder")
    result = suite.runpytest_subprocess("--store", str(folder), "--run-fn", "tests.claims_example.fake:fake_run",
                                        "--report-dir", str(suite.path / "reports"), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"claims: run store {folder} is a folder" in result.stdout.str() + result.stderr.str()
