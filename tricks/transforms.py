"""Model transforms `fn(model, *, ...) -> model`: BN placement, dropout insertion, head changes and init schemes.

Each works on any network built from `nn.Sequential` containers (all of `tricks.models`, and most hand-written
CNNs): the structural ones walk every Sequential, recursively, and rewrite it in place, so a conv whose activation
is applied functionally (e.g. inside `BnLayer`) is left alone. A transform that finds no place to act in a model
raises `TrickError`, so a recipe cannot silently train the untransformed net, and one that finds every place already
done says so with a `TrickWarning`. Each is registered by name for the command line; `ModelTransform(fn)` applies one
to a fastai Learner's model at the start of its first fit. Apply a transform through `ModelTransform`, not straight
to `learn.model` once the Learner has an optimizer (after `lr_find` or a fit): fastai keeps that optimizer, whose
parameter groups then miss the new layers, which never train.

Transforms that run the model (`gap_head`, `lsuv`, `params_used`) take the input's shape from `input_shape` or infer
it: vectors for a first Linear, else square images with the first Conv2d's channels at the first of `PROBE_SIZES`
that the model accepts (32 for CIFAR, 28 for MNIST-like data).

Init schemes follow the papers: Kaiming (He et al. 2015), Xavier (Glorot & Bengio 2010), LeCun (LeCun et al. 1998),
orthogonal (Saxe et al. 2014), LSUV (Mishkin & Matas 2016, "All you need is a good init").
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from fastai.callback.core import Callback
from fastai.layers import init_default as _fastai_init_default
from torch import nn

from tricks.layers import BnLayer
from tricks.registry import TrickError, TrickWarning, check_range, register
from tricks.surgery import insert_before, like, sequentials, set_children

__all__ = ["LSUVInit", "ModelTransform", "bn_after_relu", "bn_before_relu", "deepen_head", "dropout_both",
           "dropout_conv", "dropout_dense", "example_input", "gap_head", "infer_input_shape", "init_default",
           "kaiming_normal",
           "kaiming_uniform", "lecun_normal", "lsuv", "lsuv_init", "orthogonal", "params_registered", "params_used",
           "small_normal", "widen_head", "xavier_normal", "xavier_uniform"]

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.PReLU, nn.ReLU6, nn.SELU,
               nn.CELU, nn.Mish, nn.Hardswish, nn.Softplus)
# what may follow the Flatten of a dense head that the head transforms rebuild
_HEAD_PARTS = (nn.Linear, nn.Dropout, nn.BatchNorm1d, nn.LogSoftmax, nn.Softmax, nn.Identity, *ACTIVATIONS)


def _act_after(mods: list[nn.Module], i: int, norm: type[nn.Module]) -> int | None:
    """Index of the activation that follows the layer at i directly or after one `norm` layer, else None."""
    for j in (i + 1, i + 2):
        if j < len(mods) and isinstance(mods[j], ACTIVATIONS):
            return j if j == i + 1 or isinstance(mods[i + 1], norm) else None
    return None


def _none_found(transform: str, what: str, model: nn.Module) -> TrickError:
    own = "; its BnLayers normalize on their own" if any(isinstance(m, BnLayer) for m in model.modules()) else ""
    return TrickError(f"{transform} cannot apply to this {type(model).__name__}: it has no {what}{own}")


def _unchanged(transform: str, model: nn.Module, why: str) -> None:
    warnings.warn(f"{transform} left this {type(model).__name__} unchanged: {why}", TrickWarning, stacklevel=4)


# ------------------------------------------------------------------------------------------- BN placement

def _place_bn(model: nn.Module, before: bool, name: str) -> nn.Module:
    sites = added = 0
    for seq in sequentials(model):
        mods, inserts = list(seq), []
        for i, m in enumerate(mods):
            if not isinstance(m, nn.Conv2d):
                continue
            j = _act_after(mods, i, nn.BatchNorm2d)
            if j is None or (not before and j != i + 1):  # no activation, or BN already before it (not ours to move)
                continue
            sites += 1
            pos = i + 1 if before else j + 1
            done = j == i + 2 if before else pos < len(mods) and isinstance(mods[pos], nn.BatchNorm2d)
            if not done:
                inserts.append((pos, like(nn.BatchNorm2d(m.out_channels), m)))
        added += len(inserts)
        insert_before(seq, inserts)
    if not sites:
        raise _none_found(name, "Conv2d followed " + ("" if before else "directly ") + "by an activation", model)
    if not added:
        _unchanged(name, model, f"every Conv2d already has a BatchNorm2d {'before' if before else 'after'} its "
                                f"activation")
    return model


@register(kind="transform")
def bn_before_relu(model: nn.Module) -> nn.Module:
    """Insert BatchNorm2d between each Conv2d and the activation after it (Conv -> BN -> ReLU)."""
    return _place_bn(model, True, "bn_before_relu")


@register(kind="transform")
def bn_after_relu(model: nn.Module) -> nn.Module:
    """Insert BatchNorm2d after the activation that follows each Conv2d (Conv -> ReLU -> BN)."""
    return _place_bn(model, False, "bn_after_relu")


# ------------------------------------------------------------------------------------------- dropout

def _place_dropout(model: nn.Module, layer: type[nn.Module], norm: type[nn.Module], drop: type[nn.Module], p: float,
                   name: str, what: str) -> nn.Module:
    check_range(name, p=p)
    sites = 0
    for seq in sequentials(model):
        mods, inserts = list(seq), []
        for i, m in enumerate(mods):
            j = _act_after(mods, i, norm) if isinstance(m, layer) else None
            if j is None:
                continue
            sites += 1
            pos = j + 1 + int(j + 1 < len(mods) and isinstance(mods[j + 1], norm))  # after a BN that follows the act
            if pos < len(mods) and type(mods[pos]) is drop:
                mods[pos].p = p
            else:
                inserts.append((pos, drop(p)))
        insert_before(seq, inserts)
    if not sites:
        raise _none_found(name, what, model)
    return model


@register(kind="transform", ranges={"p": "(0, 1)"})
def dropout_dense(model: nn.Module, *, p: float = 0.2) -> nn.Module:
    """Dropout(p) after the activation of each hidden Linear layer (never after the output layer)."""
    return _place_dropout(model, nn.Linear, nn.BatchNorm1d, nn.Dropout, p, "dropout_dense",
                          "hidden Linear followed by an activation")


@register(kind="transform", ranges={"p": "(0, 1)"})
def dropout_conv(model: nn.Module, *, p: float = 0.2) -> nn.Module:
    """Dropout2d(p) after the activation of each Conv2d, before any pooling (spatial dropout)."""
    return _place_dropout(model, nn.Conv2d, nn.BatchNorm2d, nn.Dropout2d, p, "dropout_conv",
                          "Conv2d followed by an activation")


@register(kind="transform", ranges={"p": "(0, 1)"})
def dropout_both(model: nn.Module, *, p: float = 0.2) -> nn.Module:
    """Spatial dropout after each conv's activation and dropout after each hidden dense activation, both at p."""
    return dropout_dense(dropout_conv(model, p=p), p=p)


