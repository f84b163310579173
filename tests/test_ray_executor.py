"""The Ray executor on a local Ray instance (`ray.init(num_cpus=2)`, started once for this module) with fake runs.

Faults: a run that raises, a worker killed mid-run (retried, nothing lost or trained twice), a driver killed with
kill -9 (the next start trains only what is missing), Ctrl-C (outstanding tasks cancelled, the store intact). Then
the plugin and `tricks.apply` options, Ray missing (one sentence, exit 2), and one integration test that judges two
smoke-profile claims through Ray on the real archive. Every test needing Ray skips with the reason when it is not
installed.
"""

from __future__ import annotations

import _thread
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from claims.executors import LocalExecutor
from claims.executors.base import Job, RunFailure
from claims.schedule import Scheduler
from claims.store import RunStore
from tests.claims_example.fake import LOG_ENV, fake_recipe, fake_run
from tricks.recipe import RunResult

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (the optional extra: pip install -e '.[ray]')")
pytestmark = pytest.mark.ray
pytest_plugins = ["pytester"]
DONE_ENV = "TRICKS_FAKE_DONE_LOG"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> str:
    """A local Ray instance with 2 CPUs for the whole module; its address, for drivers in other processes."""
    if not HAS_RAY:
        pytest.skip("ray is not installed (the optional extra: pip install -e '.[ray]')")
    import ray

    logs = tmp_path_factory.mktemp("ray")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", LOG_ENV, DONE_ENV, "RAY_AUTH_TOKEN_PATH")}
    # workers get the environment of ray.init, not later changes: they import tests.* and log where the tests read
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ[LOG_ENV], os.environ[DONE_ENV] = str(logs / "calls.log"), str(logs / "done.log")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray (2.5x on) turns token authentication on for a new local instance and writes its token to ~/.ray/auth_token
    # when there is none; pytester's subprocess drivers get another HOME, so name the file for them once it exists
    # (naming a file that does not exist yet makes ray.init fail on a fresh machine instead of creating it)
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file():
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token))
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def calls(cluster) -> Path:
    """The module's call log, emptied: one line `recipe_key seed profile pid` per call of the fake run."""
    log = Path(os.environ[LOG_ENV])
    log.write_text("")
    Path(os.environ[DONE_ENV]).write_text("")
    return log


