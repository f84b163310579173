"""Where the paper campaign stands, document by document, from the committed record alone (no training, no store):
how many claims have a paper verdict, how many wait for more seeds, how many this machine cannot judge, the runs
and training time spent so far, and the runs each waiting claim's next look still lacks with their estimated
training time (the median wall time of the recipe's recorded runs; a recipe with no run yet has no estimate).

`python -m claims.standing` prints it; `--doc docs/campaign.md` writes it between the standing markers
(`nox -s readme` does both from the record that `nox -s reproduce` wrote).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claims.answers import DOCS, all_claims, judge_paper, judged_status, off_label, paper_plan, source_of
from claims.record import RECORD, latest_per_seed, run_from_entry, unpack
from claims.report.readme import publish, run_writer
from tricks.recipe import RunResult

START, END = "<!-- standing:start -->", "<!-- standing:end -->"
CROSS = "cross (X-)"
_PREFIX_DOC = {short: doc for doc, short in DOCS.items()}


@dataclass
class Waiting:
    """A claim without a paper verdict yet: the seeds every arm has, the look it waits for, what that look lacks."""
    id: str
    have: int
    next_look: int
    missing: list[tuple[str, str, int]]  # (recipe key, recipe name, seed)


@dataclass
class Group:
    name: str
    claims: int = 0
    verdicts: Counter = field(default_factory=Counter)
    waiting: list[Waiting] = field(default_factory=list)
    off: Counter = field(default_factory=Counter)  # reason (short) -> claims
    runs: int = 0
    wall_s: float = 0.0


def group_of(claim: Any) -> str:
    """The claim's document ("doc 001"), or the cross group for claims that span documents."""
    return CROSS if claim.id.startswith("X-") else source_of(claim)


def doc_of_recipe(name: str) -> str:
    """The document a recipe belongs to, from its name's prefix ("pal2021b/wider" -> "doc 001")."""
    return _PREFIX_DOC.get(name.split("/")[0], name.split("/")[0])


def waiting_for(claim: Any, by_key: dict[str, dict[int, RunResult]]) -> Waiting | None:
    """What a claim without a final paper verdict waits for: its next look and the (recipe, seed) runs that look
    lacks. None when the profile cannot judge it on this machine."""
    from claims.schedule import DEFAULT_SEEDS

    plan = paper_plan(claim, by_key)
    if plan.off is not None:
        return None
    later = [n for n in plan.looks if n > plan.done]
    if not later:  # the last look judged but not final cannot happen (the last look decides); be safe
        return None
    names = {r.key: r.name for r in plan.claim.recipes()}
    missing = [(k, names.get(k, k), s) for k in plan.keys for s in DEFAULT_SEEDS[:later[0]]
               if s not in by_key.get(k, {})]
    return Waiting(claim.id, plan.have, later[0], missing)


def standing(runs: Sequence[RunResult], claims: Sequence[Any] | None = None) -> list[Group]:
    """One Group per document (and one for the cross claims), in document order."""
    claims = all_claims() if claims is None else claims
    by_key = latest_per_seed(runs)
    groups: dict[str, Group] = {}
    for c in claims:
        g = groups.setdefault(group_of(c), Group(group_of(c)))
        g.claims += 1
        st = judged_status(*judge_paper(c, by_key))  # the record's latest run of each seed, read once above
        if st.off:
            g.off[st.off] += 1
        elif st.final:
            g.verdicts[st.verdict] += 1
        elif (w := waiting_for(c, by_key)) is not None:
            g.waiting.append(w)
        else:
            g.off[off_label(st.reason)] += 1
    for per_seed in by_key.values():
        for r in per_seed.values():
            g = groups.get(doc_of_recipe(r.recipe_name))
            if g is not None:
                g.runs += 1
                g.wall_s += r.wall_s
    order = sorted(groups, key=lambda name: (name == CROSS, name))
    return [groups[name] for name in order]


def median_walls(runs: Sequence[RunResult]) -> dict[str, float]:
    """Recipe key -> the median wall time (s) of its recorded runs."""
    walls: dict[str, list[float]] = {}
    for per_seed in latest_per_seed(runs).values():
        for r in per_seed.values():
            walls.setdefault(r.recipe_key, []).append(r.wall_s)
    return {k: statistics.median(v) for k, v in walls.items()}


