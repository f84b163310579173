"""report.json names how it was made: the command line, the git commit of the checkout, and the versions of the
libraries beside torch and fastai that decide its numbers (torchvision decodes the images, scipy the intervals)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from claims.executors import LocalExecutor
from claims.report.model import build_report
from claims.report.schema import report_json
from claims.schedule import Scheduler
from claims.store import RunStore
from tests.claims_example.fake import fake_run

ROOT = Path(__file__).resolve().parents[1]


def test_report_json_carries_the_command_line_git_commit_and_torchvision_and_scipy_versions(tmp_path, monkeypatch):
    import scipy
    import torchvision

    monkeypatch.setattr(sys, "argv", ["pytest", "claims", "--profile", "smoke"])
    empty = Scheduler([], RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False)
    empty.run()
    env = report_json(build_report(empty))["environment"]
    assert env["argv"] == ["pytest", "claims", "--profile", "smoke"]
    assert env["torchvision"] == torchvision.__version__ and env["scipy"] == scipy.__version__
    assert metadata.version("torchvision") in env["torchvision"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (a release tarball has none: then null)
        assert env["git_commit"] == head.stdout.strip()
        assert isinstance(env["git_dirty"], bool)