# ------------------------------------------------------------------------------------------- dense head

def _head(model: nn.Module, name: str) -> tuple[nn.Sequential, int]:
    """The last Sequential holding Flatten -> Linear ... (only dense-head parts after the Flatten), and its index."""
    found = None
    for seq in sequentials(model):
        mods = list(seq)
        for i, m in enumerate(mods):
            rest = mods[i + 1:]
            if (isinstance(m, nn.Flatten) and any(isinstance(r, nn.Linear) for r in rest)
                    and all(isinstance(r, _HEAD_PARTS) for r in rest)):
                found = (seq, i)
    if found is None:
        raise _none_found(name, "dense head (a Flatten followed by Linear layers)", model)
    return found


def _rebuild_head(model: nn.Module, name: str, widths: tuple[int, ...]) -> nn.Module:
    """Replace the dense head's hidden layers by new ones of `widths`, with the head's activation and dropout p.

    Modules between the Flatten and the first Linear, and after the last Linear (e.g. LogSoftmax), are kept.
    """
    seq, i = _head(model, name)
    mods = list(seq)
    chain = mods[i + 1:]
    lin = [k for k, m in enumerate(chain) if isinstance(m, nn.Linear)]
    first, last = chain[lin[0]], chain[lin[-1]]
    hidden = chain[lin[0]:lin[-1]]
    act = next((m for m in hidden if isinstance(m, ACTIVATIONS)), nn.ReLU())
    p = next((m.p for m in hidden if isinstance(m, nn.Dropout)), 0.0)
    body: list[nn.Module] = []
    d = first.in_features
    for w in widths:
        body += [nn.Linear(d, w), copy.deepcopy(act), *([nn.Dropout(p)] if p > 0 else [])]
        d = w
    body.append(nn.Linear(d, last.out_features))
    body = [like(m, first) for m in body]
    set_children(seq, mods[:i + 1] + chain[:lin[0]] + body + chain[lin[-1] + 1:])
    return model


