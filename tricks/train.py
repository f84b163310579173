"""One run of a recipe with a seed: `run(recipe, seed, profile) -> RunResult`.

A `Recipe` is a frozen, hashable description of one published experiment arm. Its hash (`recipe.key`) is a sha256
of canonical JSON, stable across processes and Python versions; the name and description are labels and stay out
of it, so two claims naming the same recipe differently share runs. A `Profile` scales a recipe to the machine
(training subset, epochs); `paper` leaves it as published.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

Params = tuple[tuple[str, Any], ...]


def kw(**kwargs: Any) -> Params:
    """Keyword arguments as a sorted tuple of pairs, so that they can live in a frozen, hashable recipe."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@dataclass(frozen=True)
class TrickUse:
    """A registered trick with its arguments, e.g. `TrickUse("dropout_conv", kw(p=0.2))`."""

    name: str
    params: Params = ()

    @property
    def spec(self) -> str:
        """The command-line form, `name:k=v,...`."""
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


@dataclass(frozen=True)
class Phase:
    """One fit call: `schedule` is constant | one_cycle | exp_decay | sgdr (fastai v0.7 cycles), over `epochs`."""

    schedule: str
    epochs: int
    lr: float
    params: Params = ()  # schedule options, e.g. kw(pct_start=0.3) for one_cycle, kw(gamma=0.8) for exp_decay
    new_opt: bool = False  # start this phase with a fresh optimizer (doc 000's continued-training bug)


@dataclass(frozen=True)
class Recipe:
    """A published experiment arm: model, transforms, callbacks, data options, optimizer, schedule, batch size."""

    model: str  # builder name in tricks.models.MODELS
    model_kwargs: Params = ()
    transforms: tuple[TrickUse, ...] = ()  # model transforms, applied in order after the builder
    callbacks: tuple[TrickUse, ...] = ()
    opt: str = "adam"  # adam | sgd | rmsprop (fastai optimizers)
    opt_kwargs: Params = ()  # passed to the fastai optimizer (mom, sqr_mom, eps, wd, decouple_wd, ...)
    wd_bn_bias: bool = True  # PyTorch optimizers decay BN and bias; fastai's default does not
    phases: tuple[Phase, ...] = (Phase("constant", 10, 1e-3),)
    bs: int = 64
    augment: Any = False  # True: reflect-pad 4 + random crop + horizontal flip, on whole batches; or an Augment
    normalize: str | tuple | None = None  # None, "train" (training-set stats) or ((mean...), (std...))
    loss: str = "ce"  # ce on logits (log_softmax outputs give the same value) | nll on log-probabilities
    features: str | None = None  # a data-level trick that replaces pixels by features, e.g. "kmeans"
    features_kwargs: Params = ()
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)
    # ResNet9-sized: hours a run on a CPU, and chance accuracy at a scaled profile's size there, so scaled profiles
    # train it only on a GPU (the paper profile trains it anywhere)
    heavy: bool = field(default=False, compare=False)
    # what a scaled variant of a heavy recipe changed (e.g. "ResNet9 at a quarter width"), for every report line
    scaled: str = field(default="", compare=False)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    @property
    def gpu_sized(self) -> bool:
        """A heavy recipe whose network alone is too big for a CPU at its published size (ResNet9, doc 004's base
        CNN: hours a run on one core); a heavy data trick (K-means features) trains on a CPU at full size."""
        return self.heavy and self.features is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        d = dict(d)
        d["model_kwargs"] = _params(d.get("model_kwargs", ()))
        d["opt_kwargs"] = _params(d.get("opt_kwargs", ()))
        d["features_kwargs"] = _params(d.get("features_kwargs", ()))
        d["transforms"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("transforms", ()))
        d["callbacks"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("callbacks", ()))
        d["phases"] = tuple(Phase(**{**p, "params": _params(p["params"])}) for p in d.get("phases", ()))
        if isinstance(d.get("augment"), dict):  # an Augment, written out by asdict
            from tricks.data import Augment

            d["augment"] = Augment(**d["augment"])
        if isinstance(d.get("normalize"), list):
            d["normalize"] = tuple(tuple(x) for x in d["normalize"])
        return cls(**d)

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of every field that changes the run (not the name or description)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        blob = json.dumps(_jsonable(d), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_tricks(self, *uses: TrickUse, transforms: tuple[TrickUse, ...] = ()) -> Recipe:
        """This recipe with extra callbacks (and transforms) appended."""
        return replace(self, callbacks=self.callbacks + tuple(uses), transforms=self.transforms + tuple(transforms))


def _params(x: Any) -> Params:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in x)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "__dataclass_fields__"):
        return {f.name: _jsonable(getattr(x, f.name)) for f in fields(x) if f.compare}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, float):
        return repr(x)  # exact and stable across platforms
    return x