def _calls(log: Path) -> Counter:
    return Counter((line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines())


def _pids(log: Path, key: str, seed: int) -> list[int]:
    rows = (line.split() for line in log.read_text().splitlines())
    return [int(p[3]) for p in rows if (p[0], int(p[1])) == (key, seed)]


def _collect(executor, jobs):
    out = {}
    executor.map_runs(jobs, lambda job, res: out.__setitem__((job.recipe.key, job.seed), res))
    return out


def _executor(**kw):
    from claims.executors.ray import RayExecutor

    return RayExecutor(run_fn=kw.pop("run_fn", fake_run), **kw)


def resources_run(recipe, seed, profile="default", **kwargs) -> RunResult:
    """`fake_run` that records the Ray resources of its task, its torch threads and its device in `note`."""
    import ray
    import torch

    res = fake_run(recipe, seed, profile, source=kwargs.get("source"))
    res.threads = torch.get_num_threads()
    res.note = json.dumps({"resources": ray.get_runtime_context().get_assigned_resources(),
                           "device": kwargs.get("device")})
    return res


def arrays_run(recipe, seed, profile="default", *, arrays=None, **kwargs) -> RunResult:
    """`fake_run` that reports the dataset it was given: its digest, pixel sum, and this process's copy of it."""
    res = fake_run(recipe, seed, profile, source=kwargs.get("source"))
    res.dataset = arrays.digest
    res.note = json.dumps({"sum": int(arrays.x_train.sum()), "copy": id(arrays), "pid": os.getpid(),
                           "writable": bool(arrays.x_train.numpy().flags.writeable)})
    return res


def slow_run(recipe, seed, profile="default", **kwargs) -> RunResult:
    """`fake_run` that also appends `done KEY SEED` to the done log when it returns (it may be killed first)."""
    res = fake_run(recipe, seed, profile, **kwargs)
    with open(os.environ[DONE_ENV], "a") as f:
        f.write(f"done {recipe.key} {seed}\n")
    return res


# ---------------------------------------------------------------------------------------------- executor


@needs_ray
def test_ray_tasks_return_the_same_results_as_in_process_runs(calls):
    jobs = [Job(fake_recipe(n, 0.01), s, "smoke") for n in ("a", "b") for s in range(3)]
    ray_out = _collect(_executor(), jobs)
    local = _collect(LocalExecutor(0, run_fn=fake_run), jobs)
    assert set(ray_out) == {(j.recipe.key, j.seed) for j in jobs}
    assert {k: r.acc for k, r in ray_out.items()} == {k: r.acc for k, r in local.items()}
    assert sum(_calls(calls).values()) == 2 * len(jobs)  # 6 Ray tasks and 6 in-process calls, none repeated


@needs_ray
def test_each_run_is_a_task_with_one_cpu_and_one_torch_thread_on_the_cpu(calls):
    ex = _executor(run_fn=resources_run)
    assert ex.workers == 2  # both CPUs of the instance, for the scheduler's ETA
    out = _collect(ex, [Job(fake_recipe("r"), s, "smoke") for s in range(2)])
    for res in out.values():
        note = json.loads(res.note)
        assert note["resources"] == {"CPU": 1.0} and res.threads == 1
        assert note["device"] == "cpu"  # no GPU was asked for, so none is used


@needs_ray
def test_gpus_per_run_is_checked_and_a_cluster_without_gpus_says_so(cluster):
    from claims.executors.ray import RayError, check_gpus_per_run

    assert check_gpus_per_run(0.25) == 0.25 and check_gpus_per_run(2) == 2.0 and check_gpus_per_run(None) is None
    for bad in (0, -1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="--gpus-per-run"):
            check_gpus_per_run(bad)
    with pytest.raises(RayError, match=r"--gpus-per-run 0.25: the Ray cluster has no GPU"):
        _executor(gpus_per_run=0.25)


@needs_ray
def test_a_cluster_out_of_reach_is_one_sentence_naming_the_address(cluster, monkeypatch):
    import ray

    from claims.executors.ray import RayError

    def refuse(**kwargs):
        raise ConnectionError(f"Could not find any running Ray instance at {kwargs['address']}.\nPlease check.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh driver, without touching the instance
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RayError) as e:
        _executor(address="10.9.9.9:6379")
    assert str(e.value) == ("cannot reach a Ray cluster at 10.9.9.9:6379: Could not find any running Ray instance at "
                            "10.9.9.9:6379. Please check.")


@needs_ray
def test_the_dataset_reaches_each_worker_process_once_from_the_object_store(cluster):
    import torch

    from tricks.cifar import CifarArrays

    g = torch.Generator().manual_seed(0)
    arrays = CifarArrays(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g),
                         torch.arange(40) % 10, torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=g),
                         torch.arange(10), tuple("abcdefghij"), "synthetic", "d" * 64)
    out = _collect(_executor(run_fn=arrays_run, arrays=arrays), [Job(fake_recipe("d"), s, "smoke") for s in range(6)])
    notes = [json.loads(r.note) for r in out.values()]
    assert all(r.dataset == "d" * 64 for r in out.values())
    assert {n["sum"] for n in notes} == {int(arrays.x_train.sum())}
    assert all(n["writable"] for n in notes)  # a private copy, not the read-only shared memory
    copies = {(n["pid"], n["copy"]) for n in notes}
    assert len(copies) == len({n["pid"] for n in notes})  # one copy per worker process, reused by its later runs


@needs_ray
def test_a_run_that_raises_is_a_run_failure_with_its_message_and_the_others_finish(calls):
    bad = fake_recipe("bad", fail_seeds=(1,))
    jobs = [Job(bad, s, "smoke") for s in range(3)]
    out = _collect(_executor(), jobs)
    failure = out[(bad.key, 1)]
    assert isinstance(failure, RunFailure) and failure.job == jobs[1]
    assert "RuntimeError: fake failure on seed 1" in str(failure) and "fake/bad" in str(failure)
    assert isinstance(out[(bad.key, 0)], RunResult) and isinstance(out[(bad.key, 2)], RunResult)
    assert _calls(calls)[(bad.key, 1)] == 1  # an exception is the run's own verdict: Ray does not retry it


@needs_ray
def test_a_worker_killed_mid_run_is_retried_and_no_run_is_lost_or_trained_twice(calls, tmp_path):
    recipe = fake_recipe("victim", sleep=1.5)
    jobs = [Job(recipe, s, "smoke") for s in range(4)]
    store = RunStore(tmp_path / "runs.sqlite")
    killed: list[int] = []

    def kill_seed_2() -> None:  # kill the worker process training seed 2, once, while it sleeps in the run
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            pids = _pids(calls, recipe.key, 2)
            if pids:
                time.sleep(0.3)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    t = threading.Thread(target=kill_seed_2)
    t.start()
    sched = Scheduler([], store, _executor(), "smoke", seeds=range(4), progress=False)
    sched.ensure_runs(jobs)
    t.join()
    assert killed, "the run of seed 2 never started"
    assert not sched.failures and len(sched.results) == 4
    assert store.count("smoke") == 4  # every run stored once (the store's key is unique)
    started = _calls(calls)
    assert started[(recipe.key, 2)] == 2 and _pids(calls, recipe.key, 2)[1] != killed[0]  # retried elsewhere
    assert all(started[(recipe.key, s)] == 1 for s in (0, 1, 3))  # the others trained exactly once
    assert store.leases() == []


