"""Factories of tiny Learners for the tests of user arms (claims/compare.py): 2-channel 6x6 images, 4 classes."""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from torch import nn
from torch.utils.data import TensorDataset

N = 256  # training and validation images each


def _data(data_seed: int = 1234) -> DataLoaders:
    """Noise images with a brighter 3x3 quadrant in the first channel; the quadrant is the class (4 classes)."""
    g = torch.Generator().manual_seed(data_seed)  # the same images for every run seed: only order and init vary
    x = torch.randn(2 * N, 2, 6, 6, generator=g)
    y = torch.randint(0, 4, (2 * N,), generator=g)
    for k in range(4):
        r, c = 3 * (k // 2), 3 * (k % 2)
        x[y == k, 0, r:r + 3, c:c + 3] += 1.0
    return DataLoaders.from_dsets(TensorDataset(x[:N], y[:N]), TensorDataset(x[N:], y[N:]), bs=32, device="cpu")


def make_learner() -> Learner:
    """A conv, a ReLU and a linear head over four classes."""
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    return Learner(_data(), model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)


def make_other_data() -> Learner:
    """The same network on other images (another generator seed)."""
    learn = make_learner()
    learn.dls = _data(99)
    return learn


def not_a_learner() -> object:
    return nn.Linear(2, 2)


class Noop(Callback):
    """A callback that does nothing."""


class BatchLog(Callback):
    """Records the targets of every training batch, in order."""

    def __init__(self):
        self.seen: list[list[int]] = []

    def before_batch(self) -> None:
        if self.training:
            self.seen.append(self.yb[0].tolist())


def constant_fit(learn: Learner, epochs: int, lr: float) -> None:
    """Fit at a constant learning rate (a user fit function)."""
    learn.fit(epochs, lr)


def valid_accuracy(learn: Learner) -> float:
    """Accuracy on the validation set, computed from predictions (a metric function of the Learner)."""
    preds, targs = learn.get_preds()
    return float((preds.argmax(1) == targs).float().mean())


def make_sgd_learner() -> Learner:
    """The same network and data, trained by plain SGD."""
    from fastai.optimizer import SGD

    learn = make_learner()
    learn.opt_func = SGD
    return learn
