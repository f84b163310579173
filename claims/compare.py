"""The comparison mode: claims over two arms judged over paired seeds with the suite's sequential design, scheduler
and run store, from Python (`compare`, `judge_claims`) and from the command line (`python -m tricks.apply`, whose
one way into `claims` is this module: `run_session` for a recipe, `learner_main` for the user's own Learner).

    from claims.compare import LearnerArm, compare
    base = LearnerArm("mypkg.exp:make_learner", epochs=5, lr=1e-3)
    d = compare(base.with_tricks("bn_before_relu"), base.with_tricks("bn_after_relu"), form="noninferior",
                margin=0.01)
    print(d.verdict, d.n, d.mean, d.lower, d.upper, d.reason)

A user arm, how it is seeded, run and versioned in the store: claims/arm.py. The command line's runs go through the
scheduler's one store protocol (`Scheduler.ensure_runs`: store, lease, train, put), in this process (the local
executor, one run after another, with the command line's progress) or as Ray tasks (`--executor ray`), so two
invocations, or an invocation and the suite, on one store train each run once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from claims.arm import OWN_PROFILE, ArmError, ArmVersions, LearnerArm, arm_version, describe, is_arm, run_arm
from tricks.apply_output import Outcome, Session, epoch_lines, jobs_of, number, progress_bar, rich_progress
from tricks.apply_plan import COMPARE_ALPHA, RUN_THREADS, Plan
from tricks.plain import say
from tricks.recipe import RunResult, RunVersions, get_profile

__all__ = ["LearnerArm", "ArmError", "compare", "judge_claims", "run_job", "FORMS", "OWN_PROFILE", "run_session",
           "learner_main"]

FORMS = {"superior": "superiority", "superiority": "superiority", "noninferior": "non_inferiority",
         "non_inferiority": "non_inferiority", "equivalent": "equivalence", "equivalence": "equivalence"}


def run_job(recipe: Any, seed: int, profile: Any = OWN_PROFILE, **kwargs: Any) -> RunResult:
    """The executors' run function for suites with user arms: `run_arm` for a LearnerArm, `tricks.train.run` else."""
    if is_arm(recipe):
        return run_arm(recipe, seed, profile, device=kwargs.get("device"))
    from tricks.train import run

    return run(recipe, seed, profile, **kwargs)


# ------------------------------------------------------------------------------------------------ Python API


def judge_claims(claims: Sequence[Any], *, seeds: Sequence[int] | None = None, max_seeds: int | None = None,
                 store: Any = None, workers: int | None = 0, executor: Any = None, progress: bool = False) -> Any:
    """Judge claims over user arms together (shared runs, the store, sequential looks); returns the Scheduler, whose
    `decisions` and `errors` hold the outcome and which `claims.report.model.build_report` turns into the suite's
    report."""
    from claims.executors import LocalExecutor
    from claims.schedule import Scheduler
    from claims.store import RunStore

    claims = list(claims)
    if seeds is None:
        seeds = tuple(range(max(max(c.looks) for c in claims)))
    if not isinstance(store, RunStore):
        store = RunStore(store)
    if executor is None:
        executor = LocalExecutor(workers, run_fn=run_job)
    sched = Scheduler(claims, store, executor, OWN_PROFILE, seeds=seeds, max_seeds=max_seeds, progress=progress,
                      code_version=ArmVersions.of(claims))
    sched.run()
    return sched


