"""Layers of the source documents: the one conv block every CNN here is built from, residual blocks, and BnLayer.

`conv_block` serves doc 000's TF-tutorial net, doc 001's variants (BN before/after the ReLU, residual), doc 004's
ResNet9 and `tiny_cnn`. `BnLayer` is the hand-written batch norm of the fast.ai 2018 course (doc 003), kept
bit-faithful: normalization after the ReLU, unbiased std with no eps, and in eval the last training batch's
statistics rather than running averages.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tricks.registry import TrickError

BnPlace = Literal["before", "after"] | None
EvalStats = Literal["last_batch", "running"]

__all__ = ["NORM_TYPES", "BnLayer", "RandnDropout", "ResBlock", "conv_block", "dense_head", "norm_layers",
           "norm_params"]


def _check_bn(bn: str | None) -> None:
    if bn not in (None, "before", "after"):
        raise TrickError(f"option bn={bn!r} is invalid: bn takes None, 'before' or 'after' (the ReLU)")


def conv_block(ci: int, co: int, *, k: int = 3, stride: int = 1, padding: int = 1, bn: BnPlace = None,
               pool: bool = True, dropout: float = 0.0, residual: bool = False) -> nn.Sequential:
    """Conv -> [BN] -> ReLU -> [BN] -> [Dropout2d] -> [MaxPool2]; `bn` puts BatchNorm2d before or after the ReLU.

    `residual=True` gives doc 001's residual block instead (BN before the ReLU, 1x1 projection shortcut, ReLU after
    the add, then the pool): it needs `k=3, stride=1, padding=1` and `bn` None or "before".
    """
    _check_bn(bn)
    if residual:
        if (k, stride, padding) != (3, 1, 1) or bn == "after":
            raise TrickError(f"a residual conv block needs k=3, stride=1, padding=1 and bn before the ReLU, "
                             f"not k={k}, stride={stride}, padding={padding}, bn={bn!r}")
        layers: list[nn.Module] = [pal_res_block(ci, co, dropout=dropout)]
    else:
        layers = [nn.Conv2d(ci, co, k, stride=stride, padding=padding)]
        if bn == "before":
            layers.append(nn.BatchNorm2d(co))
        layers.append(nn.ReLU())
        if bn == "after":
            layers.append(nn.BatchNorm2d(co))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def dense_head(d_in: int, widths: tuple[int, ...] = (), n_out: int = 10, *, act: type[nn.Module] = nn.ReLU,
               dropout: float = 0.0, log_softmax: bool = True, flatten: bool = True,
               dropout_layer: type[nn.Module] = nn.Dropout) -> nn.Sequential:
    """Flatten -> (Linear -> act -> [Dropout]) per hidden width -> Linear(n_out) -> [LogSoftmax]."""
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for w in widths:
        layers += [nn.Linear(d_in, w), act()]
        if dropout > 0:
            layers.append(dropout_layer(dropout))
        d_in = w
    layers.append(nn.Linear(d_in, n_out))
    if log_softmax:
        layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)


class RandnDropout(nn.Module):
    """Doc 002's dropout as its code ran: keep where a standard *normal* draw is below p, then divide by p.

    `(randn < p) / p` keeps a unit with probability Φ(p) (0.618, 0.691, 0.758 for p = 0.3, 0.5, 0.7), not p, so the
    expected activation is scaled by Φ(p)/p in training and left alone in eval: a train/test mismatch of 2.06x,
    1.38x and 1.08x. Kept as the bugged variant; `nn.Dropout` is what the author meant.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not p > 0:
            raise TrickError(f"option p={p} is invalid: RandnDropout divides by p, so p must be positive")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (torch.randn_like(x) < self.p).to(x.dtype) / self.p

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ResBlock(nn.Module):
    """`act(main(x) + shortcut(x))`: identity shortcut and no activation after the add unless given."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None = None, act: nn.Module | None = None):
        super().__init__()
        self.main = main
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.main(x) + self.shortcut(x))


def pal_res_block(ci: int, co: int, *, dropout: float = 0.0) -> ResBlock:
    """Doc 001's block: Conv-BN-ReLU-Conv-BN-[Dropout2d] plus a 1x1 conv shortcut (with bias), ReLU after the add."""
    main = nn.Sequential(*conv_block(ci, co, bn="before", pool=False), nn.Conv2d(co, co, 3, padding=1),
                         nn.BatchNorm2d(co), *([nn.Dropout2d(dropout)] if dropout > 0 else []))
    return ResBlock(main, shortcut=nn.Conv2d(ci, co, 1), act=nn.ReLU())


