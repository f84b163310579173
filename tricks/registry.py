"""Name -> trick registry: callbacks, model transforms and data options, looked up by name from the command line.

A trick registers itself with the `register` decorator where it is defined (timm's model-registry pattern). Its
parameters are read from the signature: the keyword arguments of a callback's `__init__`, or the keyword-only
arguments of a transform `fn(model, *, ...)`. `parse_spec("dropout_conv:p=0.3")` turns a command-line spec into a
name and typed keyword arguments, with one clear sentence on any error.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["callback", "transform", "data"]

# modules whose import fills the registry; kept here so `all_tricks()` needs no caller to import them first
_TRICK_MODULES = ("tricks.callbacks", "tricks.transforms", "tricks.features")


class TrickError(ValueError):
    """A user-facing error about a trick name or option: the message is one sentence, fit to print as is."""


class TrickWarning(UserWarning):
    """A trick that cannot act on the model it was given (nothing to freeze, nothing to change): one sentence."""


@dataclass(frozen=True)
class Param:
    """One typed parameter of a trick."""

    name: str
    type: type
    default: Any
    required: bool = False

    def convert(self, trick: str, raw: str) -> Any:
        """Turn the command-line text `raw` into this parameter's type, or raise TrickError naming the option."""
        t = self.type
        try:
            if t is bool:
                low = raw.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            if t is int:
                return int(raw)
            if t is float:
                return float(raw)
            if t in (tuple, list):
                return tuple(float(v) if "." in v or "e" in v.lower() else int(v) for v in raw.split("/") if v)
            return t(raw)
        except (TypeError, ValueError):
            raise TrickError(
                f"option {trick}:{self.name}={raw} is malformed: {self.name} takes a {t.__name__}"
            ) from None

    def describe(self) -> str:
        return f"{self.name}: {self.type.__name__}" + ("" if self.required else f" = {self.default!r}")


@dataclass(frozen=True)
class Trick:
    """A named trick: what it is (`kind`), how to build it, its one-line description and typed parameters."""

    name: str
    kind: Kind
    factory: Callable[..., Any]
    description: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise TrickError(f"trick '{self.name}' has no parameter '{name}' (its parameters: {known})")

    def build(self, **kwargs: Any) -> Any:
        """A callback instance for a callback; a `Module -> Module` function for a transform or data option."""
        for k in kwargs:
            self.param(k)
        if self.kind == "callback":
            return self.factory(**kwargs)

        factory, bound = self.factory, dict(kwargs)

        def apply(model):
            return factory(model, **bound)

        apply.__name__ = self.name
        apply.__doc__ = self.description
        return apply


_REGISTRY: dict[str, Trick] = {}


def _type_of(annotation: Any, default: Any) -> type:
    if isinstance(annotation, str):  # postponed annotations
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.split("|")[0].strip())
    origin = typing.get_origin(annotation)
    if origin is not None:  # Optional[float], float | None, tuple[int, ...]
        if origin in (tuple, list):
            return tuple
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if args else None
    if isinstance(annotation, type) and annotation is not inspect.Parameter.empty:
        return annotation
    if default is not None and default is not inspect.Parameter.empty:
        return type(default)
    return str


def _params_of(fn: Callable[..., Any], kind: Kind) -> tuple[Param, ...]:
    sig = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn)
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # unresolvable forward references: fall back on the raw annotations
        hints = {}
    out = []
    items = list(sig.parameters.values())
    if inspect.isclass(fn):
        items = items[1:]  # self
    elif kind != "callback":
        items = items[1:]  # the model (or arrays) the transform acts on
    for p in items:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        required = p.default is inspect.Parameter.empty
        out.append(Param(p.name, _type_of(hints.get(p.name, p.annotation), p.default), None if required else p.default,
                         required))
    return tuple(out)


def register(name: str | None = None, kind: Kind = "callback", description: str | None = None):
    """Decorator adding a callback class or a transform function to the registry under `name`."""

    def deco(obj):
        n = name or obj.__name__
        doc = description or (inspect.getdoc(obj) or "").strip().splitlines()[0:1]
        desc = doc if isinstance(doc, str) else (doc[0] if doc else "")
        if n in _REGISTRY and _REGISTRY[n].factory is not obj:
            raise ValueError(f"trick name '{n}' registered twice")
        _REGISTRY[n] = Trick(n, kind, obj, desc, _params_of(obj, kind))
        return obj

    return deco


def _load() -> None:
    for mod in _TRICK_MODULES:
        importlib.import_module(mod)


def all_tricks() -> list[Trick]:
    """Every registered trick, sorted by kind then name."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda t: (t.kind, t.name.lower()))


def get_trick(name: str) -> Trick:
    """The trick called `name`; an unknown name raises TrickError suggesting the closest names."""
    _load()
    if name in _REGISTRY:
        return _REGISTRY[name]
    lower = {k.lower(): k for k in _REGISTRY}
    if name.lower() in lower:
        return _REGISTRY[lower[name.lower()]]
    close = suggestions(name, list(_REGISTRY))
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `python -m tricks.apply --list` lists them"
    raise TrickError(f"unknown trick '{name}'{hint}")


def suggestions(name: str, known: list[str], n: int = 3, cutoff: float = 0.6, within: float = 0.1) -> list[str]:
    """The known names closest to `name`, case-insensitively: at most n, each within `within` of the best match's
    similarity, so a clear best match is offered alone."""
    scored = sorted(((difflib.SequenceMatcher(None, name.lower(), k.lower()).ratio(), k) for k in known),
                    key=lambda t: -t[0])
    if not scored or scored[0][0] < cutoff:
        return []
    best = scored[0][0]
    return [k for r, k in scored[:n] if r >= cutoff and r >= best - within]


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Parse `NAME[:k=v,...]` into the trick's canonical name and typed keyword arguments."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise TrickError(f"option '{text}' is malformed: it needs a trick name before any ':'")
    trick = get_trick(name)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise TrickError(f"option '{text}' is malformed: '{item}' is not of the form key=value")
        k = k.strip()
        if k in kwargs:
            raise TrickError(f"option '{text}' is malformed: '{k}' is given twice")
        kwargs[k] = trick.param(k).convert(trick.name, v.strip())
    missing = [p.name for p in trick.params if p.required and p.name not in kwargs]
    if missing:
        raise TrickError(f"trick '{trick.name}' needs {', '.join(missing)} (e.g. {trick.name}:{missing[0]}=...)")
    return trick.name, kwargs


def build(text: str) -> Any:
    """Parse and build a trick spec in one step."""
    name, kwargs = parse_spec(text)
    return get_trick(name).build(**kwargs)
