"""Tests of tricks/callbacks.py on tiny synthetic data: each callback's effect, its order, lr_find and get_preds."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import SchedExp
from fastai.callback.training import BnFreeze as FastaiBnFreeze
from fastai.data.core import DataLoaders, TfmdDL
from fastai.learner import Learner, Recorder
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD, Adam
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from tricks.callbacks import (
    BnFreeze,
    ClipGradValue,
    DivergenceGuard,
    ExpLRDecay,
    GradientClip,
    GradNormRecorder,
    L1Penalty,
    ThroughputRecorder,
    WeightDecayFrom,
    l1_weights,
    never_learned,
)
from tricks.layers import BnLayer
from tricks.registry import TrickWarning

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)

BS, N_TRAIN, N_VALID = 8, 32, 16  # 4 training batches per epoch
ROOT = Path(__file__).resolve().parents[1]


def tiny_dls(seed: int = 0, n_train: int = N_TRAIN, n_valid: int = N_VALID, bs: int = BS) -> DataLoaders:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, 3, 6, 6, generator=g)
    y = torch.randint(0, 4, (n_train + n_valid,), generator=g)
    train = TfmdDL(TensorDataset(x[:n_train], y[:n_train]), bs=bs, shuffle=True, num_workers=0)
    valid = TfmdDL(TensorDataset(x[n_train:], y[n_train:]), bs=bs, num_workers=0)
    return DataLoaders(train, valid, device="cpu")


def tiny_net(bn: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *([nn.BatchNorm2d(4)] if bn else []), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def tiny_learner(tmp_path: Path, cbs=(), model: nn.Module | None = None, opt_func=SGD, seed: int = 0,
                 **kwargs) -> Learner:
    random.seed(seed)  # fastai's DataLoader shuffles with Python's random
    torch.manual_seed(seed)
    learn = Learner(tiny_dls(seed, **kwargs), model if model is not None else tiny_net(),
                    loss_func=CrossEntropyLossFlat(), opt_func=opt_func, lr=0.1, cbs=list(cbs), path=tmp_path)
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None
    return learn


class Probe(Callback):
    """Records `fn(learn)` at one event; the order decides which callbacks have already acted."""

    def __init__(self, event: str, fn, order: float, training_only: bool = True):
        self.order, self.fn, self.training_only, self.seen = order, fn, training_only, []
        setattr(self, event, self._record)

    def _record(self) -> None:
        if self.learn.training or not self.training_only:
            self.seen.append(self.fn(self.learn))


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------- ClipGradValue


@settings(max_examples=10, deadline=None)
@given(clip=st.floats(1e-4, 0.05), seed=st.integers(0, 1000))
def test_clip_grad_value_bounds_every_gradient_at_the_step(tmp_path_factory, clip, seed):
    max_grad = lambda lr: max(p.grad.abs().max().item() for p in lr.model.parameters())  # noqa: E731
    before = Probe("before_step", max_grad, order=10.9)  # before clipping (order 11)
    after = Probe("before_step", max_grad, order=20)
    learn = tiny_learner(tmp_path_factory.mktemp("clip"), [ClipGradValue(clip), before, after], seed=seed)
    learn.fit(1)
    assert len(after.seen) == N_TRAIN // BS
    assert all(g <= clip * (1 + 1e-6) for g in after.seen)  # float32 rounding of clip
    assert max(before.seen) > clip  # the gradients did need clipping: the bound above is the callback's doing


def test_gradient_clip_is_fastais_own_class():
    from fastai.callback import training

    assert GradientClip is training.GradientClip


# --------------------------------------------------------------------------------------------- ExpLRDecay


@settings(max_examples=8, deadline=None)
@given(gamma=st.floats(0.1, 1.5), epochs=st.integers(1, 3))
def test_exp_lr_decay_follows_gamma_power_epoch_with_fit(tmp_path_factory, gamma, epochs):
    learn = tiny_learner(tmp_path_factory.mktemp("exp"), [ExpLRDecay(gamma)])
    learn.fit(epochs, 0.05)
    n = N_TRAIN // BS
    expected = [0.05 * gamma ** (i // n) for i in range(epochs * n)]
    assert learn.recorder.lrs == pytest.approx(expected, rel=1e-12)
    assert learn.opt.hypers[-1]["lr"] == pytest.approx(0.05)  # the undecayed LR is back after the fit


def test_exp_lr_decay_matches_pytorch_exponential_lr_of_doc_000(tmp_path):
    learn = tiny_learner(tmp_path, [ExpLRDecay(0.8)], n_train=BS)  # one batch per epoch
    learn.fit(10, 2e-3)
    published = [2e-3, 1.6e-3, 1.28e-3, 1.024e-3, 8.19e-4, 6.55e-4, 5.24e-4, 4.19e-4, 3.36e-4, 2.68e-4]
    assert learn.recorder.lrs == pytest.approx(published, rel=2e-3)


def test_exp_lr_decay_multiplies_the_one_cycle_schedule(tmp_path):
    plain = tiny_learner(tmp_path)
    plain.fit_one_cycle(3, 0.1)
    decayed = tiny_learner(tmp_path, [ExpLRDecay(0.5)])
    decayed.fit_one_cycle(3, 0.1)
    n = N_TRAIN // BS
    expected = [lr * 0.5 ** (i // n) for i, lr in enumerate(plain.recorder.lrs)]
    assert decayed.recorder.lrs == pytest.approx(expected, rel=1e-12)
    assert decayed.recorder.hps["lr"] == pytest.approx(expected, rel=1e-12)  # what ParamScheduler logged too


def test_exp_lr_decay_acts_on_every_param_group(tmp_path):
    def two_groups(m: nn.Module) -> list[list[nn.Parameter]]:
        return [list(m[0].parameters()) + list(m[1].parameters()), list(m[-1].parameters())]

    probe = Probe("before_step", lambda lr: [h["lr"] for h in lr.opt.hypers], order=70)
    learn = tiny_learner(tmp_path, [ExpLRDecay(0.5), probe])
    learn.splitter = two_groups
    learn.fit(2, slice(1e-3, 1e-2))
    n = N_TRAIN // BS
    assert probe.seen[0] == pytest.approx([1e-3, 1e-2])
    assert probe.seen[n] == pytest.approx([5e-4, 5e-3])


# --------------------------------------------------------------------------------------------- WeightDecayFrom


@settings(max_examples=8, deadline=None)
@given(start=st.integers(0, 3), epochs=st.integers(1, 4), coupled=st.booleans())
def test_weight_decay_from_keeps_the_optimizers_wd_before_start_epoch_sets_wd_after_and_restores_it(
        tmp_path_factory, start, epochs, coupled):
    probe = Probe("before_step", lambda lr: (lr.epoch, lr.opt.hypers[0]["wd"]), order=70)

    def opt(params, lr):
        return Adam(params, lr, wd=0.01, decouple_wd=not coupled)  # fastai's default wd is 0.01, not 0

    learn = tiny_learner(tmp_path_factory.mktemp("wd"), [WeightDecayFrom(1e-4, start), probe], opt_func=opt)
    learn.fit(epochs, 1e-3)
    assert len(probe.seen) == epochs * (N_TRAIN // BS)
    for epoch, wd in probe.seen:
        assert wd == (1e-4 if epoch >= start else 0.01)  # Adam's own 0.01 is not silently replaced by 0
    assert [h["wd"] for h in learn.opt.hypers] == [0.01] * len(learn.opt.hypers)  # and is back after the fit


def test_weight_decay_from_warns_when_the_optimizer_already_has_that_wd(tmp_path):
    learn = tiny_learner(tmp_path, [WeightDecayFrom(0.01, 1)], opt_func=lambda p, lr: SGD(p, lr, wd=0.01))
    with pytest.warns(TrickWarning, match=r"^WeightDecayFrom changes nothing: the optimizer's weight decay is "
                                          r"already 0\.01 before epoch 1$"):
        learn.fit(1)


def test_weight_decay_from_decays_the_weights_from_start_epoch_only(tmp_path):
    # the same seeded run with and without the callback: identical weights until start_epoch, different after
    runs = {}
    for use in (False, True):
        snaps = Probe("after_epoch", lambda lr: state_of(lr.model)["4.weight"], order=70, training_only=False)
        cbs = [WeightDecayFrom(0.5, start_epoch=1), snaps] if use else [snaps]
        learn = tiny_learner(tmp_path, cbs, opt_func=lambda p, lr: SGD(p, lr, wd=0.0), model=tiny_net(bn=False))
        learn.fit(2, 0.05)
        runs[use] = snaps.seen
    assert torch.equal(runs[False][0], runs[True][0])
    assert not torch.allclose(runs[False][1], runs[True][1])


# --------------------------------------------------------------------------------------------- BnFreeze


def test_fastai_bnfreeze_leaves_stats_changing_on_a_from_scratch_model(tmp_path):
    learn = tiny_learner(tmp_path, [FastaiBnFreeze()])
    before = state_of(learn.model)
    learn.fit(1)
    after = state_of(learn.model)
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])


@pytest.mark.parametrize("affine", [False, True])
def test_bnfreeze_keeps_running_stats_fixed_through_a_fit(tmp_path, affine):
    learn = tiny_learner(tmp_path, [BnFreeze(affine=affine)])
    before = state_of(learn.model)
    learn.fit(2)
    after = state_of(learn.model)
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["0.weight"], after["0.weight"])  # the rest of the model did train
    assert torch.equal(before["1.weight"], after["1.weight"]) == affine
    assert all(p.requires_grad for p in learn.model.parameters())  # affine freezing ends with the fit


def mnist_like_learner(tmp_path: Path, opt_func, cbs=()) -> Learner:
    """A 1-channel 28x28 CNN with a BatchNorm2d and a BnLayer, on its own loaders, in a stock Learner."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)
    dls = DataLoaders(TfmdDL(TensorDataset(x[:32], y[:32]), bs=8, shuffle=True, num_workers=0),
                      TfmdDL(TensorDataset(x[32:], y[32:]), bs=8, num_workers=0), device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), BnLayer(4, 8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=opt_func, cbs=list(cbs), path=tmp_path)
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None
    return learn