def resnet9_res_block(c: int) -> ResBlock:
    """ResNet9's residual stage: two Conv-BN-ReLU blocks at `c` channels, identity shortcut, nothing after the add."""
    return ResBlock(nn.Sequential(conv_block(c, c, bn="before", pool=False), conv_block(c, c, bn="before",
                                                                                          pool=False)))


class BnLayer(nn.Module):
    """fast.ai 2018's BnLayer: conv (no bias) -> ReLU -> normalize by per-channel batch mean and unbiased std -> *m + a.

    There is no eps (a channel that is zero over a whole batch gives NaN, as in the original). In eval the layer uses
    the last training batch's statistics (`eval_stats="last_batch"`, the original) or running averages updated with
    `momentum` (`"running"`); before any training batch it normalizes with the eval batch's own statistics. The
    padding is `kernel_size // 2` (1 for the course's k=3).
    """

    def __init__(self, ni: int, nf: int, stride: int = 2, kernel_size: int = 3, eval_stats: EvalStats = "last_batch",
                 momentum: float = 0.1):
        super().__init__()
        if eval_stats not in ("last_batch", "running"):
            raise TrickError(f"option eval_stats={eval_stats!r} is invalid: it takes 'last_batch' or 'running'")
        self.eval_stats, self.momentum = eval_stats, momentum
        self.conv = nn.Conv2d(ni, nf, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.m = nn.Parameter(torch.ones(nf, 1, 1))
        self.a = nn.Parameter(torch.zeros(nf, 1, 1))
        # buffers, so that the statistics are saved, loaded and moved with the model
        self.register_buffer("last_mean", torch.zeros(nf, 1, 1))
        self.register_buffer("last_std", torch.ones(nf, 1, 1))
        self.register_buffer("running_mean", torch.zeros(nf, 1, 1))
        self.register_buffer("running_std", torch.ones(nf, 1, 1))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_parameters(self) -> None:
        """PyTorch's default conv init, m = 1, a = 0, and no statistics seen."""
        self.conv.reset_parameters()
        with torch.no_grad():
            self.m.fill_(1.0)
            self.a.zero_()
            for buf, value in ((self.last_mean, 0.0), (self.last_std, 1.0), (self.running_mean, 0.0),
                               (self.running_std, 1.0)):
                buf.fill_(value)
            self.num_batches_tracked.zero_()

    @staticmethod
    def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and unbiased std over (N, H, W), shaped (C, 1, 1)."""
        flat = x.transpose(0, 1).reshape(x.size(1), -1)  # (C, N*H*W)
        return flat.mean(1)[:, None, None], flat.std(1)[:, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        if self.training:
            mean, std = self.batch_stats(x)  # gradients flow through the statistics, as in the original
            with torch.no_grad():
                self.last_mean.copy_(mean)
                self.last_std.copy_(std)
                # the running averages start at the first batch's statistics, not at BatchNorm's (0, 1)
                w = 1.0 if self.num_batches_tracked == 0 else self.momentum
                self.running_mean.lerp_(mean, w)
                self.running_std.lerp_(std, w)
                self.num_batches_tracked += 1
        elif self.num_batches_tracked == 0:
            mean, std = self.batch_stats(x)
        elif self.eval_stats == "running":
            mean, std = self.running_mean, self.running_std
        else:
            mean, std = self.last_mean, self.last_std
        return (x - mean) / std * self.m + self.a

    def extra_repr(self) -> str:
        return f"eval_stats={self.eval_stats!r}, momentum={self.momentum}"


# torch's normalization layers: BatchNorm*, SyncBatchNorm and InstanceNorm* (all _NormBase), LayerNorm, GroupNorm,
# RMSNorm where torch has it; with BnLayer, every layer whose parameters are a scale and a shift, not weights
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, BnLayer,
                                          *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def norm_layers(model: nn.Module) -> list[nn.Module]:
    """Every normalization layer of the model (torch's and BnLayer), outermost first."""
    return [m for m in model.modules() if isinstance(m, NORM_TYPES)]


def norm_params(layer: nn.Module) -> list[nn.Parameter]:
    """A normalization layer's own scale and shift: BnLayer's m and a (not its conv), torch's weight and bias."""
    if isinstance(layer, BnLayer):
        return [layer.m, layer.a]
    return list(layer.parameters(recurse=False))