@dataclass(frozen=True)
class Profile:
    """How a suite scales recipes to the machine: a class-balanced training subset, a test subset, fewer epochs."""

    name: str
    train_subset: float | int | None = None  # fraction (<= 1) or image count; drawn per seed
    test_subset: int | None = None  # first-k class-balanced test images, the same for every seed
    epoch_scale: float = 1.0  # each phase keeps max(1, round(epochs * scale)) epochs
    description: str = ""
    cpu_skips_heavy: bool = False  # without a GPU, recipes marked heavy are not trained (their claims say why)
    cpu_scales_heavy: bool = False  # without a GPU, a heavy recipe with a scaled variant trains as that variant
    cpu_skips_gpu_sized: bool = False  # without a GPU, GPU-sized recipes (Recipe.gpu_sized) are not trained
    curve_test: int | None = None  # epochs before the last are evaluated on the first k (class-balanced) test images
    max_seeds: int | None = None  # the suite's seed cap under this profile unless --max-seeds says otherwise
    features_kwargs: Params = ()  # overrides of a data trick's options (e.g. fewer K-means centroids)

    def scale(self, recipe: Recipe) -> Recipe:
        """The recipe's epochs as this profile trains them (data subsets are applied by `run`).

        A callback's epoch index (a parameter named `*_epoch`, e.g. WeightDecayFrom's start_epoch) scales with the
        epochs, so the trick still covers the same share of training: doc 000's wd from epoch 2 of 10 (on for 80 %)
        starts at epoch 1 of 5 under a half-epoch profile, and at epoch 0 of 1 rather than never.
        """
        if self.epoch_scale == 1.0:
            return recipe
        phases = tuple(replace(p, epochs=max(1, round(p.epochs * self.epoch_scale))) for p in recipe.phases)
        last = sum(p.epochs for p in phases) - 1
        callbacks = tuple(
            replace(use, params=tuple((k, min(last, round(v * self.epoch_scale)) if _is_epoch_index(k, v) else v)
                                      for k, v in use.params))
            for use in recipe.callbacks)
        return replace(recipe, phases=phases, callbacks=callbacks)

    def arm(self, recipe: Recipe, device_has_gpu: bool) -> Recipe:
        """The recipe this profile trains for `recipe` on this device: a heavy recipe's named scaled variant
        (`tricks.recipes.scaled_variant`) under a profile that scales heavy arms on a CPU, else `recipe` itself.

        The variant is its own recipe, with its own key, so its runs are stored apart from the full-size ones.
        """
        if not recipe.heavy or device_has_gpu or not self.cpu_scales_heavy:
            return recipe
        from tricks.recipes import scaled_variant

        return scaled_variant(recipe) or recipe


def _is_epoch_index(name: str, value: Any) -> bool:
    return name.endswith("_epoch") and isinstance(value, int) and not isinstance(value, bool)


PROFILES: dict[str, Profile] = {
    # cap 8: the looks at 3, 5 and 8 seeds. On the published recipes the paired SD of a difference is 0.3-2.6 pp
    # (doc 001's 3 seeds a arm), so most claims decide by 8 seeds, and a doc 001 seed of all 8 arms costs about 80 CPU
    # minutes: a 12th seed would add half again for the few claims that sit on their margin, which then say how
    # many seeds they would need
    "paper": Profile("paper", max_seeds=8, cpu_skips_gpu_sized=True,
                     description="the published recipes exactly: all 50,000 training images, the published epochs, "
                                 "up to 8 seeds per arm; ResNet9-sized recipes only on a GPU (K-means at full size "
                                 "trains on a CPU)"),
    "default": Profile(
        "default", train_subset=5_000, epoch_scale=0.5, curve_test=1_000, max_seeds=12, cpu_skips_heavy=True,
        cpu_scales_heavy=True,
        description="5,000 training images (class-balanced, drawn per seed), half the epochs, the full test set at "
                    "the end (1,000 test images for the epochs before), up to 12 seeds per arm; on a CPU the heavy "
                    "arms train as scaled variants (ResNet9 and its base CNN at a quarter width, 400 K-means "
                    "centroids), on a GPU at full size"),
    "smoke": Profile(
        "smoke", train_subset=3_000, test_subset=1_000, epoch_scale=0.1, max_seeds=3, cpu_skips_heavy=True,
        features_kwargs=kw(n_centroids=32, n_patches=10_000, iters=3),
        # not cpu_scales_heavy: at a tenth of the epochs even the scaled variants end at chance (base_cnn@w8 seed 0:
        # 10.0 %, resnet9@w16 14.8 %, measured), which the engine counts as diverged
        description="3,000 training and 1,000 test images, a tenth of the epochs (at least one a phase), one look "
                    "at 3 seeds, 32 K-means centroids: checks the whole path, decides only huge effects; "
                    "ResNet9-sized recipes only on a GPU"),
}


