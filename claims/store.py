"""The run store: every finished run in an embedded SQLite database, so that no run is ever trained twice.

A run is keyed by (recipe key, seed, profile, code version) and kept as its RunResult JSON (which carries its own
provenance: library versions, device, threads, dataset copy) beside the recipe JSON. The database runs in WAL mode
with a busy timeout, so several suites can read and write it at once. A suite that is about to train a run first
takes a lease on it (`claim_run`); a second suite sees the lease and waits for the result instead of training the
same run. Leases of processes that died (SIGKILL, power loss) or that are older than `lease_timeout_s` are taken
over, so a killed suite loses at most the runs it had in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tricks.plain import finite, user_cache_dir
from tricks.recipe import CODE_VERSION, Recipe, RunResult

SCHEMA_VERSION = "1"
DEFAULT_LEASE_TIMEOUT_S = 12 * 3600.0  # longer than any single run of the paper profile on a CPU

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    recipe_key TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT NOT NULL, code_version TEXT NOT NULL,
    recipe_name TEXT NOT NULL, acc REAL, wall_s REAL, device TEXT, diverged INTEGER NOT NULL,
    result_json TEXT NOT NULL, recipe_json TEXT, created REAL NOT NULL,
    PRIMARY KEY (recipe_key, seed, profile, code_version)
);
CREATE TABLE IF NOT EXISTS leases (
    recipe_key TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT NOT NULL, code_version TEXT NOT NULL,
    owner_pid INTEGER NOT NULL, owner_host TEXT NOT NULL, owner_start TEXT, owner_token TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (recipe_key, seed, profile, code_version)
);
CREATE TABLE IF NOT EXISTS pilots (
    recipe_key TEXT NOT NULL, profile TEXT NOT NULL, code_version TEXT NOT NULL, pilot_json TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (recipe_key, profile, code_version)
);
"""


class StoreError(ValueError):
    """A user-facing problem with the run store (unusable path, not a database): one sentence naming the path."""


def _columns(con: sqlite3.Connection) -> dict[str, set[str]]:
    names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
             if not n.startswith("sqlite_")]
    return {n: {row[1] for row in con.execute(f'PRAGMA table_info("{n}")')} for n in names}


def _schema_columns() -> dict[str, set[str]]:
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(_SCHEMA)
        return _columns(con)
    finally:
        con.close()


