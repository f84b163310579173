"""`nox -s figures` (`python benchmarks/figures.py`): time the commands the README and docs quote, and write the times
with the date and the machine between the timings markers of docs/performance.md, so no figure there is typed by hand.

Each command runs in a fresh interpreter from an empty temporary run store (nothing cached), with `TRICKS_DATA` as
set (else fastai's download), one after another: `--list`, the README's `--cb BnFreeze`, a smoke `--compare --seeds
5`, the README's Python example (its block, run as written), `nox -s tests` and the smoke claims suite (its report in
the temporary folder). The machine line names the CPU, its cores, the
GPU if any, torch, and the load average before and after, since the times are wall times on whatever else runs.

    python benchmarks/figures.py                      # measure all, write docs/performance.md
    python benchmarks/figures.py --only list --dry-run   # measure one, print the block
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- timings:start -->", "<!-- timings:end -->"
APPLY = [sys.executable, "-m", "tricks.apply"]
TMP = "{tmp}"  # in a command's argv: the temporary folder it runs beside (its run store's folder)


@dataclass(frozen=True)
class Command:
    key: str
    shown: str  # as the README writes it
    argv: tuple[str, ...]


def readme_example() -> str:
    """The README's Python block (its "A callback in your own Learner" section), as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## A callback in your own Learner\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def commands() -> list[Command]:
    return [
        Command("list", "python -m tricks.apply --list", (*APPLY, "--list")),
        Command("bnfreeze", "python -m tricks.apply --cb BnFreeze", (*APPLY, "--cb", "BnFreeze", "--quiet")),
        Command("compare", "python -m tricks.apply --cb dropout_conv:p=0.3 --compare --seeds 5 --profile smoke",
                (*APPLY, "--cb", "dropout_conv:p=0.3", "--compare", "--seeds", "5", "--profile", "smoke",
                 "--quiet")),
        Command("example", "the README's Python example", (sys.executable, "-c", readme_example())),
        Command("tests", "nox -s tests", (sys.executable, "-m", "nox", "-s", "tests")),
        Command("smoke", "nox -s claims -- --profile smoke",
                (sys.executable, "-m", "nox", "-s", "claims", "--", "--profile", "smoke", "--report-dir", TMP)),
    ]


@dataclass(frozen=True)
class Timing:
    command: Command
    wall_s: float
    rc: int


def run_command(cmd: Command, store: Path) -> Timing:
    """Run one command from an empty run store; its wall time and exit code."""
    env = {**os.environ, "TRICKS_STORE": str(store), "PYTHONPATH": str(ROOT)}
    argv = [a.replace(TMP, str(store.parent)) for a in cmd.argv]
    t0 = time.perf_counter()
    rc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    return Timing(cmd, time.perf_counter() - t0, rc)


def machine() -> str:
    """The CPU, its cores, the GPU if any, the Python and torch versions."""
    from tricks.plain import cpu_model

    cpu = cpu_model()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{platform.system()} {platform.machine()}")


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def niced_cpu_s(proc: Path = Path("/proc"), min_nice: int = 10) -> dict[int, float] | None:
    """CPU seconds so far of every process running at nice >= `min_nice` (background work such as the paper
    campaign), by pid, from /proc; None where there is no /proc (not Linux)."""
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[int, float] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
        # cstime priority nice ...
        if len(fields) > 16 and int(fields[16]) >= min_nice:
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def background_share(before: dict[int, float] | None, after: dict[int, float] | None, wall_s: float) -> str:
    """How much CPU the niced background took while the commands ran: ', background work at nice >= 10 took N
    CPU-s of the cores' M' (nothing where /proc is missing)."""
    if before is None or after is None:
        return ""
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    return f"; background work at nice ≥ 10 took {used:,.0f} CPU-s of the {os.cpu_count()} cores' " \
           f"{wall_s * (os.cpu_count() or 1):,.0f}"


def _dur(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s" if m else f"{s:.1f} s"


def _cell(cmd: Command) -> str:
    return cmd.shown if cmd.key == "example" else f"`{cmd.shown}`"  # commands as code, the example in words


def block(timings: Sequence[Timing], when: str, where: str, load: tuple[str, str], data: str,
          background: str = "") -> str:
    """The markdown between the timings markers: date, machine, load (and what niced background work took), data,
    then one row a command."""
    rows = [f"| {_cell(t.command)} | {_dur(t.wall_s)} | {t.rc} |" for t in timings]
    return "\n".join([
        f"Measured {when} by `nox -s figures` on {where}; load average {load[0]} before, {load[1]} after"
        f"{background}; data {data}; every command from an empty run store, one thread a run.",
        "",
        "| command | wall time | exit code |",
        "| --- | ---: | ---: |",
        *rows,
    ])


def measure(selected: Sequence[Command], run: Callable[[Command, Path], Timing] = run_command) -> list[Timing]:
    out = []
    for cmd in selected:
        with tempfile.TemporaryDirectory() as tmp:
            out.append(run(cmd, Path(tmp) / "runs.sqlite"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/figures.py", description=__doc__.split("\n")[0])
    ap.add_argument("--doc", default=str(DOC), help=f"the file whose timings block is replaced (default {DOC})")
    ap.add_argument("--only", action="append", default=None, metavar="KEY",
                    help="measure only these commands (list, bnfreeze, compare, example, tests, smoke)")
    ap.add_argument("--dry-run", action="store_true", help="print the block, write nothing")
    args = ap.parse_args(argv)
    every = commands()
    keys = {c.key for c in every}
    unknown = sorted(set(args.only or ()) - keys)
    if unknown:
        print(f"error: --only {unknown[0]} is not one of {', '.join(sorted(keys))}", file=sys.stderr)
        return 2
    selected = [c for c in every if args.only is None or c.key in args.only]
    before, niced = _load(), niced_cpu_s()
    t0 = time.perf_counter()
    timings = measure(selected)
    share = background_share(niced, niced_cpu_s(), time.perf_counter() - t0)
    text = block(timings, dt.date.today().isoformat(), machine(), (before, _load()),
                 os.environ.get("TRICKS_DATA", "fastai's CIFAR-10 download"), share)
    print(text)
    if not args.dry_run:
        sys.path.insert(0, str(ROOT))
        from claims.report.readme import replace_block

        try:
            replace_block(args.doc, START, END, text)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0 if all(t.rc == 0 for t in timings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
