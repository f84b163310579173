"""Callbacks fastai lacks, for the training tricks of the source documents.

Each is a plain fastai `Callback`, usable in any Learner (`from tricks.callbacks import ClipGradValue`), and is
registered by name for the command line. Where they sit among fastai's own callbacks (lower `order` runs first):

    TrainEvalCallback -10 | BnFreeze -9 | L1Penalty 5 | GradientAccumulation 6 | DivergenceGuard 9 |
    MixedPrecision 10 | GradNormRecorder 10.5 | GradientClip, ClipGradValue 11 | Recorder 50 |
    ThroughputRecorder 51 | ParamScheduler/LRFinder 60 | ExpLRDecay, WeightDecayFrom 61

Under `lr_find` (which runs its own LR schedule, then restores model and optimizer) the LR decay and the recorders
stand aside; the others act as they would at the start of a fit. `get_preds` and `validate` run no training
events but do fire `before_fit`/`after_fit` around their one validation epoch, so per-fit state here starts at the
fit's first `before_train`, not at `before_fit`, and every callback is a no-op there.

Epochs count from 0 in every fit: `ExpLRDecay` and `WeightDecayFrom` start over with each `fit` call, so each phase
of `fine_tune` (frozen, then unfrozen) restarts the decay and the weight-decay switch. A trick that finds nothing to
act on in the model (BnFreeze without BatchNorm) says so with a `TrickWarning`, as does BnFreeze freezing statistics
that were never learned. BnFreeze's `start_epoch` counts epochs over every fit, not per fit: the statistics it freezes
are those learned in all the epochs before.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch
from fastai.callback.core import Callback, CancelFitException, TrainEvalCallback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.schedule import LRFinder, ParamScheduler
from fastai.callback.training import GradientAccumulation, GradientClip
from fastai.learner import Recorder
from fastai.torch_core import find_bs, norm_bias_params
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tricks.layers import BnLayer, norm_layers, norm_params
from tricks.registry import TrickWarning, check_range, register

__all__ = ["BnFreeze", "ClipGradValue", "DivergenceGuard", "ExpLRDecay", "GradNormRecorder", "GradientClip",
           "L1Penalty", "ThroughputRecorder", "ValidateSubsetUntil", "WeightDecayFrom", "never_learned"]

# fastai's norm-clipping callback, offered under its own name next to ClipGradValue
register(kind="callback", description="Clip the global gradient norm to max_norm (fastai's own GradientClip).",
         ranges={"max_norm": "(0, inf)", "norm_type": "(0, inf]"})(GradientClip)


def _in_lr_find(learn: Any) -> bool:
    """Whether the current fit is an `lr_find` mock run."""
    return any(isinstance(cb, LRFinder) for cb in learn.cbs)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _warn(message: str) -> None:
    """One sentence to whoever trains the model: the trick cannot act on it (shown once per place it is raised)."""
    warnings.warn(message, TrickWarning, stacklevel=3)


class FitScoped(Callback):
    """A callback whose state lives for one training fit: `start_fit` at its first `before_train`, `end_fit` after it.

    `get_preds` and `validate` fire `before_fit`/`after_fit` too but never `before_train`, so they touch no state.
    """

    _fitting = False
    in_lr_find = False

    @property
    def _active(self) -> bool:
        """Inside a training fit that is not an lr_find mock run."""
        return self._fitting and not self.in_lr_find

    def start_fit(self) -> None:
        """Set up per-fit state; `self.in_lr_find` says whether this fit is an lr_find mock run."""

    def end_fit(self) -> None:
        """Tear down per-fit state; also runs after a cancelled fit."""

    def before_fit(self) -> None:
        if self._fitting:  # the last fit died of an exception, which skips after_fit: tidy up now
            self._fitting = False
            self.end_fit()

    def before_train(self) -> None:
        if not self._fitting:
            self._fitting, self.in_lr_find = True, _in_lr_find(self.learn)
            self.start_fit()

    def after_fit(self) -> None:
        if self._fitting:
            self._fitting = False
            self.end_fit()


@register(kind="callback", ranges={"start_epoch": "[0, inf)"})
class BnFreeze(FitScoped):
    """Keep every BatchNorm layer's and BnLayer's statistics fixed during training (they run in eval mode).

    Freezing is for statistics already learned (doc 003: a trained network's mean and standard deviation, left
    alone): with `start_epoch=k` they learn as usual for the first k epochs, then stay fixed. Epochs are counted over
    every fit this callback trains (a recipe's phases, `fine_tune`'s frozen and unfrozen fits; `lr_find` excluded),
    and a profile scales `start_epoch` with the epochs. Frozen from the first step of a fresh model (`start_epoch=0`,
    the default, as fastai's) they are their initial values (running mean 0 and variance 1; a BnLayer that never
    trained normalizes each batch by its own, recording nothing), and a TrickWarning says so. fastai's own `BnFreeze`
    only acts on BN layers whose parameters are frozen (transfer learning), so on a model trained from scratch it does
    nothing; this one acts on every `_BatchNorm` layer and on `tricks.layers.BnLayer`. `affine=True` also freezes
    their scale and shift bit for bit while the statistics are frozen: requires_grad off and gradients dropped (so no
    optimizer, not even one with momentum or weight decay, steps them), restored after the fit. A model with no such
    layer gets a TrickWarning.
    `from fastai.vision.all import *` exports fastai's `BnFreeze` too: whichever import comes last wins the name.
    """

    order = TrainEvalCallback.order + 1  # after TrainEvalCallback.before_train has put the whole model in train mode

    def __init__(self, affine: bool = False, start_epoch: int = 0):
        check_range("BnFreeze", start_epoch=start_epoch)
        self.affine, self.start_epoch = affine, start_epoch
        self._saved: list[tuple[nn.Parameter, bool]] = []
        self._epochs_seen, self._warned = 0, False

    def _bn_layers(self) -> list[nn.Module]:
        return [m for m in norm_layers(self.learn.model) if isinstance(m, (_BatchNorm, BnLayer))]

    def start_fit(self) -> None:
        self._saved = []
        if not self._bn_layers() and not self.in_lr_find:
            _warn(f"BnFreeze has nothing to freeze: this {type(self.learn.model).__name__} has no BatchNorm layer "
                  f"or BnLayer, so it trains as without the callback")

    def _freeze(self, layers: list[nn.Module]) -> None:
        """Called at each training epoch once the statistics are frozen: warn once if they were never learned, and
        freeze the scale and shift (affine=True) at the first such epoch of the fit."""
        blank = [bn for bn in layers if never_learned(bn)]
        if blank and not self.in_lr_find and not self._warned:
            self._warned = True
            _warn(f"BnFreeze freezes statistics that were never learned in {len(blank)} of {len(layers)} layers "
                  f"(BatchNorm's initial mean 0 and variance 1; a BnLayer that recorded nothing uses each batch's "
                  f"own), so training and evaluation use those values: learn them first (start_epoch=k freezes "
                  f"after k epochs) or freeze a trained model")
        if self.affine and not self._saved:
            for bn in layers:
                for p in norm_params(bn):
                    self._saved.append((p, p.requires_grad))
                    p.requires_grad_(False)
                    p.grad = None  # fastai's optimizers step every parameter with a gradient, zeroed or not

    def before_train(self) -> None:
        super().before_train()
        if self._fitting and self._epochs_seen >= self.start_epoch:
            layers = self._bn_layers()
            self._freeze(layers)
            for bn in layers:
                bn.eval()

    def after_epoch(self) -> None:
        if self._fitting and not self.in_lr_find:
            self._epochs_seen += 1

    def end_fit(self) -> None:
        for p, rg in self._saved:
            p.requires_grad_(rg)
        self._saved = []


def never_learned(layer: nn.Module) -> bool:
    """Whether a BatchNorm layer or BnLayer still holds the statistics it was built with (no training batch seen).

    A BatchNorm layer counts as learned when its running statistics moved from (0, 1), even if a checkpoint without
    `num_batches_tracked` reset that count to 0."""
    if isinstance(layer, BnLayer):
        return int(layer.num_batches_tracked) == 0
    if not isinstance(layer, _BatchNorm) or layer.running_mean is None:
        return False  # without running statistics the layer always normalizes by the batch: nothing to learn
    tracked = layer.num_batches_tracked is not None and int(layer.num_batches_tracked) > 0
    at_init = bool((layer.running_mean == 0).all()) and bool((layer.running_var == 1).all())
    return not tracked and at_init


@register(kind="callback", ranges={"clip": "(0, inf)"})
class ClipGradValue(Callback):
    """Clip every gradient element to [-clip, clip] between backward and step (`clip_grad_value_`, doc 004).

    fastai's `GradientClip` clips the global norm instead. Runs after MixedPrecision has unscaled the gradients.
    """

    order = MixedPrecision.order + 1  # MixedPrecision.before_step unscales the gradients first
    run_valid = False

    def __init__(self, clip: float = 0.1):
        check_range("ClipGradValue", clip=clip)
        self.clip = clip

    def before_step(self) -> None:
        nn.utils.clip_grad_value_(self.learn.model.parameters(), self.clip)


@register(kind="callback", ranges={"l1": "[0, inf)"})
class L1Penalty(FitScoped):
    """Add l1·sum|w| over the weights (not biases, not normalization layers, BnLayer included) to the training loss.

    Both the loss that is differentiated and the loss the Recorder logs carry the penalty; validation loss does not.
    Runs before GradientAccumulation rescales the loss, so accumulation counts the penalty once per step.
    """

    order = GradientAccumulation.order - 1
    run_valid = False

    def __init__(self, l1: float = 1e-5):
        check_range("L1Penalty", l1=l1)
        self.l1 = l1
        self._weights: list[nn.Parameter] = []

    def start_fit(self) -> None:
        self._weights = l1_weights(self.learn.model)
        if not self._weights and not self.in_lr_find:
            _warn(f"L1Penalty has nothing to penalize: this {type(self.learn.model).__name__} has no trainable weight "
                  f"outside biases and normalization layers")

    def after_loss(self) -> None:
        if not (self._fitting and self.training and self._weights and self.l1 > 0):
            return
        penalty = self.l1 * sum(p.abs().sum() for p in self._weights)
        self.learn.loss_grad = self.learn.loss_grad + penalty
        self.learn.loss = self.learn.loss + penalty.detach()


def l1_weights(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters an L1 penalty acts on: all but biases and the scale and shift of every normalization
    layer (BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm, BnLayer)."""
    skip = {id(p) for p in norm_bias_params(model, with_bias=True)}
    skip |= {id(p) for layer in norm_layers(model) for p in norm_params(layer)}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in skip]