DRIVER = """
import sys
from claims.executors.ray import RayExecutor
from claims.executors import Job
from claims.schedule import Scheduler
from claims.store import RunStore
from tests.claims_example.fake import fake_recipe, fake_run

store = RunStore(sys.argv[2])
jobs = [Job(fake_recipe("resume", sleep=0.8), s, "smoke") for s in range(8)]
Scheduler([], store, RayExecutor(sys.argv[1], run_fn=fake_run), "smoke", seeds=range(8), progress=False
          ).ensure_runs(jobs)
"""


@needs_ray
def test_a_driver_killed_with_kill_9_resumes_from_the_store_and_trains_only_what_is_missing(cluster, calls, tmp_path):
    path = tmp_path / "runs.sqlite"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER), cluster, str(path)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = RunStore(path)
    deadline = time.time() + 120
    while store.count("smoke") < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = {r.seed for r in store.runs("smoke")}
    assert 2 <= len(before) < 8, driver.stderr.read().decode()[-2000:]
    assert store.leases() and all(lease["stale"] for lease in store.leases())  # the dead driver's, taken over

    recipe = fake_recipe("resume", sleep=0.8)
    sched = Scheduler([], store, _executor(), "smoke", seeds=range(8), progress=False)
    sched.ensure_runs([Job(recipe, s, "smoke") for s in range(8)])
    assert {s for _, s in sched.trained} == set(range(8)) - before  # only what was missing
    assert len(sched.results) == 8 and store.count("smoke") == 8 and store.leases() == []


@needs_ray
def test_ctrl_c_cancels_the_outstanding_tasks_and_leaves_the_store_intact(calls, tmp_path):
    done_log = Path(os.environ[DONE_ENV])
    quick, slow = fake_recipe("quick", sleep=0.1), fake_recipe("slow", sleep=4.0)
    jobs = [Job(quick, 0, "smoke")] + [Job(slow, s, "smoke") for s in range(4)]
    store = RunStore(tmp_path / "runs.sqlite")

    def ctrl_c_after_the_first_stored_run() -> None:
        deadline = time.time() + 60
        while store.count("smoke") < 1 and time.time() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the driver's main thread

    threading.Thread(target=ctrl_c_after_the_first_stored_run, daemon=True).start()
    sched = Scheduler([], store, _executor(run_fn=slow_run), "smoke", seeds=range(4), progress=False)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sched.ensure_runs(jobs)
    assert time.perf_counter() - t0 < 4.0 + 3  # not held until the slow runs end
    stored = {(r.recipe_key, r.seed) for r in store.runs("smoke")}
    assert (quick.key, 0) in stored and store.leases() == []
    time.sleep(5.0)  # longer than a slow run: a task that was not cancelled would finish now
    finished = {(p[1], int(p[2])) for p in (line.split() for line in done_log.read_text().splitlines())}
    assert finished == stored  # only the stored runs ever finished; the outstanding ones were cancelled
    assert store.count("smoke") == len(stored)
    out = _collect(_executor(), [Job(quick, 1, "smoke")])  # the instance is free again for the next suite
    assert isinstance(out[(quick.key, 1)], RunResult)


# ---------------------------------------------------------------------------------------------- command lines


def _plugin_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, conftest: str) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("TRICKS_STORE", raising=False)
    monkeypatch.delenv("TRICKS_DATA", raising=False)
    pytester.makeconftest(conftest + "from claims.plugin import *  # noqa: F403\n")
    examples = Path(__file__).parent / "claims_example"
    pytester.makepyfile(test_example_claims=(examples / "example_claims.py").read_text())