def get_profile(profile: Profile | str) -> Profile:
    """The named profile; an unknown name raises ValueError listing the known ones."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    return PROFILES[profile]


@dataclass
class RunResult:
    """Everything one (recipe, seed, profile) run produced, with its provenance."""

    recipe_key: str
    recipe_name: str
    seed: int
    profile: str
    code_version: str
    acc: float  # final test accuracy in [0, 1]
    loss: float  # final test loss
    acc_per_epoch: list[float]  # before the last epoch, on the profile's curve_test images when it has them
    loss_per_epoch: list[float]
    train_loss_per_epoch: list[float]
    params_used: int | None  # parameters the forward pass uses
    wall_s: float
    img_per_s: float  # training images per second
    device: str
    threads: int
    versions: dict[str, str]
    dataset: str  # which copy of CIFAR-10 (source description and content digest)
    diverged: bool = False
    note: str = ""  # why a run diverged, or anything else worth keeping
    scaled: str = ""  # the recipe's scaled-variant note: what a CPU run of a heavy arm trained instead

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        return cls(**json.loads(text))


# --------------------------------------------------------------------------------------------- one run

# modules whose source decides what a run computes: their hash is the provenance of every run (`versions()["code"]`),
# and the store key of a recipe that has no committed training fingerprint
_TRAINING_PATH = ("data", "models", "layers", "transforms", "callbacks", "features", "train")


def _code_version() -> str:
    from pathlib import Path

    from tricks import __version__

    here = Path(__file__).parent
    h = hashlib.sha256()
    for mod in _TRAINING_PATH:
        f = here / f"{mod}.py"
        if f.exists():
            h.update(mod.encode() + b"\0" + f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


CODE_VERSION = _code_version()


def run_version(dataset_digest: str, recipe_key: str | None = None) -> str:
    """The version a run is stored under: what its training computes, plus the dataset copy it trained on (its
    digest); runs on the lossy JPEG copy and on the original PNGs never mix.

    What training computes is the recipe's committed training fingerprint (`tricks.fingerprint`), so an edit that
    changes no numbers keeps every stored run; a recipe without one (an ad-hoc recipe file, extra callbacks on the
    command line) falls back to the hash of the training modules' source, `CODE_VERSION`.
    """
    from tricks.fingerprint import fingerprint_id

    fid = fingerprint_id(recipe_key) if recipe_key is not None else None
    return f"{f'fp.{fid}' if fid else CODE_VERSION}+data.{dataset_digest[:12]}"


@dataclass(frozen=True)
class RunVersions:
    """The store version of each recipe's runs on one dataset copy: `versions(recipe_key) -> str`."""

    dataset_digest: str

    def __call__(self, recipe_key: str) -> str:
        return run_version(self.dataset_digest, recipe_key)

    def __str__(self) -> str:
        from tricks.fingerprint import file_digest

        return f"fingerprints.{file_digest()}+data.{self.dataset_digest[:12]}"


def versions() -> dict[str, str]:
    """Library versions that decide a run's numbers."""
    import platform

    import fastai
    import numpy
    import torch

    from tricks import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "numpy": numpy.__version__, "tricks": __version__, "code": CODE_VERSION}


