"""Claims over the user's own Learner: one run of a `LearnerArm`, the store version of its runs, and `compare`, which
judges two arms over paired seeds with the suite's sequential design, scheduler and run store.

    from claims.compare import LearnerArm, compare
    base = LearnerArm("mypkg.exp:make_learner", epochs=5, lr=1e-3)
    d = compare(base.with_tricks("bn_before_relu"), base.with_tricks("bn_after_relu"), form="noninferior",
                margin=0.01)
    print(d.verdict, d.n, d.mean, d.lower, d.upper, d.reason)

Seeding: before the factory is called, Python's `random`, NumPy and torch are seeded with the run's seed (fastai's
`set_seed`, which also makes cuDNN deterministic), so both arms of a seed draw the same data order and the same
initial weights for the layers they share; tricks are added after the factory returns.

Store key: (arm key, seed, profile `own`, version). The arm key hashes the factory path, the tricks, epochs, lr, fit
and metric (`LearnerArm.spec`); the version is `src.<sha256 of the source files of the modules the arm names>` +
`data.<digest>`. The digest is the user's `data=` text when given, else sha256 over the training set's size and
items (tensors' bytes, or the item list such as file paths) and every validation batch as the Learner's validation
DataLoader yields it (floats rounded to float16, so a GPU and a CPU agree). Edits elsewhere (a helper module the
factory imports, training images that keep their file names) are not seen: give `data=` a new value, or a new store.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claims.arm import OWN_PROFILE, ArmError, LearnerArm, describe, is_arm, split_path
from tricks.recipe import CODE_VERSION, RunResult, TrickUse

__all__ = ["LearnerArm", "ArmError", "compare", "judge_claims", "run_arm", "build", "arm_version", "ArmVersions",
           "run_job", "data_digest", "FORMS", "OWN_PROFILE"]

FORMS = {"superior": "superiority", "superiority": "superiority", "noninferior": "non_inferiority",
         "non_inferiority": "non_inferiority", "equivalent": "equivalence", "equivalence": "equivalence"}


# ------------------------------------------------------------------------------------------------ one run


def load(path: str, what: str = "factory") -> Callable[..., Any]:
    """The function an import path `module:function` names, or ArmError in one sentence."""
    module, name = split_path(path, what)
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ArmError(f"{what} '{path}': module {module} cannot be imported ({e})") from None
    except Exception as e:  # the module raises on import: say what, in one line
        raise ArmError(f"{what} '{path}': importing module {module} failed ({type(e).__name__}: "
                       f"{' '.join(str(e).split())})") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ArmError(f"{what} '{path}': module {module} has no function {name}")
    return fn


def seed_all(seed: int) -> None:
    """Python, NumPy and torch (CPU and CUDA) from one seed, through fastai's `set_seed` (cuDNN made deterministic)."""
    from fastai.torch_core import set_seed

    from tricks.train import seed_everything

    seed_everything(seed)
    set_seed(seed, reproducible=True)


def build(arm: LearnerArm, seed: int, device: str | None = None) -> Any:
    """The arm's Learner for `seed`: everything seeded, the factory called, its tricks added, no progress output."""
    from fastai.callback.core import Callback
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner

    from tricks.catalog import get_trick

    factory = load(arm.factory)
    seed_all(seed)
    try:
        learn = factory()
    except Exception as e:  # the user's code: its error in one line, with the factory that raised it
        raise ArmError(f"factory '{arm.factory}' raised {type(e).__name__}: {' '.join(str(e).split())}") from None
    if not isinstance(learn, Learner):
        raise ArmError(f"factory '{arm.factory}' returned {type(learn).__name__}, not a fastai Learner")
    cbs = []
    for t in arm.tricks:
        if isinstance(t, TrickUse):
            trick = get_trick(t.name)
            if trick.kind == "data":
                raise ArmError(f"trick '{t.name}' is a data option of the project's CIFAR-10 loaders; it cannot be "
                               "added to a Learner")
            t = trick.build(**dict(t.params))
        if isinstance(t, Callback):
            cbs.append(copy.deepcopy(t))  # every run starts from the callback as declared
        else:
            learn.model = t(learn.model)
    learn.opt = None  # a transform may have added parameters: fit makes the optimizer over the final model
    _load_in_process(learn.dls)
    learn.add_cbs(cbs)
    if device is not None:
        import torch

        learn.dls.to(torch.device(device))
    if ProgressCallback in [type(c) for c in learn.cbs]:
        learn.remove_cb(ProgressCallback)
    learn.logger = _quiet
    return learn