def compare(a: LearnerArm, b: LearnerArm, form: str = "superior", margin: float = 0.01, *,
            seeds: Sequence[int] | None = None, max_seeds: int | None = None, looks: Sequence[int] = (3, 5, 8, 12),
            alpha: float = 0.05, store: Any = None, workers: int | None = 0, executor: Any = None,
            claim_id: str = "compare", quote: str = "", progress: bool = False) -> Any:
    """The suite's Decision on "A against B" over paired seeds, with `per_seed` added: one row a seed of the arms'
    metric in percent and their difference `d` in points. `form` superior | noninferior | equivalent, `margin`
    Δ in metric units (0.01 is one accuracy point). Seeds are sampled look by look (3, 5, 8, 12 by default, capped by
    `max_seeds` and `seeds`); runs found in `store` (a path or RunStore; None: the default store) are not trained
    again. `workers` 0 trains in this process; an `executor` (e.g. a RayExecutor) replaces the local one."""
    from claims.spec import Claim

    if form not in FORMS:
        raise ValueError(f"unknown form '{form}' (known: superior, noninferior, equivalent)")
    words = {"superiority": "beats", "non_inferiority": "is no worse than", "equivalence": "is equivalent to"}
    claim = Claim(id=claim_id, source="claims.compare", form=FORMS[form], a=a, b=b, delta=margin, alpha=alpha,
                  looks=tuple(looks), quote=quote or f"{a.label} {words[FORMS[form]]} {b.label} (Δ = {margin:g}).")
    sched = judge_claims([claim], seeds=seeds, max_seeds=max_seeds, store=store, workers=workers, executor=executor,
                         progress=progress)
    if claim.id in sched.errors:
        raise ArmError(f"{claim.id}: {sched.errors[claim.id]}")
    from claims.report.model import per_seed

    d = sched.decisions[claim.id]
    d.per_seed = per_seed(claim, sched.results_for(claim.id))  # rows of seed, a, b, d in percent (points for d)
    return d


def arm_label(x: Any) -> str:
    """The name the report gives an arm."""
    return getattr(x, "name", "") or describe(x)


# ------------------------------------------------------------------------------------------------ command line

_NOT_WITH_LEARNER = ("recipe", "bs", "data", "json", "threads")  # options of the project's recipes only


def learner_main(args: Any) -> int:
    """`python -m tricks.apply --learner module:function`: train the user's Learner with the --cb tricks over the
    seeds, and under --compare judge it against the Learner without them (superiority by --delta points, one look at
    all seeds). Errors a user can cause raise ArmError (or the store's, the registry's), which the caller prints."""
    from claims.executors import Job, LocalExecutor
    from claims.executors.base import limit_threads
    from claims.schedule import Scheduler
    from claims.spec import Claim
    from claims.store import RunStore
    from claims.verdict import judge

    for name in _NOT_WITH_LEARNER:
        if getattr(args, name, None) is not None:
            raise ArmError(f"--{name} does not apply with --learner: the factory's Learner defines it")
    if args.compare and not args.cb:
        raise ArmError("--compare needs at least one --cb trick to compare the Learner against")
    if args.executor != "ray" and (args.ray_address is not None or args.gpus_per_run is not None):
        raise ArmError("--ray-address and --gpus-per-run only apply with --executor ray")
    seeds = (args.seed,) if args.seed is not None else tuple(range(args.seeds or (3 if args.compare else 1)))
    if args.compare and len(seeds) < 2:
        raise ArmError(f"--compare needs at least 2 paired seeds; got {len(seeds)} (use --seeds 2 or more)")
    delta_pp = 1.0 if args.delta is None else args.delta
    base = LearnerArm(args.learner, epochs=args.epochs or 1, lr=args.lr or 1e-3)
    arm = base.with_tricks(*args.cb) if args.cb else base
    limit_threads(1)  # as every stored run: one torch thread
    arm_version(arm)  # the factory is imported and called once here: a bad one stops before any run
    if args.executor == "ray":
        from claims.executors.ray import RayExecutor

        executor = RayExecutor(args.ray_address, run_fn=run_job, device=args.device, gpus_per_run=args.gpus_per_run)
    else:
        executor = LocalExecutor(0, run_fn=run_job, device=args.device)
    b = base if args.compare else None
    claim = Claim(id="tricks.apply", source="python -m tricks.apply --learner", form="superiority", a=arm,
                  b=b or arm, delta=delta_pp / 100, looks=(max(len(seeds), 2),),
                  quote=f"{arm.name} beats {base.name} by at least {delta_pp:g} points.")
    store = None if args.no_store else RunStore(args.store)  # no store: every run trained, nothing kept
    sched = Scheduler([claim], store, executor, OWN_PROFILE, seeds=seeds, progress=not args.quiet,
                      code_version=ArmVersions.of([claim]))
    arms = [arm] + ([b] if b is not None else [])
    sched.ensure_runs([Job(r, s, OWN_PROFILE) for r in arms for s in seeds], label="runs")
    if sched.failures:
        raise RuntimeError(str(next(iter(sched.failures.values()))))
    metric = describe(arm.metric)
    cols = [f"A: {arm.name}"] + ([f"B: {base.name}", "A − B"] if b is not None else [])
    print(f"seed  {metric} of " + " | ".join(cols))
    diverged = False
    for s in seeds:
        ra = sched.results[(arm.key, s)]
        row = [f"{100 * ra.acc:.2f} %"]
        diverged |= ra.diverged
        if b is not None:
            rb = sched.results[(b.key, s)]
            diverged |= rb.diverged
            row += [f"{100 * rb.acc:.2f} %", f"{100 * (ra.acc - rb.acc):+.2f} pp"]
        print(f"{s:>4}  " + " | ".join(row))
    trained = len(sched.trained)
    where = "no store" if store is None else str(store.path)
    print(f"{trained} run(s) trained, {len(arms) * len(seeds) - trained} from the store ({where}); store version "
          f"{sched.version(arm.key)}")
    if b is None:
        return 1 if diverged else 0
    d = judge(claim, _by_arm(sched, arms, seeds), last_look=True)
    print(verdict_line(d, delta_pp))
    return 1 if diverged or d.verdict.value == "INVALID" else 0


