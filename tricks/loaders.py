"""fastai loaders over CIFAR-10's tensors (`tricks.cifar`) that gather, augment and normalize whole batches on the
training device.

`cifar_dls(arrays, ...)` gives fastai `DataLoaders` over those tensors: the whole split lives on the device, and each
batch is gathered, reflect-padded, cropped, flipped and normalized in a few tensor operations, driven by a generator
seeded from the run's seed (same seed, same batches and augmentations). `memory_format=torch.channels_last` hands
the model each batch in that layout, converted once per batch on the device (`tricks.train` chooses it per model
family, where measured faster). On a GPU nothing in a batch waits for the host: the epoch's order and augmentation
draws are copied to the device once, and the loss and metric values fastai folds in stay there (`to_detach`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import to_detach

from tricks.cifar import channel_stats
from tricks.recipe import Augment

__all__ = ["Augment", "TensorImageDL", "cifar_dls", "class_balanced", "first_images", "subsets", "source_index"]


def class_balanced(labels: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of `count` items, the same number from each class: random with `generator`, else the first ones."""
    classes = torch.unique(labels)
    per = count // len(classes)
    if per < 1:
        raise ValueError(f"a class-balanced subset of {count} needs at least one item of each of {len(classes)} "
                         "classes")
    picks = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        if generator is not None:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        picks.append(idx[:per])
    return torch.sort(torch.cat(picks)).values


def _subset_count(subset: float | int | None, n: int) -> int | None:
    if subset is None:
        return None
    if isinstance(subset, float) and subset <= 1.0:
        if subset <= 0:
            raise ValueError(f"a training subset fraction must be positive, not {subset}")
        return max(1, round(subset * n))
    count = int(subset)
    if count < 1:
        raise ValueError(f"a subset count must be positive, not {subset}")
    return min(count, n)


def source_index(augment: Augment, size: int, device: torch.device) -> torch.Tensor:
    """For each position of an axis of `size` padded by `augment.pad` on both sides, the source pixel it copies."""
    q = torch.arange(-augment.pad, size + augment.pad, device=device)
    if augment.mode == "reflect":
        q = torch.where(q < 0, -q, q)
        q = torch.where(q > size - 1, 2 * (size - 1) - q, q)
    else:
        q = torch.where(q < 0, -q - 1, q)
        q = torch.where(q > size - 1, 2 * size - 1 - q, q)
    return q.clamp(0, size - 1)


