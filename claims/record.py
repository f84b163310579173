"""The committed record of the paper campaign (`results/paper-reproduction.json`), so that no finished run depends on
one machine's run store.

Every `paper`-profile run of the store goes into the record with all its RunResult fields (recipe, key, run version,
seed, accuracy, per-epoch curves, wall time, device, threads, versions, dataset copy), as compact JSON. From it:

- `python -m claims.record restore [--store S]` puts every recorded run that the store lacks back into it, under the
  same key, so a new machine resumes the campaign where the record left it and trains no finished run again;
- the verdicts and tables are recomputed without training (`nox -s claims -- --profile paper` on a restored store
  trains only what the record lacks);
- `python -m claims.record rekey --tree OLD_CHECKOUT --version V` carries runs stored under a source-hash version `V`
  (how runs were keyed before training fingerprints) over to the current fingerprint key, recipe by recipe, only
  where the old checkout's code computes the same fingerprint as the committed one. The old rows stay as they were.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from claims.store import RunStore, StoreError, default_store_path
from tricks.plain import finite
from tricks.recipe import RunResult

RECORD = Path("results") / "paper-reproduction.json"
PROFILE = "paper"
_RESULT_FIELDS = {f.name for f in fields(RunResult)}
# fields that hold one of a few values in every run (the code, the dataset copy, the machine, the library versions):
# the record lists each distinct value once under "shared" and a run holds its index there
SHARED = ("code_version", "dataset", "device", "versions")
# fields left out of a run's entry when they hold these (most runs): read back as these
DEFAULTS: dict[str, Any] = {"also_named": [], "note": "", "scaled": "", "diverged": False}


def latest_per_seed(runs: Iterable[RunResult]) -> dict[str, dict[int, RunResult]]:
    """Recipe key -> seed -> the latest run (runs come oldest first): a seed rerun under newer code counts once."""
    out: dict[str, dict[int, RunResult]] = {}
    for r in runs:
        out.setdefault(r.recipe_key, {})[r.seed] = r
    return out


def _round(xs: Sequence[float] | None) -> list[float | None]:
    return [None if x is None or not math.isfinite(x) else round(float(x), 6) for x in (xs or [])]


def run_entry(r: RunResult, names: Sequence[str] = (), used: bool | None = None) -> dict[str, Any]:
    """One run of the record: every RunResult field (curves to 6 decimals), the recipe's other names, and whether the
    reproduction table used it."""
    name = r.recipe_name if (r.recipe_name in names or not names) else names[0]
    entry = {
        "recipe": name, "also_named": [n for n in names if n != name], "recipe_key": r.recipe_key, "seed": r.seed,
        "profile": r.profile, "acc": finite(r.acc), "loss": finite(r.loss), "code_version": r.code_version,
        "dataset": r.dataset, "acc_per_epoch": _round(r.acc_per_epoch), "loss_per_epoch": _round(r.loss_per_epoch),
        "train_loss_per_epoch": _round(r.train_loss_per_epoch), "params_used": r.params_used,
        "wall_s": round(float(r.wall_s), 1), "img_per_s": round(float(r.img_per_s), 1), "device": r.device,
        "threads": r.threads, "versions": r.versions, "diverged": r.diverged, "note": r.note, "scaled": r.scaled,
    }
    if used is not None:
        entry["used_in_table"] = used
    return entry


def run_from_entry(entry: dict[str, Any]) -> RunResult:
    """The RunResult a record entry holds (NaN where the record has null: a diverged run's accuracy)."""
    d = {k: v for k, v in entry.items() if k in _RESULT_FIELDS}
    d["recipe_name"] = entry["recipe"]
    for k in ("acc", "loss"):
        d[k] = float("nan") if d.get(k) is None else float(d[k])
    for k in ("acc_per_epoch", "loss_per_epoch", "train_loss_per_epoch"):
        d[k] = [float("nan") if x is None else float(x) for x in d.get(k) or []]
    d.setdefault("scaled", "")
    return RunResult(**d)


def pack(entries: Iterable[dict[str, Any]]) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """Run entries as the record stores them: each SHARED field's distinct values listed once (returned first) and
    the entry holding an index into that list; fields at their DEFAULTS left out. `unpack` inverts it."""
    shared: dict[str, list[Any]] = {f: [] for f in SHARED}
    index: dict[str, dict[str, int]] = {f: {} for f in SHARED}
    out = []
    for e in entries:
        e = {k: v for k, v in e.items() if not (k in DEFAULTS and v == DEFAULTS[k] and type(v) is type(DEFAULTS[k]))}
        for f in SHARED:
            if f in e:
                key = json.dumps(e[f], sort_keys=True)
                if key not in index[f]:
                    index[f][key] = len(shared[f])
                    shared[f].append(e[f])
                e[f] = index[f][key]
        out.append(e)
    return shared, out


def unpack(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The full run entries of a record (`pack`ed, or written before packing: then every entry is whole)."""
    shared = data.get("shared") or {}
    out = []
    for e in data.get("runs", []):
        e = {**json.loads(json.dumps(DEFAULTS)), **e}  # a fresh copy of the mutable defaults for each entry
        for f, values in shared.items():
            if type(e.get(f)) is int:
                e[f] = values[e[f]]
        out.append(e)
    return out


def read(path: str | os.PathLike = RECORD) -> list[RunResult]:
    """Every run of a record file."""
    return [run_from_entry(e) for e in unpack(json.loads(Path(path).read_text()))]


def restore(store: RunStore, runs: Iterable[RunResult]) -> tuple[int, int]:
    """Put each run that the store lacks into it under its recorded key; returns (added, already there)."""
    from tricks.recipes import RECIPES

    by_key = {r.key: r for r in RECIPES.values()}
    added = present = 0
    for r in runs:
        if store.put(r, by_key.get(r.recipe_key)):
            added += 1
        else:
            present += 1
    return added, present


# ------------------------------------------------------------------------------------------------ legacy keys

_OLD_FINGERPRINTS = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fingerprint_of_today", sys.argv[1])
fp = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fp  # its dataclasses look their module up
spec.loader.exec_module(fp)  # today's fingerprint procedure, over the old checkout's `tricks` (first on sys.path)
from tricks.recipes import RECIPES
arrays = fp.synthetic_arrays()
out = {}
for name in json.loads(sys.argv[2]):
    r = RECIPES.get(name)
    out[name] = None if r is None else [r.key, list(fp.compute(r, arrays))]
print("FINGERPRINTS " + json.dumps(out))
"""


def old_fingerprints(tree: str | os.PathLike, names: Sequence[str]) -> dict[str, tuple[str, tuple[float, ...]] | None]:
    """The fingerprints that the code of an old checkout computes for these recipe names: name -> (its recipe key
    there, the numbers), None where that checkout has no such recipe. Today's procedure, the old training code."""
    import tricks.fingerprint as fp

    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    out = subprocess.run([sys.executable, "-c", _OLD_FINGERPRINTS, fp.__file__, json.dumps(list(names))],
                         capture_output=True, text=True, env=env, cwd=str(Path(tree).resolve()), check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("FINGERPRINTS ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"fingerprinting the checkout {tree} failed: {out.stderr.strip().splitlines()[-1:]}")
    got = json.loads(line.split(" ", 1)[1])
    return {n: None if v is None else (v[0], tuple(float(x) for x in v[1])) for n, v in got.items()}


def rekey(runs: Sequence[RunResult], tree: str | os.PathLike) -> tuple[list[RunResult], dict[str, str]]:
    """The runs whose recipe computes, in the old checkout `tree` that trained them, the committed fingerprint, as
    copies under today's run version (a note says where they were trained); and, by recipe name, why the others
    cannot be carried over."""
    from tricks.recipe import committed, run_version

    have = committed()
    names = sorted({r.recipe_name for r in runs})
    old = old_fingerprints(tree, names)
    ok: dict[str, bool] = {}
    why: dict[str, str] = {}
    for r in runs:
        if r.recipe_name in ok:
            continue
        got = old.get(r.recipe_name)
        if got is None:
            why[r.recipe_name] = "the old checkout has no recipe of that name"
        elif got[0] != r.recipe_key:
            why[r.recipe_name] = "the old checkout's recipe of that name has another key"
        elif r.recipe_key not in have:
            why[r.recipe_name] = "no committed fingerprint for its key"
        elif not have[r.recipe_key].matches(got[1]):
            why[r.recipe_name] = "the old code computes other numbers (its fingerprint differs)"
        ok[r.recipe_name] = r.recipe_name not in why
    digest = lambda r: r.code_version.rsplit("+data.", 1)[-1]  # noqa: E731
    moved = [replace(r, code_version=run_version(digest(r), r.recipe_key),
                     note=(r.note + " " if r.note else "") + f"[trained under {r.code_version}; fingerprint verified "
                          "equal, re-keyed]")
             for r in runs if ok[r.recipe_name]]
    return moved, why


# ------------------------------------------------------------------------------------------------ the command


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.record restore|rekey`: the paper campaign's record into a run store."""
    ap = argparse.ArgumentParser(prog="python -m claims.record", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("restore", help="put the record's runs that the store lacks into it")
    r.add_argument("--record", default=str(RECORD), help=f"record file (default {RECORD})")
    k = sub.add_parser("rekey", help="carry runs stored under a source-hash version over to fingerprint keys")
    k.add_argument("--tree", required=True, help="a checkout of the commit whose code trained those runs")
    k.add_argument("--version", required=True,
                   help="their stored code version, e.g. 0.1.0+1e547ec4a13d+data.d009b9a61a05")
    k.add_argument("--from-store", default=None, help="read the runs from this store (default: the --store itself)")
    for p in (r, k):
        p.add_argument("--store", default=None, help="run store SQLite file (default: $TRICKS_STORE or the user cache)")
    args = ap.parse_args(argv)
    try:
        store = RunStore(args.store or default_store_path())
        if args.cmd == "restore":
            added, present = restore(store, read(args.record))
            print(f"{args.record}: {added} run(s) restored into {store.path}, {present} already there")
            return 0
        source = RunStore(args.from_store) if args.from_store else store
        runs = list(source.runs(profile=PROFILE, code_version=args.version))
        moved, why = rekey(runs, args.tree)
        added, present = restore(store, moved)
        for name, reason in sorted(why.items()):
            print(f"not carried over: {name}: {reason}")
        print(f"{len(runs)} run(s) under {args.version}: {added} re-keyed into {store.path}, {present} already there, "
              f"{len(runs) - len(moved)} left under the old key")
        return 0
    except (StoreError, OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