def _load_in_process(dls: Any) -> None:
    """Batches made in the run's own process (no DataLoader worker processes): the executors run many one-thread
    runs at once instead, a run's numbers do not depend on the executor, and DataLoader workers started inside an
    executor's worker process took 32 s a fit where the same fit took 0.8 s without them (measured)."""
    for dl in getattr(dls, "loaders", ()):
        fake = getattr(dl, "fake_l", None)  # fastai's DataLoader hands its batches to a torch loader
        if fake is not None:
            fake.num_workers = 0


def _quiet(*_: Any) -> None:
    """A logger that drops fastai's per-epoch rows."""


def _metric_index(learn: Any, name: str) -> int | None:
    names = list(learn.recorder.metric_names)[1:-1]  # without 'epoch' and 'time': train_loss, valid_loss, metrics
    return names.index(name) if name in names else None


def _read_metric(arm: LearnerArm, learn: Any) -> tuple[float, list[float]]:
    """The arm's metric of the trained Learner and its per-epoch values (the final one alone when not recorded)."""
    m = arm.metric
    if callable(m) or ":" in m:
        fn = m if callable(m) else load(m, "metric")
        return float(fn(learn)), []
    i = _metric_index(learn, m)
    if i is not None:
        per_epoch = [float(v[i]) for v in learn.recorder.values]
        if per_epoch:
            return per_epoch[-1], per_epoch
    if m == "accuracy":  # the default metric of a Learner that records none
        from fastai.metrics import accuracy

        preds, targs = learn.get_preds(dl=learn.dls.valid)
        return float(accuracy(preds, targs)), []
    known = ", ".join(list(learn.recorder.metric_names)[3:-1]) or "none"
    raise ArmError(f"arm {arm.label}: the Learner records no metric '{m}' (it records: {known})")


def _tensor_bytes(t: Any, h: Any) -> None:
    """A tensor's shape and bytes into `h`, floats rounded to float16 first."""
    import torch

    t = t.detach().cpu()
    t = t.to(torch.float16) if t.is_floating_point() else t
    h.update(str(tuple(t.shape)).encode())
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _sample_digests(batch: Any) -> list[str]:
    """One sha256 per sample of a batch (its x and y together), so that the digest does not depend on the order."""
    import torch

    parts = [t for t in (batch if isinstance(batch, (tuple, list)) else (batch,)) if isinstance(t, torch.Tensor)]
    if not parts:
        return []
    out = []
    for i in range(len(parts[0])):
        h = hashlib.sha256()
        for t in parts:
            _tensor_bytes(t[i], h)
        out.append(h.hexdigest())
    return out


def _items_digest(ds: Any, h: Any) -> None:
    """The training set's items into `h`: its tensors' bytes, or its item list's text (e.g. file paths)."""
    import numpy as np
    import torch

    h.update(str(len(ds)).encode())
    items = getattr(ds, "tensors", None)
    if items is None:
        items = getattr(ds, "items", None)
    if items is None:
        return
    seq = [items] if isinstance(items, (torch.Tensor, np.ndarray)) else list(items)
    if seq and isinstance(seq[0], (torch.Tensor, np.ndarray)):
        for t in seq:
            _tensor_bytes(torch.from_numpy(np.ascontiguousarray(t)) if isinstance(t, np.ndarray) else t, h)
    else:
        h.update("\n".join(map(str, seq)).encode())


