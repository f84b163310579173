"""A real two-node Ray cluster on this one machine: the head (and the suite's driver) in one network namespace, a
worker node in another, joined by a veth pair (`ip netns`, iproute2; root only). Smoke claims over fake runs are
judged through `--executor ray`; the worker node is killed (every process in its namespace, SIGKILL) while it trains,
its runs are retried on the head, the store, written by the driver alone, holds each run once, and the verdicts
equal a local run's. Skipped, with the reason, where namespaces cannot be made (not root, no iproute2, no Ray)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.claims_example.fake import LOG_ENV, SLEEP_ENV

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).parent / "claims_example"
RAY = Path(sys.executable).with_name("ray")
pytestmark = [pytest.mark.netns, pytest.mark.ray]

HEAD_IP, WORKER_IP, PORT = "10.213.23.1", "10.213.23.2", 6391


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _pids(ns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", ns).stdout.split()]


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process in network namespace `ns` (only this test's Ray processes live there)."""
    for _ in range(5):
        pids = _pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


@pytest.fixture
def namespaces():
    """Two network namespaces joined by a veth pair: (head's, worker's); removed afterwards with their processes."""
    if importlib.util.find_spec("ray") is None or not RAY.exists():
        pytest.skip("ray is not installed (the optional extra, pip install -e '.[ray]')")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need Linux, root and iproute2's ip")
    tag = f"t{os.getpid() % 100000}"
    head, worker = f"{tag}h", f"{tag}w"
    steps = [("netns", "add", head), ("netns", "add", worker),
             ("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b"),
             ("link", "set", f"{tag}a", "netns", head), ("link", "set", f"{tag}b", "netns", worker),
             ("-n", head, "addr", "add", f"{HEAD_IP}/24", "dev", f"{tag}a"),
             ("-n", worker, "addr", "add", f"{WORKER_IP}/24", "dev", f"{tag}b"),
             ("-n", head, "link", "set", f"{tag}a", "up"), ("-n", worker, "link", "set", f"{tag}b", "up"),
             ("-n", head, "link", "set", "lo", "up"), ("-n", worker, "link", "set", "lo", "up")]
    try:
        for step in steps:
            res = _ip(*step)
            if res.returncode != 0:
                pytest.skip(f"cannot make network namespaces here (ip {' '.join(step)}: {res.stderr.strip()})")
        yield head, worker
    finally:
        for ns in (worker, head):
            _kill_namespace(ns)
            _ip("netns", "del", ns)


def _suite_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "conftest.py").write_text("from claims.plugin import *  # noqa: F403\n")
    (path / "test_example_claims.py").write_text((EXAMPLES / "example_claims.py").read_text())


def _suite(path: Path, env: dict[str, str], *args: str, netns: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "--store", str(path / "runs.sqlite"), "--report-dir", str(path / "reports"),
           "--profile", "smoke", "--run-fn", "tests.claims_example.fake:fake_run", "--pilot-seeds", "0",
           "-p", "no:cacheprovider", *args]
    cmd = ["ip", "netns", "exec", netns, *cmd] if netns else cmd
    return subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True, timeout=240)


def _verdicts(path: Path) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in json.loads((path / "reports" / "latest" / "report.json").read_text())
            ["claims"]}


def test_a_two_node_cluster_loses_its_worker_node_mid_round_and_the_suite_still_judges_every_run_once(
        namespaces, tmp_path):
    head, worker = namespaces
    log = tmp_path / "calls.log"
    log.write_text("")
    temp = Path(f"/tmp/rn{os.getpid() % 100000}")  # Ray's socket paths must stay short
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           LOG_ENV: str(log), SLEEP_ENV: "1.5", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("TRICKS_STORE", None)
    env.pop("TRICKS_DATA", None)
    common = ["--object-store-memory=80000000", "--disable-usage-stats", "--block"]
    nodes = [subprocess.Popen(["ip", "netns", "exec", head, str(RAY), "start", "--head", f"--port={PORT}",
                               f"--node-ip-address={HEAD_IP}", "--num-cpus=1", f"--temp-dir={temp}",
                               "--include-dashboard=false", *common],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait = ("import ray, sys, time\nray.init(address=sys.argv[1], log_to_driver=False)\nt = time.time()\n"
                "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() - t < 90: time.sleep(0.5)\n"
                "print(sum(n['Alive'] for n in ray.nodes()))\n")
        time.sleep(8)
        nodes.append(subprocess.Popen(["ip", "netns", "exec", worker, str(RAY), "start",
                                       f"--address={HEAD_IP}:{PORT}", f"--node-ip-address={WORKER_IP}",
                                       "--num-cpus=2", *common], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        up = subprocess.run(["ip", "netns", "exec", head, sys.executable, "-c", wait, f"{HEAD_IP}:{PORT}"], env=env,
                            capture_output=True, text=True, timeout=150)
        assert up.stdout.strip().endswith("2"), up.stdout + up.stderr[-2000:]

        ray_dir = tmp_path / "ray"
        _suite_folder(ray_dir)
        driver = subprocess.Popen(
            ["ip", "netns", "exec", head, sys.executable, "-m", "pytest", "--store", str(ray_dir / "runs.sqlite"),
             "--report-dir", str(ray_dir / "reports"), "--profile", "smoke", "--run-fn",
             "tests.claims_example.fake:fake_run", "--pilot-seeds", "0", "-p", "no:cacheprovider", "--executor",
             "ray", "--ray-address", f"{HEAD_IP}:{PORT}"], cwd=ray_dir, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        killed_runs: list[str] = []
        while time.monotonic() < deadline and driver.poll() is None:
            on_worker = set(_pids(worker))
            lines = log.read_text().splitlines()
            killed_runs = [ln for ln in lines if int(ln.split()[3]) in on_worker]
            if killed_runs:
                break
            time.sleep(0.2)
        assert killed_runs, "no run reached the worker node"
        _kill_namespace(worker)  # the worker node dies mid-round, its runs in flight
        out, _ = driver.communicate(timeout=180)
        assert driver.returncode == 0, out[-3000:]
    finally:
        for p in nodes:
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)

    calls = Counter((ln.split()[0], int(ln.split()[1])) for ln in log.read_text().splitlines())
    lost = {(ln.split()[0], int(ln.split()[1])) for ln in killed_runs}
    assert all(calls[k] >= 2 for k in lost), (calls, lost)  # each run cut short on the worker node ran again
    con = sqlite3.connect(ray_dir / "runs.sqlite")
    stored = Counter(con.execute("SELECT recipe_key, seed FROM runs").fetchall())
    assert set(stored) == set(calls) and set(stored.values()) == {1}  # every run stored, once

    local_dir = tmp_path / "local"
    _suite_folder(local_dir)
    local = _suite(local_dir, {**env, SLEEP_ENV: "0"}, "--workers", "0")
    assert local.returncode == 0, local.stdout[-3000:]
    assert _verdicts(ray_dir) == _verdicts(local_dir) and _verdicts(local_dir)
