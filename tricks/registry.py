"""Name -> trick registry: the table that callbacks, model transforms and data options register into.

A trick registers itself with the `register` decorator where it is defined (timm's model-registry pattern); the
registry never imports the modules that define tricks: `tricks.catalog` imports them all and looks tricks up by name
(`get_trick`, `parse_spec`). A trick's parameters are read from the signature: the keyword arguments of a callback's
`__init__`, or the keyword-only arguments of a transform `fn(model, *, ...)`.

A numeric parameter with a range declares it at registration, `register(ranges={"p": "(0, 1)"})`, so a value outside
it is refused when the command line is read, before any data is loaded or a run starts.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

Kind = Literal["callback", "transform", "data"]

class TrickError(ValueError):
    """A user-facing error about a trick name or option: the message is one sentence, fit to print as is."""


class TrickWarning(UserWarning):
    """A trick that cannot act on the model it was given (nothing to freeze, nothing to change): one sentence."""


class Range(NamedTuple):
    """An interval of allowed values, written as in mathematics: "(0, 1)", "[0, inf)", "[1, 32]"."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool

    @classmethod
    def parse(cls, text: str) -> Range:
        t = text.strip()
        lo, hi = (v.strip() for v in t[1:-1].split(","))
        if t[0] not in "[(" or t[-1] not in "])":
            raise ValueError(f"range {text!r} is not of the form [lo, hi) / (lo, hi] ...")
        return cls(float(lo), float(hi), t[0] == "[", t[-1] == "]")

    def __contains__(self, x: object) -> bool:
        v = float(x)  # type: ignore[arg-type]
        above = v >= self.lo if self.lo_closed else v > self.lo
        below = v <= self.hi if self.hi_closed else v < self.hi
        return above and below

    def __str__(self) -> str:
        def num(v: float) -> str:
            return "inf" if v == float("inf") else f"{v:g}"

        return f"{'[' if self.lo_closed else '('}{num(self.lo)}, {num(self.hi)}{']' if self.hi_closed else ')'}"


@dataclass(frozen=True)
class Param:
    """One typed parameter of a trick."""

    name: str
    type: type
    default: Any
    required: bool = False
    range: Range | None = None  # the allowed values of a numeric parameter

    def convert(self, trick: str, raw: str) -> Any:
        """Turn the command-line text `raw` into this parameter's type, or raise TrickError naming the option."""
        value = self._typed(trick, raw)
        if self.range is not None and not isinstance(value, (bool, tuple)) and value not in self.range:
            raise TrickError(f"option {trick}:{self.name}={raw} is out of range: {self.name} takes a value in "
                             f"{self.range}")
        return value

    def _typed(self, trick: str, raw: str) -> Any:
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
        where = f" in {self.range}" if self.range is not None else ""
        return f"{self.name}: {self.type.__name__}{where}" + ("" if self.required else f" = {self.default!r}")


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


def _with_ranges(trick: str, params: tuple[Param, ...], ranges: dict[str, str]) -> tuple[Param, ...]:
    names = {p.name for p in params}
    unknown = sorted(set(ranges) - names)
    if unknown:
        raise ValueError(f"trick '{trick}' declares a range for {', '.join(unknown)}, which it does not take")
    return tuple(replace(p, range=Range.parse(ranges[p.name])) if p.name in ranges else p for p in params)


def register(name: str | None = None, kind: Kind = "callback", description: str | None = None,
             ranges: dict[str, str] | None = None):
    """Decorator adding a callback class or a transform function to the registry under `name`; `ranges` maps a
    numeric parameter to its allowed interval, e.g. `{"p": "(0, 1)"}`."""

    def deco(obj):
        n = name or obj.__name__
        doc = description or (inspect.getdoc(obj) or "").strip().splitlines()[0:1]
        desc = doc if isinstance(doc, str) else (doc[0] if doc else "")
        if n in _REGISTRY:
            if _REGISTRY[n].factory is not obj:
                raise ValueError(f"trick name '{n}' registered twice")
            return obj  # the same object again: its first registration (with its ranges) stands
        params = _with_ranges(n, _params_of(obj, kind), ranges or {})
        _REGISTRY[n] = Trick(n, kind, obj, desc, params)
        return obj

    return deco


def check_range(trick: str, **values: Any) -> None:
    """Refuse a value outside the range `trick` declared for it at registration, in one sentence (a TrickError, so a
    ValueError): the check of a trick built in Python, the same declaration the command line is checked against."""
    params = {p.name: p for p in _REGISTRY[trick].params}
    for name, value in values.items():
        rng = params[name].range
        if rng is not None and not isinstance(value, (bool, tuple)) and value not in rng:
            raise TrickError(f"option {trick}:{name}={value} is invalid: {name} must be in {rng}")


def suggestions(name: str, known: list[str], n: int = 3, cutoff: float = 0.6, within: float = 0.1) -> list[str]:
    """The known names closest to `name`, case-insensitively: at most n, each within `within` of the best match's
    similarity, so a clear best match is offered alone."""
    scored = sorted(((difflib.SequenceMatcher(None, name.lower(), k.lower()).ratio(), k) for k in known),
                    key=lambda t: -t[0])
    if not scored or scored[0][0] < cutoff:
        return []
    best = scored[0][0]
    return [k for r, k in scored[:n] if r >= cutoff and r >= best - within]
