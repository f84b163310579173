"""The published recipes, reproduced: our paper-profile runs beside the test accuracies the source documents published.

`python -m claims.reproduce` (`nox -s reproduce`) reads the run store, takes every `paper`-profile run of the recipes
with a published number (`claims.published`; by recipe key, from any code version unless `--code-version` picks one),
prints one row a published number (ours as mean ± SD and [min, max] over seeds, n, the difference, whether the
published value lies in our range, a note that says whether a miss is within seed noise and what explains it), the
paper-only claims judged by the suite's engine on those runs, writes that table into docs/reproduction.md between the
reproduce markers, and writes `results/paper-reproduction.json`: the campaign's record, every paper-profile run of the
store with all its fields (per-seed accuracy, per-epoch curves, wall time, device, threads, versions, dataset copy;
`claims.record`), compact. The claims suite takes its verdicts from the run store; `python -m claims.record restore`
puts the record back into a store, so a new machine recomputes them without training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from claims.published import PUBLISHED, Published
from claims.record import latest_per_seed, pack, run_entry
from claims.report.readme import md_cell, publish, run_writer
from claims.stats import prediction_half_width
from claims.store import RunStore, StoreError, default_store_path
from tricks.plain import finite, utc_stamp
from tricks.recipe import RunResult
from tricks.recipes import get_recipe, recipe_source

PROFILE = "paper"
MISS_PP = 2.0  # a mean further than this from the published value needs an explanation in the note
SCHEMA_VERSION = "2"  # 2: runs packed (claims.record.pack): shared values listed once, defaults left out
START = "<!-- reproduce:start -->"
END = "<!-- reproduce:end -->"
README = "docs/reproduction.md"
RECORD = Path("results") / "paper-reproduction.json"
JPEG_WHY = ("trained on the lossy JPEG copy of CIFAR-10, which puts absolute accuracies below the PNG originals' by an "
            "amount not measured here")
NOISE_LEVEL = 0.95  # the seed-noise check: two-sided prediction intervals at this level


@dataclass(frozen=True)
class SeedNoise:
    """The SD of one run's accuracy, pooled over a document's arms (each arm's own seeds), and its degrees of freedom.

    The seed-noise check assumes the original's runs scatter as ours do: a published single run lies, at 95 %, within
    our mean ± t(df) · sd · sqrt(1 + 1/n), and the mean of the original's k runs within ± t(df) · sd · sqrt(1/k + 1/n).
    """

    sd: float  # accuracy units
    df: int
    group: str  # whose arms were pooled, e.g. "doc 001's 8 arms"

    def half_width(self, n: int, k: int = 1) -> float:
        return prediction_half_width(self.sd, self.df, n, k, NOISE_LEVEL)


@dataclass(frozen=True)
class Offset:
    """How the arms with runs sit against their published values: a shift shared by all points at what they share."""

    below: int
    arms: int
    mean_pp: float

    def text(self) -> str:
        return (f"{self.below} of the {self.arms} arms with runs lie below their published values (mean "
                f"{self.mean_pp:+.1f} pp): a shift shared across recipes, as a change of data copy gives")


# ------------------------------------------------------------------------------------------------ rows


@dataclass
class Row:
    """One published number beside our runs of its recipe (the latest run of each seed)."""

    published: Published
    recipe_key: str
    runs: list[RunResult] = field(default_factory=list)  # one a seed, diverged ones included
    code_versions: list[str] = field(default_factory=list)
    noise: SeedNoise | None = None  # set by build_rows from the arms of the same document
    offset: Offset | None = None  # set by build_rows from every arm with runs

    @property
    def accs(self) -> list[float]:
        return [r.acc for r in self.runs if not r.diverged and r.acc is not None and math.isfinite(r.acc)]

    @property
    def n(self) -> int:
        return len(self.accs)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.accs) if self.accs else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.accs) if self.n >= 2 else None

    @property
    def diff_pp(self) -> float | None:
        """Our mean minus the published value, in percentage points."""
        return None if self.mean is None else 100.0 * (self.mean - self.published.value)

    @property
    def inside(self) -> bool | None:
        """The published value lies in our [min, max]; for a lower bound, every seed lies above it."""
        if not self.accs:
            return None
        if self.published.over:
            return min(self.accs) > self.published.value
        return min(self.accs) <= self.published.value <= max(self.accs)

    @property
    def miss(self) -> bool:
        """Our mean is more than MISS_PP from the published value (below it, for a lower bound)."""
        d = self.diff_pp
        if d is None:
            return False
        d = round(d, 9)  # 88 % against 90 % is a 2 pp gap, not 2.0000000000000018
        return -d > MISS_PP if self.published.over else abs(d) > MISS_PP

    @property
    def orig_mean(self) -> float | None:
        """The mean of the original's own runs of the recipe, where the source gives two or more."""
        return statistics.fmean(self.published.runs) if len(self.published.runs) >= 2 else None

    def seed_noise(self) -> tuple[bool, str] | None:
        """Whether the original's result is within seed noise of our mean, and the sentence that says so with its
        interval: the mean of the original's k runs against our interval for a k-run mean where the source gives
        them all (more of the original's evidence than its one published run), else the published run against our
        prediction interval for one run. None without a pooled SD or for a lower-bound claim."""
        if self.noise is None or self.mean is None or self.published.over:
            return None
        basis = f"SD {100 * self.noise.sd:.2f} pp pooled over {self.noise.group}, {self.noise.df} df"
        k, om = len(self.published.runs), self.orig_mean
        if om is not None:
            pm = self.noise.half_width(self.n, k)
            lo, hi = self.mean - pm, self.mean + pm
            inside = lo <= om <= hi
            best = " (the published run is the best of them)" if self.published.value >= max(self.published.runs) \
                else ""
            return inside, (f"{'within' if inside else 'beyond'} seed noise: the mean of the original's {k} runs, "
                            f"{100 * om:.2f}{best}, lies {'in' if inside else 'outside'} our {NOISE_LEVEL:.0%} "
                            f"interval for a {k}-run mean [{100 * lo:.2f}, {100 * hi:.2f}] ({basis})")
        pm = self.noise.half_width(self.n)
        lo, hi = self.mean - pm, self.mean + pm
        inside = lo <= self.published.value <= hi
        return inside, (f"{'within' if inside else 'beyond'} seed noise: the published run lies "
                        f"{'in' if inside else 'outside'} our {NOISE_LEVEL:.0%} prediction interval for one run "
                        f"[{100 * lo:.2f}, {100 * hi:.2f}] ({basis})")

    def note(self) -> str:
        """What the recipe corresponds to; 'not run'; and, for a miss, its registered explanation."""
        p = self.published
        parts = [] if self.n else ["not run"]
        if p.note:
            parts.append(p.note)
        if self.miss:
            overlap = self._overlaps_reruns()
            noise = self.seed_noise()
            whys = [w for w in (p.why,) if w]
            if noise is not None:
                whys.append(noise[1])
            if noise is None or not noise[0]:
                jpeg = self._jpeg_why()
                if jpeg:
                    whys += [jpeg] + ([self.offset.text()] if self.offset is not None else [])
            if overlap:
                whys.append(f"our range overlaps the original's own runs ({_range(p.reruns)}): its runs spread as "
                            "far as ours")
            side = "below" if self.diff_pp < 0 else "above"
            text = f"{abs(self.diff_pp):.1f} pp {side}: " + ("; ".join(whys) if whys else "no explanation registered")
            if overlap is False:
                text += f"; outside the original's own runs ({_range(p.reruns)}) too"
            parts.append(text)
        diverged = len(self.runs) - self.n
        if diverged:
            parts.append(f"{diverged} diverged run(s) left out")
        if len(self.code_versions) > 1:
            parts.append(f"runs from {len(self.code_versions)} code versions")
        return "; ".join(parts)

    def _overlaps_reruns(self) -> bool | None:
        """Our [min, max] meets the original's own runs' range; None without such runs (or ours)."""
        if self.published.reruns is None or not self.accs:
            return None
        lo, hi = self.published.reruns
        return min(self.accs) <= hi and max(self.accs) >= lo

    def _jpeg_why(self) -> str:
        below = self.diff_pp is not None and self.diff_pp < 0
        return JPEG_WHY if below and any("jpeg" in (r.dataset or "").lower() for r in self.runs) else ""


UNCLAIMED_SEEDS = 3  # the suite's first look: enough for the seed-noise check of a reproduction row


def unclaimed() -> list[str]:
    """The published recipes no claim of the suite trains (e.g. doc 002's 'Dropout' as the original ran it): the
    campaign trains `UNCLAIMED_SEEDS` seeds of each with `tricks.apply`, so the reproduction table has their rows."""
    from claims.answers import all_claims

    claimed = {r.key for c in all_claims() for r in c.recipes()}
    by_key: dict[str, str] = {}
    for p in PUBLISHED:
        by_key.setdefault(get_recipe(p.recipe).key, p.recipe)  # one name a key (two may share one): the first listed
    return [name for key, name in by_key.items() if key not in claimed]


def recipe_keys() -> dict[str, list[str]]:
    """Recipe key -> the published recipe names with that key (two names may share one, e.g. a bug's no-op arm)."""
    out: dict[str, list[str]] = {}
    for p in PUBLISHED:
        names = out.setdefault(get_recipe(p.recipe).key, [])
        if p.recipe not in names:
            names.append(p.recipe)
    return out


def paper_runs(store: RunStore, code_version: str | None = None, every: bool = False) -> list[RunResult]:
    """Every paper-profile run of a published recipe (of every recipe with `every`), oldest first (of one code
    version, when given)."""
    keys = recipe_keys()
    return [r for r in store.runs(profile=PROFILE, code_version=code_version) if every or r.recipe_key in keys]




def _doc_name(source: str) -> str:
    """A recipe source's document, as the sources list names it: "pal2021b" -> "doc 001"."""
    from claims.answers import DOCS

    return next((doc for doc, name in DOCS.items() if name == source), source)


def pooled_noise(rows: Sequence[Row]) -> dict[str, SeedNoise]:
    """Per document (recipe prefix): the SD of one run pooled over its arms with two or more seeds."""
    ss: dict[str, float] = {}
    dfs: dict[str, int] = {}
    arms: dict[str, int] = {}
    for row in _distinct_rows(rows):
        if row.n >= 2:
            doc = recipe_source(row.published.recipe)
            ss[doc] = ss.get(doc, 0.0) + (row.n - 1) * row.sd ** 2
            dfs[doc] = dfs.get(doc, 0) + row.n - 1
            arms[doc] = arms.get(doc, 0) + 1
    return {doc: SeedNoise(math.sqrt(ss[doc] / dfs[doc]), dfs[doc],
                           f"{_doc_name(doc)}'s {arms[doc]} arm(s)")
            for doc in ss if dfs[doc] >= 2}


def shared_offset(rows: Sequence[Row]) -> Offset | None:
    """How many arms with runs lie below their published values, and the mean difference (lower bounds left out)."""
    diffs = [row.diff_pp for row in _distinct_rows([r for r in rows if not r.published.over and r.n])]
    return Offset(sum(d < 0 for d in diffs), len(diffs), statistics.fmean(diffs)) if len(diffs) >= 2 else None


def build_rows(runs: Sequence[RunResult]) -> list[Row]:
    """One row a published number, in PUBLISHED's order, with each document's pooled seed noise and the offset."""
    by_key = latest_per_seed(runs)
    rows = []
    for p in PUBLISHED:
        key = get_recipe(p.recipe).key
        chosen = [by_key.get(key, {})[s] for s in sorted(by_key.get(key, {}))]
        rows.append(Row(p, key, chosen, list(dict.fromkeys(r.code_version for r in chosen))))
    noise, offset = pooled_noise(rows), shared_offset(rows)
    for row in rows:
        row.noise, row.offset = noise.get(recipe_source(row.published.recipe)), offset
    return rows


# ------------------------------------------------------------------------------------------------ paper-only claims

def paper_only_claims() -> list[Any]:
    """Every claim the suite judges only under the paper profile (a published number), in document order (C001-8
    before C002-10 before C004-1)."""
    from claims.answers import all_claims

    return [c for c in all_claims() if c.paper_only]


@dataclass
class ClaimLine:
    """A paper-only claim judged from the table's runs: its decision, or why there is none."""

    claim: Any
    n: int  # paired seeds (seeds every arm has)
    decision: Any = None
    missing: tuple[str, ...] = ()  # recipes without enough runs


def judge_paper_only(runs: Sequence[RunResult]) -> list[ClaimLine]:
    """Each paper-only claim judged as the suite judges it under the paper profile (`claims.answers.judge_paper`:
    the sequential looks, at the latest look whose seeds every arm has in these runs)."""
    from claims.answers import judge_paper

    by_key = latest_per_seed(runs)  # the table's runs: the judge treats a diverged one as the suite does
    lines = []
    for claim in paper_only_claims():
        d, n, _off = judge_paper(claim, by_key)
        missing = tuple(r.name for r in claim.recipes() if not by_key.get(r.key))
        if d is None:
            lines.append(ClaimLine(claim, n, missing=missing))
            continue
        lines.append(ClaimLine(claim, n, d))
    return lines


def claims_markdown(lines: Sequence[ClaimLine]) -> str:
    """The paper-only claims under the table: verdict and reason, or 'not run' with the arms that lack runs."""
    out = ["Paper-only claims (a published number; the default profile's scaled runs cannot judge them), judged here "
           "by the suite's engine on the seeds both arms have in the runs above:", ""]
    for line in lines:
        c = line.claim
        d = line.decision
        if d is None:
            what = f"not run ({', '.join(f'`{m}`' for m in line.missing) or 'no paired seeds'})"
        elif not d.final:
            what = f"{line.n} seeds so far (more looks to come): {md_cell(d.reason)}"
        else:
            what = f"**{getattr(d.verdict, 'value', d.verdict)}** at n = {line.n}: {md_cell(d.reason)}"
        out.append(f"- {c.id} (“{md_cell(c.quote)}”): {what}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------ markdown


def _pct(x: float) -> str:
    """A published fraction in %, with the digits it was published with (0.81 -> 81.0, 0.46924 -> 46.92)."""
    text = f"{100 * x:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _range(r: tuple[float, float]) -> str:
    return f"{_pct(r[0])}–{_pct(r[1])}"


def _published(p: Published) -> str:
    text = ("over " if p.over else "") + _pct(p.value)
    return text + (f" (runs {_range(p.reruns)})" if p.reruns is not None else "")


def row_cells(row: Row) -> list[str]:
    """The table cells of a row; every 'ours' cell reads 'not run' when there are no runs."""
    p = row.published
    head = [f"`{p.recipe}`", _published(p), md_cell(p.source)]
    if not row.n:
        return head + ["not run"] * 4 + ["—", md_cell(row.note())]
    accs = row.accs
    sd = f" ± {100 * row.sd:.2f}" if row.sd is not None else " (one seed)"
    inside = {True: "yes", False: "no"}[row.inside]
    if p.over:
        inside = "all above" if row.inside else "not all above"
    return head + [f"{100 * row.mean:.2f}{sd}", f"[{100 * min(accs):.2f}, {100 * max(accs):.2f}]", str(row.n),
                   f"{row.diff_pp:+.2f}", inside, md_cell(row.note())]


def footer(rows: Sequence[Row], code_version: str | None, generated: str) -> str:
    """Where the numbers come from: profile, code versions (with run counts), dataset copies, devices, date."""
    runs = [r for row in _distinct_rows(rows) for r in row.runs]
    keys = Counter("a training fingerprint" if r.code_version.startswith("fp.") else f"`{r.code_version}`"
                   for r in runs)
    code = Counter(_trained_under(r) for r in runs)
    cv = (", ".join(f"{v} ({k} run(s))" for v, k in keys.items()) + "; trained under code "
          + ", ".join(f"`{v}` ({k})" for v, k in code.items())) if runs else "none"
    data = "; ".join(dict.fromkeys(r.dataset for r in runs)) or "—"
    devices = ", ".join(sorted({f"{r.device} ({r.threads} thread(s))" for r in runs})) or "—"
    restrict = f", restricted to code version `{code_version}`" if code_version else ", any code version"
    return (f"Profile **{PROFILE}** (the published recipes: all 50,000 training images, the published epochs), "
            f"{len(runs)} run(s){restrict}: the latest run of each seed; keyed by {cv}; dataset {md_cell(data)}; "
            f"devices {md_cell(devices)}; generated {generated[:10]}. Accuracies in %, differences in pp (ours − "
            f"published); a note explains every mean more than {MISS_PP:g} pp from its published value.")


def _trained_under(r: RunResult) -> str:
    """The source hash of the code that trained a run: its versions' "code", the re-keyed run's note, or its key."""
    for text in ((r.versions or {}).get("code", ""), r.note or "", r.code_version):
        found = re.search(r"(?:trained under |^)\d+\.\d+\.\d+\S*?\+([0-9a-f]{12})\b", text)
        if found:
            return found.group(1)
    return "unknown"


def _distinct_rows(rows: Sequence[Row]) -> list[Row]:
    """Rows of distinct recipe keys (a recipe with two published numbers counts its runs once)."""
    return list({row.recipe_key: row for row in rows}.values())


def table_markdown(rows: Sequence[Row], code_version: str | None = None, generated: str = "",
                   claims: Sequence[ClaimLine] | None = None) -> str:
    """The README block: the table, its footer and, when given, the paper-only claims judged from the runs."""
    lines = ["| arm | published | source | ours mean ± SD | [min, max] | n | ours − published (pp) | "
             "published in [min, max] | note |",
             "| --- | ---: | --- | ---: | --- | ---: | ---: | --- | --- |"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    text = "\n".join(lines + ["", footer(rows, code_version, generated or utc_stamp())]) + "\n"
    return text + ("\n" + claims_markdown(claims) if claims else "")


# ------------------------------------------------------------------------------------------------ the record


def claim_record(line: ClaimLine) -> dict[str, Any]:
    d = line.decision
    return {"id": line.claim.id, "n": line.n, "missing": list(line.missing),
            "verdict": None if d is None else str(getattr(d.verdict, "value", d.verdict)),
            "reason": None if d is None else d.reason, "mean": None if d is None else finite(d.mean),
            "lower": None if d is None else finite(d.lower), "upper": None if d is None else finite(d.upper)}


def record(runs: Sequence[RunResult], rows: Sequence[Row], code_version: str | None, generated: str,
           claims: Sequence[ClaimLine] = ()) -> dict[str, Any]:
    """The JSON record: every paper-profile run (a seed rerun under newer code is kept, `used_in_table` false; runs
    of recipes without a published number too), and the paper-only claims judged from them."""
    keys = recipe_keys()
    used = {id(r) for row in rows for r in row.runs}
    shared, entries = pack(run_entry(r, keys.get(r.recipe_key, [r.recipe_name]), id(r) in used) for r in runs)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated": generated,
        "machine": {"platform": platform.platform(terse=True), "machine": platform.machine(),
                    "cpu_count": os.cpu_count(), "run_devices": sorted({r.device for r in runs})},
        "profile": PROFILE,
        "code_version_filter": code_version,
        "note": "every paper-profile run of the campaign (python -m claims.record restore puts them into a run store) "
                "and the reproduction table's verdicts recomputed from them; a run's code_version, dataset, device "
                "and versions are indices into the lists under 'shared', and also_named, note, scaled and diverged "
                "are left out where they are [], '', '' and false",
        "published": [asdict(p) for p in PUBLISHED],
        "shared": shared,  # each run's code_version, dataset, device and versions: an index into these lists
        "runs": entries,
        "paper_only_claims": [claim_record(c) for c in claims],
    }


# ------------------------------------------------------------------------------------------------ the command


def open_store(path: str | os.PathLike) -> RunStore:
    """The run store at `path`; StoreError (one sentence) when it is missing, empty or not a tricks run store. Reading
    the table must not create a store, so nothing is written to a file that is not one already."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise StoreError(f"run store {p} does not exist" + (" (it is a folder)" if p.is_dir() else ""))
    if p.stat().st_size == 0:
        raise StoreError(f"run store {p} is an empty file, not a run store")
    return RunStore(p)  # which first checks, read-only, that an existing file is a run store and not another database


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.reproduce`: the reproduction table, into docs/reproduction.md and a JSON record."""
    ap = argparse.ArgumentParser(prog="python -m claims.reproduce", description=main.__doc__)
    ap.add_argument("--store", default=None, help="run store SQLite file (default: $TRICKS_STORE or the user cache)")
    ap.add_argument("--code-version", default=None, help="only runs of this code version (default: any)")
    ap.add_argument("--readme", default=README, help=f"README whose reproduce block is replaced (default {README})")
    ap.add_argument("--json", default=str(RECORD), help=f"where the run record goes (default {RECORD})")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--unclaimed", action="store_true",
                    help="print the published recipes no claim trains, one a line (the campaign trains them), and stop")
    args = ap.parse_args(argv)
    if args.unclaimed:
        print("\n".join(unclaimed()))
        return 0
    try:
        store = open_store(args.store or default_store_path())
        every = paper_runs(store, args.code_version, every=True)
        keys = recipe_keys()
        runs = [r for r in every if r.recipe_key in keys]
        if args.code_version and not runs:
            known = sorted({r.code_version for r in store.runs(profile=PROFILE)})
            raise StoreError(f"the store has no {PROFILE}-profile run of a published recipe under code version "
                             f"{args.code_version} (it has: {', '.join(known) or 'none'})")
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    generated = utc_stamp()
    rows = build_rows(runs)
    claims = judge_paper_only(runs)
    table = table_markdown(rows, args.code_version, generated, claims)
    print(table)
    if args.no_write:
        return 0

    def write() -> str:
        text = json.dumps(record(every, rows, args.code_version, generated, claims), separators=(",", ":"),
                          allow_nan=False)
        publish(table, args.readme, (START, END), args.json, text + "\n")
        return f"{args.json}: {len(every)} run(s) recorded; {args.readme}: reproduction table replaced"

    return run_writer(write)


if __name__ == "__main__":
    raise SystemExit(main())