@register(kind="callback", ranges={"gamma": "(0, inf)"})
class ExpLRDecay(FitScoped):
    """Per-epoch exponential LR decay: epoch e runs at gamma^e times the LR otherwise in force (PyTorch ExponentialLR).

    With a plain `fit(n, lr)` that is lr·gamma^e, as PyTorch's ExponentialLR stepped after each epoch (doc 000);
    after a ParamScheduler (e.g. `fit_one_cycle`) it multiplies the scheduled LR. Per param group. The undecayed LR
    is put back after each batch, so the optimizer leaves the fit with the LR it came in with. `epoch` counts from 0 in
    each fit: every `fit` call (each phase of `fine_tune`) starts the decay over.
    """

    order = ParamScheduler.order + 1  # decay what the scheduler set for this batch
    run_valid = False

    def __init__(self, gamma: float = 0.8):
        check_range("ExpLRDecay", gamma=gamma)
        self.gamma = gamma
        self._undecayed: list[float] | None = None

    def before_batch(self) -> None:
        if not (self._fitting and self.training) or self.in_lr_find:  # lr_find drives the LR itself
            return
        self._undecayed = [h["lr"] for h in self.learn.opt.hypers]
        factor = self.gamma ** self.epoch
        self.learn.opt.set_hyper("lr", [lr * factor for lr in self._undecayed])

    def _restore(self) -> None:
        if self._undecayed is not None:
            self.learn.opt.set_hyper("lr", self._undecayed)
            self._undecayed = None

    def after_batch(self) -> None:
        self._restore()

    def end_fit(self) -> None:
        self._restore()  # a fit cancelled mid-batch skips after_batch