def _by_arm(sched: Any, arms: Sequence[LearnerArm], seeds: Sequence[int]) -> dict[str, dict[int, RunResult]]:
    return {r.key: {s: sched.results[(r.key, s)] for s in seeds} for r in arms}


# ------------------------------------------------------------------------------------------------ recipes from the CLI


def run_session(session: Session, *, console: Any) -> None:
    """`python -m tricks.apply` on a recipe: every run of the session's plan from the run store or trained (through
    the scheduler's store protocol), into `session.outcomes` in the plan's order; then --compare's verdict."""
    import torch

    from claims.store import RunStore

    args, plan = session.args, session.plan
    executor = ray_executor(args) if args.executor == "ray" else None  # Ray missing: said before any work
    if args.json is not None:  # before any training: never over the store, the data or a file not ours
        _check_json(args)
    store = None if args.no_store else RunStore(args.store)
    threads = RUN_THREADS if args.threads is None else args.threads
    if store is not None and threads != RUN_THREADS:
        store = None  # its runs, and the suite's, are one-thread runs: these would pair with them unfairly
        say(f"note: --threads {threads} trains outside the run store, whose runs all use {RUN_THREADS} thread")
    torch.set_num_threads(threads)
    if plan.note and not args.quiet:
        say(plan.note)
    train_on(executor, session, store, source=args.data, device=args.device, console=console, quiet=args.quiet,
             threads=threads)
    if plan.baseline is not None and plan.compare:
        session.decision = judge_comparison(plan, session.outcomes)
        session.verdict_line = verdict_text(plan, session.decision)


def _check_json(args: argparse.Namespace) -> None:
    """JsonTargetError (a usage error) when --json would overwrite the store, the data, or a file not ours."""
    import os

    from claims.store import default_store_path
    from tricks.jsonfile import check_target

    store = None if args.no_store else (args.store or default_store_path())
    recipe = args.recipe if args.recipe and Path(args.recipe).expanduser().is_file() else None
    check_target(args.json, {"run store": store, "dataset": args.data or os.environ.get("TRICKS_DATA") or None,
                             "recipe file": recipe})