FROZEN = ("1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.m", "3.a",
          "3.last_mean", "3.last_std", "3.running_mean", "3.running_std", "3.num_batches_tracked")


@pytest.mark.parametrize("opt_func", [lambda p, lr: SGD(p, lr, mom=0.9, wd=0.01), Adam], ids=["sgd-mom-wd", "adam"])
def test_bnfreeze_affine_keeps_batchnorm_and_bnlayer_bit_identical_after_an_earlier_ordinary_fit(tmp_path, opt_func):
    learn = mnist_like_learner(tmp_path, opt_func)
    learn.fit(1, 1e-2)  # momentum and gradients (zeroed, not None) now exist for the BN parameters
    before = state_of(learn.model)
    learn.fit(2, 1e-2, cbs=[BnFreeze(affine=True)])
    after = state_of(learn.model)
    for k in FROZEN:
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["0.weight"], after["0.weight"]) and not torch.equal(before["3.conv.weight"],
                                                                                        after["3.conv.weight"])
    assert all(p.requires_grad for p in learn.model.parameters())


def test_bnfreeze_without_affine_freezes_bnlayer_statistics_but_trains_its_scale(tmp_path):
    learn = mnist_like_learner(tmp_path, Adam)
    learn.fit(1, 1e-2)
    before = state_of(learn.model)
    learn.fit(1, 1e-2, cbs=[BnFreeze()])
    after = state_of(learn.model)
    for k in ("3.last_mean", "3.last_std", "3.running_mean", "3.running_std", "3.num_batches_tracked"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["3.m"], after["3.m"])