@register(kind="callback", ranges={"wd": "[0, inf)", "start_epoch": "[0, inf)"})
class WeightDecayFrom(FitScoped):
    """Weight decay `wd` from epoch `start_epoch` (0-based) on, through the optimizer's wd; its own wd before.

    Doc 000 set wd=1e-4 after epoch 2 on an optimizer without decay (PyTorch's Adam), active in epochs 3-10:
    start_epoch=2. Before the start epoch the optimizer keeps its own wd (fastai's Adam has 0.01, PyTorch's 0), and
    after the fit it has that wd again. Coupled L2 or decoupled is the optimizer's choice (fastai's `decouple_wd`).
    Set before every batch and put back after it, so it wins over a wd schedule. `epoch` counts from 0 in each fit:
    every `fit` call (each phase of `fine_tune`) starts the count over.
    """

    order = ParamScheduler.order + 1
    run_valid = False

    def __init__(self, wd: float = 1e-4, start_epoch: int = 2):
        check_range("WeightDecayFrom", wd=wd, start_epoch=start_epoch)
        self.wd, self.start_epoch = wd, start_epoch
        self._own: list[float] | None = None

    def start_fit(self) -> None:
        hypers = self.learn.opt.hypers
        if "wd" not in hypers[0]:
            raise ValueError(f"WeightDecayFrom needs an optimizer with a 'wd' hyper-parameter; "
                             f"{type(self.learn.opt).__name__} has {', '.join(hypers[0])}")
        if not self.in_lr_find and all(h["wd"] == self.wd for h in hypers):
            _warn(f"WeightDecayFrom changes nothing: the optimizer's weight decay is already {self.wd:g} before "
                  f"epoch {self.start_epoch}")

    def before_batch(self) -> None:
        if self._fitting and self.training and self.epoch >= self.start_epoch:
            self._own = [h["wd"] for h in self.learn.opt.hypers]
            self.learn.opt.set_hyper("wd", self.wd)

    def _restore(self) -> None:
        if self._own is not None:
            self.learn.opt.set_hyper("wd", self._own)
            self._own = None

    def after_batch(self) -> None:
        self._restore()

    def end_fit(self) -> None:
        self._restore()  # a fit cancelled mid-batch skips after_batch


