"""The run store: keying, WAL, leases, and what two suites (or a killed one) leave behind."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from claims.store import RunStore, StoreError, default_store_path
from tests.claims_example.fake import LOG_ENV, SLEEP_ENV, fake_recipe, fake_run
from tricks.recipe import CODE_VERSION

ROOT = Path(__file__).resolve().parents[1]


def _calls(log: Path) -> Counter:
    """(recipe key, seed) -> how many times the fake run function trained it."""
    if not log.exists():
        return Counter()
    return Counter((line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines())


def test_put_then_get_returns_the_same_result_with_its_provenance(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    r = fake_recipe("a", 0.05)
    res = fake_run(r, 3, "smoke")
    assert store.put(res, r)
    got = store.get(r.key, 3, "smoke")
    assert got == res
    assert got.versions == {"fake": "1"} and got.device == "cpu:fake" and got.dataset == res.dataset
    assert store.recipe(r.key) == r


def test_runs_are_keyed_by_recipe_seed_profile_and_code_version(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    a, b = fake_recipe("a"), fake_recipe("b")
    store.put(fake_run(a, 0, "smoke"), a)
    assert store.get(a.key, 0, "smoke", CODE_VERSION) is not None
    assert store.get(a.key, 1, "smoke") is None
    assert store.get(a.key, 0, "default") is None
    assert store.get(a.key, 0, "smoke", "other-version") is None
    assert store.get(b.key, 0, "smoke") is None
    assert store.missing([(a.key, 0), (a.key, 1), (b.key, 0), (a.key, 1)], "smoke") == [(a.key, 1), (b.key, 0)]
    assert set(store.get_many([(a.key, 0), (b.key, 0)], "smoke")) == {(a.key, 0)}


def test_a_stored_run_is_never_overwritten(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    r = fake_recipe("a")
    first = fake_run(r, 0)
    assert store.put(first, r)
    second = fake_run(r, 0)
    second.acc = 0.123
    assert not store.put(second, r)
    assert store.get(r.key, 0, "default").acc == first.acc
    assert store.count() == 1


def test_a_diverged_run_keeps_its_nan_accuracy(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    r = fake_recipe("a")
    res = fake_run(r, 0)
    res.acc, res.diverged, res.note = float("nan"), True, "NaN loss at epoch 2"
    store.put(res, r)
    got = store.get(r.key, 0, "default")
    assert math.isnan(got.acc) and got.diverged and got.note == "NaN loss at epoch 2"


def test_store_uses_wal_and_survives_reopening(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    assert store.journal_mode() == "wal"
    r = fake_recipe("a")
    store.put(fake_run(r, 0), r)
    store.close()
    assert RunStore(path).get(r.key, 0, "default") is not None
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_default_path_follows_tricks_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICKS_STORE", str(tmp_path / "x" / "store.sqlite"))
    assert default_store_path() == tmp_path / "x" / "store.sqlite"
    assert RunStore().path == tmp_path / "x" / "store.sqlite"
    monkeypatch.delenv("TRICKS_STORE")
    assert default_store_path().parts[-2:] == ("tricks", "runs.sqlite")


def test_a_folder_or_a_non_database_file_is_refused_naming_the_path(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        RunStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(StoreError, match=str(junk)):
        RunStore(junk)


def _foreign_db(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT, started REAL);"
                      "INSERT INTO runs VALUES (1, 'someone else''s run', 0.0);")
    con.close()
    return path.read_bytes()


def test_another_programs_database_is_refused_in_one_sentence_and_left_byte_for_byte(tmp_path):
    other = tmp_path / "other.sqlite"
    before = _foreign_db(other)
    with pytest.raises(StoreError) as e:
        RunStore(other)
    msg = str(e.value)
    assert msg == (f"run store {other} is another program's SQLite database (tables runs), not a run store; give "
                   f"--store or TRICKS_STORE another file")
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


def test_a_table_of_ours_with_other_columns_is_refused_naming_them(tmp_path):
    odd = tmp_path / "odd.sqlite"
    con = sqlite3.connect(odd)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                      "INSERT INTO meta VALUES ('schema_version', '1');"
                      "CREATE TABLE runs (recipe_key TEXT, seed INTEGER);")
    con.close()
    before = odd.read_bytes()
    with pytest.raises(StoreError, match=r"^run store .* has a table 'runs' without the columns acc, code_version, "):
        RunStore(odd)
    assert odd.read_bytes() == before


def test_a_store_of_ours_reopens_and_keeps_its_runs(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).put_pilot("k", "smoke", {"sigma": 1.5})
    assert RunStore(path).get_pilot("k", "smoke") == {"sigma": 1.5}


def test_pilot_results_are_stored_per_recipe_and_profile(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.put_pilot("k", "smoke", {"sigma": 1.5})
    assert store.get_pilot("k", "smoke") == {"sigma": 1.5}
    assert store.get_pilot("k", "default") is None
    store.put_pilot("k", "smoke", {"sigma": 2.0})
    assert store.get_pilot("k", "smoke") == {"sigma": 2.0}


# ---------------------------------------------------------------------------------------------- leases


def test_a_lease_is_exclusive_until_released_or_stored(tmp_path):
    path = tmp_path / "runs.sqlite"
    one, two = RunStore(path), RunStore(path)
    r = fake_recipe("a")
    assert one.claim_run(r.key, 0, "default")
    assert one.claim_run(r.key, 0, "default")  # the owner may ask again
    assert not two.claim_run(r.key, 0, "default")  # same live process, other owner: not stale
    one.release(r.key, 0, "default")
    assert two.claim_run(r.key, 0, "default")
    two.put(fake_run(r, 0), r)
    assert two.leases() == []
    assert not one.claim_run(r.key, 0, "default")  # stored: nobody trains it again


def test_put_drops_the_lease_and_a_release_after_it_writes_nothing(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    r = fake_recipe("a")
    assert store.claim_run(r.key, 0, "default")
    store.put(fake_run(r, 0), r)
    assert store.leases() == []
    writes = []
    real = store._tx
    store._tx = lambda: writes.append(1) or real()
    store.release(r.key, 0, "default")  # nothing of ours to drop: no write transaction
    assert writes == []
    assert store.claim_run(r.key, 1, "default")
    writes.clear()
    store.release(r.key, 1, "default")  # a held lease: dropped, in one write
    assert writes == [1] and store.leases() == []


def _exit_quickly() -> None:
    pass


def test_the_lease_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "runs.sqlite"
    dead = mp.get_context("spawn").Process(target=_exit_quickly)
    dead.start()
    dead.join()
    store = RunStore(path)
    with sqlite3.connect(path) as con:  # a lease as the dead process would have left it
        con.execute("INSERT INTO leases VALUES ('k', 0, 'default', ?, ?, ?, NULL, 'gone', ?)",
                    (CODE_VERSION, dead.pid, store._host, time.time()))
    assert store.leases()[0]["stale"]
    assert store.claim_run("k", 0, "default")
    assert store.leases()[0]["mine"]


def test_a_lease_older_than_the_timeout_is_taken_over(tmp_path):
    path = tmp_path / "runs.sqlite"
    holder = RunStore(path)
    taker = RunStore(path, lease_timeout_s=0.2)
    assert holder.claim_run("k", 0, "default")
    assert not taker.claim_run("k", 0, "default")
    time.sleep(0.3)
    assert taker.claim_run("k", 0, "default")


def _hammer(path: str, keys: list[str], out: str, start) -> None:
    store = RunStore(path)
    won = []
    start.wait(timeout=60)  # both processes open the store first, then race
    for k in keys:
        if store.claim_run(k, 0, "default"):
            won.append(k)
            r = fake_recipe(k)
            res = fake_run(r, 0)
            res.recipe_key = k  # store under the hammered key
            store.put(res, r)
    Path(out).write_text("\n".join(won))


def test_two_processes_hammering_the_store_train_each_run_once(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    RunStore(path)
    keys = [f"key{i:03d}" for i in range(150)]
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_hammer, args=(path, keys if i == 0 else keys[::-1], str(tmp_path / f"won{i}"), start))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    won = [(tmp_path / f"won{i}").read_text().split() for i in range(2)]
    assert sorted(won[0] + won[1]) == keys  # every key leased exactly once, by one of the two
    assert won[0] and won[1]  # both really competed
    store = RunStore(path)
    assert store.count() == len(keys) and store.leases() == []
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------------------------- whole suites

SUITE = textwrap.dedent("""
    import sys
    from claims.executors import Job, LocalExecutor
    from claims.schedule import Scheduler
    from claims.store import RunStore
    from tests.claims_example.fake import fake_recipe, fake_run

    path, workers = sys.argv[1], int(sys.argv[2])
    recipes = [fake_recipe(name) for name in ("base", "a", "b")]
    jobs = [Job(r, s, "smoke") for s in range(8) for r in recipes]
    sched = Scheduler([], RunStore(path), LocalExecutor(workers, run_fn=fake_run), "smoke", progress=False,
                      poll_s=0.05)
    sched.ensure_runs(jobs)
    assert not sched.failures, sched.failures
    print("trained", len(sched.trained))