def ray_executor(args: argparse.Namespace) -> Any:
    """--executor ray: a RayExecutor (RayError, a usage error, when Ray is missing or the cluster out of reach)."""
    from claims.executors.ray import RayExecutor, check_gpus_per_run, import_ray

    import_ray()
    check_gpus_per_run(args.gpus_per_run)
    return RayExecutor(args.ray_address, source=args.data, device=args.device, gpus_per_run=args.gpus_per_run)


def run_device(device: str | None) -> str:
    """The name `RunResult.device` will carry for a run on `device` (None: cuda when available, as `run` picks)."""
    import torch

    from tricks.train import device_name

    return device_name(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def mismatch(cached: RunResult, device: str, threads: int) -> str | None:
    """Why a stored run cannot be paired with runs trained here (another device or thread count), or None."""
    if (cached.device, cached.threads) == (device, threads):
        return None
    return (f"the stored run was trained on {cached.device} with {cached.threads} thread(s), runs here on {device} "
            f"with {threads}")


class _RunHere:
    """The local executor's run function for the command line: `tricks.train.run` on the dataset loaded once, with
    the run's progress (a bar on a terminal, one line an epoch elsewhere); keeps the first exception a run raised, so
    the command line reports it as it is (a data error in one sentence, say), and trains nothing after it."""

    def __init__(self, arrays: Any, labels: dict[tuple[str, int], str], bar: Any, say: Any, quiet: bool):
        self.arrays, self.labels, self.bar, self.say, self.quiet = arrays, labels, bar, say, quiet
        self.error: BaseException | None = None

    def __call__(self, recipe: Any, seed: int, profile: str, **kwargs: Any) -> RunResult:
        from tricks.train import run

        if self.error is not None:  # the first error stops the command line: the runs left fail without training
            raise self.error
        label, epochs = self.labels[(recipe.key, seed)], get_profile(profile).scale(recipe).epochs
        if self.bar is not None:
            extra: tuple = (rich_progress(self.bar, label, epochs),)
        else:
            extra = () if self.quiet else (epoch_lines(self.say, label, epochs),)
        try:
            return run(recipe, seed, profile, arrays=self.arrays, extra_cbs=extra, **kwargs)
        except Exception as e:
            self.error = self.error or e
            raise


def train_on(executor: Any, session: Session, store: Any, *, source: str | None, console: Any, quiet: bool,
             device: str | None = None, threads: int = RUN_THREADS) -> None:
    """Every run of the plan from `store` or trained by `executor` (None: in this process), each stored as it
    finishes, through `Scheduler.ensure_runs`; in this process, a stored run made on another device or thread count
    is trained again and not stored (its key is taken). `session.outcomes` holds the finished runs in the plan's
    order, also after an error or Ctrl-C."""
    from claims.executors import Job
    from claims.executors.local import LocalExecutor
    from claims.schedule import Scheduler
    from tricks.cifar import load_cifar10

    plan = session.plan
    # loaded even when every run is cached: a bad --data is reported, and the store's key names this copy
    arrays = load_cifar10(source)
    jobs = jobs_of(plan)
    labels = {(r.key, s): (f"{'B' if arm == 'baseline' else 'A'} seed {s}" if plan.baseline else f"seed {s}")
              for arm, r, s in jobs}
    on_ray = executor is not None
    bar = progress_bar(console) if not on_ray and not quiet and console.is_terminal else None
    where = f"run store {store.path}" if store is not None else ""

    def say(text: str) -> None:
        if not quiet:
            console.print(text, markup=False, highlight=False)

    here = None
    if not on_ray:
        here = _RunHere(arrays, labels, bar, say, quiet)
        executor = LocalExecutor(0, run_fn=here, source=source, device=device, threads=threads)
    shown_train = []

    def tell(event: str, job: Job, detail: Any) -> None:
        label = labels[(job.recipe.key, job.seed)] if not on_ray else f"{job.recipe.name} seed {job.seed}"
        if event == "cached" and not on_ray:
            say(f"{label}: cached ({where})")
        elif event == "taken" and not on_ray:
            say(f"{label}: cached (trained by another process, {where})")
        elif event == "waiting":
            say(f"{label}: waiting for the run another process is training" + (f" ({where})" if not on_ray else ""))
        elif event == "unfit":
            say(f"{label}: not taken from the run store ({detail}); trained again here and not stored")
        elif event == "train" and on_ray and not shown_train:
            shown_train.append(True)
            say(f"{len(detail)} run(s) to train as Ray tasks on {executor.workers} slot(s)")
        elif event == "done" and isinstance(detail, RunResult) and (on_ray or bar is None):
            say(f"{label}: trained, accuracy {number(detail.acc * 100, '.2f')} % in {detail.wall_s:.1f} s")

    here_device = run_device(device)
    unfit = None if on_ray else (lambda r: mismatch(r, here_device, threads))
    sched = Scheduler([], store, executor, plan.profile, seeds=plan.seeds, progress=False,
                      code_version=RunVersions(arrays.digest))  # the recipe's training fingerprint + the data
    try:
        if bar is not None:
            bar.start()
        sched.ensure_runs([Job(r, s, plan.profile) for _, r, s in jobs], unfit=unfit, tell=tell)
    finally:
        if bar is not None:
            bar.stop()
        session.outcomes[:] = [Outcome(arm, r, sched.results[(r.key, s)], (r.key, s) not in sched.trained)
                               for arm, r, s in jobs if (r.key, s) in sched.results]
    if sched.failures:
        if here is not None and here.error is not None:
            raise here.error
        raise RuntimeError(str(next(iter(sched.failures.values()))))


def judge_comparison(plan: Plan, outcomes: Sequence[Outcome]) -> Any:
    """The claims engine's Decision on "the tricks beat the recipe" (superiority, margin `plan.delta_pp`), one look."""
    from claims import spec, verdict

    assert plan.baseline is not None
    claim = spec.Claim(id="tricks.apply", source="python -m tricks.apply --compare",
                       quote=f"{plan.recipe.name} beats {plan.baseline.name} by at least {plan.delta_pp:g} points.",
                       form=spec.Form.SUPERIORITY, a=plan.recipe, b=plan.baseline, delta=plan.delta_pp / 100,
                       metric="acc",  # the engine works in accuracy fractions
                       alpha=COMPARE_ALPHA, looks=(len(plan.seeds),))
    results: dict[str, dict[int, RunResult]] = {plan.recipe.key: {}, plan.baseline.key: {}}
    for o in outcomes:
        results[o.recipe.key][o.result.seed] = o.result
    return verdict.judge(claim, results, last_look=True)


def verdict_text(plan: Plan, d: Any) -> str:
    """One line: the verdict (with the smoke profile's caveat), A − B in points with its one-sided bounds, n, Δ and
    the engine's reason."""
    from claims.report.model import pipeline_note

    return verdict_line(d, plan.delta_pp, pipeline_note(plan.profile))  # a smoke verdict: barely trained models


def verdict_line(d: Any, delta_pp: float, note: str = "") -> str:
    """One line: the verdict, A − B in points with its one-sided bounds, n, Δ and the engine's reason."""
    verdict = str(getattr(d.verdict, "value", d.verdict))
    level = d.alpha_look if getattr(d, "alpha_look", None) is not None else COMPARE_ALPHA
    if d.mean is None:
        interval = "A − B not computed"
    else:  # the engine works in accuracy units; people read points
        interval = (f"A − B = {number(100 * d.mean, '+.2f')} pp, one-sided {100 * (1 - level):g}% bounds "
                    f"[{number(100 * d.lower, '+.2f')}, {number(100 * d.upper, '+.2f')}] pp")
    head = f"verdict {verdict}" + (f" ({note})" if note else "")
    return f"{head}: {interval}, n = {d.n}, Δ = {delta_pp:g} pp; {d.reason}"
