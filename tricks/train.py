"""One run of a recipe with a seed: `run(recipe, seed, profile) -> RunResult`, the fastai training loop.

`build_learner` makes the fastai Learner of a recipe (model, transforms, optimizer, loss, callbacks, memory layout);
`run` draws the seed's data, fits the recipe's phases and returns its `RunResult`. The data model it trains
(`Recipe`, `Profile`, `RunResult`, the stored version of a run) is `tricks.recipe`, which needs no torch.
"""

from __future__ import annotations

import inspect
import math
import platform
import random
import time
from dataclasses import replace
from functools import partial
from typing import Any

import fastai
import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler
from fastai.learner import AvgSmoothLoss, Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.optimizer import SGD, Adam, Optimizer, RMSProp, average_grad, l2_reg, weight_decay

from tricks import __version__
from tricks.callbacks import DivergenceGuard, ExpLRDecay, ThroughputRecorder, ValidateSubsetUntil
from tricks.catalog import get_trick
from tricks.cifar import load_cifar10
from tricks.loaders import TensorImageDL, cifar_dls, first_images, subsets
from tricks.models import MODELS, build_model
from tricks.plain import trim_heap
from tricks.recipe import CODE_VERSION, Phase, Profile, Recipe, RunResult, get_profile, run_version
from tricks.transforms import params_used


def versions() -> dict[str, str]:
    """Library versions that decide a run's numbers."""
    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "numpy": np.__version__, "tricks": __version__, "code": CODE_VERSION}


def device_name(device: Any) -> str:
    """A human name for a torch device: the GPU model, or the CPU with its thread count."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}"


def sgdr_v07(lr: float, n_cycles: int, warmup: bool = True) -> Any:
    """fastai v0.7's `fit(lr, n, cycle_len=1)`: n cosine cycles from lr to 0; the fit's first 1/20 cycle runs at lr/100.

    As in v0.7's CosAnneal, the warm-up iterations also advance the cosine, so the first cycle resumes mid-way.
    """
    def sched(pos: float) -> float:
        t = pos * n_cycles  # position in cycles
        if warmup and t < 1 / 20:
            return lr / 100
        return lr / 2 * (math.cos(math.pi * (t % 1.0)) + 1)

    return sched


def _optimizers() -> dict[str, Any]:
    """Optimizer name -> fastai optimizer function."""
    return {"adam": Adam, "sgd": SGD, "rmsprop": RMSProp, "nesterov": nesterov_sgd}


def _opt_func(recipe: Recipe):
    opts = _optimizers()
    if recipe.opt not in opts:
        raise ValueError(f"unknown optimizer '{recipe.opt}' (known: {', '.join(opts)})")
    return partial(opts[recipe.opt], **dict(recipe.opt_kwargs))


def nesterov_sgd(params: Any, lr: float, mom: float = 0.9, wd: float = 0.0, decouple_wd: bool = False) -> Any:
    """SGD with Nesterov momentum as a fastai Optimizer (fastai has none): buf = mom·buf + g; p -= lr·(g + mom·buf).

    The same update as `torch.optim.SGD(nesterov=True)` and, at a constant learning rate, as cs231n's
    `x += -mom·v_prev + (1 + mom)·v` (doc 002). `wd` is coupled L2 unless `decouple_wd`.
    """
    def nesterov_step(p: Any, lr: float, mom: float, grad_avg: Any, **_: Any) -> None:
        p.data.add_(p.grad.data + mom * grad_avg, alpha=-lr)

    cbs = [weight_decay if decouple_wd else l2_reg, average_grad, nesterov_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, wd=wd)


def _fit_phase(learn: Any, phase: Phase) -> None:
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
    on_cpu = torch.device(device or "cpu").type == "cpu"
    fast = on_cpu and recipe.model in CHANNELS_LAST_CPU and recipe.features is None
    return torch.channels_last if fast else torch.contiguous_format


def _device_smooth_loss(beta: float) -> Any:
    """fastai's AvgSmoothLoss with its running value kept on the loss's device: fastai's copies each training
    batch's loss to the host (`to_detach`), a sync per step on a GPU; this one is read once, at the epoch's end."""
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
    `memory_format_for` says it is faster for the recipe's model family on the loaders' device): the one place a
    run's layout is chosen and set, on the model and on the loaders' batches.
    """
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
    for dl in (dls.train, dls.valid):
        if isinstance(dl, TensorImageDL):
            dl.memory_format = fmt