def cpu_model() -> str:
    """The CPU's model name where the system tells it (Linux's /proc/cpuinfo), else the architecture."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    """A human name for a torch device: the GPU model, or the CPU with its thread count."""
    import platform

    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}"


def sgdr_v07(lr: float, n_cycles: int, warmup: bool = True) -> Any:
    """fastai v0.7's `fit(lr, n, cycle_len=1)`: n cosine cycles from lr to 0; the fit's first 1/20 cycle runs at lr/100.

    As in v0.7's CosAnneal, the warm-up iterations also advance the cosine, so the first cycle resumes mid-way.
    """
    import math

    def sched(pos: float) -> float:
        t = pos * n_cycles  # position in cycles
        if warmup and t < 1 / 20:
            return lr / 100
        return lr / 2 * (math.cos(math.pi * (t % 1.0)) + 1)

    return sched


def _optimizers() -> dict[str, Any]:
    """Optimizer name -> fastai optimizer function."""
    from fastai.optimizer import SGD, Adam, RMSProp

    return {"adam": Adam, "sgd": SGD, "rmsprop": RMSProp, "nesterov": nesterov_sgd}


def _opt_func(recipe: Recipe):
    from functools import partial

    opts = _optimizers()
    if recipe.opt not in opts:
        raise ValueError(f"unknown optimizer '{recipe.opt}' (known: {', '.join(opts)})")
    return partial(opts[recipe.opt], **dict(recipe.opt_kwargs))


def nesterov_sgd(params: Any, lr: float, mom: float = 0.9, wd: float = 0.0, decouple_wd: bool = False) -> Any:
    """SGD with Nesterov momentum as a fastai Optimizer (fastai has none): buf = mom·buf + g; p -= lr·(g + mom·buf).

    The same update as `torch.optim.SGD(nesterov=True)` and, at a constant learning rate, as cs231n's
    `x += -mom·v_prev + (1 + mom)·v` (doc 002). `wd` is coupled L2 unless `decouple_wd`.
    """
    from fastai.optimizer import Optimizer, average_grad, l2_reg, weight_decay

    def nesterov_step(p: Any, lr: float, mom: float, grad_avg: Any, **_: Any) -> None:
        p.data.add_(p.grad.data + mom * grad_avg, alpha=-lr)

    cbs = [weight_decay if decouple_wd else l2_reg, average_grad, nesterov_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, wd=wd)


def _fit_phase(learn: Any, phase: Phase) -> None:
    from fastai.callback.schedule import ParamScheduler

    from tricks.callbacks import ExpLRDecay

    opts = dict(phase.params)
    if phase.new_opt:
        learn.opt = None  # Learner.fit creates a fresh optimizer
    if phase.schedule == "constant":
        learn.fit(phase.epochs, phase.lr)
    elif phase.schedule == "exp_decay":
        learn.fit(phase.epochs, phase.lr, cbs=[ExpLRDecay(**opts)])
    elif phase.schedule == "one_cycle":
        learn.fit_one_cycle(phase.epochs, phase.lr, **opts)
    elif phase.schedule == "sgdr":
        cycle_len = int(opts.pop("cycle_len", 1))
        sched = sgdr_v07(phase.lr, phase.epochs // cycle_len, **opts)
        learn.fit(phase.epochs, phase.lr, cbs=[ParamScheduler({"lr": sched})])
    else:
        raise ValueError(f"unknown schedule '{phase.schedule}' (constant, exp_decay, one_cycle, sgdr)")


# Model families trained in torch.channels_last on a CPU: those where it was measured faster. Measured 2026-12-03
# (`benchmarks/layouts.py --steps 30`: NCHW and channels_last training steps interleaved, synthetic batches, a
# torch.optim.Adam step, 1 thread as a suite worker, torch 2.14.1, 2-core AMD EPYC (Zen 2, AVX2), other processes
# loading the cores; median step; the same-run ratio is what decides):
#
#   family (recipe's model)              batch   NCHW img/s   channels_last img/s   cl / NCHW
#   tf_cnn padding 0 (doc 000)              64          964                  1294       1.34x
#   tf_cnn padding 1 (doc 001 baseline)     64          687                   926       1.35x
#   tf_cnn padding 1 + bn_before_relu       64          639                   930       1.46x
#   tf_cnn padding 1, residual (doc 001)    64          169                   190       1.12x
#   pal2021_code_net (doc 000 as run)       64          539                   685       1.27x
#   conv_net (doc 003)                     256         2369                  2909       1.23x
#   conv_bn_net (doc 003, BnLayer)         256          555                   511       0.92x   (first run)
#   conv_bn_net, again (20 steps)          256          313                   375       1.20x
#   jovian_cnn (doc 004)                   128           25                    27       1.10x
#   resnet9 (doc 004)                       32            5                     5       0.96x   (kept NCHW)
#
# resnet9 had 7 steps a layout, a few seconds each, so its 0.96x is no clear loss either; it stays NCHW until a
# measurement says otherwise. conv_bn_net's first 0.92x did not repeat: 1.20x again here, and 1.14x and 1.17x in the
# project path itself (`benchmarks/throughput.py`, `conv_bn_net_cl_vs_nchw`, two runs on 2026-12-03), so it trains in
# channels_last.
# Dense-only models (simple_net, two_layer_net, features) have no layout. On CUDA nothing was measured (no GPU was
# lent), so the GPU path keeps NCHW.
CHANNELS_LAST_CPU: frozenset[str] = frozenset({"tf_cnn", "pal2021_code_net", "conv_net", "conv_bn_net", "jovian_cnn"})


def memory_format_for(recipe: Recipe, device: Any) -> Any:
    """torch.channels_last where the recipe's model family trains faster in it on this device, else contiguous."""
    import torch

    on_cpu = torch.device(device or "cpu").type == "cpu"
    fast = on_cpu and recipe.model in CHANNELS_LAST_CPU and recipe.features is None
    return torch.channels_last if fast else torch.contiguous_format