def data_digest(learn: Any) -> str:
    """sha256 of the Learner's data: the training set's size and items, and the validation samples as its DataLoader
    yields them, in any order (module doc)."""
    h = hashlib.sha256()
    _items_digest(learn.dls.train.dataset, h)
    valid = learn.dls.valid
    h.update(str(len(valid.dataset)).encode())
    for d in sorted(d for batch in valid for d in _sample_digests(batch)):
        h.update(d.encode())
    return h.hexdigest()


def source_digest(arm: LearnerArm) -> str:
    """sha256 over the source files of the modules the arm names (factory, fit and metric by import path)."""
    h = hashlib.sha256()
    for name in arm.modules():
        mod = sys.modules.get(name) or importlib.import_module(name)
        f = getattr(mod, "__file__", None)
        h.update(name.encode() + b"\0" + (Path(f).read_bytes() if f and Path(f).exists() else b""))
    return h.hexdigest()


def _version(arm: LearnerArm, digest: str) -> str:
    return f"src.{source_digest(arm)[:12]}+data.{digest[:12]}"


def _declared(arm: LearnerArm) -> str | None:
    return None if arm.data is None else hashlib.sha256(arm.data.encode()).hexdigest()


_DIGESTS: dict[tuple[str, str], str] = {}  # (factory, its source digest) -> data digest, once a process


def arm_version(arm: LearnerArm) -> str:
    """The store version of the arm's runs; without `data=` the factory's Learner is built once (seed 0) for it."""
    digest = _declared(arm)
    if digest is None:
        key = (arm.factory, source_digest(arm))
        if key not in _DIGESTS:
            _DIGESTS[key] = data_digest(build(LearnerArm(arm.factory, data=None), 0))
        digest = _DIGESTS[key]
    return _version(arm, digest)


def run_arm(arm: LearnerArm, seed: int, profile: str = OWN_PROFILE, *, device: str | None = None,
            **_: Any) -> RunResult:
    """Train the arm with `seed` and return its RunResult (`acc` holds the arm's metric); a run whose loss or metric
    is not finite, or that a DivergenceGuard stopped, is flagged as diverged, not raised."""
    import fastai.callback.schedule  # noqa: F401 -- patches Learner.fit_one_cycle
    import torch

    from tricks.train import device_name, versions
    from tricks.transforms import params_used

    t0 = time.perf_counter()
    learn = build(arm, seed, device)
    if arm.fit is None:
        learn.fit_one_cycle(arm.epochs, arm.lr)
    else:
        (arm.fit if callable(arm.fit) else load(arm.fit, "fit function"))(learn, arm.epochs, arm.lr)
    wall = time.perf_counter() - t0
    value, per_epoch = _read_metric(arm, learn)
    rows = [list(v) for v in learn.recorder.values]
    loss = [float(v[1]) for v in rows]
    diverged = bool(getattr(learn, "diverged", False)) or not math.isfinite(value) or \
        any(not math.isfinite(x) for x in loss[-1:])
    note = getattr(learn, "diverged_reason", "") or ("the final loss or metric is not finite" if diverged else "")
    digest = _declared(arm) or data_digest(learn)
    xb = learn.dls.valid.one_batch()[0]
    try:
        n_params = params_used(learn.model, input_shape=(2, *xb.shape[1:]))
    except Exception:  # a model params_used cannot probe (several inputs, ...): no count, not a failed run
        n_params = None
    dev = next(iter(learn.model.parameters()), torch.empty(0)).device
    return RunResult(
        recipe_key=arm.key, recipe_name=arm.name, seed=int(seed), profile=profile, code_version=_version(arm, digest),
        acc=value if not diverged else float("nan"), loss=loss[-1] if loss else float("nan"),
        acc_per_epoch=per_epoch or [value], loss_per_epoch=loss, train_loss_per_epoch=[float(v[0]) for v in rows],
        params_used=n_params, wall_s=wall, img_per_s=len(learn.dls.train.dataset) * arm.epochs / max(wall, 1e-9),
        device=device_name(dev), threads=torch.get_num_threads(), versions=versions(),
        dataset=f"{arm.factory} (sha256 {digest[:12]})", diverged=diverged, note=note,
    )


