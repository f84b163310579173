"""The executor and the scheduler: failures never hang, runs are shared, looks stop early, the pilot judges A vs A."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from claims.executors import Job, LocalExecutor, RunFailure
from claims.schedule import capped_looks
from claims.store import RunStore
from tests.claims_example.fake import LOG_ENV, SLEEP_ENV, fake_recipe, fake_run
from tricks.recipe import RunResult

ROOT = Path(__file__).resolve().parents[1]


def _calls(log: Path) -> Counter:
    if not log.exists():
        return Counter()
    return Counter((line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines())


def _collect(executor: LocalExecutor, jobs: list[Job]) -> dict[tuple[str, int], RunResult | RunFailure]:
    out: dict[tuple[str, int], RunResult | RunFailure] = {}
    executor.map_runs(jobs, lambda job, res: out.__setitem__((job.recipe.key, job.seed), res))
    return out


# ---------------------------------------------------------------------------------------------- executor


def test_worker_processes_return_the_same_results_as_in_process_runs():
    jobs = [Job(fake_recipe(n, 0.01), s, "smoke") for n in ("a", "b") for s in range(3)]
    in_proc = _collect(LocalExecutor(0, run_fn=fake_run), jobs)
    pooled = _collect(LocalExecutor(2, run_fn=fake_run), jobs)
    assert set(pooled) == {(j.recipe.key, j.seed) for j in jobs}
    assert {k: r.acc for k, r in pooled.items()} == {k: r.acc for k, r in in_proc.items()}


def test_a_failing_run_is_reported_with_its_job_and_the_others_finish():
    bad = fake_recipe("bad", fail_seeds=(1,))
    jobs = [Job(bad, s, "smoke") for s in range(3)]
    for workers in (0, 2):
        out = _collect(LocalExecutor(workers, run_fn=fake_run), jobs)
        failure = out[(bad.key, 1)]
        assert isinstance(failure, RunFailure) and failure.job == jobs[1]
        assert "RuntimeError: fake failure on seed 1" in str(failure) and "fake/bad" in str(failure)
        assert isinstance(out[(bad.key, 0)], RunResult) and isinstance(out[(bad.key, 2)], RunResult)


def test_a_dead_worker_becomes_a_failure_of_its_job_not_a_hang():
    dying = fake_recipe("dying", die_seeds=(0,))
    jobs = [Job(dying, s, "smoke") for s in range(4)]
    t0 = time.perf_counter()
    out = _collect(LocalExecutor(2, run_fn=fake_run), jobs)
    assert time.perf_counter() - t0 < 60
    assert isinstance(out[(dying.key, 0)], RunFailure)
    assert "worker process died (exit code 3)" in out[(dying.key, 0)].error
    assert all(isinstance(out[(dying.key, s)], RunResult) for s in (1, 2, 3))


def test_workers_that_cannot_start_fail_every_job_once_without_respawning(monkeypatch):
    from tests.claims_example import unstartable

    monkeypatch.setenv("TRICKS_FAKE_NO_START", "1")  # spawned workers inherit it; this process imported already
    jobs = [Job(fake_recipe("a"), s, "smoke") for s in range(6)]
    t0 = time.perf_counter()
    out = _collect(LocalExecutor(2, run_fn=unstartable.run), jobs)
    assert time.perf_counter() - t0 < 30
    assert len(out) == 6 and all(isinstance(r, RunFailure) for r in out.values())
    assert all("worker processes cannot start" in r.error for r in out.values())


def test_a_run_function_that_cannot_reach_the_workers_is_refused_up_front():
    with pytest.raises(TypeError, match="module-level function"):
        LocalExecutor(2, run_fn=lambda *a, **k: None)
    LocalExecutor(0, run_fn=lambda *a, **k: None)  # in-process needs no pickling


def test_worker_processes_run_with_one_torch_thread(tmp_path):
    from tests.claims_example import fake

    out = _collect(LocalExecutor(1, run_fn=fake.torch_threads_run), [Job(fake_recipe("t"), 0, "smoke")])
    (res,) = out.values()
    assert isinstance(res, RunResult), res
    assert res.threads == 1


def test_looks_are_capped_by_the_seed_budget():
    assert capped_looks((3, 5, 8, 12), None, 12) == (3, 5, 8, 12)
    assert capped_looks((3, 5, 8, 12), 3, 12) == (3,)
    assert capped_looks((3, 5, 8, 12), 7, 12) == (3, 5)
    assert capped_looks((3, 5, 8, 12), None, 6) == (3, 5)
    assert capped_looks((5, 10), 4, 12) == (4,)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        capped_looks((3, 5), 1, 12)


# ---------------------------------------------------------------------------------------------- Ctrl-C

INTERRUPTED = textwrap.dedent("""
    import sys
    from claims.executors import Job, LocalExecutor
    from claims.schedule import Scheduler
    from claims.store import RunStore
    from tests.claims_example.fake import fake_recipe, fake_run

    recipes = [fake_recipe(name) for name in ("base", "a")]
    sched = Scheduler([], RunStore(sys.argv[1]), LocalExecutor(2, run_fn=fake_run), "smoke", progress=False)
    try:
        sched.ensure_runs([Job(r, s, "smoke") for s in range(12) for r in recipes])
    except KeyboardInterrupt:
        print("interrupted after", len(sched.trained), flush=True)
        sys.exit(130)
