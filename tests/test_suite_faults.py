"""The claims suite under faults, through pytester: a full disk while storing, a report folder that cannot be
written, and the exit codes (2 usage or data, 130 interrupted) it shares with `python -m tricks.apply`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_plugin
from tests.test_plugin import EXAMPLES, _run

pytest_plugins = ["pytester"]
suite = test_plugin.suite  # the plugin tests' pytester fixture

FULL_AFTER = """
import sqlite3

from claims.plugin import *  # noqa: F403

_real = sqlite3.connect
_inserts = [0]


class _Full(sqlite3.Connection):
    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith("INSERT OR IGNORE INTO RUNS"):
            _inserts[0] += 1
            if _inserts[0] > {n}:
                raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


sqlite3.connect = lambda *a, **k: _real(*a, **{{**k, "factory": _Full}})
"""


def test_a_full_disk_in_the_suite_is_one_sentence_exit_2_and_keeps_the_stored_runs(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    suite.makeconftest(FULL_AFTER.format(n=4))
    result = _run(suite, "--workers", "0", "--pilot-seeds", "0")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    assert "crashed" not in out and "Traceback" not in out, out
    assert f"claims: run store {suite.path / 'runs.sqlite'} could not store run" in out and "disk is full" in out
    con = sqlite3.connect(suite.path / "runs.sqlite")
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4  # the runs stored before stay


@pytest.mark.parametrize("where", ["a file", "a read-only mount"])
def test_a_report_that_cannot_be_written_makes_the_suite_exit_2(suite, where):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    target = suite.path / "reports"
    mounted = False
    if where == "a file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        for cmd in (["mount", "--bind", str(target), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]):
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                if mounted:
                    subprocess.run(["umount", str(target)], capture_output=True)
                pytest.skip("cannot make a read-only bind mount here (needs root and mount)")
            mounted = True
    try:
        result = _run(suite, "--workers", "0", "--pilot-seeds", "0")
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], capture_output=True)
    out = result.stdout.str()
    assert result.ret == 2, out
    assert "the report could not be written" in out


def test_a_suite_usage_error_exits_2_as_the_command_line_does(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    result = _run(suite, "--max-seeds", "1")
    assert result.ret == 2
    assert "--max-seeds must be at least 2, not 1" in result.stdout.str() + result.stderr.str()
    result = _run(suite, "--max-seeds", "many")
    assert result.ret == 2
    assert "--max-seeds" in result.stdout.str() + result.stderr.str()
    result = _run(suite, "--profile", "papper")
    assert result.ret == 2
    assert "--profile papper is not one of" in result.stdout.str() + result.stderr.str()


def test_ctrl_c_in_the_suite_exits_130(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    env = {**os.environ, "TRICKS_FAKE_RUN_SLEEP": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--store", str(suite.path / "runs.sqlite"), "--report-dir",
         str(suite.path / "reports"), "--profile", "smoke", "--run-fn", "tests.claims_example.fake:fake_run",
         "--workers", "0", "--pilot-seeds", "0", "-p", "no:cacheprovider"],
        cwd=suite.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out


CTRL_C_IN_REPORT = """
import claims.report.model


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


claims.report.model.build_report = _interrupted
"""


def test_ctrl_c_while_the_report_is_built_exits_130_without_a_traceback(suite):
    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    suite.makeconftest(CTRL_C_IN_REPORT)
    result = _run(suite, "--workers", "0", "--pilot-seeds", "0")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 130, out
    assert "Traceback" not in out, out
    assert "interrupted" in out
    con = sqlite3.connect(suite.path / "runs.sqlite")
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] > 0  # the runs trained before it stay


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


PARENT = ("import subprocess, sys\np = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'w'), "
          "stderr=subprocess.STDOUT)\nprint(p.pid, flush=True)\np.wait()\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_a_suite_whose_parent_is_killed_stops_training(suite):
    from tests.claims_example.fake import LOG_ENV

    suite.makepyfile(test_example_claims=(EXAMPLES / "example_claims.py").read_text())
    log = suite.path / "calls.log"
    env = {**os.environ, "TRICKS_FAKE_RUN_SLEEP": "8", "TRICKS_DIE_WITH_PARENT": "1", LOG_ENV: str(log)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(suite.path / "suite.out"), sys.executable, "-m", "pytest", "--store",
         str(suite.path / "runs.sqlite"), "--report-dir", str(suite.path / "reports"), "--profile", "smoke", "--run-fn",
         "tests.claims_example.fake:fake_run", "--workers", "1", "--pilot-seeds", "0", "-p", "no:cacheprovider"],
        cwd=suite.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child = int(parent.stdout.readline())
    try:
        _kill_parent_and_watch(parent, child, log)
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


def _kill_parent_and_watch(parent: subprocess.Popen, child: int, log: Path) -> None:
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running(child), "the suite ended before it could be interrupted"
    parent.kill()  # kill -9 of nox
    parent.wait()
    deadline = time.monotonic() + 40
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    out = log.with_name("suite.out")
    assert not _running(child), out.read_text()[-2000:]  # pytest went with its parent (the runs left take 60 s)
    assert "KeyboardInterrupt" in out.read_text() or "Interrupted" in out.read_text()
    time.sleep(1)
    runs = log.read_text().count("\n")
    time.sleep(9)
    assert log.read_text().count("\n") == runs  # and so did its worker: nothing trains on