class TensorImageDL(DataLoader):
    """A fastai DataLoader over tensors already on the device: whole batches gathered, augmented and normalized.

    `x` is uint8 images (N, C, H, W) (or float features (N, D), passed through as they are), `y` labels. `mean` and
    `std` (per channel, in [0, 1] units) normalize after scaling to [0, 1]; without them images are scaled to [0, 1].
    `mean_image` (C, H, W), in 0-255 units, instead subtracts a mean image from the raw pixels (no scaling).
    `seed` fixes the generator of order and augmentation: the same seed gives the same batches. `memory_format` is the
    layout of the image batches handed out (torch.channels_last for a model in that layout).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 augment: Augment | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int | None = 0, gen_state: torch.Tensor | None = None,
                 device: Any = None, mean_image: torch.Tensor | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, **kwargs: Any):
        device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(device), y.to(device)
        self.augment, self.mean, self.std, self.seed = augment, mean, std, seed
        self.mean_image, self.memory_format = mean_image, memory_format
        self.gen = torch.Generator()
        if gen_state is not None:
            self.gen.set_state(gen_state)
        else:
            self.gen.manual_seed(int(seed or 0))
        kwargs.pop("dataset", None)
        kwargs.pop("indexed", None)
        super().__init__(dataset=_Split(self.x, self.y), bs=bs, shuffle=shuffle, drop_last=drop_last, indexed=True,
                         device=device, **kwargs)
        self._prepare()

    def _prepare(self) -> None:
        dev = self.x.device
        self.images = self.x.dtype == torch.uint8 and self.x.dim() == 4
        if not self.images:
            return
        c = self.x.shape[1]
        if self.mean_image is not None:  # raw 0-255 pixels minus the training mean image (cs231n, doc 002)
            self._scale = torch.ones(1, c, 1, 1, device=dev)
            self._shift = self.mean_image.to(dev, torch.float32).unsqueeze(0)
        else:
            mean = torch.tensor(self.mean if self.mean is not None else [0.0] * c, dtype=torch.float32, device=dev)
            std = torch.tensor(self.std if self.std is not None else [1.0] * c, dtype=torch.float32, device=dev)
            self._scale = (1.0 / (255.0 * std)).view(1, c, 1, 1)  # (x/255 - mean)/std = x*scale - shift
            self._shift = (mean / std).view(1, c, 1, 1)
        if self.augment is not None:
            h, w = self.x.shape[2:]
            self._rows = source_index(self.augment, h, dev)
            self._cols = source_index(self.augment, w, dev)
            self._ch = torch.arange(c, device=dev).view(1, c, 1, 1)

    def new(self, dataset: Any = None, cls: Any = None, **kwargs: Any) -> TensorImageDL:
        """A copy (fastai's `new`) that keeps the tensors, augmentation, normalization and generator state."""
        mine = dict(x=self.x, y=self.y, augment=self.augment, mean=self.mean, std=self.std, seed=self.seed,
                    gen_state=self.gen.get_state(), mean_image=self.mean_image, memory_format=self.memory_format)
        return super().new(dataset, cls, **{**mine, **kwargs})

    def get_idxs(self) -> torch.Tensor:
        if self.shuffle:
            return torch.randperm(self.n, generator=self.gen)
        return torch.arange(self.n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.before_iter()
        idxs = torch.as_tensor(self.get_idxs(), dtype=torch.long)
        n = len(idxs)
        aug = self._draw(n) if self.augment is not None and self.images else None
        idxs = idxs.to(self.x.device)
        stop = n - n % self.bs if self.drop_last else n
        for i in range(0, stop, self.bs):
            b = idxs[i:i + self.bs]
            yield self.after_batch((self._images(b, None if aug is None else [a[i:i + self.bs] for a in aug]),
                                    self.y[b]))
        self.after_iter()

    def _draw(self, n: int) -> list[torch.Tensor]:
        """An epoch's crop offsets and flips, drawn at once from the generator."""
        a = self.augment
        assert a is not None
        dy = torch.randint(0, 2 * a.pad + 1, (n,), generator=self.gen)
        dx = torch.randint(0, 2 * a.pad + 1, (n,), generator=self.gen)
        flip = torch.rand(n, generator=self.gen) < a.flip
        return [t.to(self.x.device) for t in (dy, dx, flip)]

    def _images(self, b: torch.Tensor, aug: list[torch.Tensor] | None) -> torch.Tensor:
        if not self.images:
            return self.x[b]
        if aug is None:
            xb = self.x[b]
        else:
            dy, dx, flip = aug
            h, w = self.x.shape[2:]
            rows = self._rows[dy[:, None] + torch.arange(h, device=b.device)]  # (B, H): source row of each row
            cols = self._cols[dx[:, None] + torch.arange(w, device=b.device)]  # (B, W)
            cols = torch.where(flip[:, None], cols.flip(1), cols)
            xb = self.x[b.view(-1, 1, 1, 1), self._ch, rows[:, None, :, None], cols[:, None, None, :]]
        # the one layout conversion of the batch, on the uint8 pixels (a quarter of the float bytes); the
        # elementwise normalization keeps the layout
        xb = xb.contiguous(memory_format=self.memory_format)
        return torch.addcmul(-self._shift, xb.float(), self._scale)

    def to_detach(self, b: Any, cpu: bool = True, gather: bool = True) -> Any:
        """fastai's `to_detach`, except that 0-dim tensors stay on the device: the per-batch loss and metric values
        fastai's AvgLoss and AvgMetric add up, read once at the epoch's end rather than copied (a sync) per batch."""
        if isinstance(b, torch.Tensor) and b.dim() == 0:
            return to_detach(b, cpu=False, gather=gather)
        return to_detach(b, cpu=cpu, gather=gather)

    def to(self, device: Any) -> TensorImageDL:
        """Move the tensors (and the loader) to `device`."""
        self.device = device
        if hasattr(self, "x"):
            self.x, self.y = self.x.to(self.device), self.y.to(self.device)
            self.dataset = _Split(self.x, self.y)
            self._prepare()
        return self


class _Split:
    """The dataset behind a TensorImageDL: indexable (image, label) pairs; for class labels it names fastai's loss,
    so `Learner(dls, model)` needs no `loss_func`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        if not torch.is_floating_point(y):
            self.loss_func = CrossEntropyLossFlat()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def _norm_stats(normalize: Any, arrays: Any) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    if normalize is None or normalize is False or normalize == "mean_image":
        return None, None
    if normalize in ("train", True):
        stats = getattr(arrays, "stats", ((), ()))
        if stats and stats[0]:
            return stats
        return channel_stats(arrays.x_train)
    try:
        mean, std = normalize
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be None, 'train' or ((mean, ...), (std, ...)), not {normalize!r}") from None
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"normalize needs as many means as positive stds, not {normalize!r}")
    return mean, std


def subsets(arrays: Any, seed: int, train_subset: float | int | None = None, test_subset: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) cut to a class-balanced training subset drawn with `seed` (a fraction
    <= 1.0 or a count) and the first `test_subset` test images, class-balanced, the same for every seed."""
    x_tr, y_tr, x_te, y_te = arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test
    n_train = _subset_count(train_subset, len(x_tr))
    if n_train is not None and n_train < len(x_tr):
        draw = int(np.random.SeedSequence([int(seed), 0x7A11]).generate_state(2)[0])
        idx = class_balanced(y_tr, n_train, torch.Generator().manual_seed(draw))
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    n_test = _subset_count(test_subset, len(x_te))
    if n_test is not None and n_test < len(x_te):
        idx = class_balanced(y_te, n_test)
        x_te, y_te = x_te[idx], y_te[idx]
    return x_tr, y_tr, x_te, y_te


def first_images(dl: TensorImageDL, count: int) -> TensorImageDL:
    """A loader like the unshuffled, unaugmented `dl` (normalization, layout, batch size) over its first `count`
    images, class-balanced: a cheaper validation set for the epochs before the last."""
    idx = class_balanced(dl.y, count)
    return TensorImageDL(dl.x[idx], dl.y[idx], bs=dl.bs, shuffle=False, mean=dl.mean, std=dl.std, device=dl.device,
                         mean_image=dl.mean_image, memory_format=dl.memory_format)


def cifar_dls(arrays: Any, bs: int = 64, *, val_bs: int | None = None, augment: bool | Augment = False,
              normalize: Any = None, seed: int = 0, train_subset: float | int | None = None,
              test_subset: int | None = None, device: Any = None,
              memory_format: torch.memory_format = torch.contiguous_format) -> DataLoaders:
    """fastai DataLoaders (train, valid = the test set) over `arrays`, on `device`, seeded by `seed`.

    `augment`: True for reflect-pad 4 + random crop + horizontal flip, or an `Augment`. `normalize`: None, "train"
    (training-set mean and std), ((mean...), (std...)), or "mean_image" (raw pixels minus the training mean image).
    `train_subset`: a fraction (<= 1.0) or a count, class-balanced, drawn with the seed; `test_subset`: the first
    `count` test images, class-balanced, the same every seed. `memory_format`: the layout of the image batches
    (torch.channels_last for a model in that layout).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    mean, std = _norm_stats(normalize, arrays)
    mean_image = None
    if normalize == "mean_image":  # of the whole training set, before any subset (as the original's)
        mean_image = sum(x.double().sum(0) for x in arrays.x_train.split(4096)) / len(arrays.x_train)
    x_tr, y_tr, x_te, y_te = subsets(arrays, seed, train_subset, test_subset)
    aug = Augment() if augment is True else (augment or None)
    loader_seed = int(np.random.SeedSequence([int(seed), 0x7A11]).generate_state(2)[1])
    train = TensorImageDL(x_tr, y_tr, bs=bs, shuffle=True, drop_last=False, augment=aug, mean=mean, std=std,
                          seed=loader_seed, device=dev, mean_image=mean_image, memory_format=memory_format)
    valid = TensorImageDL(x_te, y_te, bs=val_bs or bs, shuffle=False, mean=mean, std=std, device=dev,
                          mean_image=mean_image, memory_format=memory_format)
    dls = DataLoaders(train, valid, device=dev)
    dls.c = len(getattr(arrays, "classes", ())) or int(torch.max(arrays.y_train)) + 1
    dls.vocab = list(getattr(arrays, "classes", ()))
    return dls