def test_bnfreeze_warns_in_one_sentence_on_a_model_without_batchnorm(tmp_path):
    learn = tiny_learner(tmp_path, [BnFreeze()], model=tiny_net(bn=False))
    with pytest.warns(TrickWarning) as seen:
        learn.fit(1)
    (w,) = [w for w in seen if issubclass(w.category, TrickWarning)]
    assert str(w.message) == ("BnFreeze has nothing to freeze: this Sequential has no BatchNorm layer or BnLayer, "
                              "so it trains as without the callback")


def test_l1_penalty_warns_on_a_model_with_only_biases_and_norm_layers(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.LayerNorm(108), nn.Linear(108, 4).requires_grad_(False))
    learn = tiny_learner(tmp_path, [L1Penalty(1e-3)], model=model)
    with pytest.warns(TrickWarning, match=r"^L1Penalty has nothing to penalize: this Sequential has no trainable "
                                          r"weight outside biases and normalization layers$"):
        learn.fit(1)


def test_bnfreeze_is_silent_on_learned_statistics(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.fit(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrickWarning)
        learn.fit(1, cbs=[BnFreeze()])


@pytest.mark.parametrize("model", ["batchnorm", "bnlayer"])
def test_bnfreeze_warns_once_that_a_fresh_models_statistics_were_never_learned(tmp_path, model):
    learn = (tiny_learner(tmp_path, [BnFreeze()]) if model == "batchnorm"
             else mnist_like_learner(tmp_path, Adam, [BnFreeze()]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        learn.fit(1)
        learn.fit(1)
    (w,) = [w for w in seen if issubclass(w.category, TrickWarning)]
    assert str(w.message).startswith("BnFreeze freezes statistics that were never learned in ")
    assert "evaluation use those values" in str(w.message) and "start_epoch=k" in str(w.message)


def test_bnfreeze_start_epoch_learns_statistics_first_and_freezes_them_after_across_fits(tmp_path):
    learn = mnist_like_learner(tmp_path, Adam, [BnFreeze(start_epoch=2)])
    fresh = state_of(learn.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrickWarning)
        learn.lr_find(num_it=5, show_plot=False)  # not counted: the first two real epochs still learn
        learn.fit(1, 1e-2)
        after_one = state_of(learn.model)
        learn.fit(2, 1e-2)  # a second fit: its first epoch is the callback's epoch 1, then epoch 2 freezes
    frozen = state_of(learn.model)
    stats = ("1.running_mean", "1.running_var", "3.last_mean", "3.running_mean", "3.num_batches_tracked")
    for k in stats:
        assert not torch.equal(fresh[k], after_one[k]), k
    assert int(frozen["3.num_batches_tracked"]) == 2 * int(after_one["3.num_batches_tracked"])  # one epoch more
    learn.fit(1, 1e-2)
    for k in stats:
        assert torch.equal(frozen[k], state_of(learn.model)[k]), k  # frozen from the third epoch on
    assert not torch.equal(after_one["3.m"], frozen["3.m"])  # without affine the scale still trains


def test_never_learned_tells_initial_statistics_from_learned_ones_even_with_a_reset_count():
    bn = nn.BatchNorm2d(3)
    assert never_learned(bn) and never_learned(BnLayer(3, 4))
    bn.train()(torch.randn(8, 3, 4, 4))
    assert not never_learned(bn)
    bn.num_batches_tracked.zero_()  # an old checkpoint without the count loads it as 0
    assert not never_learned(bn)
    assert not never_learned(nn.BatchNorm2d(3, track_running_stats=False))  # always the batch's own statistics


# --------------------------------------------------------------------------------------------- L1Penalty


def test_l1_weights_skip_biases_and_norm_layers():
    m = tiny_net()
    assert {id(p) for p in l1_weights(m)} == {id(m[0].weight), id(m[-1].weight)}


def test_l1_weights_skip_bnlayer_scale_and_shift_groupnorm_and_layernorm_but_keep_bnlayers_conv():
    m = nn.Sequential(BnLayer(3, 4), nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(16),
                      nn.Linear(16, 2))
    assert {id(p) for p in l1_weights(m)} == {id(m[0].conv.weight), id(m[1].weight), id(m[5].weight)}


@pytest.mark.parametrize("l1", [1e-3, 0.5])
def test_l1_penalty_raises_the_training_loss_by_l1_sum_abs_w_and_not_validation(tmp_path, l1):
    def record(learn: Learner) -> tuple[bool, float, float, float]:
        raw = learn.loss_func(learn.pred, *learn.yb).item()
        pen = l1 * sum(p.abs().sum().item() for p in l1_weights(learn.model))
        return learn.training, learn.loss.item() - raw, learn.loss_grad.item() - raw, pen

    probe = Probe("after_loss", record, order=8, training_only=False)
    learn = tiny_learner(tmp_path, [L1Penalty(l1), probe])
    learn.fit(1)
    train = [s for s in probe.seen if s[0]]
    valid = [s for s in probe.seen if not s[0]]
    assert len(train) == N_TRAIN // BS and len(valid) == N_VALID // BS
    for _, logged, differentiated, pen in train:
        assert logged == pytest.approx(pen, rel=1e-4, abs=1e-6)
        assert differentiated == pytest.approx(pen, rel=1e-4, abs=1e-6)
    assert all(logged == 0 and differentiated == 0 for _, logged, differentiated, _ in valid)


def test_l1_penalty_adds_l1_sign_w_to_the_weight_gradient(tmp_path):
    l1 = 0.3

    def grad_excess(learn: Learner) -> torch.Tensor:
        w = learn.model[-1].weight
        ref = torch.autograd.grad(learn.loss_func(learn.model(*learn.xb), *learn.yb), w)[0]
        return (w.grad - ref) / (l1 * torch.sign(w.detach()))

    probe = Probe("before_step", grad_excess, order=20)
    learn = tiny_learner(tmp_path, [L1Penalty(l1), probe], model=tiny_net(bn=False))
    learn.fit(1)
    for ratio in probe.seen:
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)


# --------------------------------------------------------------------------------------------- DivergenceGuard


class NanAt(nn.Module):
    """Wraps a model; its k-th training forward pass (from 0) outputs NaN."""

    def __init__(self, inner: nn.Module, k: int, value: float = float("nan")):
        super().__init__()
        self.inner, self.k, self.value, self.calls = inner, k, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls - 1 == self.k:
                out = out * self.value
        return out


@settings(max_examples=10, deadline=None)
@given(k=st.integers(0, 7))
def test_divergence_guard_stops_the_fit_on_nan_without_exception(tmp_path_factory, k):
    model = NanAt(tiny_net(), k)
    learn = tiny_learner(tmp_path_factory.mktemp("nan"), [DivergenceGuard()], model=model)
    learn.fit(3)  # 12 steps; must return normally
    n = N_TRAIN // BS
    assert learn.diverged is True
    assert learn.diverged_reason == f"training loss was nan at epoch {k // n}, batch {k % n} (counting from 0)"
    assert model.calls == k + 1  # no batch runs after the one that diverged


def test_divergence_guard_stops_when_the_only_batch_of_the_first_epoch_is_nan(tmp_path):
    model = NanAt(tiny_net(), 0)
    learn = tiny_learner(tmp_path, [DivergenceGuard()], model=model, n_train=BS)
    learn.fit(2)
    assert learn.diverged and "epoch 0, batch 0" in learn.diverged_reason
    assert model.calls == 1 and len(learn.recorder.values) == 0


def test_divergence_guard_stops_on_an_absurdly_large_loss(tmp_path):
    model = NanAt(tiny_net(), 2, value=1e9)
    learn = tiny_learner(tmp_path, [DivergenceGuard(max_loss=1e4)], model=model)
    learn.fit(2)
    assert learn.diverged and "above max_loss 10000" in learn.diverged_reason and "batch 2" in learn.diverged_reason


def test_divergence_guard_leaves_a_healthy_fit_alone(tmp_path):
    learn = tiny_learner(tmp_path, [DivergenceGuard()])
    learn.fit(2)
    assert learn.diverged is False and learn.diverged_reason == "" and len(learn.recorder.values) == 2


@pytest.mark.parametrize("k", [0, 2, 5])
def test_divergence_guard_read_per_epoch_stops_at_the_epochs_end_and_names_the_first_bad_batch(tmp_path, k):
    model = NanAt(tiny_net(), k)
    learn = tiny_learner(tmp_path, [DivergenceGuard(per_batch=False)], model=model)
    learn.fit(3)
    n = N_TRAIN // BS
    assert learn.diverged is True
    assert learn.diverged_reason == f"training loss was nan at epoch {k // n}, batch {k % n} (counting from 0)"
    assert model.calls == (k // n + 1) * n  # the diverged epoch runs to its end, no further


def test_divergence_guard_read_per_epoch_leaves_a_healthy_fit_alone(tmp_path):
    learn = tiny_learner(tmp_path, [DivergenceGuard(per_batch=False)])
    learn.fit(2)
    assert learn.diverged is False and learn.diverged_reason == "" and len(learn.recorder.values) == 2


class SyncSpy(torch.Tensor):
    """A tensor that counts the reads of its values on the host (`item`, `float`, `bool`, `.cpu()`, ...): on a GPU
    each is a sync. Results of ops on it are SyncSpy too, so the count follows the value through fastai and tricks."""

    reads: list[str] = []
    WATCHED = frozenset({"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__",
                         "__format__"})

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in cls.WATCHED:
            cls.reads.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


class SpyOnLoss(Callback):
    """Wraps each batch's loss and predictions in SyncSpy before any other callback sees them."""

    order = -50

    def after_loss(self) -> None:
        self.learn.loss = self.learn.loss.as_subclass(SyncSpy)
        self.learn.pred = self.learn.pred.as_subclass(SyncSpy)


def host_reads(fit) -> int:
    """How many host reads of a loss or prediction `fit()` made."""
    SyncSpy.reads = []
    fit()
    return len(SyncSpy.reads)


def test_divergence_guard_read_per_epoch_reads_the_loss_off_the_device_once_an_epoch(tmp_path):
    def reads(n_train: int, per_batch: bool) -> int:
        learn = tiny_learner(tmp_path, [SpyOnLoss(), DivergenceGuard(per_batch=per_batch)], n_train=n_train)
        learn.remove_cb(Recorder)  # fastai's Recorder reads losses of its own (see test_train for the project's)
        return host_reads(lambda: learn.fit(2))

    assert reads(16, per_batch=False) == reads(48, per_batch=False) > 0  # 2 or 6 batches an epoch: same reads
    assert reads(48, per_batch=True) > reads(16, per_batch=True)  # on a CPU, each batch is checked


# --------------------------------------------------------------------------------------------- recorders


def test_throughput_recorder_records_one_value_per_step(tmp_path):
    learn = tiny_learner(tmp_path, [ThroughputRecorder(warmup=2)])
    learn.fit(2)
    assert len(learn.throughput) == 2 * N_TRAIN // BS
    assert all(v > 0 and math.isfinite(v) for v in learn.throughput)
    assert 0 < learn.img_per_s < float("inf")


def test_throughput_summary_excludes_warmup_steps(tmp_path):
    rec = ThroughputRecorder(warmup=3)
    learn = tiny_learner(tmp_path, [rec])
    learn.fit(1)
    assert learn.img_per_s == pytest.approx(sum(rec._sizes[3:]) / sum(rec._times[3:]))


@pytest.mark.parametrize("every", [1, 3])
def test_grad_norm_recorder_records_the_norm_before_clipping(tmp_path, every):
    norm = lambda lr: torch.sqrt(sum((p.grad ** 2).sum() for p in lr.model.parameters())).item()  # noqa: E731
    raw = Probe("before_step", norm, order=10.2)
    clipped = Probe("before_step", norm, order=12)
    # GradientClip and ClipGradValue both act at order 11, after the recorder
    learn = tiny_learner(tmp_path, [GradientClip(max_norm=1e-3), ClipGradValue(1e-4), GradNormRecorder(every), raw,
                                    clipped])
    learn.fit(2)
    steps = 2 * N_TRAIN // BS
    assert len(learn.grad_norms) == math.ceil(steps / every)
    assert learn.grad_norms == pytest.approx(raw.seen[::every], rel=1e-5)
    assert all(r > c for r, c in zip(raw.seen, clipped.seen, strict=True))


# --------------------------------------------------------------------------------------------- lr_find, get_preds

ALL_CALLBACKS = [BnFreeze, lambda: BnFreeze(affine=True), ClipGradValue, L1Penalty, ExpLRDecay, WeightDecayFrom,
                 DivergenceGuard, ThroughputRecorder, GradNormRecorder, GradientClip]
IDS = ["BnFreeze", "BnFreeze-affine", "ClipGradValue", "L1Penalty", "ExpLRDecay", "WeightDecayFrom",
       "DivergenceGuard", "ThroughputRecorder", "GradNormRecorder", "GradientClip"]


@pytest.mark.parametrize("make", ALL_CALLBACKS, ids=IDS)
def test_callback_is_harmless_under_lr_find(tmp_path, make):
    cb = make()
    others = [c() for c in (DivergenceGuard, ThroughputRecorder, GradNormRecorder) if not isinstance(cb, c)]
    learn = tiny_learner(tmp_path, [cb, *others])
    learn.fit(1)
    fit_state, fit_extras = state_of(learn.model), (learn.diverged, list(learn.throughput), list(learn.grad_norms))
    hypers = [dict(h) for h in learn.opt.hypers]
    learn.lr_find(start_lr=1e-5, end_lr=10, num_it=10, show_plot=False)
    sched = SchedExp(1e-5, 10)
    assert learn.recorder.lrs == pytest.approx([sched(i / 10) for i in range(len(learn.recorder.lrs))])
    assert same_state(fit_state, state_of(learn.model))  # lr_find put the model back
    assert [dict(h) for h in learn.opt.hypers] == hypers
    assert (learn.diverged, learn.throughput, learn.grad_norms) == fit_extras  # the recorders stood aside
    assert all(p.requires_grad for p in learn.model.parameters())
    learn.fit(1)  # and a fit after lr_find still runs
    assert len(learn.recorder.values) == 1


@pytest.mark.parametrize("make", ALL_CALLBACKS, ids=IDS)
def test_callback_is_a_no_op_under_get_preds(tmp_path, make):
    cb = make()
    learn = tiny_learner(tmp_path, [cb])
    ref = tiny_learner(tmp_path)
    preds, targs = learn.get_preds()  # before any fit: no optimizer yet
    ref_preds, _ = ref.get_preds()
    assert torch.equal(preds, ref_preds) and len(targs) == N_VALID
    learn.fit(1)
    state, hypers = state_of(learn.model), [dict(h) for h in learn.opt.hypers]
    extras = {k: list(v) if isinstance(v, list) else v for k, v in vars(learn).items()
              if k in ("throughput", "img_per_s", "grad_norms", "diverged", "diverged_reason")}
    learn.get_preds()
    learn.validate()
    assert same_state(state, state_of(learn.model)) and [dict(h) for h in learn.opt.hypers] == hypers
    assert extras == {k: getattr(learn, k) for k in extras}


# --------------------------------------------------------------------------------------------- standalone use


def test_plain_fastai_learner_with_only_clip_grad_value(tmp_path):
    code = f"""
import torch
from fastai.data.core import DataLoaders, TfmdDL
from fastai.learner import Learner, Recorder
from fastai.losses import CrossEntropyLossFlat
from torch import nn
from torch.utils.data import TensorDataset

from tricks.callbacks import ClipGradValue

torch.set_num_threads(1)
torch.manual_seed(0)
x, y = torch.randn(48, 3, 6, 6), torch.randint(0, 4, (48,))
dls = DataLoaders(TfmdDL(TensorDataset(x[:32], y[:32]), bs=8, shuffle=True),
                  TfmdDL(TensorDataset(x[32:], y[32:]), bs=8), device="cpu")
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))
learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=ClipGradValue(0.01), path=r"{tmp_path}")
with learn.no_bar(), learn.no_logging():
    learn.fit(2, 1e-2)
assert len(learn.recorder.values) == 2
print("ok", sorted(m for m in __import__("sys").modules if m == "tricks" or m.startswith("tricks.")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "ok ['tricks', 'tricks.callbacks', 'tricks.layers', 'tricks.registry']"


def test_importing_tricks_callbacks_does_not_import_claims():
    code = "import sys, tricks.callbacks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'claims'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("make", [lambda: ClipGradValue(0), lambda: L1Penalty(-1), lambda: ExpLRDecay(0),
                                  lambda: WeightDecayFrom(start_epoch=-1), lambda: DivergenceGuard(0),
                                  lambda: GradNormRecorder(0), lambda: ThroughputRecorder(-1)])
def test_callbacks_reject_impossible_arguments(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_get_preds_after_a_diverged_fit_keeps_the_verdict(tmp_path):
    learn = tiny_learner(tmp_path, [DivergenceGuard()], model=NanAt(tiny_net(), 1))
    learn.fit(2)
    reason = learn.diverged_reason
    learn.get_preds()
    assert learn.diverged is True and learn.diverged_reason == reason != ""


class FailAt(NanAt):
    """Its k-th training forward pass raises, as a crash inside a fit would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.calls == self.k:
            self.calls += 1
            raise RuntimeError("boom")
        return super().forward(x)


def test_a_fit_after_one_that_raised_starts_afresh(tmp_path):
    model = FailAt(tiny_net(), 5)
    learn = tiny_learner(tmp_path, [BnFreeze(affine=True), ThroughputRecorder(), GradNormRecorder()], model=model)
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(2)
    assert len(learn.throughput) == 5  # the steps before the crash
    learn.fit(1)
    assert len(learn.throughput) == len(learn.grad_norms) == N_TRAIN // BS
    assert all(p.requires_grad for p in learn.model.parameters())