""")


def _suite(path: Path, log: Path, workers: int, sleep: float) -> subprocess.Popen:
    env = {**os.environ, LOG_ENV: str(log), SLEEP_ENV: str(sleep), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", SUITE, str(path), str(workers)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_suites_at_once_share_the_store_and_train_each_run_once(tmp_path):
    path, log = tmp_path / "runs.sqlite", tmp_path / "calls.log"
    RunStore(path)
    suites = [_suite(path, log, 0, 0.02) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in suites]
    assert all(p.returncode == 0 for p in suites), outs
    calls = _calls(log)
    assert len(calls) == 24 and set(calls.values()) == {1}  # 3 recipes x 8 seeds, none trained twice
    trained = [int(out.split()[-1]) for out, _ in outs]
    assert sum(trained) == 24
    assert RunStore(path).count() == 24


def test_a_suite_killed_mid_run_resumes_training_only_the_missing_runs(tmp_path):
    path, log = tmp_path / "runs.sqlite", tmp_path / "calls.log"
    store = RunStore(path)
    first = _suite(path, log, 2, 0.25)
    deadline = time.time() + 60
    while store.count() < 6 and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    time.sleep(0.6)  # let orphaned workers finish their run in flight and notice the parent is gone
    stored = store.count()
    assert 6 <= stored < 24, "the kill should land mid-suite"
    stored_runs = {(r.recipe_key, r.seed) for r in store.runs("smoke")}
    before = _calls(log)
    in_flight_lost = sum(before.values()) - stored
    assert 0 <= in_flight_lost <= 2  # at most one run per worker is lost

    resumed = _suite(path, log, 2, 0.0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = _calls(log)
    new_calls = after - before
    assert sum(new_calls.values()) == 24 - stored  # only the missing runs, the dead suite's leases taken over
    assert not stored_runs & set(new_calls)  # nothing finished before the kill is trained again
    assert store.count() == 24 and store.leases() == []
