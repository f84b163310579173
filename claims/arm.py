"""An arm that is the user's own training: a fastai Learner factory named by import path, the tricks to add, how to
fit it and the metric to compare. A claim takes a `LearnerArm` wherever it takes a Recipe.

The factory is named as `module:function` (not passed as a function) so that worker processes and Ray tasks can
import it. Its runs are stored under the arm's `key` (the factory path, the tricks, the fit and the metric) and a
version made of the source of the modules the arm names and a digest of the data the factory's Learner holds
(`claims.compare.arm_version`), so editing the factory's module or its data trains new runs, and nothing else does.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tricks.recipe import TrickUse, kw

OWN_PROFILE = "own"  # the profile name a user arm's runs are stored under: the arm defines its own training


class ArmError(ValueError):
    """A user arm that cannot be built or run as declared: the message is one sentence."""


def split_path(path: str, what: str = "factory") -> tuple[str, str]:
    """`module.path:function` -> (module, function), or ArmError saying what the text should look like."""
    module, sep, name = str(path).strip().partition(":")
    if not sep or not module or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        raise ArmError(f"{what} '{path}' is not an import path of the form module.path:function")
    return module, name


def describe(obj: Any) -> str:
    """A stable text for a trick, fit or metric given as an object: `module:qualname` for a function or class, and
    for an instance its class with its public attributes of simple types (numbers, text, flags) in name order."""
    if isinstance(obj, TrickUse):
        return obj.spec
    if isinstance(obj, str):
        return obj
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
        return f"{obj.__module__}:{obj.__qualname__}"
    cls = type(obj)
    simple = (bool, int, float, str, type(None))
    attrs = {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and isinstance(v, simple)} \
        if hasattr(obj, "__dict__") else {}
    args = ",".join(f"{k}={v!r}" for k, v in attrs.items())
    return f"{cls.__module__}:{cls.__qualname__}({args})"


def _short(t: Any) -> str:
    """A trick's name for labels: its registry name, or its function's or class's name."""
    return t.name if isinstance(t, TrickUse) else describe(t).rsplit(":", 1)[-1].split("(", 1)[0]


def _trick(t: Any) -> Any:
    """A registry name (`"dropout_conv:p=0.3"`) becomes a checked TrickUse; an object stays as it is."""
    if isinstance(t, TrickUse):
        return t
    if isinstance(t, str):
        from tricks.catalog import parse_spec

        name, kwargs = parse_spec(t)
        return TrickUse(name, kw(**kwargs))
    if not callable(t):
        raise ArmError(f"trick {t!r} is neither a registry name, a fastai Callback nor a Module -> Module function")
    return t


@dataclass(frozen=True)
class LearnerArm:
    """The user's own training as a claim's arm: `factory()` (an import path) returns a fastai Learner; `tricks`
    (registry names such as "BnFreeze" or "dropout_conv:p=0.3", Callback objects, Module -> Module functions) are
    added to it; `fit(learn, epochs, lr)` trains it (None: `learn.fit_one_cycle(epochs, lr)`); `metric` is a metric
    the Learner records, by name, or a function of the trained Learner (an import path or a function) returning a
    number where higher is better. `data`: the version of the factory's data, when the user names one; None lets the
    engine digest the data the Learner holds."""

    factory: str
    tricks: tuple[Any, ...] = ()
    epochs: int = 1
    lr: float = 1e-3
    fit: str | Callable[..., Any] | None = None
    metric: str | Callable[..., Any] = "accuracy"
    data: str | None = None
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)

    # what the scheduler and the profiles read from a Recipe: a user arm is never scaled or held back for a GPU
    heavy = False
    gpu_sized = False
    scaled = ""
    features = None

    def __post_init__(self) -> None:
        split_path(self.factory)
        if isinstance(self.fit, str):
            split_path(self.fit, "fit function")
        if isinstance(self.metric, str) and ":" in self.metric:
            split_path(self.metric, "metric")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ArmError(f"arm {self.label}: epochs must be a positive integer, not {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ArmError(f"arm {self.label}: lr must be a positive number, not {self.lr!r}")
        tricks = (self.tricks,) if isinstance(self.tricks, str) or callable(self.tricks) else self.tricks
        object.__setattr__(self, "tricks", tuple(_trick(t) for t in tricks))
        object.__setattr__(self, "lr", float(self.lr))
        if not self.name:
            extra = "+".join(_short(t) for t in self.tricks)
            object.__setattr__(self, "name", self.factory.rsplit(":", 1)[-1] + (f"+{extra}" if extra else ""))

    @property
    def label(self) -> str:
        return self.name or self.factory

    def spec(self) -> dict[str, Any]:
        """Every field that changes what a run computes, as plain JSON values (objects by `describe`)."""
        return {"kind": "learner", "factory": self.factory, "tricks": [describe(t) for t in self.tricks],
                "epochs": self.epochs, "lr": repr(self.lr), "fit": None if self.fit is None else describe(self.fit),
                "metric": describe(self.metric), "data": self.data}

    @property
    def key(self) -> str:
        """sha256 of the arm's spec: the store key of its runs (with the seed and `claims.compare.arm_version`)."""
        blob = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The spec with the labels, as the run store and the report's JSON keep it."""
        return {**self.spec(), "name": self.name, "description": self.description}

    def with_tricks(self, *tricks: Any, name: str = "") -> LearnerArm:
        """This arm with more tricks added after its own."""
        from dataclasses import replace

        return replace(self, tricks=self.tricks + tuple(tricks), name=name)

    def modules(self) -> tuple[str, ...]:
        """The modules whose source decides this arm's runs: the factory's, and those of a fit or metric by path."""
        mods = [split_path(self.factory)[0]]
        for x in (self.fit, self.metric):
            if isinstance(x, str) and ":" in x:
                mods.append(split_path(x)[0])
            elif callable(x) and getattr(x, "__module__", None):
                mods.append(x.__module__)
        return tuple(dict.fromkeys(mods))


def is_arm(x: Any) -> bool:
    """Whether `x` is a user arm (a LearnerArm)."""
    return isinstance(x, LearnerArm)
