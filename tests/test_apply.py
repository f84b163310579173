"""The command line `python -m tricks.apply`: options, errors, JSON, the shared run store, --compare, Ctrl-C.

Commands that train run as subprocesses on a tiny synthetic class-folder source with a tiny recipe read from a JSON
file (`--recipe FILE.json`), the smoke profile and one epoch, so each takes seconds. Error paths that stop before any
training run in-process through `main()` (same code, no interpreter start-up); a few also run as subprocesses to pin
down the whole path: exit code 2, one line on stderr, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claims.compare import judge_comparison, verdict_text
from claims.store import RunStore
from tricks.apply import main
from tricks.apply_output import Outcome, decision_dict
from tricks.apply_plan import Plan, apply_tricks, load_recipe, rescale_epochs
from tricks.recipe import Phase, Recipe, RunResult, TrickUse, kw, run_version
from tricks.registry import TrickError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
VERDICTS = {"SUPPORTED", "REFUTED", "INCONCLUSIVE", "INVALID"}

# the smallest model a recipe can name: the models engineer's tiny CNN when it exists, else doc 003's linear net
TINY = Recipe(model="tiny_cnn", opt="sgd", opt_kwargs=kw(mom=0.9, wd=0.0), phases=(Phase("constant", 2, 0.05),),
              bs=32, name="test/tiny")


# ------------------------------------------------------------------------------------------------ fixtures


def needs_registry() -> None:
    """Skip until the modules whose import fills the trick registry exist."""
    for mod in ("tricks.callbacks", "tricks.transforms"):
        pytest.importorskip(mod, reason=f"{mod.replace('.', '/')}.py has not landed yet")


def _write_source(root: Path, n_train: int, n_test: int) -> Path:
    """A class-folder PNG source, 10 classes of 32x32 images whose colour depends on the class (learnable)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (32, 32, 3)) + np.array([25 * c, 250 - 25 * c, 120])
                Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _write_source(tmp_path_factory.mktemp("cifar_tiny"), n_train=12, n_test=6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny recipe as a JSON file, the test-only way in through `--recipe FILE.json`."""
    needs_registry()
    pytest.importorskip("tricks.cifar", reason="tricks/cifar.py has not landed yet")
    models = pytest.importorskip("tricks.models", reason="tricks/models.py has not landed yet")
    recipe = TINY if "tiny_cnn" in getattr(models, "MODELS", {}) else replace(TINY, model="simple_net", loss="nll")
    path = tmp_path_factory.mktemp("recipe") / "tiny.json"
    path.write_text(json.dumps(recipe.to_dict()))
    return path


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The subprocess environment: one thread, caches and the default store under tmp_path, no user data source."""
    e = {k: v for k, v in os.environ.items() if k not in ("TRICKS_DATA", "TRICKS_STORE")}
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"),
             TRICKS_STORE=str(tmp_path / "default_store.sqlite"), PYTHONPATH=str(ROOT), COLUMNS="160")
    return e


def cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m tricks.apply ARGS` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "tricks.apply", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tiny_args(tiny: Path, source: Path, store: Path, *more: str) -> list[str]:
    return ["--recipe", str(tiny), "--data", str(source), "--profile", "smoke", "--epochs", "1", "--store", str(store),
            *more]


def assert_one_line_error(res_or_err, expected: str) -> None:
    """Exit code 2 (when given a process), one line on stderr containing `expected`, no traceback."""
    err = res_or_err.stderr if hasattr(res_or_err, "stderr") else res_or_err
    if hasattr(res_or_err, "returncode"):
        assert res_or_err.returncode == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err


# ------------------------------------------------------------------------------------------------ --list


def test_list_shows_every_trick_and_named_recipe(env):
    needs_registry()
    from tricks.catalog import all_tricks
    from tricks.recipes import RECIPES

    res = cli("--list", env=env)
    assert res.returncode == 0, res.stderr
    assert "BnFreeze" in res.stdout and "pal2021b/baseline" in res.stdout
    for t in all_tricks():
        assert t.name in res.stdout
    for name in RECIPES:
        assert name in res.stdout
    assert {"callback", "transform"} <= {t.kind for t in all_tricks()}  # every kind the registry knows is listed


# ------------------------------------------------------------------------------------------------ errors


def test_list_gives_each_scaled_recipe_its_own_parameter_count_and_settings():
    """`--list` used to describe jovian/base_cnn@w8 with the full CNN's 5,851,338 parameters (it has 367,290)."""
    needs_registry()
    import io

    from rich.console import Console

    from tricks.apply_output import print_list
    from tricks.listing import recipe_params
    from tricks.recipes import RECIPES

    buf = io.StringIO()
    print_list(Console(file=buf, width=400))
    rows = {line.split("│")[1].strip(): line for line in buf.getvalue().splitlines() if line.count("│") >= 3}
    scaled = {n: r for n, r in RECIPES.items() if r.scaled}
    assert {"jovian/base_cnn@w8", "he2016/kmeans@k400", "jovian/resnet9@w16"} <= set(scaled)
    for name, r in scaled.items():
        own, full = recipe_params(r), RECIPES[name.rsplit("@", 1)[0]]
        assert f"{own:,} parameters" in rows[name] and r.scaled in rows[name], rows[name]
        assert full.description not in rows[name]  # no full-size numbers (6,400-d, 1,600 centroids, 5,851,338)
    assert recipe_params(RECIPES["jovian/base_cnn@w8"]) < recipe_params(RECIPES["jovian/base_cnn"]) / 10


def test_an_unknown_trick_exits_2_with_the_registrys_suggestion(env):
    needs_registry()
    res = cli("--cb", "BnFreez", env=env)
    assert_one_line_error(res, "unknown trick 'BnFreez'; did you mean BnFreeze")


def test_missing_data_exits_2_naming_the_path(env, tiny, tmp_path):
    missing = tmp_path / "no_such_folder"
    res = cli(*tiny_args(tiny, missing, tmp_path / "s.sqlite"), env=env)
    assert_one_line_error(res, str(missing))


def test_a_bad_option_value_exits_2_in_one_line(env):
    res = cli("--epochs", "zero", env=env)
    assert_one_line_error(res, "--epochs")


@pytest.mark.parametrize("argv, expected", [
    (["--recipe", "pal2021b/baselin"], "unknown recipe 'pal2021b/baselin'; did you mean pal2021b/baseline"),
    (["--cb", "dropout_conv:p"], "'p' is not of the form key=value"),
    (["--cb", "dropout_conv:q=0.3"], "has no parameter 'q'"),
    (["--cb", "dropout_conv:p=lots"], "dropout_conv:p=lots is malformed"),
    (["--cb", "dropout_conv:p=2"], "option dropout_conv:p=2 is out of range: p takes a value in (0, 1)"),
    (["--cb", "BnFreeze", "--cb", "BnFreeze"], "trick 'BnFreeze' is given twice"),
    (["--epochs", "0"], "argument --epochs: '0' is not a positive number of epochs"),
    (["--bs", "-4"], "argument --bs"),
    (["--lr", "nan"], "argument --lr"),
    (["--threads", "0"], "argument --threads"),
    (["--seed", "-1"], "argument --seed"),
    (["--seeds", "0"], "argument --seeds"),
    (["--seed", "1", "--seeds", "2"], "not allowed with argument"),
    (["--store", "x.sqlite", "--no-store"], "not allowed with argument"),
    (["--profile", "fast"], "argument --profile: invalid choice"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--delta", "0.02"], "--delta only applies with --compare"),
    (["--compare", "--cb", "BnFreeze", "--delta", "100"], "--delta 100 must be below 100: it is in percentage points"),
    (["--compare", "--cb", "BnFreeze", "--delta", "0.01"], "--delta 0.01 is in percentage points and below 0.1 pp"),
    (["--compare"], "--compare needs at least one --cb trick"),
    (["--compare", "--cb", "BnFreeze", "--seed", "3"], "--compare needs at least 2 paired seeds"),
    (["--json", "/no/such/folder/out.json"], "folder /no/such/folder does not exist"),
    (["--device", "toaster"], "--device toaster is not a torch device"),
    (["--recipe", "missing.json"], "cannot read recipe file missing.json"),
])
def test_usage_errors_exit_2_with_one_sentence(argv, expected, capsys, monkeypatch, tmp_path):
    needs_registry()
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, expected)


def test_a_corrupt_recipe_file_or_store_exits_2(capsys, tmp_path):
    pytest.importorskip("tricks.models", reason="tricks/models.py has not landed yet")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "tf_cnn", "phases": [{"lr": 0.1}]}')
    assert main(["--recipe", str(bad)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"recipe file {bad} does not hold a Recipe")
    unknown = tmp_path / "unknown_model.json"
    unknown.write_text(json.dumps(replace(TINY, model="tiny_cnm").to_dict()))
    assert main(["--recipe", str(unknown)]) == 2
    assert_one_line_error(capsys.readouterr().err, "unknown model 'tiny_cnm'")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["--store", str(folder), "--recipe", "pal2021b/baseline"]) == 2
    assert_one_line_error(capsys.readouterr().err, f"run store {folder} is a folder")


def test_a_full_cache_disk_exits_2_in_one_sentence(tiny, tmp_path, capsys, monkeypatch):
    import torch

    fresh = _write_source(tmp_path / "src", n_train=2, n_test=1)  # not yet in this process's memo
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    store = tmp_path / "s.sqlite"
    assert main(tiny_args(tiny, fresh, store)) == 2
    assert_one_line_error(capsys.readouterr().err, f"the cache folder {tmp_path / 'cache'} is full")


def test_a_store_of_another_program_exits_2_and_is_left_untouched(tiny, source, tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO runs VALUES (1, 'x');")
    con.close()
    before = other.read_bytes()
    assert main(tiny_args(tiny, source, other)) == 2
    assert_one_line_error(capsys.readouterr().err, f"run store {other} is another program's SQLite database")
    assert other.read_bytes() == before


def test_corrupt_data_exits_2_with_the_data_modules_message(tiny, tmp_path, capsys):
    broken = _write_source(tmp_path / "src", n_train=2, n_test=1)
    (broken / "train" / "cat" / "0.png").write_bytes(b"not a png at all")
    assert main(tiny_args(tiny, broken, tmp_path / "s.sqlite")) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "error: ")
    assert str(broken) in err or "0.png" in err


# ------------------------------------------------------------------------------------------------ recipes


def test_the_registrys_kind_routes_a_trick_to_callbacks_or_transforms():
    needs_registry()
    base = load_recipe("pal2021b/baseline")
    r = apply_tricks(base, ["BnFreeze", "dropout_conv:p=0.3"])
    assert r.callbacks == base.callbacks + (TrickUse("BnFreeze"),)
    assert r.transforms == base.transforms + (TrickUse("dropout_conv", kw(p=0.3)),)
    assert r.name == "pal2021b/baseline+BnFreeze+dropout_conv:p=0.3"
    assert apply_tricks(base, []) == base and apply_tricks(base, []).name == base.name


def test_a_trick_applied_here_gives_the_claims_suites_recipe_key():
    """`--cb bn_before_relu` on doc 001's baseline is the suite's pal2021b/bn_before_relu: the runs are shared."""
    needs_registry()
    mine = apply_tricks(load_recipe("pal2021b/baseline"), ["bn_before_relu"])
    assert mine.key == load_recipe("pal2021b/bn_before_relu").key


def test_a_callbacks_own_argument_check_is_a_usage_error():
    needs_registry()
    with pytest.raises(TrickError, match=r"option ClipGradValue:clip=-1 is out of range: clip takes a value in \("):
        apply_tricks(load_recipe("pal2021b/baseline"), ["ClipGradValue:clip=-1"])


phases = st.lists(st.builds(Phase, st.sampled_from(["constant", "one_cycle", "sgdr"]), st.integers(1, 30),
                            st.sampled_from([1e-3, 1e-2, 0.1])), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(phases=phases, n=st.integers(1, 60))
def test_epochs_rescale_to_n_in_all_keeping_phase_order_and_shares(phases, n):
    tagged = tuple(replace(p, params=kw(tag=i)) for i, p in enumerate(phases))  # tell equal phases apart
    r = Recipe(model="tf_cnn", phases=tagged)
    out = rescale_epochs(r, n)
    assert out.epochs == n
    tags = [dict(p.params)["tag"] for p in out.phases]
    assert tags == sorted(tags)  # the kept phases in their order, unchanged but for their length
    for p in out.phases:
        q = r.phases[dict(p.params)["tag"]]
        assert replace(q, epochs=p.epochs) == p
        assert abs(p.epochs - q.epochs * n / r.epochs) < 1  # within one epoch of its exact share
    for i, q in enumerate(r.phases):
        if q.epochs * n / r.epochs >= 1:
            assert i in tags  # a phase whose exact share reaches one epoch is never dropped
    assert rescale_epochs(r, r.epochs) == r


def test_epochs_rescale_a_published_two_phase_schedule():
    r = load_recipe("fastai2018/conv_net")  # 2 constant + 4 sgdr epochs
    assert [p.epochs for p in rescale_epochs(r, 3).phases] == [1, 2]
    assert [p.epochs for p in rescale_epochs(r, 12).phases] == [4, 8]
    assert [(p.schedule, p.epochs) for p in rescale_epochs(r, 1).phases] == [("sgdr", 1)]


def _result(recipe: Recipe, seed: int, acc: float) -> RunResult:
    return RunResult(recipe_key=recipe.key, recipe_name=recipe.name, seed=seed, profile="smoke", code_version="test",
                     acc=acc, loss=1 - acc, acc_per_epoch=[acc], loss_per_epoch=[1 - acc], train_loss_per_epoch=[1.0],
                     params_used=1000, wall_s=1.0, img_per_s=100.0, device="cpu:test", threads=1, versions={},
                     dataset="synthetic (sha256 0)")


def test_compare_asks_the_engine_about_superiority_by_delta_over_the_paired_seeds():
    pytest.importorskip("claims.spec", reason="claims/spec.py has not landed yet")
    base = load_recipe("pal2021b/baseline")
    plan = Plan(replace(base, bs=128, name="with"), base, (0, 1, 2), "smoke", 1.0)
    gains = {0: 0.050, 1: 0.060, 2: 0.055}  # five to six points on every seed: clearly above Δ = 1 point
    outcomes = [Outcome(arm, r, _result(r, s, 0.5 + (gains[s] if arm == "trick" else 0.0) + 0.01 * s), False)
                for s in plan.seeds for arm, r in (("trick", plan.recipe), ("baseline", base))]
    d = judge_comparison(plan, outcomes)
    out = decision_dict(plan, d)
    assert out["verdict"] == "SUPPORTED" and out["n"] == 3 and out["delta_pp"] == 1.0
    assert out["mean_pp"] == pytest.approx(5.5) and out["lower_pp"] > 0
    assert out["alpha_look"] == 0.025  # one look at 3 seeds, designed at α/2 (the skew guard)
    text = verdict_text(plan, d)
    assert "verdict SUPPORTED (smoke profile: checks the pipeline, not the claim): A − B = +5.50 pp" in text
    assert "Δ = 1 pp" in text
    assert "verdict SUPPORTED: A − B" in verdict_text(replace(plan, profile="default"), d)
    flat = [Outcome(o.arm, o.recipe, replace(o.result, acc=0.5 + 0.001 * o.result.seed * (o.arm == "trick")), False)
            for o in outcomes]  # no gain: the upper bound falls below Δ
    assert decision_dict(plan, judge_comparison(plan, flat))["verdict"] == "REFUTED"


# ------------------------------------------------------------------------------------------------ training


def test_a_run_prints_its_table_writes_json_and_is_cached_the_second_time(env, tiny, source, tmp_path):
    store, out = tmp_path / "runs.sqlite", tmp_path / "out.json"
    first = cli(*tiny_args(tiny, source, store, "--cb", "BnFreeze", "--no-baseline", "--json", str(out)), env=env)
    assert first.returncode == 0, first.stderr
    for word in ("accuracy", "loss", "wall", "img/s", "params", "seed", "smoke", "trained", "dataset"):
        assert word in first.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tricks.apply/2" and doc["schema_version"] == 2 and doc["units"]["*_pct"].startswith("acc")
    assert doc["status"] == "done" and doc["comparison"] is None
    assert doc["profile"] == "smoke" and doc["seeds"] == [0] and doc["baseline"] is None
    assert doc["options"]["cb"] == ["BnFreeze"] and doc["options"]["epochs"] == 1
    assert doc["recipe"]["callbacks"][-1]["name"] == "BnFreeze" and sum(
        p["epochs"] for p in doc["recipe"]["phases"]) == 1
    (run,) = doc["runs"]
    assert run["arm"] == "trick" and run["cached"] is False and run["seed"] == 0 and run["profile"] == "smoke"
    assert run["recipe_key"] == doc["recipe"]["key"]
    assert 0 <= run["acc_pct"] <= 100 and run["loss"] > 0 and run["wall_s"] > 0 and run["img_per_s"] > 0
    assert run["params_used"] > 0 and str(source) in run["dataset"] and len(run["acc_per_epoch_pct"]) == 1
    assert "acc" not in run and "acc_per_epoch" not in run  # one unit, named in the field

    second = cli(*tiny_args(tiny, source, store, "--cb", "BnFreeze", "--no-baseline", "--json", str(out)), env=env)
    assert second.returncode == 0, second.stderr
    assert "cached" in second.stdout and "cached" in second.stderr
    (again,) = json.loads(out.read_text())["runs"]
    assert again["cached"] is True and again["acc_pct"] == run["acc_pct"] and again["wall_s"] == run["wall_s"]


def test_options_reach_the_recipe_and_the_run(env, tiny, source, tmp_path):
    out = tmp_path / "out.json"
    res = cli("--recipe", str(tiny), "--data", str(source), "--profile", "smoke", "--epochs", "2", "--bs", "16",
              "--lr", "0.02", "--seeds", "2", "--threads", "1", "--device", "cpu", "--no-store", "--quiet",
              "--no-baseline", "--cb",
              "dropout_conv:p=0.3" if "tiny_cnn" in tiny.read_text() else "GradientClip:max_norm=0.5",
              "--json", str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # --quiet: no status lines, no progress
    doc = json.loads(out.read_text())
    r = doc["recipe"]
    assert r["bs"] == 16 and {p["lr"] for p in r["phases"]} == {0.02} and sum(p["epochs"] for p in r["phases"]) == 2
    assert r["transforms"] or r["callbacks"]
    assert [run["seed"] for run in doc["runs"]] == [0, 1]
    assert all(run["threads"] == 1 and run["device"].startswith("cpu") for run in doc["runs"])
    assert not Path(env["TRICKS_STORE"]).exists()  # --no-store: the default store is not even created


def test_runs_are_shared_with_the_claims_suites_store_both_ways(env, tiny, source, tmp_path):
    """A run trained here is in the store under the suite's key; a run the suite stored is taken from it here."""
    from tricks.cifar import load_cifar10

    store_path = tmp_path / "runs.sqlite"
    recipe = rescale_epochs(load_recipe(str(tiny)), 1)
    res = cli(*tiny_args(tiny, source, store_path, "--seed", "4"), env=env)
    assert res.returncode == 0, res.stderr
    store = RunStore(store_path)
    digest = load_cifar10(str(source)).digest
    mine = store.get(recipe.key, 4, "smoke", run_version(digest))  # the suite's key: code and dataset versions
    assert mine is not None and mine.seed == 4

    # a run "the suite" stored (seed 5, made-up numbers): the command line must show it, not train it
    theirs = replace(mine, seed=5, acc=0.4242, wall_s=123.0, dataset=f"suite copy (sha256 {digest[:12]})")
    store.put(theirs, recipe)
    out = tmp_path / "out.json"
    res = cli(*tiny_args(tiny, source, store_path, "--seed", "5", "--json", str(out)), env=env)
    assert res.returncode == 0, res.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["cached"] is True and run["acc_pct"] == pytest.approx(42.42) and "42.42" in res.stdout


def test_compare_trains_both_arms_on_paired_seeds_and_prints_the_verdict(env, tiny, source, tmp_path):
    out = tmp_path / "cmp.json"
    trick = "GradientClip:max_norm=0.5"
    res = cli(*tiny_args(tiny, source, tmp_path / "runs.sqlite", "--cb", trick, "--compare", "--seeds", "2",
                         "--delta", "5", "--json", str(out)), env=env)
    assert res.returncode in (0, 1), res.stderr  # 1 only if a tiny run diverged, which makes the verdict INVALID
    assert "verdict" in res.stdout
    doc = json.loads(out.read_text())
    cmp = doc["comparison"]
    assert cmp["verdict"] in VERDICTS and cmp["verdict"] in res.stdout
    assert cmp["delta_pp"] == 5 and cmp["n"] == 2 and cmp["form"] == "superiority"
    assert cmp["a"] == doc["recipe"]["key"] and cmp["b"] == doc["baseline"]["key"] != cmp["a"]
    arms = {(run["arm"], run["seed"]) for run in doc["runs"]}
    assert arms == {("trick", 0), ("trick", 1), ("baseline", 0), ("baseline", 1)}
    if cmp["verdict"] != "INVALID":
        a = {r["seed"]: r["acc_pct"] for r in doc["runs"] if r["arm"] == "trick"}
        b = {r["seed"]: r["acc_pct"] for r in doc["runs"] if r["arm"] == "baseline"}
        assert cmp["mean_pp"] == pytest.approx(sum(a[s] - b[s] for s in (0, 1)) / 2)
        assert cmp["lower_pp"] <= cmp["mean_pp"] <= cmp["upper_pp"]


def test_a_diverged_run_exits_1_and_is_kept_in_the_store_and_json(env, tiny, source, tmp_path):
    store, out = tmp_path / "runs.sqlite", tmp_path / "out.json"
    res = cli(*tiny_args(tiny, source, store, "--lr", "1e30", "--json", str(out)), env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "diverged" in res.stderr and "Traceback" not in res.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "diverged" and doc["runs"][0]["diverged"] is True and doc["runs"][0]["acc_pct"] is None
    recipe = load_recipe(str(tiny))
    recipe = replace(rescale_epochs(recipe, 1), phases=tuple(replace(p, lr=1e30) for p in rescale_epochs(recipe, 1)
                                                             .phases))
    from tricks.cifar import load_cifar10

    kept = RunStore(store).get(recipe.key, 0, "smoke", run_version(load_cifar10(str(source)).digest))
    assert kept is not None and kept.diverged


def test_ctrl_c_stops_cleanly_with_finished_runs_in_the_store(env, tiny, source, tmp_path):
    store, out = tmp_path / "runs.sqlite", tmp_path / "out.json"
    proc = subprocess.Popen([sys.executable, "-m", "tricks.apply", *tiny_args(tiny, source, store, "--seeds", "200",
                                                                            "--json", str(out))],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _stored(store) < 1:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert _stored(store) >= 1, "no run finished in time"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "interrupted" and 1 <= len(doc["runs"]) <= _stored(store) < 200


def _stored(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # the table is being created
        return 0


def test_progress_shows_epoch_batches_and_loss_on_a_terminal(env, tiny, source, tmp_path):
    """On a TTY, stderr carries a rich progress bar with the epoch and smoothed loss; the results go to stdout."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tricks.apply", *tiny_args(tiny, source, tmp_path / "s.sqlite")],
                            cwd=ROOT, env={**env, "TERM": "xterm"}, stdout=subprocess.PIPE, stderr=follower,
                            text=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "seed 0 epoch 1/1" in text and "loss " in text and "ETA" in text
    assert "accuracy" in stdout


# ------------------------------------------------------------------------------------------------ issue 14


def _plan(*argv: str) -> Plan:
    from tricks.apply import build_parser
    from tricks.apply_plan import make_plan

    return make_plan(build_parser().parse_args(list(argv)))


def test_the_readme_example_bnfreeze_runs_on_a_recipe_with_batchnorm_and_names_it():
    """`--cb BnFreeze` alone used to train doc 001's baseline, which has no BatchNorm: the trick did nothing."""
    needs_registry()
    from tricks.apply_plan import _bn_freeze_acts, model_of

    plan = _plan("--cb", "BnFreeze")
    assert _bn_freeze_acts(model_of(plan.recipe))
    assert plan.recipe.name.startswith("pal2021b/bn_before_relu+BnFreeze")  # doc 001's BN net under Adam 1e-3
    base_name = plan.recipe.name.split("+")[0]
    assert plan.note.startswith(f"recipe {base_name}: chosen for BnFreeze") and "--recipe" in plan.note
    assert not _bn_freeze_acts(model_of(load_recipe("pal2021b/baseline")))  # the old default: nothing to freeze


def test_every_tricks_default_recipe_is_one_the_trick_acts_on():
    needs_registry()
    from tricks.apply_plan import why_not_acting
    from tricks.catalog import all_tricks

    for t in all_tricks():
        plan = _plan("--cb", t.name)
        assert why_not_acting(plan.recipe) is None, (t.name, plan.recipe.name)
    bn = _plan("--cb", "bn_before_relu")  # a BN placement transform gets a network without BN
    assert bn.recipe.key == load_recipe("pal2021b/bn_before_relu").key
    assert _plan("--cb", "dropout_conv:p=0.3").recipe.name == "pal2021a/baseline+dropout_conv:p=0.3"
    assert _plan("--recipe", "pal2021b/baseline", "--cb", "BnFreeze").note == ""  # an explicit recipe is kept


def test_the_default_bnfreeze_plan_freezes_only_statistics_learned_first(tmp_path):
    """Frozen from the first step, BnFreeze froze a fresh model's initial statistics and the model collapsed."""
    needs_registry()
    from tricks.recipe import get_profile

    plan = _plan("--cb", "BnFreeze")
    base = load_recipe(plan.baseline.name)
    (use,) = [u for u in plan.recipe.callbacks if u.name == "BnFreeze"]
    assert dict(use.params)["start_epoch"] == base.epochs // 2 >= 1
    assert "the BN statistics are learned for the first 2 of 5 epochs under profile default" in plan.note
    assert plan.baseline.key == base.key and not plan.compare  # the same recipe without it, shown beside it
    explicit = _plan("--cb", "BnFreeze:start_epoch=0")  # what the user asked for is kept
    assert dict(explicit.recipe.callbacks[-1].params)["start_epoch"] == 0 and "learned" not in explicit.note
    assert _plan("--cb", "BnFreeze", "--no-baseline").baseline is None
    smoke = _plan("--cb", "BnFreeze", "--profile", "smoke")  # one epoch: nothing can be learned first, and it says so
    assert "so they are frozen from the first step, at their initial values" in smoke.note

    # the plan's callback as the default profile scales it, on a tiny Learner: no warning, statistics that moved in
    # the epochs before start_epoch and stayed put after
    import warnings

    import torch
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from torch import nn
    from torch.utils.data import TensorDataset

    from tricks.catalog import get_trick
    from tricks.registry import TrickWarning

    (scaled,) = [u for u in get_profile("default").scale(plan.recipe).callbacks if u.name == "BnFreeze"]
    start = dict(scaled.params)["start_epoch"]
    assert start == 2
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 3, 8, 8, generator=g), torch.randint(0, 4, (24,), generator=g)
    dls = DataLoaders(TfmdDL(TensorDataset(x[:16], y[:16]), bs=8, num_workers=0),
                      TfmdDL(TensorDataset(x[16:], y[16:]), bs=8, num_workers=0), device="cpu")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 4))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=tmp_path,
                    cbs=[get_trick(scaled.name).build(**dict(scaled.params))])
    learn.remove_cbs(learn.cbs.filter(lambda c: type(c).__name__ == "ProgressCallback"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrickWarning)
        learn.fit(start, 1e-2)
        learned = model[1].running_mean.clone()
        learn.fit(1, 1e-2)
    assert int(model[1].num_batches_tracked) == start * 2  # two batches an epoch, learned in the first `start`
    assert not torch.equal(learned, torch.zeros(4)) and torch.equal(model[1].running_mean, learned)


def test_a_trick_run_shows_the_same_recipe_without_it_on_the_same_seed(env, tiny, source, tmp_path):
    out = tmp_path / "out.json"
    res = cli(*tiny_args(tiny, source, tmp_path / "runs.sqlite", "--cb", "GradientClip:max_norm=0.5", "--json",
                         str(out)), env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert {(r["arm"], r["seed"]) for r in doc["runs"]} == {("trick", 0), ("baseline", 0)}
    assert doc["comparison"] is None and doc["baseline"]["key"] != doc["recipe"]["key"]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("with GradientClip:max_norm=0.5: "))
    assert "without: " in line and "A − B = " in line and "pp (seed 0)" in line and "no verdict" in line


def test_a_transform_with_nothing_to_act_on_is_refused_before_any_data_is_loaded(capsys, tmp_path):
    needs_registry()
    missing = tmp_path / "no_data_here"
    assert main(["--recipe", "he2016/naive", "--cb", "dropout_conv", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "dropout_conv cannot apply")
    assert str(missing) not in err  # the data was never looked at


def test_the_output_names_the_recipe_chosen_for_the_trick(env, source, tmp_path):
    """The default recipe reached through the command line, on a tiny synthetic source with one epoch."""
    needs_registry()
    res = cli("--cb", "BnFreeze", "--data", str(source), "--profile", "smoke", "--epochs", "1", "--bs", "32",
              "--no-store", env=env)
    assert res.returncode == 0, res.stderr
    assert "recipe pal2021b/bn_before_relu: chosen for BnFreeze" in res.stderr  # said before training
    assert "recipe pal2021b/bn_before_relu: chosen for BnFreeze" in res.stdout  # and kept with the results


def test_a_no_op_trick_compared_with_a_suite_run_gives_zero_on_every_seed(env, tiny, source, tmp_path):
    """The baseline's runs come from the store, trained with one thread as the suite trains; the command line,
    started where torch would take two threads, must train the other arm the same way: d = 0 on every seed."""
    store, out = tmp_path / "runs.sqlite", tmp_path / "cmp.json"
    args = ["--recipe", str(tiny), "--data", str(source), "--profile", "paper", "--epochs", "3", "--store", str(store)]
    suite = cli(*args, "--seeds", "3", "--threads", "1", env=env)  # the "suite's" runs
    assert suite.returncode == 0, suite.stderr
    two = {**env, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}  # torch's default here would be 2 threads
    res = cli(*args, "--cb", "ThroughputRecorder", "--compare", "--seeds", "3", "--json", str(out), env=two)
    assert res.returncode in (0, 1), res.stderr  # 1: a tiny run at chance makes the verdict INVALID
    doc = json.loads(out.read_text())
    by_arm = {(r["arm"], r["seed"]): r for r in doc["runs"]}
    assert {r["cached"] for r in doc["runs"] if r["arm"] == "baseline"} == {True}
    assert {r["threads"] for r in doc["runs"]} == {1}
    for s in (0, 1, 2):
        assert by_arm[("trick", s)]["acc_pct"] == by_arm[("baseline", s)]["acc_pct"]
        assert by_arm[("trick", s)]["acc_per_epoch_pct"] == by_arm[("baseline", s)]["acc_per_epoch_pct"]
        assert by_arm[("trick", s)]["loss_per_epoch"] == by_arm[("baseline", s)]["loss_per_epoch"]  # bit for bit
    if doc["comparison"]["verdict"] != "INVALID":
        assert doc["comparison"]["mean_pp"] == 0.0


def test_another_thread_count_trains_outside_the_store(env, tiny, source, tmp_path):
    store = tmp_path / "runs.sqlite"
    res = cli(*tiny_args(tiny, source, store, "--threads", "2"), env=env)
    assert res.returncode == 0, res.stderr
    assert "--threads 2 trains outside the run store" in res.stderr
    assert _stored(store) == 0


def test_a_stored_run_from_another_thread_count_is_not_paired_but_trained_again(env, tiny, source, tmp_path):
    from tricks.cifar import load_cifar10

    store_path, out = tmp_path / "runs.sqlite", tmp_path / "out.json"
    recipe = rescale_epochs(load_recipe(str(tiny)), 1)
    first = cli(*tiny_args(tiny, source, store_path, "--seed", "0"), env=env)
    assert first.returncode == 0, first.stderr
    store = RunStore(store_path)
    version = run_version(load_cifar10(str(source)).digest)
    mine = store.get(recipe.key, 0, "smoke", version)
    other = replace(mine, seed=1, threads=4, acc=0.4242)  # as if trained elsewhere with 4 threads
    store.put(other, recipe)
    res = cli(*tiny_args(tiny, source, store_path, "--seed", "1", "--json", str(out)), env=env)
    assert res.returncode == 0, res.stderr
    assert "not taken from the run store" in res.stderr and "with 4 thread(s)" in res.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["cached"] is False and run["threads"] == 1 and run["acc_pct"] != pytest.approx(42.42)
    assert store.get(recipe.key, 1, "smoke", version).threads == 4  # the stored run is left as it was


def test_off_a_terminal_each_epoch_is_a_plain_line(env, tiny, source, tmp_path):
    res = cli("--recipe", str(tiny), "--data", str(source), "--profile", "smoke", "--epochs", "2", "--no-store",
              env=env)  # smoke keeps a tenth of 2 epochs but at least one a phase: the tiny recipe has one phase
    assert res.returncode == 0, res.stderr
    res = cli("--recipe", str(tiny), "--data", str(source), "--profile", "paper", "--epochs", "2", "--no-store",
              env=env)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if " epoch " in ln]
    assert [ln.split(":")[0] for ln in lines] == ["seed 0 epoch 1/2", "seed 0 epoch 2/2"], res.stderr
    assert all("train loss" in ln and "test accuracy" in ln and "%" in ln for ln in lines)
    quiet = cli("--recipe", str(tiny), "--data", str(source), "--profile", "smoke", "--epochs", "1", "--no-store",
                "--quiet", env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_delta_is_in_percentage_points_like_every_report(capsys):
    needs_registry()
    assert _plan("--cb", "BnFreeze", "--compare", "--delta", "2").delta_pp == 2.0
    assert _plan("--cb", "BnFreeze", "--compare").delta_pp == 1.0
    assert main(["--cb", "BnFreeze", "--compare", "--delta", "0.01"]) == 2  # the old fraction for one point
    assert "one point is --delta 1" in capsys.readouterr().err