""")


def test_ctrl_c_stops_the_pool_with_finished_runs_stored_and_no_leases_left(tmp_path):
    path, log = tmp_path / "runs.sqlite", tmp_path / "calls.log"
    store = RunStore(path)
    env = {**os.environ, LOG_ENV: str(log), SLEEP_ENV: "0.3", "PYTHONPATH": str(ROOT)}
    suite = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(path)], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while store.count() < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(suite.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out, err = suite.communicate(timeout=30)
    assert suite.returncode == 130, err
    trained = int(out.split()[-1])
    assert 3 <= trained < 24 and store.count() == trained
    assert store.leases() == []
    worker_pids = {int(line.split()[3]) for line in log.read_text().splitlines()}
    time.sleep(0.2)
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---------------------------------------------------------------------------------------------- scheduler


def _claim(cid: str, a, b, form: str = "SUPERIORITY", **kw):
    spec = pytest.importorskip("claims.spec", reason="claims/spec.py (Claim, judge) has not landed yet")
    Claim, Form = spec.Claim, spec.Form
    return Claim(id=cid, source="test", quote=f"{cid} holds", form=Form[form], a=a, b=b,
                 **{"delta": 0.01, "metric": "acc", "alpha": 0.05, **kw})


class ScriptedJudge:
    """A judge that decides each claim at a scripted look (never, when absent) and records every call."""

    def __init__(self, decide_at: dict[str, int], underpowered: frozenset[str] = frozenset()):
        self.decide_at, self.underpowered = decide_at, underpowered
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, claim, results, *, last_look, device_has_gpu=False, sigma_d_pilot=None, looks=None):
        from claims.spec import Decision, Verdict

        ns = {len(by_seed) for by_seed in results.values()}
        assert len(ns) == 1, f"arms of {claim.id} have different seed counts {ns}"
        (n,) = ns
        self.calls.append((claim.id, n, last_look))
        if n == 0:  # the prediction before any run
            if claim.id not in self.underpowered:
                raise ZeroDivisionError("no seeds")
            return Decision(claim_id=claim.id, verdict=Verdict.INCONCLUSIVE, reason="underpowered", n=0, mean=None,
                            lower=None, upper=None, alpha_look=None, sign_flip_p=None, fragile=False, p_a_gt_b=None,
                            p_seq=None, params_a=None, params_b=None, seeds_needed=40, final=True, parts=())
        decided = n >= self.decide_at.get(claim.id, 10**9)
        verdict = Verdict.SUPPORTED if decided else Verdict.INCONCLUSIVE
        return Decision(claim_id=claim.id, verdict=verdict, reason="scripted", n=n, mean=1.0, lower=0.5, upper=1.5,
                        alpha_look=0.017, sign_flip_p=0.1, fragile=False, p_a_gt_b=1.0, p_seq=0.01, params_a=1,
                        params_b=1, seeds_needed=None, final=decided or last_look, parts=())


@pytest.fixture
def call_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "calls.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    return log


def _scheduler(tmp_path, claims, profile: str = "smoke", **kw):
    from claims.schedule import Scheduler

    kw = {"progress": False, "poll_s": 0.05, **kw}
    return Scheduler(claims, RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), profile, **kw)


def test_a_baseline_shared_by_several_claims_trains_once_per_seed(tmp_path, call_log):
    base = fake_recipe("base")
    arms = [fake_recipe(f"trick{i}", 0.08) for i in range(4)]
    claims = [_claim(f"C{i}", arm, base) for i, arm in enumerate(arms)]
    sched = _scheduler(tmp_path, claims, judge=ScriptedJudge({c.id: 3 for c in claims}))
    sched.run()
    calls = _calls(call_log)
    assert set(calls.values()) == {1}
    assert sorted(s for k, s in calls if k == base.key) == [0, 1, 2]
    assert len(calls) == 3 * 5  # 3 seeds x (4 tricks + 1 baseline), not 3 x 8
    comp = sched.compute()
    assert comp["C0"].runs == 6 and comp["C0"].trained == 6
    # the baseline's 3 runs (0.5 s each in the fake) are split four ways, the trick's own 3 runs count in full
    assert comp["C0"].seconds == pytest.approx(3.0)
    assert comp["C0"].seconds_split == pytest.approx(1.5 + 1.5 / 4)
    assert sched.total_compute().runs == 15


def test_a_claim_stops_at_the_look_that_decides_it_and_others_go_on(tmp_path, call_log):
    base, fast, slow, never = (fake_recipe(n) for n in ("base", "fast", "slow", "never"))
    claims = [_claim("fast", fast, base), _claim("slow", slow, base), _claim("never", never, base)]
    judge = ScriptedJudge({"fast": 3, "slow": 8})
    sched = _scheduler(tmp_path, claims, judge=judge)
    decisions = sched.run()
    assert [(n, last) for cid, n, last in judge.calls if cid == "fast"] == [(3, False)]
    assert [(n, last) for cid, n, last in judge.calls if cid == "slow"] == [(3, False), (5, False), (8, False)]
    assert [(n, last) for cid, n, last in judge.calls if cid == "never"] == [(3, False), (5, False), (8, False),
                                                                               (12, True)]
    assert {cid: d.n for cid, d in decisions.items()} == {"fast": 3, "slow": 8, "never": 12}
    calls = _calls(call_log)
    assert sum(1 for k, _ in calls if k == fast.key) == 3
    assert sum(1 for k, _ in calls if k == slow.key) == 8
    assert sum(1 for k, _ in calls if k == base.key) == 12
    assert sched.rounds == 4


def test_max_seeds_makes_the_last_look_within_it_final(tmp_path, call_log):
    base, arm = fake_recipe("base"), fake_recipe("arm")
    judge = ScriptedJudge({})
    sched = _scheduler(tmp_path, [_claim("C", arm, base)], judge=judge, max_seeds=4)
    decisions = sched.run()
    assert judge.calls == [("C", 3, True)]
    assert decisions["C"].final and decisions["C"].n == 3
    assert len(_calls(call_log)) == 6


def test_a_claim_predicted_underpowered_by_the_pilot_gets_no_runs(tmp_path, call_log):
    base, tiny, big = fake_recipe("base"), fake_recipe("tiny"), fake_recipe("big")
    claims = [_claim("tiny", tiny, base), _claim("big", big, base)]
    judge = ScriptedJudge({"big": 3}, underpowered=frozenset({"tiny"}))
    decisions = _scheduler(tmp_path, claims, judge=judge, sigma_d_pilot=2.0).run()
    assert decisions["tiny"].seeds_needed == 40 and decisions["tiny"].n == 0
    assert not any(k == tiny.key for k, _ in _calls(call_log))
    assert ("big", 0, False) in judge.calls and decisions["big"].n == 3  # its failed prediction is ignored
    judge = ScriptedJudge({"big": 3}, underpowered=frozenset({"tiny"}))
    _scheduler(tmp_path, claims, judge=judge).run()  # without a pilot σ_d nothing is predicted
    assert all(n > 0 for _, n, _ in judge.calls)


def test_the_pilot_predicts_only_the_claims_of_its_own_source_document(tmp_path, call_log):
    from dataclasses import replace

    base, tiny = fake_recipe("base"), fake_recipe("tiny")
    foreign = replace(fake_recipe("tiny2"), name="other/tiny2")  # another document's arm: its own noise
    mixed = _claim("mixed", foreign, base)  # one arm from the pilot's document is not enough
    claims = [_claim("tiny", tiny, base), mixed]
    judge = ScriptedJudge({"mixed": 3}, underpowered=frozenset({"tiny", "mixed"}))
    sched = _scheduler(tmp_path, claims, judge=judge, sigma_d_pilot=2.0, pilot_source="fake")
    assert sched.pilot_speaks_for(claims[0]) and not sched.pilot_speaks_for(mixed)
    decisions = sched.run()
    assert decisions["tiny"].n == 0 and decisions["tiny"].seeds_needed == 40  # predicted, no runs
    assert ("mixed", 0, False) not in judge.calls and decisions["mixed"].n == 3  # judged on its own runs
    assert any(k == foreign.key for k, _ in _calls(call_log))


def test_a_failed_run_is_an_error_for_the_claims_that_need_it_only(tmp_path, call_log):
    base = fake_recipe("base")
    broken, fine = fake_recipe("broken", fail_seeds=(1,)), fake_recipe("fine")
    claims = [_claim("broken", broken, base), _claim("fine", fine, base)]
    sched = _scheduler(tmp_path, claims, judge=ScriptedJudge({"fine": 3, "broken": 3}))
    decisions = sched.run()
    assert set(decisions) == {"fine"}
    assert "fake failure on seed 1" in sched.errors["broken"] and "fake/broken" in sched.errors["broken"]
    assert RunStore(tmp_path / "runs.sqlite").leases() == []


def test_a_gpu_only_claim_is_judged_without_runs_on_a_cpu(tmp_path, call_log):
    gpu = _claim("gpu", fake_recipe("resnet9"), None, form="ABSOLUTE", threshold=0.90, needs_gpu=True)
    calls: list[str] = []

    def judge(claim, results, **kw):
        calls.append(claim.id)
        assert results == {} and kw["last_look"] and not kw["device_has_gpu"]
        from claims.spec import Decision, Verdict

        return Decision(claim_id=claim.id, verdict=Verdict.INCONCLUSIVE, reason="needs a GPU", n=0, mean=None,
                        lower=None, upper=None, alpha_look=None, sign_flip_p=None, fragile=False, p_a_gt_b=None,
                        p_seq=None, params_a=None, params_b=None, seeds_needed=None, final=True, parts=())

    sched = _scheduler(tmp_path, [gpu], judge=judge)
    assert set(sched.run()) == {"gpu"} and calls == ["gpu"]
    assert not call_log.exists()


def test_runs_in_the_store_are_not_trained_again(tmp_path, call_log):
    base, arm = fake_recipe("base"), fake_recipe("arm", 0.1)
    first = _scheduler(tmp_path, [_claim("C", arm, base)], judge=ScriptedJudge({"C": 5})).run()
    n_calls = len(_calls(call_log))
    second = _scheduler(tmp_path, [_claim("C", arm, base)], judge=ScriptedJudge({"C": 5}))
    again = second.run()
    assert len(_calls(call_log)) == n_calls == 10
    assert again["C"].n == first["C"].n and second.compute()["C"].trained == 0


def test_a_run_leased_by_another_live_suite_is_awaited_not_trained(tmp_path, call_log):
    import threading

    from claims.schedule import Scheduler

    base = fake_recipe("base")
    other = RunStore(tmp_path / "runs.sqlite")
    assert other.claim_run(base.key, 0, "smoke")
    timer = threading.Timer(0.4, lambda: RunStore(tmp_path / "runs.sqlite").put(fake_run(base, 0, "smoke"), base))
    timer.start()
    sched = Scheduler([], RunStore(tmp_path / "runs.sqlite"), LocalExecutor(0, run_fn=fake_run), "smoke",
                      progress=False, poll_s=0.05)
    sched.ensure_runs([Job(base, s, "smoke") for s in range(2)])
    timer.join()
    assert _calls(call_log) == {(base.key, 0): 1, (base.key, 1): 1}  # seed 0 trained by the other suite only
    assert (base.key, 0) in sched.results and (base.key, 0) not in sched.trained


def test_real_judge_supports_a_large_effect_and_not_an_a_a_comparison(tmp_path, call_log):
    base = fake_recipe("base")
    big, same = fake_recipe("big", 0.05), fake_recipe("same", 0.0)
    claims = [_claim("big", big, base), _claim("aa", same, base)]
    decisions = _scheduler(tmp_path, claims).run()
    assert decisions["big"].verdict.value == "SUPPORTED" and decisions["big"].n == 3
    # the first look's level (Wang-Tsiatis 0.25 at α/2, about 0.0013) is already cleared by a five-point gain
    assert decisions["aa"].verdict.value != "SUPPORTED"


def test_the_pilot_judges_a_against_itself_and_runs_once_per_store(tmp_path, call_log):
    from claims.schedule import pilot

    base = fake_recipe("base", jitter=0.01)
    store = RunStore(tmp_path / "runs.sqlite")
    ex = LocalExecutor(0, run_fn=fake_run)
    p = pilot(base, store, ex, "smoke", n=5)
    assert p.seeds_a == [0, 1, 2, 3, 4] and p.seeds_b == [1000, 1001, 1002, 1003, 1004]
    assert not p.aa_supported
    assert p.deterministic is True and p.repeat_acc == p.acc_a[0]
    assert p.sigma > 0 and p.sigma_d > 0 and p.lower < p.mean_d < p.upper
    assert sum(_calls(call_log).values()) == 11  # 10 runs + the determinism repeat
    again = pilot(base, store, ex, "smoke", n=5)
    assert again == p and sum(_calls(call_log).values()) == 11
    assert store.count("smoke") == 10  # the repeat is compared, not stored


def _profiles_trained(log: Path, recipe) -> set[str]:
    """The profiles under which the fake run function trained `recipe` (the log's third field)."""
    if not log.exists():
        return set()
    return {line.split()[2] for line in log.read_text().splitlines() if line.split()[0] == recipe.key}


def test_a_paper_only_claim_under_a_scaled_profile_gets_no_runs_and_a_final_inconclusive(tmp_path, call_log):
    base, paper_arm, arm = fake_recipe("base"), fake_recipe("published", 0.14), fake_recipe("arm", 0.05)
    claims = [_claim("paper", paper_arm, base, paper_only=True), _claim("plain", arm, base)]
    judge = ScriptedJudge({"plain": 3}, underpowered=frozenset({"paper"}))
    decisions = _scheduler(tmp_path, claims, judge=judge, sigma_d_pilot=0.01).run()
    d = decisions["paper"]
    assert d.verdict.value == "INCONCLUSIVE" and d.final and d.n == 0
    assert "smoke profile" in d.reason and "no run was made" in d.reason
    assert not any(cid == "paper" for cid, _, _ in judge.calls)  # decided before the judge or the pilot prediction
    calls = _calls(call_log)
    assert not any(k == paper_arm.key for k, _ in calls)
    assert sorted(s for k, s in calls if k == base.key) == [0, 1, 2]  # the plain claim still runs its baseline
    assert decisions["plain"].verdict.value == "SUPPORTED"


def test_a_paper_only_claim_is_run_and_judged_under_the_paper_profile(tmp_path, call_log):
    base, paper_arm = fake_recipe("base"), fake_recipe("published", 0.05)
    judge = ScriptedJudge({"paper": 3})
    decisions = _scheduler(tmp_path, [_claim("paper", paper_arm, base, paper_only=True)], profile="paper",
                           judge=judge).run()
    assert decisions["paper"].verdict.value == "SUPPORTED" and decisions["paper"].n == 3
    assert judge.calls == [("paper", 3, False)]
    assert sorted(s for k, s in _calls(call_log) if k == paper_arm.key) == [0, 1, 2]
    assert _profiles_trained(call_log, paper_arm) == {"paper"}


def test_a_heavy_arm_under_a_scaled_profile_is_run_only_on_a_gpu(tmp_path, call_log):
    from dataclasses import replace

    base, heavy = fake_recipe("base"), replace(fake_recipe("resnet9-like", 0.05), heavy=True)
    cpu = _scheduler(tmp_path, [_claim("heavy", heavy, base)], judge=ScriptedJudge({"heavy": 3})).run()
    assert cpu["heavy"].verdict.value == "INCONCLUSIVE" and cpu["heavy"].final and cpu["heavy"].n == 0
    assert cpu["heavy"].reason.startswith("needs a GPU under the smoke profile")
    assert not call_log.exists()
    gpu = _scheduler(tmp_path, [_claim("heavy", heavy, base)], judge=ScriptedJudge({"heavy": 3}),
                     device_has_gpu=True).run()
    assert gpu["heavy"].verdict.value == "SUPPORTED" and sum(1 for k, _ in _calls(call_log) if k == heavy.key) == 3


def test_off_a_terminal_progress_is_plain_lines_a_round_start_tenths_and_end(tmp_path, call_log):
    import io

    from rich.console import Console

    buf = io.StringIO()
    base, trick = fake_recipe("base"), fake_recipe("trick", 0.08)
    sched = _scheduler(tmp_path, [_claim("C0", trick, base)], progress=True,
                       console=Console(file=buf, force_terminal=False, width=200),
                       judge=ScriptedJudge({"C0": 3}))
    sched.run()
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("[claims]")]
    assert lines, buf.getvalue()
    assert "6 run(s) to train" in lines[0]
    assert "6/6 run(s) in " in lines[-1] and "failed" not in lines[-1]
    middle = lines[1:-1]
    assert middle and all("/6 run(s)," in ln for ln in middle)
    assert len(middle) == len(set(middle)) <= 9  # at most one line a tenth, none repeated


