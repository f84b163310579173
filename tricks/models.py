"""Network builders of the source documents, by name: `build_model("tf_cnn", head=(512,))`.

Every CNN is a `nn.Sequential` with a `features` part (conv blocks from `tricks.layers.conv_block`) and a `head`
(Flatten -> Linear ... -> [LogSoftmax]), so the model transforms in `tricks.transforms` can find the convolutions,
activations and the dense head of any of them. Parameter counts in the docstrings are checked by the tests against
the spec sheet (`/work/shared/spec/seeds.md`). Outputs are log-probabilities where the original ended in
log_softmax (docs 000, 001, 003) and logits otherwise (docs 002, 004); cross-entropy gives the same loss on both.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from itertools import pairwise

import torch
from torch import nn

from tricks.layers import (
    BnLayer,
    BnPlace,
    EvalStats,
    RandnDropout,
    ResBlock,
    conv_block,
    dense_head,
    resnet9_res_block,
)
from tricks.registry import TrickError, suggestions

__all__ = ["MODELS", "PalCodeNet", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def _model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    MODELS[fn.__name__] = fn
    return fn


def _net(features: nn.Module | None, head: nn.Module) -> nn.Sequential:
    parts = ([("features", features)] if features is not None else []) + [("head", head)]
    return nn.Sequential(OrderedDict(parts))


@_model
def tf_cnn(head: tuple[int, ...] = (64,), padding: int = 1, bn: BnPlace = None, residual: bool = False,
           conv_dropout: float = 0.0, dense_dropout: float = 0.0, log_softmax: bool = True) -> nn.Sequential:
    """The TensorFlow-tutorial CNN of docs 000/001: 3x3 convs 3-32-64-64, each ReLU, flatten 1024, dense `head`, 10.

    The pooling follows from `padding`: with padding 1 (doc 001) every conv is followed by MaxPool2 (32-16-8-4); with
    padding 0 (doc 000's text, the TF tutorial) only the first two are (32-30-15-13-6-4). Both flatten 64x4x4 = 1024
    and have 122,570 parameters with the 64-unit head; `bn` adds 320 (122,890), `residual=True` gives doc 001's
    residual blocks (212,714), head (512,) 586,250 and (512, 256) 715,018.
    """
    if padding not in (0, 1):
        raise TrickError(f"option padding={padding} is invalid: tf_cnn takes padding 0 (doc 000) or 1 (doc 001)")
    if residual and padding != 1:
        raise TrickError("option residual=True needs padding=1: doc 001's residual blocks keep the map size")
    chans, size, blocks = (3, 32, 64, 64), 32, []
    for i, (ci, co) in enumerate(pairwise(chans)):
        pool = padding > 0 or i < 2
        blocks.append(conv_block(ci, co, padding=padding, bn=None if residual else bn, pool=pool,
                                 dropout=conv_dropout, residual=residual))
        size = (size + 2 * padding - 2) // (2 if pool else 1)
    return _net(nn.Sequential(*blocks), dense_head(chans[-1] * size * size, tuple(head), dropout=dense_dropout,
                                                   log_softmax=log_softmax))


class PalCodeNet(nn.Module):
    """Doc 000's `Cifar10Classifier` as its code ran: two valid convs; `conv3` is defined but never called."""

    def __init__(self, spatial_dropout: float = 0.0, dense_dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(conv_block(3, 32, padding=0, dropout=spatial_dropout),  # 32 -> 30 -> 15
                                      conv_block(32, 64, padding=0, dropout=spatial_dropout))  # 15 -> 13 -> 6
        # the original's bug, kept: these are registered (and counted by model.parameters()) but unused in forward
        self.conv3 = nn.Conv2d(64, 64, 3)
        if spatial_dropout > 0:
            self.conv3_dropout = nn.Dropout2d(spatial_dropout)
        self.head = dense_head(64 * 6 * 6, (64,), dropout=dense_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@_model
def pal2021_code_net(spatial_dropout: float = 0.0, dense_dropout: float = 0.0) -> PalCodeNet:
    """Doc 000's net as executed: valid convs 32, 64, flatten 2304 -> 64 -> 10; 204,490 registered, 167,562 used."""
    return PalCodeNet(spatial_dropout, dense_dropout)


@_model
def simple_net() -> nn.Sequential:
    """Doc 003's SimpleNet([3072, 40, 10]): Flatten -> Linear 40 -> ReLU -> Linear 10 -> log_softmax (123,330)."""
    return _net(None, dense_head(3 * 32 * 32, (40,)))


@_model
def conv_net(padding: int = 0) -> nn.Sequential:
    """Doc 003's ConvNet: three stride-2 3x3 convs 20-40-80 with ReLU, global max pool, Linear 10 (37,490).

    padding 0 is the lesson's ConvNet (32-15-7-3), padding 1 its refactored ConvNet2 (32-16-8-4), same count.
    """
    chans = (3, 20, 40, 80)
    feats = nn.Sequential(*(conv_block(ci, co, stride=2, padding=padding, pool=False)
                            for ci, co in pairwise(chans)))
    return _net(feats, nn.Sequential(nn.AdaptiveMaxPool2d(1), *dense_head(chans[-1], ())))


@_model
def conv_bn_net(deeper: bool = False, bn_eval: EvalStats = "last_batch", first_k: int = 5) -> nn.Sequential:
    """Doc 003's ConvBnNet: 5x5 conv to 10 channels, BnLayers 20-40-80-160 (stride 2), max pool, Linear (155,970).

    `deeper=True` is ConvBnNet2 (462,570): a stride-1 BnLayer at the same width after each stride-2 one. `bn_eval`
    chooses the BnLayers' eval statistics (the original's last batch, or running averages). `first_k` is the first
    conv's kernel (odd; "same" padding), for the lesson's remark on a large first kernel.
    """
    if first_k < 1 or first_k % 2 == 0:
        raise TrickError(f"option first_k={first_k} is invalid: the first kernel must be odd and positive")
    chans = (10, 20, 40, 80, 160)
    # no activation after the first conv, as in the original
    layers: list[nn.Module] = [nn.Conv2d(3, chans[0], first_k, padding=first_k // 2)]
    for ci, co in pairwise(chans):
        layers.append(BnLayer(ci, co, stride=2, eval_stats=bn_eval))
        if deeper:
            layers.append(BnLayer(co, co, stride=1, eval_stats=bn_eval))
    return _net(nn.Sequential(*layers), nn.Sequential(nn.AdaptiveMaxPool2d(1), *dense_head(chans[-1], ())))


@_model
def jovian_cnn(width: int = 32) -> nn.Sequential:
    """Doc 004's starting CNN: three blocks of two 3x3 convs (32-64, 128-128, 256-256) and a pool; 4096-1024-512-10.

    5,851,338 parameters; outputs logits. `width` is the first conv's channels (32 as published); every conv and
    dense width scales with it (`width=8`: 8-16, 32-32, 64-64, then 1024-256-128-10; 367,290 parameters).
    """
    if width < 1 or width % 8:
        raise TrickError(f"option width={width} is invalid: jovian_cnn takes a positive multiple of 8 (32 as "
                         "published)")

    def w(c: int) -> int:  # a published width, scaled
        return c * width // 32

    stages = ((3, w(32), w(64)), (w(64), w(128), w(128)), (w(128), w(256), w(256)))
    feats = nn.Sequential(*(nn.Sequential(*conv_block(a, b, pool=False), *conv_block(b, c)) for a, b, c in stages))
    return _net(feats, dense_head(w(256) * 4 * 4, (w(1024), w(512)), log_softmax=False))


@_model
def resnet9(dropout: float = 0.0, residual: bool = True, bn: bool = True, width: int = 64) -> nn.Sequential:
    """Doc 004's ResNet9 (6,575,370): Conv-BN-ReLU blocks 64-128-[res 128]-256-512-[res 512], max pool 4, Linear.

    The residual stages add an identity shortcut with no ReLU after the add; `dropout` before the Linear (copies of
    the original disagree on a Dropout(0.2) there). For the tutorial's proposed ablation, `residual=False` drops the
    two shortcuts (same layers, same parameters) and `bn=False` every BatchNorm. `width` is the first block's
    channels (64 as published; every block scales with it: `width=16` is 16-32-[32]-64-128-[128], 413,514
    parameters). Outputs logits.
    """
    if width < 1:
        raise TrickError(f"option width={width} is invalid: resnet9 takes a positive width (64 as published)")
    place: BnPlace = "before" if bn else None
    c1, c2, c3, c4 = width, 2 * width, 4 * width, 8 * width

    def block(ci: int, co: int, pool: bool) -> nn.Sequential:
        return conv_block(ci, co, bn=place, pool=pool)

    def stage(c: int) -> nn.Module:
        if residual and bn:
            return resnet9_res_block(c)
        main = nn.Sequential(block(c, c, False), block(c, c, False))
        return ResBlock(main) if residual else main

    head = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), *([nn.Dropout(dropout)] if dropout > 0 else []),
                         nn.Linear(c4, 10))
    return nn.Sequential(OrderedDict(
        conv1=block(3, c1, False), conv2=block(c1, c2, True), res1=stage(c2),  # 32 -> 16
        conv3=block(c2, c3, True), conv4=block(c3, c4, True), res2=stage(c4),  # 16 -> 8 -> 4
        head=head))


_ACTS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}


_MASKS: dict[str, type[nn.Module]] = {"bernoulli": nn.Dropout, "randn": RandnDropout}


@_model
def two_layer_net(d_in: int = 3072, hidden: int = 350, n_out: int = 10, act: str = "relu",
                  dropout: float = 0.0, dropout_mask: str = "bernoulli") -> nn.Sequential:
    """Doc 002's cs231n TwoLayerNet: Flatten -> Linear(hidden) -> act -> [Dropout] -> Linear(n_out), logits.

    Takes (N, 3, 32, 32) pixels or (N, d_in) features (d_in=6400 for the K-means features); `act` is relu,
    leaky_relu (slope 0.01, the report's) or tanh; `dropout_mask` "randn" is doc 002's bugged mask (RandnDropout).
    1,079,060 parameters at the defaults.
    """
    if act not in _ACTS:
        raise TrickError(f"option act={act!r} is invalid: two_layer_net takes {', '.join(_ACTS)}")
    if dropout_mask not in _MASKS:
        raise TrickError(f"option dropout_mask={dropout_mask!r} is invalid: two_layer_net takes "
                         f"{', '.join(_MASKS)}")
    return _net(None, dense_head(d_in, (hidden,), n_out, act=_ACTS[act], dropout=dropout, log_softmax=False,
                                 dropout_layer=_MASKS[dropout_mask]))


@_model
def tiny_cnn(width: int = 8, hidden: int = 16) -> nn.Sequential:
    """A very small CNN for fast tests: two conv blocks (width, 2*width; ReLU, pool) and a dense head hidden -> 10."""
    feats = nn.Sequential(conv_block(3, width), conv_block(width, 2 * width))  # 32 -> 16 -> 8
    return _net(feats, dense_head(2 * width * 8 * 8, (hidden,)))


def build_model(name: str, **kwargs) -> nn.Module:
    """The model built by `MODELS[name](**kwargs)`; an unknown name or option raises TrickError."""
    if name not in MODELS:
        close = suggestions(name, list(MODELS))
        hint = f"did you mean {' or '.join(close)}?" if close else f"known models: {', '.join(sorted(MODELS))}"
        raise TrickError(f"unknown model '{name}'; {hint}")
    builder = MODELS[name]
    params = inspect.signature(builder).parameters
    for k in kwargs:
        if k not in params:
            raise TrickError(f"model '{name}' has no option '{k}' (its options: {', '.join(params) or 'none'})")
    return builder(**kwargs)
