"""The claims plugin as an installed pytest plugin (the pyproject's `pytest11` entry point): a project's own claim file
over its own Learner is collected, judged and reported; registering it twice (entry point + conftest) is harmless.

The entry point is installed for the subprocess only: a folder on its PYTHONPATH holds a distribution whose
entry_points.txt is the pyproject's `[project.entry-points.pytest11]` table, which is how pip installs it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

CLAIMS = '''
import pytest

from claims.compare import LearnerArm
from claims.spec import Claim
from myexp import Noop

BASE = LearnerArm("myexp:make_learner", epochs=1, lr=1e-2)
SAME = Claim(id="MY-1", source="my project", quote="Noop changes nothing.", form="equivalence",
             a=BASE.with_tricks(Noop()), b=BASE, delta=0.02, looks=(3,))
BN = Claim(id="MY-2", source="my project", quote="BN before the ReLU is no worse than none.", form="non_inferiority",
           a=BASE.with_tricks("bn_before_relu"), b=BASE, delta=0.05, looks=(3,))


@pytest.mark.claims(SAME)
def test_noop_changes_nothing(claim_decision):
    assert claim_decision.mean == 0


@pytest.mark.claims(BN)
def test_bn_before_relu_is_no_worse(claim_decision):
    assert claim_decision.n == 3


def test_an_ordinary_test_still_runs():
    assert True
'''


def _entry_point_site(folder: Path) -> Path:
    """A folder with one distribution declaring the pyproject's pytest11 entry points, as pip would install them."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    dist = folder / "tricks_entry_point-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tricks-entry-point\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    return folder


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> pytest.Pytester:
    """Another project: its own Learner factory and claim file, no conftest, the plugin from the entry point only."""
    site = _entry_point_site(tmp_path_factory.mktemp("site"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), str(ROOT), str(pytester.path),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("TRICKS_STORE", raising=False)
    monkeypatch.delenv("TRICKS_DATA", raising=False)
    pytester.makepyfile(myexp=(Path(__file__).parent / "own_learner.py").read_text())
    pytester.makepyfile(test_my_claims=CLAIMS)
    return pytester


def _run(pt: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pt.runpytest_subprocess("--store", str(pt.path / "runs.sqlite"), "--report-dir", str(pt.path / "reports"),
                                   "--pilot-seeds", "0", "--workers", "0", "-p", "no:cacheprovider", *args,
                                   timeout=300)


def _reports(pt: pytest.Pytester) -> list[Path]:
    return [p for p in (pt.path / "reports").iterdir() if p.name != "latest"]


def test_the_pyproject_declares_the_plugin_as_a_pytest11_entry_point():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert table == {"claims.plugin": "claims.plugin"}  # named as the module: `-p claims.plugin` is then a no-op


def test_a_user_claim_file_in_another_project_is_collected_judged_and_reported(project):
    result = _run(project)
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert out.count("claims (own profile)") == 1 and "MY-1" in out and "MY-2" in out
    (report,) = _reports(project)
    data = json.loads((report / "report.json").read_text())
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["MY-1"]["verdict"] == "SUPPORTED" and data["profile"] == "own"
    assert [row["d_pp"] for row in by_id["MY-1"]["per_seed"]] == [0.0, 0.0, 0.0]
    assert by_id["MY-2"]["arms"][0]["recipe"]["factory"] == "myexp:make_learner"
    assert by_id["MY-2"]["arms"][0]["recipe"]["tricks"] == ["bn_before_relu"]
    assert (report / "report.md").exists() and (report / "plots" / "MY-1.png").stat().st_size > 0
    again = _run(project)  # every run comes from the store: the same verdicts, nothing trained
    again.assert_outcomes(passed=3)
    (second,) = set(_reports(project)) - {report}
    redone = {c["id"]: c for c in json.loads((second / "report.json").read_text())["claims"]}
    assert {k: (c["verdict"], c["per_seed"]) for k, c in redone.items()} == \
        {k: (c["verdict"], c["per_seed"]) for k, c in by_id.items()}
    assert [c["compute"]["trained"] for c in redone.values()] == [0, 0]
    assert [c["compute"]["trained"] for c in by_id.values()] == [6, 6]  # MY-1 and MY-2 share the 3 baseline runs


def test_a_conftest_that_imports_the_plugin_too_registers_nothing_twice(project):
    project.makeconftest("from claims.plugin import *  # noqa: F403\n")
    result = _run(project)
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("claims (own profile)") == 1 and len(_reports(project)) == 1


def test_the_projects_own_suite_still_collects_under_the_entry_point(pytester, tmp_path_factory, monkeypatch):
    site = _entry_point_site(tmp_path_factory.mktemp("site"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), str(ROOT),
                                                                   os.environ.get("PYTHONPATH")])))
    result = pytester.run(sys.executable, "-m", "pytest", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                          str(ROOT / "claims" / "suite" / "test_fastai2018.py"), "--collect-only", "-q", "--profile",
                          "smoke", "-p", "no:cacheprovider", timeout=300)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "tests collected" in result.stdout.str()
