"""Scheduling runs for many claims at once: executors, the round-by-round scheduler of sequential looks, the A/A pilot.

The scheduler works in rounds. In each round every undecided claim asks for the seeds of its next look (3, 5, 8, 12
by default); the union of the (recipe, seed) runs they need is taken, so a baseline shared by eight claims trains
once per seed; runs already in the store are skipped; the rest are leased, trained by an `Executor` and stored as
each one finishes. Then every claim of the round is judged, and a claim stops as soon as its verdict is final.

An executor maps jobs to RunResults and nothing more (`map_runs`, claims/executors/): `LocalExecutor` runs one-thread
worker processes on this machine, `RayExecutor` (claims/executors/ray.py) Ray tasks on a cluster.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from claims.executors.base import Executor, Job, RunFailure
from claims.progress import RoundProgress
from claims.store import RunStore
from tricks.recipe import CODE_VERSION, Recipe, RunResult

__all__ = ["Scheduler", "Compute", "capped_looks", "pilot", "PilotResult", "PilotError", "DEFAULT_SEEDS",
           "PILOT_SEED_OFFSET"]

DEFAULT_SEEDS: tuple[int, ...] = tuple(range(12))
PILOT_SEED_OFFSET = 1000  # the pilot's B arm draws seeds from here, disjoint from the claims' seeds


# ------------------------------------------------------------------------------------------------ compute


@dataclass
class Compute:
    """Compute one claim spent: the runs it used, their training seconds in full and with shared runs split."""

    runs: int = 0
    seconds: float = 0.0  # every run the claim used, counted in full (shared runs counted once per claim)
    seconds_split: float = 0.0  # each shared run's seconds divided among the claims that used it
    trained: int = 0  # runs trained in this session (the rest came from the store)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _ClaimState:
    claim: Any
    looks: tuple[int, ...]
    i: int = 0
    n: int = 0
    decision: Any = None
    error: str | None = None
    done: bool = False


def versions_of(code_version: str | Callable[[str], str] | None) -> Callable[[str], str]:
    """recipe key -> the store version of its runs: a `tricks.recipe.RunVersions`, or one version for every recipe."""
    if callable(code_version):
        return code_version
    version = code_version or CODE_VERSION
    return lambda _key: version


def capped_looks(looks: Sequence[int], max_seeds: int | None, n_seeds: int) -> tuple[int, ...]:
    """The looks within the seed budget: those <= min(max_seeds, number of seeds), or that cap alone if none are."""
    cap = n_seeds if max_seeds is None else min(max_seeds, n_seeds)
    if cap < 2:
        raise ValueError(f"a claim needs at least 2 seeds per arm; the budget allows {cap}")
    kept = tuple(sorted({n for n in looks if n <= cap}))
    return kept or (cap,)


class Scheduler:
    """Runs and judges many claims together, sharing runs between them; `.run()` returns every claim's Decision.

    `gates` (claim id -> claims.verdict.Gate): what the profile does with each claim, as the caller already decided
    it on this device (the pytest plugin); claims without one are gated here. `claims` then holds each claim with the
    arms its profile trains."""

    def __init__(self, claims: Sequence[Any], store: RunStore | None, executor: Executor, profile: str = "default",
                 seeds: Sequence[int] = DEFAULT_SEEDS, max_seeds: int | None = None, device_has_gpu: bool = False,
                 progress: bool = True, *, sigma_d_pilot: float | None = None, pilot_source: str | None = None,
                 code_version: str | Callable[[str], str] | None = None, poll_s: float = 2.0, console: Any = None,
                 judge: Callable[..., Any] | None = None, confirm: bool = False, alpha_family: float = 0.05,
                 gates: Mapping[str, Any] | None = None):
        ids = [c.id for c in claims]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"claim id {dup[0]} is given twice")
        if len(set(seeds)) != len(seeds):
            raise ValueError("the seed list repeats a seed")
        self.store, self.executor, self.profile = store, executor, str(profile)
        self.seeds = tuple(int(s) for s in seeds)
        self.max_seeds, self.device_has_gpu, self.progress = max_seeds, device_has_gpu, progress
        self.sigma_d_pilot = sigma_d_pilot
        # the source (recipe-name prefix, e.g. "pal2021b") whose arms the pilot's σ_d speaks for; None: every claim's
        self.pilot_source = pilot_source
        # the store version of each recipe's runs (tricks.recipe.RunVersions: its training fingerprint + the dataset
        # copy), or one version for every recipe (--code-version, tests)
        self.version = versions_of(code_version)
        self.code_version = str(code_version or CODE_VERSION)
        self.poll_s, self.console = poll_s, console
        self.judge = judge  # None: claims.verdict.judge (a parameter so that tests can script the verdicts)
        self.confirm, self.alpha_family = confirm, alpha_family  # --confirm: SUPPORTED claims sample on to clear Holm
        self.confirmations: dict[str, str] = {}  # claim id -> what confirmation sampling did (only under confirm)
        # what the profile does with each claim here (claims.verdict.gate), decided once: `gates` as the caller
        # decided them on the device alone, else here; a claim kept from runs for want of a GPU whose GPU-sized arms
        # have every run in the store already is decided again, as on a GPU
        from claims.verdict import gate

        given = gates or {}
        self.gates = {}
        for c in claims:
            g = given.get(c.id)
            if g is None or (not g.needs_runs and not g.gpu and self._gpu_runs_stored(g.claim)):
                g = gate(c, self.profile, device_has_gpu, self._gpu_runs_stored)
            self.gates[c.id] = g
        self.claims = [self.gates[c.id].claim for c in claims]
        self.states = {c.id: _ClaimState(c, capped_looks(c.looks, max_seeds, len(self.seeds))) for c in self.claims}
        self.results: dict[tuple[str, int], RunResult] = {}
        self.failures: dict[tuple[str, int], RunFailure] = {}
        self.trained: set[tuple[str, int]] = set()  # trained in this session (not taken from the store)
        self.warnings: list[str] = []
        self.rounds = 0
        self.wall_s = 0.0

    # -------------------------------------------------------------------------------------------- views

    @property
    def decisions(self) -> dict[str, Any]:
        """Every judged claim's latest Decision (claims stopped by an error have none)."""
        return {cid: st.decision for cid, st in self.states.items() if st.decision is not None}

    @property
    def errors(self) -> dict[str, str]:
        """Claims that could not be judged, with the reason (a failed run they needed)."""
        return {cid: st.error for cid, st in self.states.items() if st.error is not None}

    def pairs_for(self, claim: Any, n: int) -> list[tuple[Recipe, int]]:
        """The (recipe, seed) runs a claim needs for a look at n seeds: every arm, parts included, the first n seeds."""
        return [(r, s) for r in claim.recipes() for s in self.seeds[:n]]

    def _gpu_runs_stored(self, claim: Any) -> bool:
        """Whether a claim with GPU-sized arms (skipped on a CPU under the paper profile) has their runs up to its
        last look in the store already (trained on a GPU, restored from the record): then it is judged on them, and
        only its other arms, if any, are trained here."""
        from claims.verdict import gpu_pairs

        last = capped_looks(claim.looks, self.max_seeds, len(self.seeds))[-1]
        pairs = gpu_pairs(claim, self.seeds[:last])
        return bool(pairs) and not self.store.missing(pairs, self.profile, self.version)

    def results_for(self, claim_id: str) -> dict[str, dict[int, RunResult]]:
        """The per-seed results of each arm of a claim, up to its latest look."""
        st = self.states[claim_id]
        return self._by_recipe(st.claim, st.n)

    def _by_recipe(self, claim: Any, n: int) -> dict[str, dict[int, RunResult]]:
        out: dict[str, dict[int, RunResult]] = {}
        for r, s in self.pairs_for(claim, n):
            res = self.results.get((r.key, s))
            out.setdefault(r.key, {})
            if res is not None:
                out[r.key][s] = res
        return out

    def compute(self) -> dict[str, Compute]:
        """Compute per claim over the runs of its latest look; shared runs in full (`seconds`) and split."""
        used = {cid: {(r.key, s) for r, s in self.pairs_for(st.claim, st.n)} for cid, st in self.states.items()}
        users: dict[tuple[str, int], int] = {}
        for pairs in used.values():
            for p in pairs:
                users[p] = users.get(p, 0) + 1
        out = {}
        for cid, pairs in used.items():
            c = Compute()
            for p in pairs:
                res = self.results.get(p)
                if res is None:
                    continue
                c.runs += 1
                c.seconds += res.wall_s
                c.seconds_split += res.wall_s / users[p]
                c.trained += p in self.trained
            out[cid] = c
        return out

    def total_compute(self) -> Compute:
        """Compute of the whole suite: every distinct run once."""
        used = {(r.key, s) for st in self.states.values() for r, s in self.pairs_for(st.claim, st.n)}
        have = [self.results[p] for p in used if p in self.results]
        secs = sum(r.wall_s for r in have)
        return Compute(len(have), secs, secs, sum(p in self.trained for p in used if p in self.results))

    # -------------------------------------------------------------------------------------------- rounds

    def run(self) -> dict[str, Any]:
        """Rounds of looks until every claim is final; returns the decisions by claim id."""
        from claims.verdict import judge as verdict_judge
        from claims.verdict import judge_off_profile

        judge = self.judge or verdict_judge
        t0 = time.perf_counter()
        for cid, st in self.states.items():
            g = self.gates[cid]
            if g.off is not None:
                st.decision, st.done = judge_off_profile(st.claim, g.off), True
            elif not g.needs_runs:
                st.decision = judge(st.claim, {}, last_look=True, device_has_gpu=self.device_has_gpu,
                                    sigma_d_pilot=self.sigma_d_pilot)
                st.done = True
        if self.sigma_d_pilot is not None:
            for st in self.states.values():
                if not st.done and self.pilot_speaks_for(st.claim):
                    self._predict(st, judge)
        while True:
            active = [st for st in self.states.values() if not st.done]
            if not active:
                break
            self.rounds += 1
            self.ensure_runs(self._round_jobs(active), label=f"round {self.rounds}")
            for st in active:
                self._judge(st, judge)
        if self.confirm:
            self._confirm(judge)
        self.wall_s = time.perf_counter() - t0
        return self.decisions

    def _round_jobs(self, active: Sequence[_ClaimState]) -> list[Job]:
        """The runs a round needs, closest-to-a-decision claims first: a claim whose last look predicted fewer extra
        seeds comes before one that needs many (never judged: in between, by its look), so an interrupted or
        time-limited suite has spent its compute where it decides claims. Shared runs keep their first place."""
        def distance(st: _ClaimState) -> float:
            d = st.decision
            need = getattr(d, "seeds_needed", None) if d is not None else None
            return float(need - st.n) if need is not None else float(st.looks[st.i])

        wants: dict[tuple[str, int], Job] = {}
        for st in sorted(active, key=distance):
            for r, s in self.pairs_for(st.claim, st.looks[st.i]):
                wants.setdefault((r.key, s), Job(r, s, self.profile))
        return list(wants.values())

    def _confirm(self, judge: Callable[..., Any]) -> None:
        """--confirm: each SUPPORTED claim that does not clear Holm across the suite and has at least
        CONFIRM_MIN_NEW seeds left below its cap takes them all, in one round; its verdict stays the deciding
        look's, and its sequential p becomes the smaller of the decision's and the confirmation p, a t p on the new
        seeds only (independent of the stretch that selected it, and one analysis, so no look to correct for).
        Each such claim's outcome goes into `confirmations`."""
        from claims.stats import CONFIRM_MIN_NEW, multiplicity

        started: dict[str, int] = {}  # claim id -> its n when confirmation sampling began
        stopped: dict[str, str] = {}  # claim id -> the failed run that ended its confirmation sampling
        while True:
            held = multiplicity(self.claims, self.decisions, self.alpha_family).holm
            todo = [st for cid, st in self.states.items()
                    if cid in held and not held[cid] and cid not in stopped and cid not in started
                    and st.error is None and _verdict(st.decision) == "SUPPORTED"
                    and st.looks[-1] - st.n >= CONFIRM_MIN_NEW]
            if not todo:
                break
            for st in todo:
                started[st.claim.id] = st.n
                st.i = len(st.looks) - 1
            self.rounds += 1
            self.ensure_runs(self._round_jobs(todo), label=f"round {self.rounds} (confirm)")
            for st in todo:
                n = st.looks[-1]
                failed = [self.failures[(r.key, s)] for r, s in self.pairs_for(st.claim, n)
                          if (r.key, s) in self.failures]
                if failed:  # the verdict at the earlier look stands; confirmation ends for this claim
                    stopped[st.claim.id] = str(failed[0])
                    continue
                st.n = n
                st.decision = judge(st.claim, self._by_recipe(st.claim, n), last_look=True,
                                    device_has_gpu=self.device_has_gpu, sigma_d_pilot=self.sigma_d_pilot,
                                    looks=st.looks, confirm_from=started[st.claim.id])
        for cid, ok in held.items():
            st = self.states[cid]
            if st.error is not None or _verdict(st.decision) != "SUPPORTED":
                continue
            n0 = started.get(cid)
            p = getattr(st.decision, "p_confirm", None)
            on_new = "" if n0 is None or p is None else f", p = {p:.2g} on the {st.n - n0} seeds after the decision"
            if cid in stopped:
                self.confirmations[cid] = f"confirmation sampling (from n = {n0}) ended by a failed run: {stopped[cid]}"
            elif n0 is None:
                self.confirmations[cid] = ("clears Holm without confirmation sampling" if ok else
                                           f"does not clear Holm and has fewer than {CONFIRM_MIN_NEW} seeds left "
                                           f"below its seed cap (n = {st.n})")
            elif ok:
                self.confirmations[cid] = f"cleared Holm by confirmation sampling: n = {n0} → {st.n}{on_new}"
            else:
                self.confirmations[cid] = (f"confirmation sampling to the seed cap (n = {n0} → {st.n}{on_new}) did not "
                                           "clear Holm")

    def pilot_speaks_for(self, claim: Any) -> bool:
        """Whether the pilot's σ_d may predict this claim before any run: only when every arm comes from the pilot
        recipe's source document (the same net family and data treatment). σ_d belongs to a recipe: on the default
        profile doc 001's raw-pixel baseline has a run-to-run SD of 3.1 pp where doc 002's nets have 0.1-1.5 pp, so
        a claim of another document gets its first look and is judged on its own σ_d."""
        if self.pilot_source is None:
            return True
        from tricks.recipes import recipe_source

        return all(recipe_source(r.name) == self.pilot_source for r in claim.recipes())

    def _predict(self, st: _ClaimState, judge: Callable[..., Any]) -> None:
        """Ask the judge about a look at zero seeds: a claim predicted underpowered at the pilot's σ_d gets no runs."""
        empty: dict[str, dict[int, RunResult]] = {r.key: {} for r in st.claim.recipes()}
        try:
            d = judge(st.claim, empty, last_look=False, device_has_gpu=self.device_has_gpu,
                      sigma_d_pilot=self.sigma_d_pilot, looks=st.looks)
        except Exception:  # a judge that cannot look at zero seeds makes no prediction
            return
        # only a final INCONCLUSIVE that names the seeds it would need is a prediction; anything else is ignored
        if d.final and _verdict(d) == "INCONCLUSIVE" and getattr(d, "seeds_needed", None) is not None:
            st.decision, st.done = d, True

    def _judge(self, st: _ClaimState, judge: Callable[..., Any]) -> None:
        n = st.looks[st.i]
        failed = [self.failures[(r.key, s)] for r, s in self.pairs_for(st.claim, n) if (r.key, s) in self.failures]
        st.n = n
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            st.error, st.done = f"{failed[0]}{more}", True
            return
        last = st.i == len(st.looks) - 1
        st.decision = judge(st.claim, self._by_recipe(st.claim, n), last_look=last,  # the cap's looks: its α_j
                            device_has_gpu=self.device_has_gpu, sigma_d_pilot=self.sigma_d_pilot, looks=st.looks)
        if st.decision.final or last:
            st.done = True
        else:
            st.i += 1

    def ensure_runs(self, jobs: Iterable[Job], label: str = "runs", *,
                    unfit: Callable[[RunResult], str | None] | None = None,
                    tell: Callable[[str, Job, Any], None] | None = None) -> None:
        """Bring every job's run into `self.results`: from memory, the store, another process, or the executor.

        The one store protocol (the suite, `tricks.apply` and the pilot all come through here): a stored run is
        taken; a missing one is leased (`claim_run`), trained by the executor and stored as it finishes (`put`,
        which drops the lease; a failed or interrupted run's lease is released); a run another live process holds
        the lease on is waited for, and its lease taken over once stale. Without a store (`self.store` None) every
        run is trained and nothing is kept. `unfit(run)` says why a stored run may not be used here (another device
        or thread count), or None: such a run is trained again, without a lease, and not stored (its key is
        taken). `tell(event, job, detail)` hears what happens to each job: "cached" (detail: the stored run),
        "waiting", "taken" (another process's run, once stored), "unfit" (detail: why), "train" (detail: the jobs
        about to train) and "done" (detail: the RunResult or RunFailure)."""
        tell = tell or _silent
        wants = {(j.recipe.key, int(j.seed)): j for j in jobs}
        need = [p for p in wants if p not in self.results and p not in self.failures]
        # stored, but not usable here: trained again, not stored
        again = [] if self.store is None else self._take_stored(need, wants, unfit, tell, "cached")
        need = [p for p in need if p not in self.results]
        if not need:
            return
        with RoundProgress(self.progress, len(need), label, self.console, self._workers()) as bar:
            if self.store is None:
                self._train([wants[p] for p in need], bar, tell, keep=False)
                return
            skip = set(again)
            fresh = [p for p in need if p not in skip]
            mine = [p for p in fresh if self.store.claim_run(*p, self.profile, self.version(p[0]))]
            taken = set(mine)
            theirs = [p for p in fresh if p not in taken]
            self._train([wants[p] for p in mine], bar, tell)
            self._train([wants[p] for p in again], bar, tell, keep=False)
            told: set[tuple[str, int]] = set()
            while theirs:  # leased by another live process: wait for its results, take over its stale leases
                again = self._take_stored(theirs, wants, unfit, tell, "taken", bar)
                skip = set(again)
                theirs = [p for p in theirs if p not in self.results and p not in skip]
                retry = [p for p in theirs if self.store.claim_run(*p, self.profile, self.version(p[0]))]
                taken = set(retry)
                theirs = [p for p in theirs if p not in taken]
                self._train([wants[p] for p in retry], bar, tell)
                self._train([wants[p] for p in again], bar, tell, keep=False)
                if theirs and not retry and not again:
                    for p in theirs:
                        if p not in told:
                            told.add(p)
                            tell("waiting", wants[p], None)
                    time.sleep(self.poll_s)

    def _take_stored(self, pairs: list[tuple[str, int]], wants: dict[tuple[str, int], Job],
                     unfit: Callable[[RunResult], str | None] | None, tell: Callable[[str, Job, Any], None],
                     event: str, bar: RoundProgress | None = None) -> list[tuple[str, int]]:
        """Take the stored runs of `pairs` into `self.results` (telling `event`, counting them on `bar`); returns the
        pairs whose stored run `unfit` rejects (told "unfit"), to be trained again without storing."""
        rejected = []
        for p, run in self.store.get_many(pairs, self.profile, self.version).items():
            why = unfit(run) if unfit is not None else None
            if why is None:
                self.results[p] = run
                if bar is not None:
                    bar.advance(1)
                tell(event, wants[p], run)
            else:
                rejected.append(p)
                tell("unfit", wants[p], why)
        return rejected

    def _workers(self) -> int:
        return max(1, int(getattr(self.executor, "workers", 1) or 1))

    def _train(self, jobs: list[Job], bar: RoundProgress, tell: Callable[[str, Job, Any], None], *,
               keep: bool = True) -> None:
        """Train `jobs` (leased by this store when `keep`) and store each as it finishes; `keep` False: not stored."""
        if not jobs:
            return
        jobs = sorted(jobs, key=lambda j: -j.recipe.epochs)  # longest first, so no worker idles at the end
        bar.describe(jobs)
        tell("train", jobs[0], jobs)

        stored: set[tuple[str, int]] = set()

        def on_done(job: Job, out: RunResult | RunFailure) -> None:
            p = (job.recipe.key, job.seed)
            if isinstance(out, RunFailure):
                self.failures[p] = out
                if keep:
                    self.store.release(*p, self.profile, self.version(p[0]))
                bar.advance(1, failed=True, why=str(out))
                tell("done", job, out)
                return
            self.results[p] = out  # before storing: a run the store cannot take (a full disk) is still shown
            self.trained.add(p)
            if keep:
                asked = (self.version(p[0]), self.profile)
                if (out.code_version, out.profile) != asked:
                    self.warnings.append(f"run {job.recipe.name or p[0][:12]} seed {job.seed} came back as code "
                                         f"version {out.code_version}, profile {out.profile} (asked {asked[0]}, "
                                         f"{asked[1]}): stored under its own key")
                    self.store.release(*p, self.profile, asked[0])  # put() drops the lease of the run's own key
                self.store.put(out, job.recipe)  # drops the lease: nothing more to write
                stored.add(p)
            bar.advance(1, wall_s=out.wall_s)
            tell("done", job, out)

        try:
            self.executor.map_runs(jobs, on_done)
        finally:
            # runs in flight when Ctrl-C or an error stopped the executor (a full disk included): free their leases
            if keep:
                for job in jobs:
                    p = (job.recipe.key, job.seed)
                    if p not in stored and p not in self.failures:
                        self.store.release(*p, self.profile, self.version(p[0]))


