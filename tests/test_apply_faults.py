"""`python -m tricks.apply` under faults: --json aimed at the store, the data or a file not its own; a full disk while
storing; two invocations on one store; bad recipe values and bounds. Each ends in one sentence and exit 2 (or, for
the shared store, in one training per run)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from claims.store import RunStore
from tests import test_apply
from tests.test_apply import ROOT, assert_one_line_error, tiny_args
from tricks.apply import build_parser, main
from tricks.apply_plan import make_plan
from tricks.recipe import RunVersions

env, source, tiny = test_apply.env, test_apply.source, test_apply.tiny  # the CLI tests' fixtures


def _runs(path: Path) -> int:
    return RunStore(path).count()


# ------------------------------------------------------------------------------------------------ --json targets


def test_json_onto_the_run_store_is_refused_before_training(tiny, source, tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    RunStore(store).close()
    assert main(tiny_args(tiny, source, store, "--json", str(store))) == 2
    assert_one_line_error(capsys.readouterr().err, f"--json {store} is the run store")
    assert _runs(store) == 0  # still a run store, and nothing trained


def test_json_onto_the_dataset_is_refused_and_leaves_it_intact(tiny, source, tmp_path, capsys):
    import tarfile

    archive = tmp_path / "data.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar")
    before = archive.read_bytes()
    assert main(tiny_args(tiny, archive, tmp_path / "s.sqlite", "--json", str(archive))) == 2
    assert_one_line_error(capsys.readouterr().err, f"--json {archive} is the dataset")
    assert archive.read_bytes() == before


@pytest.mark.parametrize("content", ["some notes\n", '{"model": "tf_cnn"}\n', ""])
def test_json_onto_a_file_this_program_did_not_write_is_refused(tiny, source, tmp_path, capsys, content):
    other = tmp_path / "notes.json"
    other.write_text(content)
    assert main(tiny_args(tiny, source, tmp_path / "s.sqlite", "--json", str(other))) == 2
    assert_one_line_error(capsys.readouterr().err, f"--json {other} exists and was not written by tricks.apply")
    assert other.read_text() == content and _runs(tmp_path / "s.sqlite") == 0


def test_json_onto_a_folder_is_refused_before_training(tiny, source, tmp_path, capsys):
    assert main(tiny_args(tiny, source, tmp_path / "s.sqlite", "--json", str(tmp_path))) == 2
    assert_one_line_error(capsys.readouterr().err, f"--json {tmp_path} is a folder")
    assert _runs(tmp_path / "s.sqlite") == 0


def test_json_replaces_its_own_earlier_output_atomically(tiny, source, tmp_path, capsys, monkeypatch):
    import os

    out = tmp_path / "out.json"
    assert main(tiny_args(tiny, source, tmp_path / "s.sqlite", "--json", str(out), "--quiet")) == 0
    first = out.read_text()
    assert main(tiny_args(tiny, source, tmp_path / "s.sqlite", "--json", str(out), "--quiet")) == 0  # ours: replaced
    assert json.loads(out.read_text())["runs"][0]["cached"] is True

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    out.write_text(first)
    monkeypatch.setattr(os, "replace", full)
    assert main(tiny_args(tiny, source, tmp_path / "s.sqlite", "--json", str(out), "--quiet")) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == first  # the earlier file is whole, and no temporary file is left beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


# ------------------------------------------------------------------------------------------------ a full disk


def test_a_full_disk_while_storing_keeps_and_prints_the_finished_run_in_one_sentence(tiny, source, tmp_path, capsys,
                                                                                   monkeypatch):
    store, out = tmp_path / "s.sqlite", tmp_path / "out.json"
    real_execute = sqlite3.Connection.execute

    class Full(sqlite3.Connection):
        def execute(self, sql, *args):  # the first INSERT of a run finds the disk full, as do later writes
            if sql.lstrip().upper().startswith(("INSERT OR IGNORE INTO RUNS", "DELETE FROM LEASES")):
                raise sqlite3.OperationalError("database or disk is full")
            return real_execute(self, sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "factory": Full}))
    code = main(tiny_args(tiny, source, store, "--seeds", "2", "--json", str(out)))
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    captured = capsys.readouterr()
    assert code == 2
    err = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and f"run store {store}" in err[0] and "full" in err[0], captured.err
    assert "Traceback" not in captured.err
    assert "trained" in captured.out and "%" in captured.out  # the finished run's row is printed
    doc = json.loads(out.read_text())
    assert doc["status"] == "error" and len(doc["runs"]) == 1  # the run finished, not trained twice
    assert _runs(store) == 0  # nothing half-written


# ------------------------------------------------------------------------------------------------ one store, two CLIs


@pytest.mark.parametrize("theirs_device", ["here", "elsewhere"])
def test_a_run_leased_by_another_invocation_is_waited_for_not_trained_again(env, tiny, source, tmp_path,
                                                                             theirs_device):
    import threading
    from dataclasses import replace

    from claims.compare import run_device
    from tests.test_apply import _result
    from tricks.cifar import load_cifar10

    store = tmp_path / "s.sqlite"
    argv = tiny_args(tiny, source, store)
    plan = make_plan(build_parser().parse_args(argv))
    version = RunVersions(load_cifar10(source).digest)(plan.recipe.key)
    other = RunStore(store)
    assert other.claim_run(plan.recipe.key, 0, plan.profile, version)  # another invocation trains seed 0
    proc = subprocess.Popen([sys.executable, "-m", "tricks.apply", *argv, "--json", str(tmp_path / "o.json")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("waiting" in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        assert proc.poll() is None, "".join(lines)  # still waiting for the other's result, not training
        assert other.count() == 0
        theirs = replace(_result(plan.recipe, 0, 0.4321), profile=plan.profile, code_version=version,
                         device=run_device(None) if theirs_device == "here" else "cuda:elsewhere")
        other.put(theirs, plan.recipe)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    (run,) = json.loads((tmp_path / "o.json").read_text())["runs"]
    if theirs_device == "here":
        assert "trained, accuracy" not in "".join(lines)
        assert run["cached"] is True and run["acc_pct"] == pytest.approx(43.21)
    else:  # a run from another device is not paired with this machine's: trained here, not stored over theirs
        assert "not taken from the run store" in "".join(lines)
        assert run["cached"] is False and run["device"] == run_device(None)
    assert other.count() == 1 and other.get(plan.recipe.key, 0, plan.profile, version).acc == 0.4321


def test_the_executor_path_waits_for_a_run_another_process_holds_and_trains_only_the_rest(tiny, source, tmp_path):
    """`--executor ray` (train_on): a run leased by another live process is waited for, not trained again."""
    import threading

    from rich.console import Console

    from claims.compare import run_device, train_on
    from tests.test_apply import _result
    from tricks.apply_output import Session
    from tricks.cifar import load_cifar10

    store = tmp_path / "s.sqlite"
    args = build_parser().parse_args(tiny_args(tiny, source, store, "--seeds", "2"))
    plan = make_plan(args)
    version = RunVersions(load_cifar10(source).digest)(plan.recipe.key)
    other = RunStore(store)
    assert other.claim_run(plan.recipe.key, 0, plan.profile, version)  # another process trains seed 0
    trained = []

    class Executor:  # stands in for Ray: records what it was asked to train
        workers = 1

        def map_runs(self, jobs, on_done):
            for job in jobs:
                trained.append((job.recipe.key, job.seed))
                on_done(job, replace(_result(job.recipe, job.seed, 0.5), profile=plan.profile, code_version=version,
                                     device=run_device(None)))

    theirs = replace(_result(plan.recipe, 0, 0.4321), profile=plan.profile, code_version=version,
                     device=run_device(None))
    timer = threading.Timer(1.0, lambda: other.put(theirs, plan.recipe))
    timer.start()
    session = Session(plan, args)
    train_on(Executor(), session, RunStore(store), source=str(source), console=Console(quiet=True), quiet=True)
    timer.join()
    assert trained == [(plan.recipe.key, 1)]  # seed 0 came from the other process
    by_seed = {o.result.seed: o for o in session.outcomes}
    assert by_seed[0].result.acc == 0.4321 and by_seed[0].cached and not by_seed[1].cached
    assert other.count() == 2 and not RunStore(store).leases()


# ------------------------------------------------------------------------------------------------ bad values


def _recipe_file(tmp_path: Path, **changes) -> Path:
    d = {**test_apply.TINY.to_dict(), **changes}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize(("changes", "expected"), [
    ({"bs": "x"}, "bs must be a whole number"),
    ({"bs": -5}, "bs must be between 1 and"),
    ({"phases": [{"schedule": "constant", "epochs": "2", "lr": 0.05, "params": [], "new_opt": False}]},
     "epochs must be a whole number"),
    ({"phases": [{"schedule": "constant", "epochs": 2, "lr": "0.05", "params": [], "new_opt": False}]},
     "lr must be a positive number"),
    ({"phases": [{"schedule": "constant", "epochs": 10 ** 12, "lr": 0.05, "params": [], "new_opt": False}]},
     "epochs in all, more than the"),
    ({"phases": []}, "has no phases"),
    ({"loss": "mse"}, "unknown loss 'mse'"),
    ({"opt_kwargs": [["mom", 0.9], ["momentum", 0.9]]}, "optimizer sgd takes no option 'momentum'"),
    ({"model": 5}, "model must be a name"),
])
def test_a_recipe_file_with_a_wrong_value_exits_2_in_one_sentence(tmp_path, capsys, changes, expected):
    path = _recipe_file(tmp_path, **changes)
    assert main(["--recipe", str(path), "--no-store", "--data", str(tmp_path / "absent")]) == 2
    assert_one_line_error(capsys.readouterr().err, expected)


@pytest.mark.parametrize(("more", "expected"), [
    (["--seed", str(2 ** 63)], "is not a seed (a whole number from 0 to 9223372036854775807)"),
    (["--seeds", "1000000"], "--seeds 1000000 is more than"),
    (["--epochs", "100000000000000000000"], "--epochs 100000000000000000000 is more than"),
    (["--bs", "10000000"], "bs must be between 1 and"),
])
def test_bounds_on_seeds_epochs_and_batch_size_are_usage_errors(tmp_path, capsys, more, expected):
    path = _recipe_file(tmp_path)
    with pytest.raises(ValueError, match=None) as e:
        make_plan(build_parser().parse_args(["--recipe", str(path), *more]))
    assert expected in str(e.value)
    assert main(["--recipe", str(path), "--no-store", *more]) == 2
    assert_one_line_error(capsys.readouterr().err, expected)


def test_every_named_recipe_passes_the_recipe_checks():
    from tricks.recipe_check import check_recipe
    from tricks.recipes import RECIPES

    for recipe in RECIPES.values():
        check_recipe(recipe)


# ------------------------------------------------------------------------------------------------ messages


def test_a_read_only_store_says_so(tmp_path, capsys, monkeypatch):
    import os

    store = tmp_path / "ro" / "runs.sqlite"
    store.parent.mkdir()
    RunStore(store).close()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p).parent == store.parent or Path(p) ==
                        store.parent and mode & os.W_OK else real(p, mode, **k))  # a read-only mount, even for root
    assert main(["--recipe", str(_recipe_file(tmp_path)), "--store", str(store)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"run store {store} is read-only")


def test_a_disk_io_error_at_open_names_a_full_disk_as_the_likely_cause(tmp_path, capsys, monkeypatch):
    real_connect = sqlite3.connect

    class Broken(sqlite3.Connection):
        def executescript(self, *_a):
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "factory": Broken}))
    with pytest.raises(Exception) as e:
        RunStore(tmp_path / "s.sqlite")
    assert "disk I/O error (is the disk full?)" in str(e.value) and "not a usable SQLite database" not in str(e.value)


# ------------------------------------------------------------------------------------------------ store rows


@pytest.mark.parametrize("change", [{"surprise": 1}, {"acc": None}, {"seed": "zero"}])
def test_a_damaged_store_row_is_one_sentence_naming_the_store(tmp_path, change):
    from claims.store import StoreError
    from tests.test_apply import _result

    store = RunStore(tmp_path / "s.sqlite")
    r = _result(test_apply.TINY, 0, 0.5)
    store.put(r)
    doc = {**json.loads(r.to_json()), **change}
    con = sqlite3.connect(tmp_path / "s.sqlite")
    con.execute("UPDATE runs SET result_json = ?", (json.dumps(doc),))
    con.commit()
    con.close()
    for read in (lambda: store.get(r.recipe_key, 0, "smoke", "test"), lambda: list(store.runs()),
                 lambda: store.get_many([(r.recipe_key, 0)], "smoke", "test")):
        with pytest.raises(StoreError) as e:
            read()
        assert str(e.value).startswith(f"run store {tmp_path / 's.sqlite'} holds a damaged run")
        assert "\n" not in str(e.value)


def test_a_really_full_disk_under_the_store_is_one_sentence_and_nothing_half_written(tmp_path):
    """A 1 MB tmpfs filled up: the store's put fails as SQLite does on a full disk, and the store stays readable."""
    from claims.store import StoreError
    from tests.test_apply import _result

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        store = RunStore(disk / "s.sqlite")
        store.put(_result(test_apply.TINY, 0, 0.5))
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):  # fill the disk to the last block
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        big = replace(_result(test_apply.TINY, 1, 0.5), note="x" * 400_000)  # a row that needs new pages
        with pytest.raises(StoreError) as e:
            store.put(big)
        assert str(e.value).startswith(f"run store {disk / 's.sqlite'} could not store run")
        assert "disk is full" in str(e.value) or "disk I/O error" in str(e.value)
        filler.unlink()
        assert [r.seed for r in RunStore(disk / "s.sqlite").runs()] == [0]  # the first run whole, no half of the second
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_while_taking_a_lease_is_one_sentence(tmp_path, monkeypatch):
    from claims.store import StoreError

    store = RunStore(tmp_path / "s.sqlite")
    real_execute = sqlite3.Connection.execute

    class Full(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.lstrip().upper().startswith("INSERT INTO LEASES"):
                raise sqlite3.OperationalError("database or disk is full")
            return real_execute(self, sql, *args)

    store.close()
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "factory": Full}))
    with pytest.raises(StoreError) as e:
        store.claim_run("k" * 64, 0, "smoke", "v")
    assert str(e.value) == f"run store {tmp_path / 's.sqlite'}: a write failed (the disk is full)"
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert RunStore(tmp_path / "s.sqlite").leases() == []  # rolled back whole