def _device_smooth_loss(beta: float) -> Any:
    """fastai's AvgSmoothLoss with its running value kept on the loss's device: fastai's copies each training
    batch's loss to the host (`to_detach`), a sync per step on a GPU; this one is read once, at the epoch's end."""
    import torch
    from fastai.learner import AvgSmoothLoss

    class DeviceSmoothLoss(AvgSmoothLoss):
        def accumulate(self, learn: Any) -> None:
            self.count += 1
            loss = learn.loss.mean().detach()
            self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)

    return DeviceSmoothLoss(beta)


def build_learner(recipe: Recipe, dls: Any, *, extra_cbs: tuple = (), progress: bool = False,
                  channels_last: bool | None = None) -> Any:
    """A fastai Learner for the recipe over `dls`: model, transforms, optimizer, loss, callbacks, no progress bar.

    `channels_last`: put the model, and the batches of the project's loaders, in torch.channels_last (None: where
    `memory_format_for` says it is faster for the recipe's model family on the loaders' device).
    """
    import torch
    import torch.nn.functional as F
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    from tricks.callbacks import DivergenceGuard, ThroughputRecorder
    from tricks.models import build_model
    from tricks.registry import get_trick

    model_kwargs = dict(recipe.model_kwargs)
    if recipe.features and "d_in" in _builder_params(recipe.model):  # the input width follows the features
        model_kwargs.setdefault("d_in", int(dls.train.x[0].numel()))
    model = build_model(recipe.model, **model_kwargs)
    for t in recipe.transforms:
        model = get_trick(t.name).build(**dict(t.params))(model)
    cbs = [get_trick(c.name).build(**dict(c.params)) for c in recipe.callbacks]
    cbs += [DivergenceGuard(), ThroughputRecorder(), *extra_cbs]
    loss = CrossEntropyLossFlat() if recipe.loss == "ce" else F.nll_loss
    fmt = memory_format_for(recipe, dls.device) if channels_last is None else (
        torch.channels_last if channels_last else torch.contiguous_format)
    _set_memory_format(dls, fmt)
    learn = Learner(dls, model.to(dls.device, memory_format=fmt), loss_func=loss, opt_func=_opt_func(recipe),
                    metrics=accuracy, cbs=cbs, wd_bn_bias=recipe.wd_bn_bias, train_bn=True)
    learn.recorder.smooth_loss = _device_smooth_loss(learn.recorder.smooth_loss.beta)
    if not progress:
        if ProgressCallback in [type(c) for c in learn.cbs]:
            learn.remove_cb(ProgressCallback)
        learn.logger = _quiet  # the Recorder would print each epoch's row
    return learn


def _set_memory_format(dls: Any, fmt: Any) -> None:
    """Hand out the batches of the project's image loaders in `fmt` (other loaders are left as they are)."""
    from tricks.data import TensorImageDL

    for dl in (dls.train, dls.valid):
        if isinstance(dl, TensorImageDL):
            dl.memory_format = fmt


def _builder_params(name: str) -> set[str]:
    import inspect

    from tricks.models import MODELS

    return set(inspect.signature(MODELS[name]).parameters) if name in MODELS else set()