def _verdict(d: Any) -> str:
    return str(getattr(d.verdict, "value", d.verdict))


def _silent(*_: Any) -> None:
    """A `tell` that hears nothing."""


# ------------------------------------------------------------------------------------------------ A/A pilot


@dataclass
class PilotResult:
    """The A/A pilot of one recipe: run-to-run spread, the engine's verdict on A vs A, and a determinism check."""

    recipe_key: str
    recipe_name: str
    profile: str
    code_version: str
    seeds_a: list[int]
    seeds_b: list[int]
    acc_a: list[float]  # accuracy in [0, 1], per seed
    acc_b: list[float]
    sigma: float  # run-to-run SD of accuracy, in percentage points
    sigma_d: float  # SD of A(seed i) - A(seed 1000 + i), pp: unpaired (disjoint seeds), about √2 σ, not a claim's σ_d
    mean_d: float  # pp
    lower: float  # one-sided (1 - alpha) bounds of the mean difference, pp
    upper: float
    alpha: float
    aa_supported: bool  # the engine would call A better than A (or worse) at alpha: it must not
    repeat_seed: int
    repeat_acc: float | None  # the same seed trained again in this environment
    deterministic: bool | None  # identical accuracy on the repeat; None when the repeat failed
    device: str
    threads: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PilotResult:
        return cls(**d)


