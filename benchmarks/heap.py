"""Memory and time of a training run under three heap settings, side by side: what `tricks.train.HeapTrim` costs
and what it saves, against glibc's defaults and against a fixed mmap threshold (the environment fix used before).

Each arm trains the same recipe, seed 0, under the `paper` profile cut to `--epochs`, one thread, in a fresh
interpreter; the arms take turns in each round, so load from other processes hits them alike. Printed per recipe:
each arm's median wall time, peak RSS (the process's high-water mark) and minor page faults, and the ratios to
glibc's defaults. `--write` puts the table, with the date and the machine, between the heap markers of
docs/performance.md.

    TRICKS_DATA=... python benchmarks/heap.py                 # he2016/naive 5 epochs, pal2021a/baseline 1 epoch
    python benchmarks/heap.py --recipe he2016/naive:3 --rounds 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- heap:start -->", "<!-- heap:end -->"
RECIPES = ("he2016/naive:5", "pal2021a/baseline:1")


@dataclass(frozen=True)
class Arm:
    key: str
    shown: str
    trim_every: int | None
    env: tuple[tuple[str, str], ...] = ()


ARMS = (Arm("glibc", "glibc defaults", None),
        Arm("trim", "HeapTrim every 100 batches (what `run` does)", 100),
        Arm("mmap", "MALLOC_MMAP_THRESHOLD_=131072, no trim", None, (("MALLOC_MMAP_THRESHOLD_", "131072"),)))

CHILD = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from tricks.apply_plan import rescale_epochs
from tricks.recipes import get_recipe
from tricks.train import run
name, epochs, trim = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
t = time.perf_counter()
res = run(rescale_epochs(get_recipe(name), epochs), 0, "paper", device="cpu", trim_every=trim)
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t, "peak_mb": use.ru_maxrss / 1024, "minflt": use.ru_minflt,
                  "acc": res.acc}))
"""


def run_arm(arm: Arm, recipe: str, epochs: int) -> dict[str, float]:
    """One run of `recipe` in a fresh interpreter under the arm's setting: its wall time, peak RSS, faults, accuracy."""
    env = {**os.environ, **dict(arm.env), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, recipe, str(epochs), json.dumps(arm.trim_every)], env=env,
                         capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"heap benchmark: {recipe} under '{arm.shown}' failed: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(recipes: Sequence[str], rounds: int, arms: Sequence[Arm] = ARMS) -> dict[str, dict[str, list[dict]]]:
    """{recipe spec: {arm key: [one result per round]}}, the arms taking turns in each round."""
    results: dict[str, dict[str, list[dict]]] = {}
    for spec in recipes:
        name, epochs = parse_spec(spec)
        per = results.setdefault(spec, {a.key: [] for a in arms})
        for r in range(rounds):
            for arm in arms if r % 2 == 0 else arms[::-1]:
                per[arm.key].append(run_arm(arm, name, epochs))
                row = per[arm.key][-1]
                print(f"{spec} round {r + 1} {arm.key}: {row['wall_s']:.1f} s, peak {row['peak_mb']:.0f} MB, "
                      f"{row['minflt']:,} faults", flush=True)
    return results


def parse_spec(spec: str) -> tuple[str, int]:
    """'recipe:epochs' (epochs default 1)."""
    name, _, epochs = spec.partition(":")
    try:
        n = int(epochs or 1)
    except ValueError:
        raise SystemExit(f"heap benchmark: '{spec}' is not RECIPE[:EPOCHS]") from None
    if n < 1:
        raise SystemExit(f"heap benchmark: '{spec}' asks for {n} epochs")
    return name, n


def table(results: dict[str, dict[str, list[dict]]], arms: Sequence[Arm] = ARMS) -> list[str]:
    """Markdown rows: per recipe and arm, the medians and their ratios to glibc's defaults."""
    lines = ["| recipe (epochs) | heap setting | wall (median) | vs glibc | peak RSS (median) | vs glibc | "
             "minor faults | accuracy |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec, per in results.items():
        med = {k: {f: statistics.median(r[f] for r in rows) for f in ("wall_s", "peak_mb", "minflt")}
               for k, rows in per.items()}
        base = med[arms[0].key]
        for arm in arms:
            m, acc = med[arm.key], {f"{r['acc']:.4f}" for r in per[arm.key]}
            lines.append(f"| {spec} | {arm.shown} | {m['wall_s']:.1f} s | {m['wall_s'] / base['wall_s']:.2f}x | "
                         f"{m['peak_mb']:,.0f} MB | {m['peak_mb'] / base['peak_mb']:.2f}x | {m['minflt']:,.0f} | "
                         f"{', '.join(sorted(acc))} |")
    return lines


def block(lines: Sequence[str], rounds: int, when: str, where: str, load: tuple[float, float]) -> str:
    """The measured table under one line of provenance: when, how, the machine, and its load average (1 min) before
    and after (wall times are on whatever else ran)."""
    return "\n".join([f"Measured {when} by `python benchmarks/heap.py` ({rounds} round(s), arms taking turns) on "
                      f"{where}; load average {load[0]:.1f} before, {load[1]:.1f} after.", "", *lines])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", action="append", help=f"RECIPE[:EPOCHS], repeatable (default: {', '.join(RECIPES)})")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = p.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit("heap benchmark: --rounds must be at least 1")
    recipes = args.recipe or list(RECIPES)
    for spec in recipes:
        parse_spec(spec)
    sys.path.insert(0, str(ROOT))
    from benchmarks.figures import machine

    load_before = os.getloadavg()[0]
    results = measure(recipes, args.rounds)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = block(table(results), args.rounds, when, machine(), (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        from claims.report.readme import replace_block

        replace_block(DOC, START, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
