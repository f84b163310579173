"""User arms (claims/compare.py): the user's own Learner as a claim's arm, seeded, stored and judged by the suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from claims.arm import ArmError, ArmVersions, LearnerArm, arm_version, build, run_arm
from claims.compare import compare, judge_claims
from claims.executors import LocalExecutor
from claims.spec import Claim, Verdict
from claims.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))  # workers import the factories as own_learner:...
from own_learner import BatchLog, Noop  # noqa: E402

BASE = LearnerArm("own_learner:make_learner", epochs=1, lr=1e-2)


# ---------------------------------------------------------------------------------------------- the arm


def test_registry_names_are_checked_when_the_arm_is_declared():
    arm = BASE.with_tricks("dropout_conv:p=0.3")
    assert arm.tricks[0].spec == "dropout_conv:p=0.3" and arm.name == "make_learner+dropout_conv"
    with pytest.raises(ValueError, match="unknown trick 'BnFreez'; did you mean BnFreeze"):
        BASE.with_tricks("BnFreez")
    with pytest.raises(ArmError, match="not an import path of the form module.path:function"):
        LearnerArm("own_learner.make_learner")


def test_the_key_holds_what_training_computes_and_not_the_name():
    assert LearnerArm("own_learner:make_learner", epochs=1, lr=1e-2, name="x").key == BASE.key
    for other in (BASE.with_tricks("bn_before_relu"), LearnerArm("own_learner:make_learner", epochs=2, lr=1e-2),
                  LearnerArm("own_learner:make_learner", epochs=1, lr=2e-2), BASE.with_tricks(Noop()),
                  LearnerArm("own_learner:make_learner", epochs=1, lr=1e-2, metric="own_learner:valid_accuracy")):
        assert other.key != BASE.key


def test_the_version_changes_with_the_data_and_is_the_one_the_run_reports():
    assert arm_version(BASE) == arm_version(BASE.with_tricks("bn_before_relu"))  # same factory, same data
    other = LearnerArm("own_learner:make_other_data", epochs=1, lr=1e-2)
    assert arm_version(other).split("+")[1] != arm_version(BASE).split("+")[1]
    named = {v: arm_version(LearnerArm("own_learner:make_learner", data=v)) for v in ("v1", "v2")}
    assert len({named["v1"], named["v2"], arm_version(BASE)}) == 3  # a declared data version replaces the digest
    res = run_arm(BASE, 0)
    assert res.code_version == arm_version(BASE) and res.recipe_key == BASE.key and res.profile == "own"


def test_a_user_arms_run_trims_the_heap_like_a_recipes_run(monkeypatch):
    import tricks.train as train

    calls = []
    monkeypatch.setattr(train, "trim_heap", lambda: calls.append(1) or True)
    run_arm(BASE, 0)
    assert calls  # at least at the end of the fit


def test_a_claim_takes_user_arms_and_its_key_is_stable():
    c = Claim(id="u", source="me", quote="q", form="superiority", a=BASE.with_tricks("bn_before_relu"), b=BASE)
    assert c.key == Claim(id="u", source="me", quote="q", form="superiority", a=BASE.with_tricks("bn_before_relu"),
                          b=BASE).key
    assert [r.key for r in c.recipes()] == [c.a.key, BASE.key]


def test_both_arms_of_a_seed_share_data_order_and_the_initial_weights_of_shared_layers():
    a = BASE.with_tricks(BatchLog())
    b = BASE.with_tricks(BatchLog(), "bn_before_relu")  # B has an extra BatchNorm layer after the conv
    learners = {name: build(arm, 7) for name, arm in (("a", a), ("b", b))}
    conv_a, conv_b = learners["a"].model[0], learners["b"].model[0]
    assert torch.equal(conv_a.weight, conv_b.weight) and torch.equal(conv_a.bias, conv_b.bias)
    assert torch.equal(learners["a"].model[-1].weight, learners["b"].model[-1].weight)
    assert isinstance(learners["b"].model[1], torch.nn.BatchNorm2d)
    seen = {}
    for name, learn in learners.items():
        learn.fit(1, 1e-3)
        seen[name] = next(cb for cb in learn.cbs if isinstance(cb, BatchLog)).seen
    assert seen["a"] == seen["b"] and len(seen["a"]) == 8
    other = build(a, 8)
    other.fit(1, 1e-3)
    assert next(cb for cb in other.cbs if isinstance(cb, BatchLog)).seen != seen["a"]  # the seed does matter
    assert not torch.equal(other.model[0].weight, conv_a.weight)


def test_a_run_reads_the_recorded_metric_a_metric_function_and_a_user_fit_function():
    res = run_arm(BASE, 1)
    assert len(res.acc_per_epoch) == 1 and res.acc == res.acc_per_epoch[-1] and 0 <= res.acc <= 1
    assert res.params_used == sum(p.numel() for p in build(BASE, 1).model.parameters())
    custom = LearnerArm("own_learner:make_learner", epochs=1, lr=1e-2, fit="own_learner:constant_fit",
                        metric="own_learner:valid_accuracy")
    res2 = run_arm(custom, 1)
    assert 0 <= res2.acc <= 1 and res2.acc_per_epoch == [res2.acc]
    with pytest.raises(ArmError, match="records no metric 'f1' \\(it records: accuracy\\)"):
        run_arm(LearnerArm("own_learner:make_learner", metric="f1"), 0)


@pytest.mark.parametrize("factory, message", [
    ("own_learner:nothing_here", "module own_learner has no function nothing_here"),
    ("no_such_module_xyz:make", "module no_such_module_xyz cannot be imported"),
    ("own_learner:not_a_learner", "returned Linear, not a fastai Learner"),
])
def test_a_bad_factory_is_one_sentence(factory, message):
    with pytest.raises(ArmError, match=message):
        build(LearnerArm(factory), 0)


# ---------------------------------------------------------------------------------------------- compare


def test_a_no_op_trick_gives_zero_on_every_seed_and_never_supported_superiority(tmp_path):
    store = tmp_path / "runs.sqlite"
    a = BASE.with_tricks(Noop())
    claim = Claim(id="noop", source="test", quote="a no-op helps", form="superiority", a=a, b=BASE, looks=(3,))
    sched = judge_claims([claim], store=store)
    d = sched.decisions["noop"]
    runs = sched.results_for("noop")
    diffs = [runs[a.key][s].acc - runs[BASE.key][s].acc for s in range(3)]
    assert diffs == [0.0, 0.0, 0.0] and d.mean == 0.0
    assert d.verdict is not Verdict.SUPPORTED
    eq = compare(a, BASE, form="equivalent", margin=0.01, looks=(3,), store=store,
                 executor=_Counting(LocalExecutor(0, run_fn=_run)))  # the same runs, from the store
    assert eq.verdict is Verdict.SUPPORTED and eq.n == 3 and _Counting.trained == 0
    assert [(r["seed"], r["d"]) for r in eq.per_seed] == [(0, 0.0), (1, 0.0), (2, 0.0)]


def test_a_learning_rate_100x_too_high_is_not_supported_and_its_mean_difference_is_negative(tmp_path):
    base = LearnerArm("own_learner:make_sgd_learner", epochs=2, lr=0.1)
    high = LearnerArm("own_learner:make_sgd_learner", epochs=2, lr=10.0, name="lr x100")
    d = compare(high, base, form="superior", margin=0.01, looks=(3,), store=tmp_path / "runs.sqlite")
    assert d.verdict is not Verdict.SUPPORTED and d.mean < 0
    assert d.verdict is Verdict.REFUTED, d.reason


def _run(recipe, seed, profile, **kw):
    from claims.compare import run_job

    return run_job(recipe, seed, profile, **kw)


class _Counting:
    """An executor that counts the runs it trains and can stop (as Ctrl-C would) after `stop_after` of them."""

    trained = 0

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after, self.workers = inner, stop_after, 1
        _Counting.trained = 0

    def map_runs(self, jobs, on_done):
        def done(job, out):
            on_done(job, out)
            _Counting.trained += 1
            if self.stop_after is not None and _Counting.trained >= self.stop_after:
                raise KeyboardInterrupt

        self.inner.map_runs(jobs, done)


def test_an_interrupted_comparison_resumes_from_the_store_without_retraining_finished_runs(tmp_path):
    store = tmp_path / "runs.sqlite"
    a = BASE.with_tricks("bn_before_relu")
    with pytest.raises(KeyboardInterrupt):
        compare(a, BASE, form="noninferior", margin=0.05, looks=(3,), store=store,
                executor=_Counting(LocalExecutor(0, run_fn=_run), stop_after=4))
    assert RunStore(store).count() == 4 and not RunStore(store).leases()
    d = compare(a, BASE, form="noninferior", margin=0.05, looks=(3,), store=store,
                executor=_Counting(LocalExecutor(0, run_fn=_run)))
    assert _Counting.trained == 2 and RunStore(store).count() == 6 and d.n == 3
    again = compare(a, BASE, form="noninferior", margin=0.05, looks=(3,), store=store,
                    executor=_Counting(LocalExecutor(0, run_fn=_run)))
    assert _Counting.trained == 0 and (again.verdict, again.mean) == (d.verdict, d.mean)


@pytest.mark.slow  # two worker processes start (about 15 s each on a loaded 2-core machine)
def test_worker_processes_train_user_arms_to_the_same_numbers(tmp_path):
    claim = Claim(id="w", source="test", quote="q", form="superiority", a=BASE.with_tricks("bn_before_relu"), b=BASE,
                  looks=(2,))
    local = judge_claims([claim], store=tmp_path / "a.sqlite", workers=0).results_for("w")
    pooled = judge_claims([claim], store=tmp_path / "b.sqlite", workers=2).results_for("w")
    assert {k: {s: r.acc for s, r in v.items()} for k, v in pooled.items()} == \
        {k: {s: r.acc for s, r in v.items()} for k, v in local.items()}


def test_arm_versions_fall_back_to_the_recipes_versions():
    v = ArmVersions({"k": "src.1+data.2"}, fallback=lambda key: f"fp.{key}")
    assert v("k") == "src.1+data.2" and v("r") == "fp.r"


# ---------------------------------------------------------------------------------------------- command line


def test_the_command_line_compares_the_users_learner_and_reuses_the_store(tmp_path, capsys):
    from tricks.apply import main

    argv = ["--learner", "own_learner:make_learner", "--cb", "bn_before_relu", "--compare", "--seeds", "2",
            "--lr", "0.01", "--store", str(tmp_path / "runs.sqlite"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "A: make_learner+bn_before_relu | B: make_learner | A − B" in out and "4 run(s) trained" in out
    assert "verdict " in out and "n = 2" in out
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "0 run(s) trained, 4 from the store" in again
    assert again.splitlines()[-1] == out.splitlines()[-1]  # the same verdict line


@pytest.mark.parametrize("extra, message", [
    (["--learner", "own_learner:nope"], "factory 'own_learner:nope': module own_learner has no function nope"),
    (["--learner", "own_learner.nope"], "is not an import path of the form module.path:function"),
    (["--learner", "own_learner:not_a_learner"], "returned Linear, not a fastai Learner"),
    (["--learner", "own_learner:make_learner", "--recipe", "pal2021b/baseline"], "--recipe does not apply"),
])
def test_a_bad_learner_on_the_command_line_is_one_sentence_and_exit_2(extra, message, tmp_path, capsys):
    from tricks.apply import main

    assert main([*extra, "--cb", "BnFreeze", "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.ray
@pytest.mark.slow  # starts a local Ray instance
def test_ray_tasks_train_user_arms_to_the_same_numbers_as_this_process(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (the optional extra: pip install -e '.[ray]')")
    from claims.compare import run_job
    from claims.executors.ray import RayExecutor

    root = Path(__file__).resolve().parents[1]
    # Ray's workers get the environment of ray.init: they import claims from here and the factory from tests/
    monkeypatch.setenv("PYTHONPATH", f"{Path(__file__).parent}:{root}")
    claim = Claim(id="r", source="test", quote="q", form="superiority", a=BASE.with_tricks("bn_before_relu"), b=BASE,
                  looks=(2,))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = judge_claims([claim], store=tmp_path / "ray.sqlite", executor=RayExecutor(run_fn=run_job))
    finally:
        ray.shutdown()
    local = judge_claims([claim], store=tmp_path / "local.sqlite", workers=0)
    accs = [{k: {s: r.acc for s, r in v.items()} for k, v in sched.results_for("r").items()}
            for sched in (remote, local)]
    assert accs[0] == accs[1] and len(accs[0][BASE.key]) == 2
    assert not remote.failures and len(remote.trained) == 4