def _check_widths(name: str, widths: Iterable[Any]) -> tuple[int, ...]:
    ws = tuple(widths)
    if not ws or not all(isinstance(w, int) and w > 0 for w in ws):
        raise TrickError(f"option {name}:widths={'/'.join(map(str, ws))} is invalid: it takes positive whole widths, "
                         f"e.g. widths=512/256")
    return ws


@register(kind="transform", ranges={"width": "[1, inf)"})
def widen_head(model: nn.Module, *, width: int = 512) -> nn.Module:
    """Give each hidden layer of the dense head `width` units (doc 001's wider net: 1024-512-10)."""
    _check_widths("widen_head", (width,))
    seq, i = _head(model, "widen_head")
    n_hidden = sum(isinstance(m, nn.Linear) for m in list(seq)[i + 1:]) - 1
    if n_hidden == 0:
        raise TrickError(f"widen_head cannot apply to this {type(model).__name__}: its dense head has no hidden layer "
                         f"(deepen_head adds one)")
    return _rebuild_head(model, "widen_head", (width,) * n_hidden)


@register(kind="transform")
def deepen_head(model: nn.Module, *, widths: tuple[int, ...] = (512, 256)) -> nn.Module:
    """Make the dense head's hidden layers `widths` (doc 001's deeper net: 1024-512-256-10)."""
    return _rebuild_head(model, "deepen_head", _check_widths("deepen_head", widths))


PROBE_SIZES = (32, 28, 64, 96, 224, 16)  # square image sizes tried, in order, when the input must be inferred


