"""Your own Learner in the claims engine: scikit-learn's bundled digits (1,797 8x8 grey images, no download) and a
small CNN, and the claim "BatchNorm before the ReLU is no worse than after it" judged over paired seeds.

    python docs/examples/digits.py            # the claim, its verdict and interval (about a minute on 2 CPU cores)

The engine imports the factory by its path, `digits:make_learner`, in each worker process: run this file as a
script (its folder is then on the import path), or put the folder on PYTHONPATH.
"""

from __future__ import annotations

import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset


def make_learner() -> Learner:
    """Digits as 1x8x8 tensors in [0, 1], 1,297 training and 500 validation images, and a two-conv CNN without BN."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    train, valid = TensorDataset(x[:1297], y[:1297]), TensorDataset(x[1297:], y[1297:])
    dls = DataLoaders.from_dsets(train, valid, bs=64, device="cpu")  # shuffles the training set only
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 4 x 4
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)


def main(seeds: int = 12, epochs: int = 3, store: str | None = None, workers: int | None = None) -> object:
    """The claim over up to `seeds` paired seeds; prints and returns the Decision."""
    from claims.compare import LearnerArm, compare

    base = LearnerArm("digits:make_learner", epochs=epochs, lr=3e-3)
    before = base.with_tricks("bn_before_relu", name="bn_before_relu")
    after = base.with_tricks("bn_after_relu", name="bn_after_relu")
    d = compare(before, after, form="noninferior", margin=0.01, max_seeds=seeds, store=store, workers=workers)
    print(f"{d.verdict.value}: n = {d.n}, d̄ = {100 * d.mean:+.2f} pp, [L, U] = [{100 * d.lower:+.2f}, "
          f"{100 * d.upper:+.2f}] pp")
    print(d.reason)
    return d


if __name__ == "__main__":
    main()