class PilotError(RuntimeError):
    """The A/A pilot could not train its runs (the message names the first failed run)."""


def pilot(recipe: Recipe, store: RunStore, executor: Executor, profile: str, n: int = 5, *, alpha: float = 0.05,
          code_version: str | Callable[[str], str] | None = None, progress: bool = False,
          force: bool = False) -> PilotResult:
    """The A/A pilot (claims-method §5): `recipe` on seeds 0..n-1 against itself on 1000..1000+n-1; once a store."""
    if n < 2:
        raise ValueError(f"the A/A pilot needs at least 2 seeds per arm, not {n}")
    cv = versions_of(code_version)(recipe.key)
    if not force:
        stored = store.get_pilot(recipe.key, profile, cv)
        if stored is not None and len(stored["seeds_a"]) >= n:
            return PilotResult.from_dict(stored)
    seeds_a = list(range(n))
    seeds_b = [PILOT_SEED_OFFSET + s for s in seeds_a]
    sched = Scheduler([], store, executor, profile, seeds=seeds_a + seeds_b, progress=progress, code_version=cv)
    sched.ensure_runs([Job(recipe, s, profile) for s in seeds_a + seeds_b], label="A/A pilot")
    if sched.failures:
        raise PilotError(f"the A/A pilot could not train its runs: {next(iter(sched.failures.values()))}")
    acc_a = [sched.results[(recipe.key, s)].acc for s in seeds_a]
    acc_b = [sched.results[(recipe.key, s)].acc for s in seeds_b]
    pp_a, pp_b = [100 * a for a in acc_a], [100 * b for b in acc_b]
    d = [a - b for a, b in zip(pp_a, pp_b, strict=True)]
    from claims.stats import paired_bounds

    mean_d, lower, upper = paired_bounds(d, alpha)
    sigma_d = statistics.stdev(d)
    pooled = pp_a + pp_b
    mu = sum(pooled) / len(pooled)
    sigma = math.sqrt(sum((x - mu) ** 2 for x in pooled) / (len(pooled) - 1))

    # determinism: the first seed again, outside the store, compared with the stored run
    first = sched.results[(recipe.key, seeds_a[0])]
    repeat: list[RunResult | RunFailure] = []
    executor.map_runs([Job(recipe, seeds_a[0], profile)], lambda job, out: repeat.append(out))
    rep = repeat[0] if repeat and isinstance(repeat[0], RunResult) else None
    note = ""
    if rep is not None and (rep.device, rep.threads) != (first.device, first.threads):
        note = (f"the stored run came from {first.device} with {first.threads} threads, the repeat from "
                f"{rep.device} with {rep.threads}")
    result = PilotResult(
        recipe_key=recipe.key, recipe_name=recipe.name, profile=profile, code_version=cv, seeds_a=seeds_a,
        seeds_b=seeds_b, acc_a=acc_a, acc_b=acc_b, sigma=sigma, sigma_d=sigma_d, mean_d=mean_d, lower=lower,
        upper=upper, alpha=alpha, aa_supported=bool(lower > 0 or upper < 0), repeat_seed=seeds_a[0],
        repeat_acc=None if rep is None else rep.acc, deterministic=None if rep is None else rep.acc == first.acc,
        device=first.device, threads=first.threads, note=note,
    )
    store.put_pilot(recipe.key, profile, result.to_dict(), cv)
    return result