def _first_layer(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return m
    raise TrickError(f"{type(model).__name__} has no Conv2d or Linear layer to infer its input from; give "
                     f"input_shape=(C, H, W)")


def _runs_on(model: nn.Module, shape: tuple[int, ...], ref: nn.Module) -> bool:
    """Whether a forward pass of a zero batch of `shape` goes through (eval mode, no grad, no RNG drawn)."""
    with _Eval(model):
        try:
            model(torch.zeros(shape, device=ref.weight.device, dtype=ref.weight.dtype))
        except (RuntimeError, ValueError, IndexError):
            return False
    return True


def infer_input_shape(model: nn.Module, sizes: Iterable[int] = PROBE_SIZES) -> tuple[int, ...]:
    """The shape of one input (no batch axis): (in_features,) for a first Linear, else (C, s, s) with the first
    Conv2d's channels C and the first size s of `sizes` the model runs on; TrickError when none does."""
    first = _first_layer(model)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    tried = tuple(sizes)
    for s in tried:
        if _runs_on(model, (2, first.in_channels, s, s), first):
            return (first.in_channels, s, s)
    raise TrickError(f"cannot infer the input of this {type(model).__name__}: no square {first.in_channels}-channel "
                     f"image of {', '.join(map(str, tried))} pixels passes its forward; give input_shape=(C, H, W)")


def example_input(model: nn.Module, batch: int = 2, input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A random-normal batch the model accepts: `input_shape` (one input, no batch axis) or the inferred one."""
    shape = tuple(input_shape) if input_shape else infer_input_shape(model)
    ref = _first_layer(model)
    return torch.randn((batch, *shape), device=ref.weight.device, dtype=ref.weight.dtype)


def _forward_error(name: str, model: nn.Module, shape: tuple[int, ...], e: BaseException) -> TrickError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return TrickError(f"{name} cannot run this {type(model).__name__} on a batch of shape {tuple(shape)} ({first}); "
                      f"give input_shape=(C, H, W) of one input")


class _Eval:
    """Context: the model in eval mode with gradients off; each module's training flag restored after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.grad = torch.no_grad()
        self.grad.__enter__()
        return self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.grad.__exit__(*exc)
        for m, mode in self.modes:
            m.training = mode


@register(kind="transform")
def gap_head(model: nn.Module, *, input_shape: tuple[int, ...] = ()) -> nn.Module:
    """Replace the Flatten + dense head by global average pooling and one Linear layer (channels -> classes).

    `input_shape` is one input's shape, e.g. (1, 28, 28); empty: inferred from the model."""
    seq, i = _head(model, "gap_head")
    flat = seq[i]
    shapes: list[torch.Size] = []
    xb = example_input(model, input_shape=input_shape)
    handle = flat.register_forward_pre_hook(lambda _m, args: shapes.append(args[0].shape))
    try:
        with _Eval(model):
            model(xb)
    except (RuntimeError, ValueError, IndexError) as e:
        raise _forward_error("gap_head", model, tuple(xb.shape), e) from None
    finally:
        handle.remove()
    if not shapes or len(shapes[0]) != 4:
        raise TrickError(f"gap_head needs a (N, C, H, W) feature map before the Flatten of {type(model).__name__}")
    mods = list(seq)
    chain = mods[i + 1:]
    lin = [k for k, m in enumerate(chain) if isinstance(m, nn.Linear)]
    first, last = chain[lin[0]], chain[lin[-1]]
    out = like(nn.Linear(shapes[0][1], last.out_features), first)
    set_children(seq, mods[:i] + [nn.AdaptiveAvgPool2d(1), flat] + chain[:lin[0]] + [out] + chain[lin[-1] + 1:])
    return model


# ------------------------------------------------------------------------------------------- init schemes

def _weighted(model: nn.Module) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise TrickError(f"{type(model).__name__} has no Conv2d or Linear layer to initialize")
    return layers


def _init(model: nn.Module, func: Callable[[torch.Tensor], Any]) -> nn.Module:
    """`func` on the weight of every Conv2d and Linear, biases zero (fastai's init_default per layer)."""
    for m in _weighted(model):
        _fastai_init_default(m, func)
    return model


@register(kind="transform")
def init_default(model: nn.Module) -> nn.Module:
    """PyTorch's default init again: reset_parameters on every layer that has one (convs, linears, norms)."""
    layers = [m for m in model.modules() if hasattr(m, "reset_parameters")]
    for m in layers:
        m.reset_parameters()
    if not layers:
        _unchanged("init_default", model, "none of its layers has a reset_parameters method")
    return model


@register(kind="transform")
def kaiming_uniform(model: nn.Module) -> nn.Module:
    """Kaiming-uniform weights (a=0, fan_in, gain sqrt 2); biases keep PyTorch's default init, as doc 000 did."""
    with torch.no_grad():
        for m in _weighted(model):
            nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
    return model


@register(kind="transform")
def kaiming_normal(model: nn.Module) -> nn.Module:
    """Kaiming-normal weights N(0, 2/fan_in), biases zero."""
    return _init(model, partial(nn.init.kaiming_normal_, mode="fan_in", nonlinearity="relu"))


@register(kind="transform")
def xavier_uniform(model: nn.Module) -> nn.Module:
    """Xavier-uniform weights U(+-sqrt(6/(fan_in+fan_out))), biases zero."""
    return _init(model, nn.init.xavier_uniform_)


@register(kind="transform")
def xavier_normal(model: nn.Module) -> nn.Module:
    """Xavier-normal weights N(0, 2/(fan_in+fan_out)), biases zero."""
    return _init(model, nn.init.xavier_normal_)


@register(kind="transform")
def lecun_normal(model: nn.Module) -> nn.Module:
    """LeCun-normal weights N(0,1)/sqrt(fan_in), biases zero."""
    return _init(model, partial(nn.init.kaiming_normal_, mode="fan_in", nonlinearity="linear"))


@register(kind="transform")
def orthogonal(model: nn.Module) -> nn.Module:
    """Orthogonal weights (each layer's weight flattened to 2-d is a semi-orthogonal matrix), biases zero."""
    return _init(model, nn.init.orthogonal_)


@register(kind="transform", ranges={"std": "(0, inf)"})
def small_normal(model: nn.Module, *, std: float = 1e-4) -> nn.Module:
    """Weights std * N(0,1), biases zero (cs231n's TwoLayerNet init, std 1e-4)."""
    check_range("small_normal", std=std)
    return _init(model, partial(nn.init.normal_, mean=0.0, std=std))


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def _forward_order(model: nn.Module, xb: torch.Tensor, layers: list[nn.Module]) -> list[nn.Module]:
    seen: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, _a, _o: seen.append(m) if m not in seen else None) for m in layers]
    try:
        model(xb)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _output_var(model: nn.Module, xb: torch.Tensor, layer: nn.Module) -> float:
    out: list[torch.Tensor] = []

    def hook(_m: nn.Module, _a: Any, o: torch.Tensor) -> None:
        out.append(o)
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        model(xb)
    except _Stop:
        pass
    finally:
        h.remove()
    return float(out[0].float().var())


def lsuv_init(model: nn.Module, xb: torch.Tensor, *, tol: float = 0.1, max_iter: int = 10) -> nn.Module:
    """LSUV on batch `xb`: orthogonal init, then scale each Conv2d/Linear, in forward order, to unit output variance.

    Runs in eval mode (dropout off, BatchNorm on its running statistics, which stay untouched). A batch the model
    cannot run raises TrickError and leaves the model as it was, not half-initialised.
    """
    check_range("lsuv", tol=tol, max_iter=max_iter)
    saved = copy.deepcopy(model.state_dict())
    try:
        orthogonal(model)
        with _Eval(model):
            w = _weighted(model)[0].weight
            xb = xb.to(device=w.device, dtype=w.dtype)
            for layer in _forward_order(model, xb, _weighted(model)):
                for it in range(max_iter + 1):
                    var = _output_var(model, xb, layer)
                    if abs(var - 1.0) < tol or var < 1e-12 or it == max_iter:  # a dead layer cannot be rescaled
                        break
                    layer.weight.div_(math.sqrt(var))
    except (RuntimeError, ValueError, IndexError) as e:
        model.load_state_dict(saved)
        if isinstance(e, TrickError):
            raise
        raise _forward_error("lsuv", model, tuple(xb.shape), e) from None
    except BaseException:
        model.load_state_dict(saved)
        raise
    return model


