"""One run of a recipe with a seed: `run(recipe, seed, profile) -> RunResult`.

A `Recipe` is a frozen, hashable description of one published experiment arm. Its hash (`recipe.key`) is a sha256
of canonical JSON, stable across processes and Python versions; the name and description are labels and stay out
of it, so two claims naming the same recipe differently share runs. A `Profile` scales a recipe to the machine
(training subset, epochs); `paper` leaves it as published.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

Params = tuple[tuple[str, Any], ...]


def kw(**kwargs: Any) -> Params:
    """Keyword arguments as a sorted tuple of pairs, so that they can live in a frozen, hashable recipe."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@dataclass(frozen=True)
class TrickUse:
    """A registered trick with its arguments, e.g. `TrickUse("dropout_conv", kw(p=0.2))`."""

    name: str
    params: Params = ()

    @property
    def spec(self) -> str:
        """The command-line form, `name:k=v,...`."""
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


@dataclass(frozen=True)
class Phase:
    """One fit call: `schedule` is constant | one_cycle | exp_decay | sgdr (fastai v0.7 cycles), over `epochs`."""

    schedule: str
    epochs: int
    lr: float
    params: Params = ()  # schedule options, e.g. kw(pct_start=0.3) for one_cycle, kw(gamma=0.8) for exp_decay
    new_opt: bool = False  # start this phase with a fresh optimizer (doc 000's continued-training bug)


@dataclass(frozen=True)
class Recipe:
    """A published experiment arm: model, transforms, callbacks, data options, optimizer, schedule, batch size."""

    model: str  # builder name in tricks.models.MODELS
    model_kwargs: Params = ()
    transforms: tuple[TrickUse, ...] = ()  # model transforms, applied in order after the builder
    callbacks: tuple[TrickUse, ...] = ()
    opt: str = "adam"  # adam | sgd | rmsprop (fastai optimizers)
    opt_kwargs: Params = ()  # passed to the fastai optimizer (mom, sqr_mom, eps, wd, decouple_wd, ...)
    wd_bn_bias: bool = True  # PyTorch optimizers decay BN and bias; fastai's default does not
    phases: tuple[Phase, ...] = (Phase("constant", 10, 1e-3),)
    bs: int = 64
    augment: bool = False  # reflect-pad 4 + random crop + horizontal flip, on whole batches
    normalize: str | tuple | None = None  # None, "train" (training-set stats) or ((mean...), (std...))
    loss: str = "ce"  # ce on logits (log_softmax outputs give the same value) | nll on log-probabilities
    features: str | None = None  # a data-level trick that replaces pixels by features, e.g. "kmeans"
    features_kwargs: Params = ()
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        d = dict(d)
        d["model_kwargs"] = _params(d.get("model_kwargs", ()))
        d["opt_kwargs"] = _params(d.get("opt_kwargs", ()))
        d["features_kwargs"] = _params(d.get("features_kwargs", ()))
        d["transforms"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("transforms", ()))
        d["callbacks"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("callbacks", ()))
        d["phases"] = tuple(Phase(**{**p, "params": _params(p["params"])}) for p in d.get("phases", ()))
        if isinstance(d.get("normalize"), list):
            d["normalize"] = tuple(tuple(x) for x in d["normalize"])
        return cls(**d)

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of every field that changes the run (not the name or description)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        blob = json.dumps(_jsonable(d), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_tricks(self, *uses: TrickUse, transforms: tuple[TrickUse, ...] = ()) -> Recipe:
        """This recipe with extra callbacks (and transforms) appended."""
        return replace(self, callbacks=self.callbacks + tuple(uses), transforms=self.transforms + tuple(transforms))


def _params(x: Any) -> Params:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in x)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "__dataclass_fields__"):
        return {f.name: _jsonable(getattr(x, f.name)) for f in fields(x) if f.compare}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, float):
        return repr(x)  # exact and stable across platforms
    return x


@dataclass(frozen=True)
class Profile:
    """How a suite scales recipes to the machine: a class-balanced training subset, a test subset, fewer epochs."""

    name: str
    train_subset: float | int | None = None  # fraction (<= 1) or image count; drawn per seed
    test_subset: int | None = None  # first-k class-balanced test images, the same for every seed
    epoch_scale: float = 1.0  # each phase keeps max(1, round(epochs * scale)) epochs
    description: str = ""

    def scale(self, recipe: Recipe) -> Recipe:
        """The recipe as this profile trains it (epochs scaled; data subsets are applied by `run`)."""
        if self.epoch_scale == 1.0:
            return recipe
        phases = tuple(replace(p, epochs=max(1, round(p.epochs * self.epoch_scale))) for p in recipe.phases)
        return replace(recipe, phases=phases)


PROFILES: dict[str, Profile] = {
    "paper": Profile("paper", description="the published recipes exactly: full data, published epochs"),
    "default": Profile("default", train_subset=0.2, test_subset=None, epoch_scale=1.0,
                       description="10,000 training images (class-balanced, per seed), full test set, published epochs"),
    "smoke": Profile("smoke", train_subset=2000, test_subset=2000, epoch_scale=0.2,
                     description="2,000 training and 2,000 test images, a fifth of the epochs: checks the path, "
                                 "decides only huge effects"),
}


@dataclass
class RunResult:
    """Everything one (recipe, seed, profile) run produced, with its provenance."""

    recipe_key: str
    recipe_name: str
    seed: int
    profile: str
    code_version: str
    acc: float  # final test accuracy in [0, 1]
    loss: float  # final test loss
    acc_per_epoch: list[float]
    loss_per_epoch: list[float]
    train_loss_per_epoch: list[float]
    params_used: int | None  # parameters the forward pass uses
    wall_s: float
    img_per_s: float  # training images per second
    device: str
    threads: int
    versions: dict[str, str]
    dataset: str  # which copy of CIFAR-10 (source description and content digest)
    diverged: bool = False
    note: str = ""  # why a run diverged, or anything else worth keeping

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        return cls(**json.loads(text))