def test_a_failed_run_says_why_at_once_in_one_line_off_and_on_a_terminal():
    """A paper round runs for hours: its log names a failed run and its error when it fails, not only at the end."""
    import io

    from rich.console import Console

    from claims.progress import RoundProgress

    why = "run of he2016/naive with seed 2 (paper) failed: RuntimeError: boom\n  at line 3"
    for terminal in (False, True):
        buf = io.StringIO()
        with RoundProgress(True, 40, "round 1", Console(file=buf, force_terminal=terminal, width=300), 2) as bar:
            bar.advance(1, failed=True, why=why)
            shown = buf.getvalue()
        assert "[claims] round 1: run of he2016/naive with seed 2 (paper) failed: RuntimeError: boom at line 3" \
            in shown, (terminal, shown)


def test_a_claim_is_judged_on_its_paired_noise_not_the_unpaired_a_a_pilot(tmp_path, call_log):
    # the fake runs share a 2 pp per-seed shift across recipes, as real paired runs share data order and subset: the
    # A/A pilot on disjoint seeds sees that shift (σ_d ≈ 2.8 pp), the claim's arms on shared seeds do not (≈ 0.4 pp)
    from claims.schedule import pilot

    base, twin = fake_recipe("base"), fake_recipe("twin")
    store = RunStore(tmp_path / "runs.sqlite")
    aa = pilot(base, store, LocalExecutor(0, run_fn=fake_run), "smoke", 5)
    assert aa.sigma_d > 1.5  # pp: unpaired, what stopped C001-10 before any run
    claim = _claim("same", twin, base, form="EQUIVALENCE")
    sched = _scheduler(tmp_path, [claim], sigma_d_pilot=aa.sigma_d / 100)
    d = sched.run()["same"]
    assert d.verdict.value == "SUPPORTED" and d.n >= 3  # judged on its own runs
    assert any(k == twin.key for k, _ in _calls(call_log))