def estimate(pairs: set[tuple[str, str, int]], walls: dict[str, float]) -> tuple[float, int]:
    """(estimated seconds of the timed runs, how many runs have no estimate) for a set of (key, name, seed) runs."""
    timed = [walls[k] for k, _, _ in pairs if k in walls]
    return sum(timed), len(pairs) - len(timed)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _cost(pairs: set[tuple[str, str, int]], walls: dict[str, float]) -> str:
    if not pairs:
        return "0"
    s, untimed = estimate(pairs, walls)
    return f"{len(pairs)} ({hours(s)}" + (f" + {untimed} untimed" if untimed else "") + ")"


def markdown(groups: Sequence[Group], runs: Sequence[RunResult], generated: str, machines: str,
             size: int | None = None) -> str:
    """The standing block; `size`: the record file's bytes, said in its first line."""
    walls = median_walls(runs)
    lines = ["| document | claims | paper verdict | waiting for seeds | not judged on this machine | runs in the "
             "record (training time) | runs the waiting claims' next looks lack (estimated time) |",
             "| --- | ---: | --- | ---: | --- | --- | --- |"]
    every: set[tuple[str, str, int]] = set()
    total = Group("all")
    for g in groups:
        pairs = {m for w in g.waiting for m in w.missing}
        every |= pairs
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(g.verdicts.items())) or "—"
        off = ", ".join(f"{n} ({why})" for why, n in sorted(g.off.items())) or "—"
        runs_cell = f"{g.runs} ({hours(g.wall_s)})" if g.name != CROSS else "(their documents' runs)"
        lines.append(f"| {g.name} | {g.claims} | {verdicts} | {len(g.waiting)} | {off} | {runs_cell} | "
                     f"{_cost(pairs, walls)} |")
        total.claims += g.claims
        total.verdicts.update(g.verdicts)
        total.off.update(g.off)
        total.waiting += g.waiting
        total.runs += g.runs
        total.wall_s += g.wall_s
    decided = sum(total.verdicts.values())
    lines.append(f"| **all** | {total.claims} | {decided} | {len(total.waiting)} | {sum(total.off.values())} | "
                 f"{total.runs} ({hours(total.wall_s)}) | {_cost(every, walls)} |")
    head = (f"Generated {generated} by `python -m claims.standing` from the committed record ({len(runs)} paper runs"
            f"{'' if size is None else f' in {size / 1000:.0f} KB'}, trained on {machines}). Training time is the "
            "runs' wall time summed, one thread a run, under whatever "
            "load the machine had; an estimate is the median wall time of the recipe's recorded runs, and a recipe "
            "with no run yet is counted as untimed. Runs shared by several claims count once a row and once in "
            "the total.")
    detail = ["", "| waiting claim | seeds every arm has | next look | runs it lacks |", "| --- | ---: | ---: | --- |"]
    for w in total.waiting:
        names = Counter(name for _, name, _ in w.missing)
        lacks = ", ".join(f"`{n}` ×{k}" for n, k in names.items()) or "—"
        detail.append(f"| {w.id} | {w.have} | {w.next_look} | {lacks} |")
    return "\n".join([head, "", *lines, *(detail if total.waiting else [])])


def build(record_path: Path = RECORD) -> str:
    text = record_path.read_text() if record_path.exists() else None
    data = json.loads(text) if text is not None else {}
    runs = [run_from_entry(e) for e in unpack(data)]  # the file read and parsed once
    machines = ", ".join(sorted({r.device for r in runs})) or "no machine yet"
    size = len(text.encode()) if text is not None else None
    return markdown(standing(runs), runs, str(data.get("generated", "?")), machines, size)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.standing`: where the paper campaign stands, per document, from the committed record."""
    ap = argparse.ArgumentParser(prog="python -m claims.standing", description=main.__doc__)
    ap.add_argument("--record", default=str(RECORD))
    ap.add_argument("--doc", default=None, help="write the table into this file between the standing markers")
    args = ap.parse_args(argv)

    def write() -> None:
        text = build(Path(args.record))
        print(text)
        publish(text, args.doc, (START, END), None, "")

    return run_writer(write)


if __name__ == "__main__":
    raise SystemExit(main())