@register(kind="callback", ranges={"max_loss": "(0, inf)"})
class DivergenceGuard(FitScoped):
    """Stop the fit cleanly when the training loss is not finite or above max_loss; sets `learn.diverged`.

    `learn.diverged_reason` says which loss, epoch and batch. Each batch notes on the device whether its loss is bad
    (the first bad batch and its loss), with no host sync. `per_batch` says when that note is read: True at the start
    of the next batch, so a bad loss costs at most the one optimizer step it came with; False once, at the end of the
    epoch's training (a GPU's queue never drains mid-epoch for it; a diverged epoch runs to its end); None (default)
    per batch on a CPU, where reading a value waits for nothing, and per epoch on an accelerator. Inactive under
    lr_find, which diverges on purpose.
    A stop in epoch 0 leaves no epoch for fastai's `SaveModelCallback` to save, whose after_fit then fails loading
    the missing `best.pth`: check `learn.diverged` before relying on the saved model.
    """

    order = MixedPrecision.order - 1  # stop in before_batch before MixedPrecision enters autocast

    def __init__(self, max_loss: float = 1e4, per_batch: bool | None = None):
        check_range("DivergenceGuard", max_loss=max_loss)
        self.max_loss, self.per_batch = max_loss, per_batch
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None  # (batch index or -1, its loss), on the device
        self._epoch = 0
        self._check_each_batch = True

    def start_fit(self) -> None:
        self._first = None
        if self._active:
            self.learn.diverged, self.learn.diverged_reason = False, ""
            dev = next(iter(self.learn.model.parameters()), torch.empty(0)).device
            self._check_each_batch = self.per_batch if self.per_batch is not None else dev.type == "cpu"

    def _reason(self) -> str:
        """Read the note (the one host sync); the reason the first bad loss is bad, or '' when none was."""
        if self._first is None:
            return ""
        batch_t, loss_t = self._first
        self._first = None
        batch = int(batch_t)
        if batch < 0:
            return ""
        value = float(loss_t)
        what = f"{value}" if not math.isfinite(value) else f"{value:.4g}, above max_loss {self.max_loss:g},"
        return f"training loss was {what} at epoch {self._epoch}, batch {batch} (counting from 0)"

    def _stop_if_bad(self) -> None:
        reason = self._reason()
        if reason:
            self.learn.diverged, self.learn.diverged_reason = True, reason
            raise CancelFitException()

    def before_batch(self) -> None:
        if self._active and self.training and self._check_each_batch:
            self._stop_if_bad()

    def after_loss(self) -> None:
        if not (self._active and self.training):
            return
        loss = self.learn.loss.detach().float().mean()
        bad = ~(loss.abs() <= self.max_loss)  # NaN compares false, so it counts as bad
        if self._first is None:
            self._first, self._epoch = (torch.full_like(loss, -1, dtype=torch.long), torch.zeros_like(loss)), self.epoch
        batch_t, loss_t = self._first
        take = bad & (batch_t < 0)  # only the first bad batch is kept
        self._first = (torch.where(take, self.iter, batch_t), torch.where(take, loss, loss_t))

    def after_train(self) -> None:
        if self._active:
            self._stop_if_bad()

    def end_fit(self) -> None:
        if not self.in_lr_find:  # a fit cancelled by someone else may leave one loss unchecked
            reason = self._reason()
            if reason:
                self.learn.diverged, self.learn.diverged_reason = True, reason
        self._first = None


