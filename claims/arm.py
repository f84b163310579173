"""An arm that is the user's own training: a fastai Learner factory named by import path, the tricks to add, how to
fit it and the metric to compare. A claim takes a `LearnerArm` wherever it takes a Recipe.

The factory is named as `module:function` (not passed as a function) so that worker processes and Ray tasks can
import it. Its runs are stored under the arm's `key` (the factory path, the tricks, the fit and the metric) and a
version made of the source of the modules the arm names and a digest of the data the factory's Learner holds
(`arm_version`), so editing the factory's module or its data trains new runs, and nothing else does.

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
import inspect
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tricks.recipe import CODE_VERSION, RunResult, TrickUse, kw

OWN_PROFILE = "own"  # the profile name a user arm's runs are stored under: the arm defines its own training


class ArmError(ValueError):
    """A user arm that cannot be built or run as declared: the message is one sentence."""


def split_path(path: str, what: str = "factory") -> tuple[str, str]:
    """`module.path:function` -> (module, function), or ArmError saying what the text should look like."""
    module, sep, name = str(path).strip().partition(":")
    if not sep or not module or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        raise ArmError(f"{what} '{path}' is not an import path of the form module.path:function")
    return module, name


def describe(obj: Any) -> str:
    """A stable text for a trick, fit or metric given as an object: `module:qualname` for a function or class, and
    for an instance its class with its public attributes of simple types (numbers, text, flags) in name order."""
    if isinstance(obj, TrickUse):
        return obj.spec
    if isinstance(obj, str):
        return obj
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
        return f"{obj.__module__}:{obj.__qualname__}"
    cls = type(obj)
    simple = (bool, int, float, str, type(None))
    attrs = {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and isinstance(v, simple)} \
        if hasattr(obj, "__dict__") else {}
    args = ",".join(f"{k}={v!r}" for k, v in attrs.items())
    return f"{cls.__module__}:{cls.__qualname__}({args})"


def _short(t: Any) -> str:
    """A trick's name for labels: its registry name, or its function's or class's name."""
    return t.name if isinstance(t, TrickUse) else describe(t).rsplit(":", 1)[-1].split("(", 1)[0]


def _trick(t: Any) -> Any:
    """A registry name (`"dropout_conv:p=0.3"`) becomes a checked TrickUse; an object stays as it is."""
    if isinstance(t, TrickUse):
        return t
    if isinstance(t, str):
        from tricks.catalog import parse_spec

        name, kwargs = parse_spec(t)
        return TrickUse(name, kw(**kwargs))
    if not callable(t):
        raise ArmError(f"trick {t!r} is neither a registry name, a fastai Callback nor a Module -> Module function")
    return t


@dataclass(frozen=True)
class LearnerArm:
    """The user's own training as a claim's arm: `factory()` (an import path) returns a fastai Learner; `tricks`
    (registry names such as "BnFreeze" or "dropout_conv:p=0.3", Callback objects, Module -> Module functions) are
    added to it; `fit(learn, epochs, lr)` trains it (None: `learn.fit_one_cycle(epochs, lr)`); `metric` is a metric
    the Learner records, by name, or a function of the trained Learner (an import path or a function) returning a
    number where higher is better. `data`: the version of the factory's data, when the user names one; None lets the
    engine digest the data the Learner holds."""

    factory: str
    tricks: tuple[Any, ...] = ()
    epochs: int = 1
    lr: float = 1e-3
    fit: str | Callable[..., Any] | None = None
    metric: str | Callable[..., Any] = "accuracy"
    data: str | None = None
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)

    # what the scheduler and the profiles read from a Recipe: a user arm is never scaled or held back for a GPU
    heavy = False
    gpu_sized = False
    scaled = ""
    features = None

    def __post_init__(self) -> None:
        split_path(self.factory)
        if isinstance(self.fit, str):
            split_path(self.fit, "fit function")
        if isinstance(self.metric, str) and ":" in self.metric:
            split_path(self.metric, "metric")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ArmError(f"arm {self.label}: epochs must be a positive integer, not {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ArmError(f"arm {self.label}: lr must be a positive number, not {self.lr!r}")
        tricks = (self.tricks,) if isinstance(self.tricks, str) or callable(self.tricks) else self.tricks
        object.__setattr__(self, "tricks", tuple(_trick(t) for t in tricks))
        object.__setattr__(self, "lr", float(self.lr))
        if not self.name:
            extra = "+".join(_short(t) for t in self.tricks)
            object.__setattr__(self, "name", self.factory.rsplit(":", 1)[-1] + (f"+{extra}" if extra else ""))

    @property
    def label(self) -> str:
        return self.name or self.factory

    def spec(self) -> dict[str, Any]:
        """Every field that changes what a run computes, as plain JSON values (objects by `describe`)."""
        return {"kind": "learner", "factory": self.factory, "tricks": [describe(t) for t in self.tricks],
                "epochs": self.epochs, "lr": repr(self.lr), "fit": None if self.fit is None else describe(self.fit),
                "metric": describe(self.metric), "data": self.data}

    @property
    def key(self) -> str:
        """sha256 of the arm's spec: the store key of its runs (with the seed and `arm_version`)."""
        blob = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The spec with the labels, as the run store and the report's JSON keep it."""
        return {**self.spec(), "name": self.name, "description": self.description}

    def with_tricks(self, *tricks: Any, name: str = "") -> LearnerArm:
        """This arm with more tricks added after its own."""
        from dataclasses import replace

        return replace(self, tricks=self.tricks + tuple(tricks), name=name)

    def modules(self) -> tuple[str, ...]:
        """The modules whose source decides this arm's runs: the factory's, and those of a fit or metric by path."""
        mods = [split_path(self.factory)[0]]
        for x in (self.fit, self.metric):
            if isinstance(x, str) and ":" in x:
                mods.append(split_path(x)[0])
            elif callable(x) and getattr(x, "__module__", None):
                mods.append(x.__module__)
        return tuple(dict.fromkeys(mods))


def is_arm(x: Any) -> bool:
    """Whether `x` is a user arm (a LearnerArm)."""
    return isinstance(x, LearnerArm)


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

    from tricks.train import HeapTrim, device_name, versions
    from tricks.transforms import params_used

    t0 = time.perf_counter()
    learn = build(arm, seed, device)
    learn.add_cb(HeapTrim())  # as in a recipe's run: the process's heap stays flat, no number changes
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