def _quiet(*_: Any) -> None:
    """A logger that drops fastai's per-epoch rows."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) from the one seed of a run."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(recipe: Recipe, seed: int, profile: Profile | str = "default", *, source: str | None = None,
        device: str | None = None, arrays: Any = None, extra_cbs: tuple = (), progress: bool = False,
        channels_last: bool | None = None) -> RunResult:
    """Train `recipe` with `seed` under `profile` and return its RunResult; a diverged run is flagged, not raised.

    `channels_last` None lets `memory_format_for` choose the layout (the same for every run of a recipe on a device).
    """
    import time

    import torch

    from tricks.data import load_cifar10
    from tricks.transforms import params_used

    prof = get_profile(profile)
    r = prof.scale(recipe)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if arrays is None:
        arrays = load_cifar10(source)
    t0 = time.perf_counter()
    data, cut = arrays, prof
    if r.features:  # computed on this seed's subsets only, which the loaders then take whole
        data, cut = _features(r, arrays, seed, prof), replace(prof, train_subset=None, test_subset=None)
    fmt = memory_format_for(r, dev) if channels_last is None else (
        torch.channels_last if channels_last else torch.contiguous_format)
    dls = _loaders(r, data, seed, cut, dev, fmt)
    seed_everything(seed)  # after the data draw, so init and dropout do not depend on the loaders' internals
    cbs = tuple(extra_cbs)
    if prof.curve_test is not None and len(dls.valid.x) > prof.curve_test and r.epochs > 1:
        from tricks.callbacks import ValidateSubsetUntil

        small = _loaders(r, data, seed, replace(cut, test_subset=prof.curve_test), dev, fmt).valid
        cbs += (ValidateSubsetUntil(small, r.epochs),)
    learn = build_learner(r, dls, extra_cbs=cbs, progress=progress, channels_last=fmt == torch.channels_last)
    n_params = params_used(learn.model, input_shape=(2, *data.x_train.shape[1:]))
    learn.diverged, learn.diverged_reason = False, ""
    vals: list[list[float]] = []  # per epoch: train_loss, valid_loss, accuracy (the Recorder resets at each fit)
    for phase in r.phases:
        _fit_phase(learn, phase)
        vals += [list(v) for v in learn.recorder.values]
        if learn.diverged:
            break
    wall = time.perf_counter() - t0
    acc = [float(v[2]) for v in vals]
    loss = [float(v[1]) for v in vals]
    return RunResult(
        recipe_key=recipe.key, recipe_name=recipe.name, seed=seed, profile=prof.name,
        code_version=run_version(arrays.digest, recipe.key),
        acc=acc[-1] if acc and not learn.diverged else float("nan"),
        loss=loss[-1] if loss and not learn.diverged else float("nan"),
        acc_per_epoch=acc, loss_per_epoch=loss, train_loss_per_epoch=[float(v[0]) for v in vals],
        params_used=n_params, wall_s=wall, img_per_s=float(getattr(learn, "img_per_s", 0.0) or 0.0),
        device=device_name(dev), threads=torch.get_num_threads(), versions=versions(),
        dataset=f"{arrays.source} (sha256 {arrays.digest[:12]})", diverged=bool(learn.diverged),
        note=learn.diverged_reason or "", scaled=r.scaled,
    )


def _loaders(r: Recipe, arrays: Any, seed: int, prof: Profile, dev: Any, fmt: Any = None) -> Any:
    import torch

    from tricks.data import cifar_dls

    return cifar_dls(arrays, bs=r.bs, val_bs=max(r.bs, 500), augment=r.augment, normalize=r.normalize, seed=seed,
                     train_subset=prof.train_subset, test_subset=prof.test_subset, device=dev,
                     memory_format=fmt or torch.contiguous_format)


def _features(r: Recipe, arrays: Any, seed: int, prof: Profile) -> Any:
    """The recipe's data trick (e.g. K-means features) on this seed's subsets of the images (the profile's cut).

    The trick's own `seed` option, when it has one and neither recipe nor profile sets it, is the run's seed.
    """
    from dataclasses import replace as dc_replace

    from tricks.data import subsets
    from tricks.registry import get_trick

    trick = get_trick(r.features)
    opts = {**dict(r.features_kwargs), **dict(prof.features_kwargs)}
    if "seed" in {p.name for p in trick.params}:
        opts.setdefault("seed", seed)
    x_tr, y_tr, x_te, y_te = subsets(arrays, seed, prof.train_subset, prof.test_subset)
    return trick.build(**opts)(dc_replace(arrays, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te))