class HeapTrim(Callback):
    """Give glibc's free heap pages back to the system every `every` training batches and at the end of each fit
    (`tricks.plain.trim_heap`; nothing where the C library is not glibc). It changes no number of the run.

    `run` adds it: without it a dense net's run grows all along on glibc 2.36 (he2016/naive: 4.1 GB at the end of a
    paper run, 990 MB with it; `benchmarks/heap.py` measures the cost)."""

    def __init__(self, every: int = 100):
        if every < 1:
            raise ValueError(f"HeapTrim needs every >= 1 batch, not {every}")
        self.every, self.batches = every, 0

    def after_batch(self) -> None:
        if self.training:
            self.batches += 1
            if self.batches % self.every == 0:
                trim_heap()

    def after_fit(self) -> None:
        trim_heap()


def _builder_params(name: str) -> set[str]:
    return set(inspect.signature(MODELS[name]).parameters) if name in MODELS else set()


def _quiet(*_: Any) -> None:
    """A logger that drops fastai's per-epoch rows."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) from the one seed of a run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(recipe: Recipe, seed: int, profile: Profile | str = "default", *, source: str | None = None,
        device: str | None = None, arrays: Any = None, extra_cbs: tuple = (), progress: bool = False,
        channels_last: bool | None = None, trim_every: int | None = 100) -> RunResult:
    """Train `recipe` with `seed` under `profile` and return its RunResult; a diverged run is flagged, not raised.

    `channels_last` None lets `memory_format_for` choose the layout (the same for every run of a recipe on a device).
    `trim_every`: give glibc's free heap pages back every so many training batches (`HeapTrim`; None: never).
    """
    prof = get_profile(profile)
    r = prof.scale(recipe)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if arrays is None:
        arrays = load_cifar10(source)
    t0 = time.perf_counter()
    data, cut = arrays, prof
    if r.features:  # computed on this seed's subsets only, which the loaders then take whole
        data, cut = _features(r, arrays, seed, prof), replace(prof, train_subset=None, test_subset=None)
    dls = _loaders(r, data, seed, cut, dev)
    seed_everything(seed)  # after the data draw, so init and dropout do not depend on the loaders' internals
    learn = build_learner(r, dls, extra_cbs=tuple(extra_cbs), progress=progress, channels_last=channels_last)
    if trim_every is not None:
        learn.add_cb(HeapTrim(trim_every))
    if prof.curve_test is not None and len(dls.valid.x) > prof.curve_test and r.epochs > 1:
        learn.add_cb(ValidateSubsetUntil(first_images(dls.valid, prof.curve_test), r.epochs))
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


def _loaders(r: Recipe, arrays: Any, seed: int, prof: Profile, dev: Any) -> Any:
    return cifar_dls(arrays, bs=r.bs, val_bs=max(r.bs, 500), augment=r.augment, normalize=r.normalize, seed=seed,
                     train_subset=prof.train_subset, test_subset=prof.test_subset, device=dev)


def _features(r: Recipe, arrays: Any, seed: int, prof: Profile) -> Any:
    """The recipe's data trick (e.g. K-means features) on this seed's subsets of the images (the profile's cut).

    The trick's own `seed` option, when it has one and neither recipe nor profile sets it, is the run's seed.
    """
    trick = get_trick(r.features)
    opts = {**dict(r.features_kwargs), **dict(prof.features_kwargs)}
    if "seed" in {p.name for p in trick.params}:
        opts.setdefault("seed", seed)
    x_tr, y_tr, x_te, y_te = subsets(arrays, seed, prof.train_subset, prof.test_subset)
    return trick.build(**opts)(replace(arrays, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te))