def test_a_claim_with_gpu_runs_brought_back_trains_its_cpu_arms_here_under_paper(tmp_path, call_log):
    """A cross claim pairs doc 004's ResNet9 (GPU-sized) with a CPU arm: once the GPU arm's runs are in the store
    (trained on a GPU, restored from the record), a CPU session trains the CPU arm and judges the claim, as
    `claims.answers` counts it waiting for those runs; it does not call it "needs a GPU"."""
    from dataclasses import replace

    gpu_arm = replace(fake_recipe("resnet9-like", 0.05), heavy=True)
    cpu_arm, other = fake_recipe("cpu-arm"), fake_recipe("other", 0.01)
    assert gpu_arm.gpu_sized and not cpu_arm.gpu_sized
    _scheduler(tmp_path, [_claim("on-gpu", gpu_arm, other)], profile="paper", judge=ScriptedJudge({}), max_seeds=8,
               device_has_gpu=True).run()  # the GPU session: all 8 seeds of the GPU arm (the paper cap)
    assert sorted(s for k, s in _calls(call_log) if k == gpu_arm.key) == list(range(8)), _calls(call_log)
    call_log.unlink()
    d = _scheduler(tmp_path, [_claim("mixed", gpu_arm, cpu_arm)], profile="paper", max_seeds=8,
                   judge=ScriptedJudge({"mixed": 3})).run()["mixed"]
    assert d.verdict.value == "SUPPORTED" and d.n == 3, d.reason
    calls = _calls(call_log)
    assert sorted(s for k, s in calls if k == cpu_arm.key) == [0, 1, 2] and gpu_arm.key not in {k for k, _ in calls}