def _check_foreign(path: Path) -> None:
    """StoreError when `path` is a SQLite database of another program (or of an incompatible layout), read-only."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"run store {path} is not a usable SQLite database ({e})") from None
    try:
        found = _columns(con)
        version = None
        if "value" in found.get("meta", set()) and "key" in found.get("meta", set()):
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else None
    except sqlite3.DatabaseError as e:
        raise StoreError(f"run store {path} is not a usable SQLite database ({e})") from None
    finally:
        con.close()
    ours = _schema_columns()
    missing = {t: sorted(want - found.get(t, want)) for t, want in ours.items() if want - found.get(t, want)}
    # a store being created by another suite right now has some of our tables and no version yet: not foreign
    if version is None and (set(found) - set(ours) or missing):
        raise StoreError(f"run store {path} is another program's SQLite database (tables {', '.join(sorted(found))}), "
                         f"not a run store; give --store or TRICKS_STORE another file")
    for table, cols in missing.items():
        raise StoreError(f"run store {path} has a table '{table}' without the columns {', '.join(cols)}: it was "
                         f"written by another program; give --store or TRICKS_STORE another file")


def default_store_path() -> Path:
    """`$TRICKS_STORE`, else `runs.sqlite` in the user cache folder's `tricks/`."""
    env = os.environ.get("TRICKS_STORE")
    return Path(env).expanduser() if env else user_cache_dir() / "tricks" / "runs.sqlite"


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc), so a lease is not kept alive by a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its closing parenthesis are plain
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunStore:
    """Finished runs keyed by (recipe key, seed, profile, code version), pilot results, and leases on runs in flight."""

    def __init__(self, path: str | os.PathLike | None = None, *, lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S,
                 busy_timeout_s: float = 60.0):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.lease_timeout_s = lease_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        # one owner identity per store object: the pid alone would let two stores in one process share leases
        self.owner_token = uuid.uuid4().hex
        self._host = socket.gethostname()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder of run store {self.path}: {e.strerror or e}") from None
        if self.path.is_dir():
            raise StoreError(f"run store {self.path} is a folder, not a SQLite database file")
        _check_foreign(self.path)  # before anything writes to the file: another program's database stays untouched
        for p in (self.path, self.path.parent):  # WAL writes beside the file: both must be writable
            if p.exists() and not os.access(p, os.W_OK):
                raise StoreError(f"run store {self.path} is read-only ({'its folder ' if p != self.path else ''}"
                                 f"{p} cannot be written); give --store or TRICKS_STORE a writable file")
        try:
            self._con().executescript(_SCHEMA)  # idempotent; executescript commits on its own
            with self._tx() as con:
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                (found,) = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as e:
            raise StoreError(f"run store {self.path} cannot be opened for writing ({_why(e)})") from None
        except sqlite3.DatabaseError as e:
            raise StoreError(f"run store {self.path} is not a usable SQLite database ({e})") from None
        if found != SCHEMA_VERSION:
            raise StoreError(f"run store {self.path} has schema version {found}; this code reads {SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------------------ connections

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"run store {self.path} cannot use WAL mode (journal mode is {mode})")
            con.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives a process kill; fsync per checkpoint
            self._local.con, self._local.pid = con, os.getpid()
        return con

    class _Tx:
        def __init__(self, con: sqlite3.Connection, path: Path):
            self.con, self.path = con, path

        def __enter__(self) -> sqlite3.Connection:
            # IMMEDIATE takes the write lock up front, so check-then-insert sequences are atomic across processes
            self.con.execute("BEGIN IMMEDIATE")
            return self.con

        def __exit__(self, exc_type, exc, tb) -> None:
            # a failed write (a full disk, a lock held past the busy timeout) rolls the whole transaction back and
            # is one sentence: nothing of it is left half-written
            try:
                self.con.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.OperationalError as e:
                if exc_type is not None:
                    raise
                with contextlib.suppress(sqlite3.Error):
                    self.con.execute("ROLLBACK")
                exc = e
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"run store {self.path}: a write failed ({_why(exc)})") from None

    def _tx(self) -> RunStore._Tx:
        return RunStore._Tx(self._con(), self.path)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def journal_mode(self) -> str:
        """The database's journal mode (`wal` once opened by a RunStore)."""
        return self._con().execute("PRAGMA journal_mode").fetchone()[0].lower()

    # ------------------------------------------------------------------------------------------ runs

    def put(self, result: RunResult, recipe: Recipe | None = None) -> bool:
        """Store a finished run (and drop its lease); False when the run was already stored, which is kept."""
        recipe_json = json.dumps(recipe.to_dict(), sort_keys=True) if recipe is not None else None
        key = (result.recipe_key, result.seed, result.profile, result.code_version)
        try:  # one transaction: on a full disk it rolls back whole, and nothing of the run is half-written
            with self._tx() as con:
                cur = con.execute(
                    "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, result.recipe_name, finite(result.acc), finite(result.wall_s), result.device,
                     int(result.diverged), result.to_json(), recipe_json, time.time()),
                )
                con.execute("DELETE FROM leases WHERE recipe_key=? AND seed=? AND profile=? AND code_version=?", key)
        except (sqlite3.OperationalError, StoreError) as e:
            why = str(e).rsplit(" (", 1)[1].rstrip(")") if isinstance(e, StoreError) else _why(e)
            raise StoreError(f"run store {self.path} could not store run {result.recipe_name or key[0][:12]} seed "
                             f"{result.seed} ({why}); it was not stored") from None
        return cur.rowcount == 1

    def get(self, recipe_key: str, seed: int, profile: str, code_version: str | None = None) -> RunResult | None:
        """The stored run, or None."""
        row = self._con().execute(
            "SELECT result_json FROM runs WHERE recipe_key=? AND seed=? AND profile=? AND code_version=?",
            (recipe_key, int(seed), profile, code_version or CODE_VERSION),
        ).fetchone()
        return self._result(row[0]) if row else None

    def _result(self, text: str) -> RunResult:
        """A stored run's RunResult; StoreError when its JSON is not one (a field unknown, missing or mistyped)."""
        try:
            r = RunResult.from_json(text)
            ok = isinstance(r.seed, int) and isinstance(r.recipe_key, str) and isinstance(r.acc, (int, float)) \
                and isinstance(r.wall_s, (int, float))
        except (ValueError, TypeError) as e:
            ok, why = False, " ".join(str(e).split())
        else:
            why = "a field of the wrong type (acc, wall_s, seed or recipe_key)"
        if not ok:
            raise StoreError(f"run store {self.path} holds a damaged run ({why}); restore it from a record "
                             "(python -m claims.record) or give --store or TRICKS_STORE another file")
        return r

    def get_many(self, pairs: Iterable[tuple[str, int]], profile: str,
                 code_version: str | Callable[[str], str] | None = None) -> dict[tuple[str, int], RunResult]:
        """The stored runs among the (recipe key, seed) pairs, keyed by pair; absent pairs are left out.

        `code_version` is one version for every pair, or a function of the recipe key (`tricks.recipe.RunVersions`).
        """
        out: dict[tuple[str, int], RunResult] = {}
        con = self._con()
        version = code_version if callable(code_version) else (lambda _k, v=code_version or CODE_VERSION: v)
        for rk, seed in dict.fromkeys((k, int(s)) for k, s in pairs):
            row = con.execute(
                "SELECT result_json FROM runs WHERE recipe_key=? AND seed=? AND profile=? AND code_version=?",
                (rk, seed, profile, version(rk)),
            ).fetchone()
            if row:
                out[(rk, seed)] = self._result(row[0])
        return out

    def missing(self, pairs: Iterable[tuple[str, int]], profile: str,
                code_version: str | Callable[[str], str] | None = None) -> list[tuple[str, int]]:
        """The (recipe key, seed) pairs not stored yet, in their given order, without duplicates."""
        wanted = list(dict.fromkeys((k, int(s)) for k, s in pairs))
        have = self.get_many(wanted, profile, code_version)
        return [p for p in wanted if p not in have]

    def runs(self, profile: str | None = None, code_version: str | None = None) -> Iterator[RunResult]:
        """Every stored run, optionally of one profile and code version."""
        sql, args = "SELECT result_json FROM runs WHERE 1=1", []
        if profile is not None:
            sql, args = sql + " AND profile=?", [*args, profile]
        if code_version is not None:
            sql, args = sql + " AND code_version=?", [*args, code_version]
        for (text,) in self._con().execute(sql + " ORDER BY created", args).fetchall():
            yield self._result(text)

    def recipe(self, recipe_key: str) -> Recipe | None:
        """The recipe stored with any run of this key, or None."""
        row = self._con().execute(
            "SELECT recipe_json FROM runs WHERE recipe_key=? AND recipe_json IS NOT NULL LIMIT 1", (recipe_key,)
        ).fetchone()
        return Recipe.from_dict(json.loads(row[0])) if row else None

    def count(self, profile: str | None = None) -> int:
        """How many runs are stored (of one profile, when given)."""
        if profile is None:
            return self._con().execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return self._con().execute("SELECT COUNT(*) FROM runs WHERE profile=?", (profile,)).fetchone()[0]

    # ------------------------------------------------------------------------------------------ leases

    def claim_run(self, recipe_key: str, seed: int, profile: str, code_version: str | None = None) -> bool:
        """Take the lease to train this run: False when it is stored already or a live owner holds its lease."""
        key = (recipe_key, int(seed), profile, code_version or CODE_VERSION)
        where = "recipe_key=? AND seed=? AND profile=? AND code_version=?"
        pid = os.getpid()
        with self._tx() as con:
            if con.execute(f"SELECT 1 FROM runs WHERE {where}", key).fetchone():
                return False
            row = con.execute(f"SELECT owner_pid, owner_host, owner_start, owner_token, created FROM leases "
                              f"WHERE {where}", key).fetchone()
            if row is not None:
                if row[3] == self.owner_token:
                    return True
                if not self._stale(*row):
                    return False
                con.execute(f"DELETE FROM leases WHERE {where}", key)
            con.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*key, pid, self._host, process_start(pid), self.owner_token, time.time()))
        return True

    def release(self, recipe_key: str, seed: int, profile: str, code_version: str | None = None) -> None:
        """Drop this store's lease on a run (a run that failed, or one given up on; `put` drops a stored run's). No
        write when this store holds no such lease. A lease that cannot be dropped (a full disk) is left: it goes
        stale when this process ends, and is taken over then."""
        key = (recipe_key, int(seed), profile, code_version or CODE_VERSION, self.owner_token)
        where = "recipe_key=? AND seed=? AND profile=? AND code_version=? AND owner_token=?"
        try:
            if self._con().execute(f"SELECT 1 FROM leases WHERE {where}", key).fetchone() is None:
                return  # stored (put dropped it), taken over, or never held: nothing to write
            with self._tx() as con:
                con.execute(f"DELETE FROM leases WHERE {where}", key)
        except (sqlite3.OperationalError, StoreError):
            pass

    def leases(self) -> list[dict[str, Any]]:
        """Every lease, with its owner and whether it is stale."""
        rows = self._con().execute("SELECT recipe_key, seed, profile, code_version, owner_pid, owner_host, "
                                   "owner_start, owner_token, created FROM leases").fetchall()
        return [{"recipe_key": r[0], "seed": r[1], "profile": r[2], "code_version": r[3], "owner_pid": r[4],
                 "owner_host": r[5], "created": r[8], "mine": r[7] == self.owner_token,
                 "stale": self._stale(r[4], r[5], r[6], r[7], r[8])} for r in rows]

    def _stale(self, pid: int, host: str, start: str | None, token: str, created: float) -> bool:
        if time.time() - created > self.lease_timeout_s:
            return True
        if host != self._host:
            return False  # another machine's pid cannot be checked from here; only the timeout applies
        if not pid_alive(pid):
            return True
        return start is not None and process_start(pid) not in (None, start)

    # ------------------------------------------------------------------------------------------ pilots

    def put_pilot(self, recipe_key: str, profile: str, pilot: dict[str, Any], code_version: str | None = None) -> None:
        """Store (or replace) the A/A pilot of a recipe under a profile."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO pilots VALUES (?, ?, ?, ?, ?)",
                        (recipe_key, profile, code_version or CODE_VERSION, json.dumps(pilot, sort_keys=True),
                         time.time()))

    def get_pilot(self, recipe_key: str, profile: str, code_version: str | None = None) -> dict[str, Any] | None:
        """The stored A/A pilot of a recipe under a profile, or None."""
        row = self._con().execute(
            "SELECT pilot_json FROM pilots WHERE recipe_key=? AND profile=? AND code_version=?",
            (recipe_key, profile, code_version or CODE_VERSION),
        ).fetchone()
        return json.loads(row[0]) if row else None


def _why(e: sqlite3.Error) -> str:
    """SQLite's message, with what a full disk means said plainly."""
    text = " ".join(str(e).split())
    if "full" in text:
        return "the disk is full"
    if "disk I/O error" in text:
        return "disk I/O error (is the disk full?)"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"{text}: is it read-only?"
    return text