def _run_suite(pt: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pt.runpytest_subprocess("--store", str(pt.path / "runs.sqlite"), "--report-dir", str(pt.path / "reports"),
                                   "--profile", "smoke", "--run-fn", "tests.claims_example.fake:fake_run",
                                   "--pilot-seeds", "0", "-p", "no:cacheprovider", *args, timeout=300)


@needs_ray
def test_the_plugin_judges_the_claims_through_ray_to_the_local_executors_verdicts(cluster, pytester, monkeypatch):
    _plugin_suite(pytester, monkeypatch, "")
    local = _run_suite(pytester, "--report-dir", str(pytester.path / "local"), "--store",
                       str(pytester.path / "local.sqlite"))
    through_ray = _run_suite(pytester, "--executor", "ray", "--ray-address", cluster)
    assert through_ray.ret == local.ret == pytest.ExitCode.OK, through_ray.stdout.str()[-3000:]
    verdicts = [json.loads(p.read_text())["claims"] for p in (pytester.path / "local" / "latest" / "report.json",
                                                             pytester.path / "reports" / "latest" / "report.json")]
    pick = [{c["id"]: c["verdict"] for c in v} for v in verdicts]
    assert pick[0] == pick[1] and pick[0]


def test_executor_ray_without_ray_installed_is_one_sentence_and_exit_2(pytester, monkeypatch):
    _plugin_suite(pytester, monkeypatch, "import sys\nsys.modules['ray'] = None  # as if Ray were not installed\n")
    result = _run_suite(pytester, "--executor", "ray")
    assert result.ret == 2
    out = result.stdout.str() + result.stderr.str()
    assert "--executor ray needs Ray, an optional extra: pip install -e '.[ray]'" in out and "Traceback" not in out


def test_ray_options_without_executor_ray_are_usage_errors(pytester, monkeypatch):
    _plugin_suite(pytester, monkeypatch, "")
    result = _run_suite(pytester, "--gpus-per-run", "0.25")
    assert result.ret == 2  # usage and data errors: 2, as python -m tricks.apply (docs/exit-codes.md)
    assert "--gpus-per-run only applies with --executor ray" in result.stderr.str()


def test_apply_executor_ray_without_ray_is_one_sentence_and_exit_2(monkeypatch, capsys):
    from tricks.apply import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as if it were not installed
    assert main(["--cb", "BnFreeze", "--compare", "--executor", "ray", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --executor ray needs Ray, an optional extra: pip install -e '.[ray]'"
    assert main(["--cb", "BnFreeze", "--ray-address", "auto"]) == 2
    assert "--ray-address only applies with --executor ray" in capsys.readouterr().err


@needs_ray
def test_apply_compare_through_ray_trains_both_arms_and_reuses_the_store(cluster, tmp_path, monkeypatch, capsys):
    from tests.test_apply import TINY, _write_source
    from tricks.apply import main

    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))
    source = _write_source(tmp_path / "src", n_train=12, n_test=6)
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY.to_dict()))
    args = ["--recipe", str(recipe), "--data", str(source), "--profile", "smoke", "--epochs", "1", "--store",
            str(tmp_path / "runs.sqlite"), "--cb", "GradientClip:max_norm=0.5", "--compare", "--seeds", "2",
            "--json", str(tmp_path / "out.json"), "--executor", "ray", "--ray-address", cluster]
    first = main(args)
    out = capsys.readouterr()
    assert first in (0, 1), out.err[-3000:]  # 1 only if a tiny run diverged
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [(r["arm"], r["seed"]) for r in doc["runs"]] == [("trick", 0), ("baseline", 0), ("trick", 1),
                                                            ("baseline", 1)]  # the plan's order, pairs together
    assert all(r["threads"] == 1 for r in doc["runs"])  # trained in Ray tasks, one torch thread each
    assert "verdict" in out.out and "4 run(s) to train as Ray tasks" in out.err
    assert main(args) == first
    assert "to train as Ray tasks" not in capsys.readouterr().err  # every run came from the store
    assert RunStore(tmp_path / "runs.sqlite").count("smoke") == 4


# ---------------------------------------------------------------------------------------------- integration


@needs_ray
@pytest.mark.integration
@pytest.mark.slow
def test_two_smoke_claims_are_judged_through_ray_on_the_real_archive(cluster, tmp_path):
    data = os.environ.get("TRICKS_DATA")
    if not data:
        pytest.skip("TRICKS_DATA is not set: this test needs the real CIFAR-10 archive")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "-q", "--profile", "smoke",
           "-k", "c003_1 or c003_3", "--pilot-seeds", "0", "--max-seeds", "2", "--store", str(tmp_path / "runs.sqlite"),
           "--report-dir", str(tmp_path / "reports"), "--executor", "ray", "--ray-address", cluster]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "latest" / "report.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in report["claims"]}
    assert set(verdicts) == {"C003-1", "C003-3"} and all(v != "INVALID" for v in verdicts.values())
    runs = list(RunStore(tmp_path / "runs.sqlite").runs("smoke"))
    assert len(runs) == 6 and all(r.threads == 1 for r in runs)  # 3 recipes x 2 seeds, one torch thread each
    from tricks.cifar import load_cifar10

    digest = load_cifar10(data).digest[:12]  # from the cache: the copy the driver put into the object store
    assert all(f"sha256 {digest}" in r.dataset for r in runs)
