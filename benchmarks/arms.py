"""The arms of the throughput benchmark (`benchmarks/throughput.py`): the project's path (its loaders and Learner),
the same model in a plain PyTorch loop, and fastai's stock folder pipeline; each trains doc 001's baseline net (or a
family's recipe) for warm-up + timed steps and reports every step to a `Hook`."""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.timing import Hook

BS = 64  # batch size of every arm
LR = 1e-3  # constant learning rate of every arm (speed does not depend on it)


def step_hook(hook: Hook, warmup: int, steps: int) -> Any:
    """A fastai callback that calls `hook` at the end of every training step, ends the fit after warmup + steps
    steps and skips validation (an epoch boundary's validation is not a training step)."""
    from fastai.callback.core import Callback, CancelFitException, CancelValidException
    from fastai.torch_core import find_bs

    class StepHook(Callback):
        order = 1000  # after every other after_batch, so their cost is inside the step

        def before_fit(self) -> None:
            self.n = 0

        def after_batch(self) -> None:
            if not self.training:
                return
            self.n += 1
            hook(find_bs(self.learn.yb), self.n > warmup)
            if self.n == warmup + steps:
                raise CancelFitException()

        def before_validate(self) -> None:
            raise CancelValidException()

    return StepHook()


def fit_steps(learn: Any, warmup: int, steps: int) -> None:
    """Fit `learn` (which holds a StepHook) for warmup + steps steps, across epochs if need be."""
    learn.fit(-(-(warmup + steps) // len(learn.dls.train)) + 1, LR)
    done = next(cb.n for cb in learn.cbs if type(cb).__name__ == "StepHook")
    if done < warmup + steps:
        raise RuntimeError(f"the fit ended after {done} steps, before {warmup + steps}")


def baseline_recipe() -> Any:
    """Doc 001's baseline recipe with augmentation and training-set normalization on (the data path does its work)."""
    from dataclasses import replace

    from tricks.recipes import RECIPES

    return replace(RECIPES["pal2021b/baseline"], augment=True, normalize="train")


def family_recipe(name: str) -> Any:
    """A family's recipe with augmentation and training-set normalization on, at its own batch size."""
    from dataclasses import replace

    from tricks.recipes import RECIPES

    return replace(RECIPES[name], augment=True, normalize="train")


def tf_cnn(channels_last: bool = False) -> Any:
    """The benchmarked model (doc 001's baseline net), initialized from seed 0 in every arm."""
    import torch

    from tricks.models import build_model

    torch.manual_seed(0)
    model = build_model("tf_cnn", padding=1)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def project_dls(arrays: Any, seed: int, recipe: Any = None, device: Any = None) -> Any:
    """The project's loaders as a realistic recipe uses them: augmentation and training-set normalization on."""
    from tricks.loaders import cifar_dls

    bs = BS if recipe is None else recipe.bs
    return cifar_dls(arrays, bs=bs, val_bs=500, augment=True, normalize="train", seed=seed, device=device)


def arm_project(arrays: Any, args: argparse.Namespace, seed: int, hook: Hook, channels_last: bool | None = None,
                recipe: Any = None, steps: int | None = None, device: Any = None) -> None:
    """The project path: cifar_dls + build_learner (the Learner `tricks.train.run` trains); `channels_last` None lets
    build_learner choose the layout, as a suite run does."""
    from tricks.train import build_learner, seed_everything

    recipe = recipe or baseline_recipe()
    dls = project_dls(arrays, seed, recipe, device)
    seed_everything(0)
    learn = build_learner(recipe, dls, channels_last=channels_last,
                          extra_cbs=(step_hook(hook, args.warmup, steps or args.steps),))
    fit_steps(learn, args.warmup, steps or args.steps)


def reflect_index(size: int, pad: int) -> Any:
    """For each position of an axis padded by `pad` on both sides, the source pixel it copies ("dcb|abcd|cba")."""
    import torch

    q = torch.arange(-pad, size + pad)
    q = torch.where(q < 0, -q, q)
    return torch.where(q > size - 1, 2 * (size - 1) - q, q)


def plain_batches(x: Any, y: Any, mean: Any, std: Any, seed: int, pad: int = 4) -> Iterator[tuple[Any, Any]]:
    """Endless shuffled epochs of (augmented, normalized float batch, labels), in plain torch: the project's ops."""
    import torch

    n, c, h, w = x.shape
    gen = torch.Generator().manual_seed(seed)
    scale = (1.0 / (255.0 * std)).view(1, c, 1, 1)  # (x/255 - mean)/std = x*scale - shift
    shift = (mean / std).view(1, c, 1, 1)
    rows_src, cols_src = reflect_index(h, pad), reflect_index(w, pad)
    ch, ar_h, ar_w = torch.arange(c).view(1, c, 1, 1), torch.arange(h), torch.arange(w)
    while True:
        perm = torch.randperm(n, generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        for i in range(0, n, BS):
            b = perm[i:i + BS]
            rows = rows_src[dy[i:i + BS, None] + ar_h]  # (B, H): source row of each output row
            cols = cols_src[dx[i:i + BS, None] + ar_w]  # (B, W)
            cols = torch.where(flip[i:i + BS, None], cols.flip(1), cols)
            xb = x[b.view(-1, 1, 1, 1), ch, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W) uint8
            yield torch.addcmul(-shift, xb.float(), scale), y[b]


def plain_stream(arrays: Any, seed: int) -> Iterator[tuple[Any, Any]]:
    """plain_batches over the training split, normalized by its statistics."""
    import torch

    mean, std = (torch.tensor(s, dtype=torch.float32) for s in arrays.stats)
    return plain_batches(arrays.x_train, arrays.y_train, mean, std, seed)


def arm_plain(arrays: Any, args: argparse.Namespace, seed: int, hook: Hook, channels_last: bool = False) -> None:
    """The plain loop: same model, same tensor augmentation, torch.optim.Adam, zero_grad/backward/step."""
    import torch
    import torch.nn.functional as F

    model = tf_cnn(channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for i, (xb, yb) in enumerate(plain_stream(arrays, seed), start=1):
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hook(len(yb), i > args.warmup)
        if i == args.warmup + args.steps:
            return


STOCK_TFMS = "item_tfms=None, batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)]"
STOCK_AUG_TFMS = ("item_tfms=[CropPad(40, pad_mode=PadMode.Reflection), FlipItem(0.5), RandomCrop(32)], "
                  "batch_tfms=[Normalize.from_stats(*cifar_stats)]")


def stock_dls(folder: Path, workers: int | None, augment: bool = False) -> Any:
    """fastai's stock CIFAR-10 pipeline: class folders read by PIL; `augment` False: flips and normalization as batch
    transforms (the old stock arm); True: the project's augmentation as item transforms (reflect-pad 4, flip, random
    32 crop, on each PIL image) and normalization."""
    from fastai.vision.all import ImageDataLoaders, Normalize, cifar_stats
    from fastai.vision.augment import CropPad, Flip, FlipItem, PadMode, RandomCrop

    kw = {} if workers is None else {"num_workers": workers}
    if augment:
        item = [CropPad(40, pad_mode=PadMode.Reflection), FlipItem(0.5), RandomCrop(32)]
        batch = [Normalize.from_stats(*cifar_stats)]
    else:
        item, batch = None, [Flip(), Normalize.from_stats(*cifar_stats)]
    return ImageDataLoaders.from_folder(folder, train="train", valid="test", bs=BS, item_tfms=item, batch_tfms=batch,
                                        device="cpu", seed=0, **kw)


def arm_stock(dls: Any, args: argparse.Namespace, hook: Hook) -> None:
    """fastai's stock pipeline and a stock Learner (fastai Adam, CrossEntropyLossFlat, accuracy, no progress bar)."""
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    learn = Learner(dls, tf_cnn(), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                    cbs=[step_hook(hook, args.warmup, args.steps)])
    learn.remove_cb(ProgressCallback)
    fit_steps(learn, args.warmup, args.steps)
    gc.collect()  # the cancelled fit's loader iterator, and with it the workers, sits in a reference cycle


def class_folders(source: Path) -> Path | None:
    """The folder holding `train/` and `test/` class folders for the stock arms: extracted once from an archive.

    An archive is extracted under the project's cache folder, keyed by its path, size and modification time, and
    reused by later runs. None when the source has no class-folder layout (torchvision's batches).
    """
    from tricks.plain import cache_dir

    if source.is_file():
        st = source.stat()
        key = hashlib.sha256(f"{source.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        dest = cache_dir() / f"folders-{key}"
        if not dest.exists():
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            print(f"extracting {source} to {dest} (once) ...", flush=True)
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")
            try:
                os.replace(tmp, dest)
            except OSError:  # another run extracted it meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
        source = dest
    for c in [source, *sorted(p for p in source.rglob("train") if p.is_dir())]:
        root = c if (c / "train").is_dir() else c.parent
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    return None