def run_job(recipe: Any, seed: int, profile: Any = OWN_PROFILE, **kwargs: Any) -> RunResult:
    """The executors' run function for suites with user arms: `run_arm` for a LearnerArm, `tricks.train.run` else."""
    if is_arm(recipe):
        return run_arm(recipe, seed, profile, device=kwargs.get("device"))
    from tricks.train import run

    return run(recipe, seed, profile, **kwargs)


@dataclass
class ArmVersions:
    """Store versions by key: each user arm's own (`arm_version`), else `fallback` (the project's recipes)."""

    arms: dict[str, str]
    fallback: Any = None

    def __call__(self, key: str) -> str:
        if key in self.arms:
            return self.arms[key]
        if callable(self.fallback):
            return self.fallback(key)
        return self.fallback or CODE_VERSION

    def __str__(self) -> str:
        own = ", ".join(sorted(set(self.arms.values())))
        return own if self.fallback is None else f"{self.fallback}; {own}"

    @classmethod
    def of(cls, claims: Sequence[Any], fallback: Any = None) -> ArmVersions:
        """The versions of every user arm of `claims` (parts included)."""
        arms = {r.key: r for c in claims for r in c.recipes() if is_arm(r)}
        return cls({k: arm_version(a) for k, a in arms.items()}, fallback)


def has_arms(claims: Sequence[Any]) -> bool:
    """Whether any of `claims` compares a user arm."""
    return any(is_arm(r) for c in claims for r in c.recipes())


# ------------------------------------------------------------------------------------------------ Python API


def judge_claims(claims: Sequence[Any], *, seeds: Sequence[int] | None = None, max_seeds: int | None = None,
                 store: Any = None, workers: int | None = 0, executor: Any = None, progress: bool = False) -> Any:
    """Judge claims over user arms together (shared runs, the store, sequential looks); returns the Scheduler, whose
    `decisions` and `errors` hold the outcome and which `claims.report.build_report` turns into the suite's report."""
    from claims.schedule import LocalExecutor, Scheduler
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
    from claims.report import per_seed

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
    from claims.executors.base import limit_threads
    from claims.schedule import Job, LocalExecutor, Scheduler
    from claims.spec import Claim, judge
    from claims.store import RunStore

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
    store = None if args.no_store else args.store
    if store is None and args.no_store:
        import tempfile

        store = str(Path(tempfile.mkdtemp(prefix="tricks-learner-")) / "runs.sqlite")
    sched = Scheduler([claim], RunStore(store), executor, OWN_PROFILE, seeds=seeds, progress=not args.quiet,
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
    where = "no store" if args.no_store else str(RunStore(store).path)
    print(f"{trained} run(s) trained, {len(arms) * len(seeds) - trained} from the store ({where}); store version "
          f"{sched.version(arm.key)}")
    if b is None:
        return 1 if diverged else 0
    d = judge(claim, _by_arm(sched, arms, seeds), last_look=True)
    interval = "A − B not computed" if d.mean is None else (
        f"A − B = {100 * d.mean:+.2f} pp, one-sided {100 * (1 - d.alpha_look):g}% bounds "
        f"[{100 * d.lower:+.2f}, {100 * d.upper:+.2f}] pp")
    print(f"verdict {d.verdict.value}: {interval}, n = {d.n}, Δ = {delta_pp:g} pp; {d.reason}")
    return 1 if diverged or d.verdict.value == "INVALID" else 0


def _by_arm(sched: Any, arms: Sequence[LearnerArm], seeds: Sequence[int]) -> dict[str, dict[int, RunResult]]:
    return {r.key: {s: sched.results[(r.key, s)] for s in seeds} for r in arms}