@register(kind="callback", ranges={"warmup": "[0, inf)"})
class ThroughputRecorder(FitScoped):
    """Record training images/second per step (`learn.throughput`) and over the fit after `warmup` steps (`img_per_s`).

    A step's time runs from the end of the previous step (or the start of the epoch's training) to the end of this
    one, so it includes loading the batch; validation is not counted. On CUDA the device is synchronized once per
    epoch, not per step. Inactive under lr_find.
    """

    order = Recorder.order + 1

    def __init__(self, warmup: int = 5):
        check_range("ThroughputRecorder", warmup=warmup)
        self.warmup = warmup
        self._t = 0.0
        self._sizes: list[int] = []
        self._times: list[float] = []

    def start_fit(self) -> None:
        self._sizes, self._times = [], []
        if self._active:
            self.learn.throughput, self.learn.img_per_s = [], float("nan")

    def before_train(self) -> None:
        super().before_train()
        self._t = time.perf_counter()

    def after_batch(self) -> None:
        if not (self._active and self.training):
            return
        now = time.perf_counter()
        self._sizes.append(find_bs(self.learn.yb) if len(self.learn.yb) else find_bs(self.learn.xb))
        self._times.append(now - self._t)
        self.learn.throughput.append(self._sizes[-1] / max(self._times[-1], 1e-12))
        self._t = now

    def after_train(self) -> None:
        if not (self._active and self._times):
            return
        dev = next(self.learn.model.parameters()).device
        if dev.type == "cuda":  # queued kernels of the last steps belong to this epoch's time
            torch.cuda.synchronize(dev)
            self._times[-1] += time.perf_counter() - self._t
            self.learn.throughput[-1] = self._sizes[-1] / max(self._times[-1], 1e-12)

    def end_fit(self) -> None:
        if not self.in_lr_find and self._times:
            skip = min(self.warmup, len(self._times) - 1)  # keep at least one step
            self.learn.img_per_s = sum(self._sizes[skip:]) / max(sum(self._times[skip:]), 1e-12)


@register(kind="callback", ranges={"every": "[1, inf)"})
class GradNormRecorder(FitScoped):
    """Record the global gradient L2 norm of every `every`-th step in `learn.grad_norms`, before any clipping.

    It runs in before_step at order 10.5: after MixedPrecision (10) has unscaled the gradients and before
    GradientClip and ClipGradValue (11) clip them, so it sees the raw gradient of the step. Steps that MixedPrecision
    skips for overflow, and micro-batches of GradientAccumulation, are not steps and are not recorded. Norms are read
    off the device at the end of each epoch's training (no sync per step). Inactive under lr_find.
    """

    order = MixedPrecision.order + 0.5
    run_valid = False

    def __init__(self, every: int = 1):
        check_range("GradNormRecorder", every=every)
        self.every = every
        self._steps = 0
        self._norms: list[torch.Tensor] = []

    def start_fit(self) -> None:
        self._steps, self._norms = 0, []
        if self._active:
            self.learn.grad_norms = []

    def before_step(self) -> None:
        if not (self._active and self.training):
            return
        if self._steps % self.every == 0:
            grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
            if grads:
                self._norms.append(nn.utils.get_total_norm(grads, norm_type=2.0).detach())
            else:
                self._norms.append(torch.tensor(0.0))
        self._steps += 1

    def _flush(self) -> None:
        self.learn.grad_norms.extend(float(n) for n in self._norms)
        self._norms = []

    def after_train(self) -> None:
        if self._active:
            self._flush()

    def end_fit(self) -> None:
        if not self.in_lr_find:
            self._flush()


class ValidateSubsetUntil(Callback):
    """Validate on a smaller loader (`small`) after every epoch but the last of `total_epochs`, counted across fits.

    Per-epoch accuracy curves then cost a fraction of a full test pass while the final epoch still reports the whole
    validation set. Only training epochs count: `get_preds`, `validate` and `lr_find` see the full loader.
    """

    order = Recorder.order - 1
    training_fit = False

    def __init__(self, small: Any, total_epochs: int):
        _check(total_epochs >= 1, f"ValidateSubsetUntil total_epochs must be at least 1, got {total_epochs}")
        self.small, self.total, self.done = small, total_epochs, 0

    def before_validate(self) -> None:
        if self.training_fit and self.done < self.total - 1:
            self.learn.dl = self.small

    def before_train(self) -> None:
        self.training_fit = not _in_lr_find(self.learn)

    def before_fit(self) -> None:
        self.training_fit = False  # get_preds / validate: no before_train, so the full loader stays

    def after_epoch(self) -> None:
        if self.training_fit:
            self.done += 1