@register(kind="transform", ranges={"tol": "(0, inf)", "max_iter": "[1, inf)"})
def lsuv(model: nn.Module, *, tol: float = 0.1, max_iter: int = 10, input_shape: tuple[int, ...] = ()) -> nn.Module:
    """LSUV init (Mishkin & Matas 2016) on a random-normal batch of 64; the LSUVInit callback uses real data.

    `input_shape` is one input's shape, e.g. (1, 28, 28); empty: inferred from the model."""
    return lsuv_init(model, example_input(model, batch=64, input_shape=input_shape), tol=tol, max_iter=max_iter)


# ------------------------------------------------------------------------------------------- counting

def params_registered(model: nn.Module) -> int:
    """All parameters the model registers, used in its forward pass or not."""
    return sum(p.numel() for p in model.parameters())


def params_used(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> int:
    """Parameters the forward pass uses: those that get a gradient from a random batch (a defined, uncalled layer not).

    `input_shape` is the batch's shape, e.g. (2, 1, 28, 28); None: two inputs of the inferred shape. The pass runs in
    eval mode, so BatchNorm statistics and dropout are untouched; training flags and requires_grad are restored after.
    """
    params = list(model.parameters())
    if not params:
        return 0
    if input_shape is None:
        input_shape = (2, *infer_input_shape(model))
    flags = [p.requires_grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    ref = params[0]
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    try:
        for p in params:
            p.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            try:
                out = model(torch.randn(input_shape, device=ref.device, dtype=dtype))
            except (RuntimeError, ValueError, IndexError) as e:
                raise _forward_error("params_used", model, tuple(input_shape), e) from None
            grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True)
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
        for m, mode in modes:
            m.training = mode
    return sum(p.numel() for p, g in zip(params, grads, strict=True) if g is not None)


# ------------------------------------------------------------------------------------------- callbacks

class ModelTransform(Callback):
    """Apply `fn` to `learn.model` once, at the first `before_fit`, then move it to the data's device and renew the
    optimizer (keeping its hyper-parameters), so that lr_find followed by fit transforms the model only once."""

    order = -20  # before TrainEvalCallback (-10) and every callback that reads the model at before_fit

    def __init__(self, fn: Callable[[nn.Module], nn.Module]):
        self.fn, self.applied = fn, False

    def _device(self) -> torch.device:
        dev = getattr(self.learn.dls, "device", None)
        if dev is None:
            p = next(self.learn.model.parameters(), None)
            dev = p.device if p is not None else torch.device("cpu")
        return torch.device(dev)

    def before_fit(self) -> None:
        if self.applied:
            return
        dev = self._device()
        model = self.fn(self.learn.model.to(dev))
        if not isinstance(model, nn.Module):
            raise TypeError(f"model transform {getattr(self.fn, '__name__', self.fn)} returned {type(model).__name__}, "
                            f"not a model")
        self.learn.model = model.to(dev)
        self.applied = True
        opt = self.learn.opt
        if opt is not None:  # its parameter groups point at the old parameters: build a new one with the same hypers
            old = list(opt.hypers)
            self.learn.create_opt()
            same = len(old) == len(self.learn.opt.hypers)
            for k in old[-1]:
                self.learn.opt.set_hyper(k, [h[k] for h in old] if same else old[-1][k])


@register(kind="callback", ranges={"tol": "(0, inf)", "max_iter": "[1, inf)"})
class LSUVInit(ModelTransform):
    """LSUV init (Mishkin & Matas 2016) on the first training batch, once, before the first fit."""

    def __init__(self, tol: float = 0.1, max_iter: int = 10):
        check_range("LSUVInit", tol=tol, max_iter=max_iter)
        self.tol, self.max_iter = tol, max_iter
        super().__init__(self._lsuv)

    def _lsuv(self, model: nn.Module) -> nn.Module:
        xb = self.learn.dls.train.one_batch()[0]
        return lsuv_init(model, xb, tol=self.tol, max_iter=self.max_iter)
