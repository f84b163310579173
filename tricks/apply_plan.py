"""The plan of one `python -m tricks.apply` invocation: the recipe it trains (named, read from a JSON file, or chosen
for the tricks), the tricks added where their kind puts it, the epochs, batch size and learning rate it was given,
the seeds and the profile; and what the command line adds to a plan of its own accord.

Without `--recipe`, a trick runs on a recipe it acts on: the first of its `TRICK_RECIPES` candidates whose model it
changes (BnFreeze needs BatchNorm layers, a BN placement transform a network without them), else doc 001's baseline.

A trick given without some parameter may get the one that puts it in the use it is made for (`TRICK_DEFAULTS`).
BnFreeze freezes batch-norm statistics; frozen from the first step of a fresh model they are their initial values
(doc 003 freezes those of a trained network). Given as `--cb BnFreeze`, it gets `start_epoch` at half the recipe's
epochs: the first half learns the statistics, the second trains with them fixed. An explicit
`BnFreeze:start_epoch=N` is kept as given.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tricks.recipe import Recipe, TrickUse, get_profile, kw
from tricks.recipe_check import check_recipe
from tricks.registry import TrickError

DEFAULT_RECIPE = "pal2021b/baseline"
# candidate recipes of a trick, in order of preference; the first one the trick acts on is its default
TRICK_RECIPES: dict[str, tuple[str, ...]] = {
    # doc 001's CNN with BatchNorm under Adam 1e-3 (BnFreeze gets start_epoch at half its epochs: TRICK_DEFAULTS);
    # doc 003's own recipes train at SGD lr 0.1, where BN statistics frozen after the first phase diverge in a few
    # batches (measured on fastai2018/conv_bn_net and fastai2018/bn_before_relu)
    "BnFreeze": ("pal2021b/bn_before_relu", "fastai2018/conv_bn_net", "pal2021b/residual"),
    "bn_before_relu": ("pal2021b/baseline",),  # doc 001's network without BN: the transform gives its BN arm
    "bn_after_relu": ("pal2021b/baseline",),
    "dropout_conv": ("pal2021a/baseline",),  # doc 000, whose claims test dropout
    "dropout_dense": ("pal2021a/baseline",),
    "dropout_both": ("pal2021a/baseline",),
    "kmeans": ("he2016/naive",),  # doc 002's two-layer net, which takes the feature vectors
}
DEFAULT_COMPARE_SEEDS = 3
DEFAULT_DELTA_PP = 1.0  # percentage points: one accuracy point
MIN_DELTA_PP = 0.1  # below what a 10,000-image test set resolves (0.01 pp a image); 0.01 here was the old fraction
RUN_THREADS = 1  # torch threads of every stored run: the claims suite's workers train with one thread each
COMPARE_ALPHA = 0.05


class UsageError(ValueError):
    """A malformed or contradictory command line: the message is one sentence naming the option."""


# ------------------------------------------------------------------------------------------------ recipes


def load_recipe(name_or_path: str) -> Recipe:
    """A named recipe, or one read from a JSON file of `Recipe.to_dict()`; unknown names suggest close ones."""
    from tricks.recipes import RECIPES, get_recipe

    if name_or_path in RECIPES:
        return RECIPES[name_or_path]
    path = Path(name_or_path).expanduser()
    if not (name_or_path.endswith(".json") or path.is_file()):
        return get_recipe(name_or_path)  # ValueError with the closest names
    try:
        recipe = Recipe.from_dict(json.loads(path.read_text()))
    except OSError as e:
        raise UsageError(f"cannot read recipe file {path}: {e.strerror or e}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UsageError(f"recipe file {path} does not hold a Recipe ({type(e).__name__}: {e})") from None
    return recipe if recipe.name else replace(recipe, name=path.stem)


def _bn_freeze_acts(model: Any) -> bool:
    """Whether BnFreeze finds layers to freeze in `model` (asked of the callback itself, so it tracks the library)."""
    from types import SimpleNamespace

    from tricks.callbacks import BnFreeze

    cb = BnFreeze()
    cb.learn = SimpleNamespace(model=model)
    return bool(cb._bn_layers())


# callbacks that act only on some models: name -> (test on the built model, what the model lacks otherwise)
_CALLBACK_NEEDS = {"BnFreeze": (_bn_freeze_acts, "no BatchNorm layer BnFreeze acts on")}


def model_of(recipe: Recipe) -> Any:
    """The recipe's model with its transforms applied; TrickError names a transform that finds nothing to act on."""
    from tricks.catalog import get_trick
    from tricks.models import MODELS, build_model

    kwargs = dict(recipe.model_kwargs)
    if recipe.features and recipe.model in MODELS and "d_in" in inspect.signature(MODELS[recipe.model]).parameters:
        kwargs.setdefault("d_in", 64)  # the real width follows the features; any width shows the structure
    model = build_model(recipe.model, **kwargs)
    for t in recipe.transforms:
        model = get_trick(t.name).build(**dict(t.params))(model)
    return model


def why_not_acting(recipe: Recipe) -> str | None:
    """None when every trick of the recipe acts on its model, else the reason one does not (one clause)."""
    from tricks.models import MODELS

    if recipe.features and (recipe.model not in MODELS
                            or "d_in" not in inspect.signature(MODELS[recipe.model]).parameters):
        return f"its model {recipe.model} takes images, not the {recipe.features} feature vectors"
    try:
        model = model_of(recipe)
    except TrickError as e:
        return " ".join(str(e).split())
    for use in recipe.callbacks:
        need = _CALLBACK_NEEDS.get(use.name)
        if need is not None and not need[0](model):
            return f"its model has {need[1]}"
    return None


def choose_recipe(specs: Sequence[str]) -> tuple[Recipe, str]:
    """The default recipe for these tricks, and a line saying which it is and why: the first candidate of
    `TRICK_RECIPES` (tricks in the order given) that every trick acts on, else DEFAULT_RECIPE."""
    from tricks.catalog import parse_spec

    names = [parse_spec(t)[0] for t in specs]
    if not names:
        return load_recipe(DEFAULT_RECIPE), ""
    candidates = list(dict.fromkeys([r for n in names for r in TRICK_RECIPES.get(n, ())] + [DEFAULT_RECIPE]))
    skipped: list[str] = []
    for name in candidates:
        base = load_recipe(name)
        why = why_not_acting(apply_tricks(base, specs)) if specs else None
        if why is None:
            passed = f" ({'; '.join(skipped)})" if skipped else ""
            return base, f"recipe {name}: chosen for {', '.join(names)}, as --recipe was not given{passed}"
        skipped.append(f"not {name}: {why}")
    return load_recipe(DEFAULT_RECIPE), (f"recipe {DEFAULT_RECIPE}: the default; no candidate recipe suits "
                                         f"{', '.join(names)} ({'; '.join(skipped)})")


def apply_tricks(recipe: Recipe, specs: Sequence[str]) -> Recipe:
    """The recipe with each `NAME[:k=v,...]` trick added where its kind puts it: callbacks, transforms, or features."""
    from tricks.catalog import get_trick, parse_spec

    callbacks: list[TrickUse] = []
    transforms: list[TrickUse] = []
    features: TrickUse | None = None
    seen: set[str] = set()
    for text in specs:
        name, kwargs = parse_spec(text)
        if name in seen:
            raise TrickError(f"trick '{name}' is given twice (--cb {text})")
        seen.add(name)
        trick = get_trick(name)
        if trick.kind == "callback":
            try:  # a callback's own argument checks (a probability above 1, say) are caught here, before any run
                trick.build(**kwargs)
            except TrickError:
                raise
            except (ValueError, TypeError) as e:
                raise TrickError(f"option --cb {text} is invalid: {' '.join(str(e).split())}") from None
        use = TrickUse(name, kw(**kwargs))
        if trick.kind == "callback":
            callbacks.append(use)
        elif trick.kind == "transform":
            transforms.append(use)
        elif features is not None:
            raise TrickError(f"a recipe takes one data trick, and --cb {features.name} and --cb {name} are both one")
        else:
            features = use
    out = recipe.with_tricks(*callbacks, transforms=tuple(transforms))
    if features is not None:
        out = replace(out, features=features.name, features_kwargs=features.params)
    if specs:
        label = "+".join(u.spec for u in (*callbacks, *transforms, *([features] if features else [])))
        out = replace(out, name=f"{recipe.name or recipe.key[:12]}+{label}")
    return out


def rescale_epochs(recipe: Recipe, epochs: int) -> Recipe:
    """The recipe's phases scaled to `epochs` in all: largest-remainder shares, earlier phases first on ties."""
    if epochs < 1:
        raise UsageError(f"--epochs {epochs} is not a positive number of epochs")
    total = recipe.epochs
    shares = [p.epochs * epochs / total for p in recipe.phases]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: epochs - sum(counts)]:
        counts[i] += 1
    phases = tuple(replace(p, epochs=n) for p, n in zip(recipe.phases, counts, strict=True) if n > 0)
    return replace(recipe, phases=phases)


def with_lr(recipe: Recipe, lr: float) -> Recipe:
    """The recipe with every phase's (peak) learning rate set to `lr`."""
    return replace(recipe, phases=tuple(replace(p, lr=lr) for p in recipe.phases))


# ------------------------------------------------------------------------------------------------ defaults


def _bnfreeze(recipe: Recipe, params: dict[str, Any], profile: str) -> tuple[dict[str, Any], str]:
    if "start_epoch" in params or recipe.epochs < 2 or not _bn_freeze_acts(model_of(recipe)):
        return params, ""  # given, nothing to learn first, or nothing to freeze (the callback says so itself)
    start = recipe.epochs // 2
    scaled = get_profile(profile).scale(recipe.with_tricks(TrickUse("BnFreeze", kw(start_epoch=start))))
    k, n = dict(scaled.callbacks[-1].params)["start_epoch"], scaled.epochs
    if k == 0:
        return {**params, "start_epoch": start}, (
            f"BnFreeze:start_epoch={start}: the BN statistics would be learned for half the recipe's epochs, but "
            f"profile {profile} trains {n} epoch{'s' if n != 1 else ''} and scales start_epoch to 0, so they are "
            f"frozen from the first step, at their initial values")
    return {**params, "start_epoch": start}, (
        f"BnFreeze:start_epoch={start}: the BN statistics are learned for the first {k} of {n} epochs under profile "
        f"{profile}, then frozen; BnFreeze:start_epoch=0 freezes them from the first step, at their initial values")


# trick name -> (recipe, parameters given, profile) -> (parameters to use, one line saying what was added, or "")
TRICK_DEFAULTS = {"BnFreeze": _bnfreeze}


def fill_defaults(recipe: Recipe, specs: Sequence[str], profile: str) -> tuple[list[str], list[str]]:
    """`specs` with each trick's plan defaults added for `recipe` (see `TRICK_DEFAULTS`), and a line for each."""
    from tricks.catalog import parse_spec

    out, notes = [], []
    for text in specs:
        name, params = parse_spec(text)
        fill = TRICK_DEFAULTS.get(name)
        if fill is None:
            out.append(text)
            continue
        filled, note = fill(recipe, params, profile)
        out.append(TrickUse(name, kw(**filled)).spec if note else text)
        if note:
            notes.append(note)
    return out, notes


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Plan:
    """What one invocation trains: the recipe with the tricks, the baseline when comparing, seeds, profile."""

    recipe: Recipe
    baseline: Recipe | None
    seeds: tuple[int, ...]
    profile: str
    delta_pp: float  # the margin of --compare in percentage points
    note: str = ""  # which recipe was chosen for the tricks, when --recipe was not given
    compare: bool = True  # judge the arms (--compare); False: a baseline trained only to be shown beside the tricks


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the options against each other and build the recipes they describe."""
    if args.delta is not None and not args.compare:
        raise UsageError("--delta only applies with --compare")
    if args.delta is not None and args.delta >= 100:
        raise UsageError(f"--delta {args.delta:g} must be below 100: it is in percentage points, 1 is one point")
    if args.delta is not None and args.delta < MIN_DELTA_PP:
        raise UsageError(f"--delta {args.delta:g} is in percentage points and below {MIN_DELTA_PP:g} pp, finer than "
                         f"a test set resolves; one point is --delta 1")
    if args.executor != "ray" and (args.ray_address is not None or args.gpus_per_run is not None):
        raise UsageError(f"--{'ray-address' if args.ray_address is not None else 'gpus-per-run'} only applies with "
                         "--executor ray")
    if args.compare and not args.cb:
        raise UsageError("--compare needs at least one --cb trick to compare the recipe against")
    if args.no_baseline and (args.compare or not args.cb):
        raise UsageError("--no-baseline only applies with --cb and without --compare")
    if args.json is not None:
        parent = Path(args.json).expanduser().resolve().parent
        if not parent.is_dir():  # say so now rather than after the training
            raise UsageError(f"--json {args.json}: folder {parent} does not exist")
    note = ""
    if args.recipe is None:
        base, note = choose_recipe(args.cb)
    else:
        base = load_recipe(args.recipe)
    if args.epochs is not None:
        base = rescale_epochs(base, args.epochs)
    if args.bs is not None:
        base = replace(base, bs=args.bs)
    if args.lr is not None:
        base = with_lr(base, args.lr)
    specs, filled = fill_defaults(base, args.cb, get_profile(args.profile).name)
    recipe = apply_tricks(base, specs)
    check_recipe(recipe, f"recipe {args.recipe}" if args.recipe else f"recipe {recipe.name}")
    note = "\n".join(filter(None, [note, *filled]))
    if args.seed is not None:
        seeds: tuple[int, ...] = (args.seed,)
    elif args.seeds is not None:
        seeds = tuple(range(args.seeds))
    else:
        seeds = tuple(range(DEFAULT_COMPARE_SEEDS)) if args.compare else (0,)
    if args.compare and len(seeds) < 2:
        raise UsageError(f"--compare needs at least 2 paired seeds; got {len(seeds)} (use --seeds 2 or more)")
    shown = args.compare or (bool(args.cb) and not args.no_baseline)
    return Plan(recipe, base if shown else None, seeds, get_profile(args.profile).name,
                DEFAULT_DELTA_PP if args.delta is None else args.delta, note, compare=args.compare)


def check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: no Apple MPS device is available here")


def check_model(recipe: Recipe) -> None:
    """Build the recipe's model and transforms once, so an unknown model or option, or a transform with nothing to
    act on, is reported before any data is loaded."""
    model_of(recipe)  # TrickError names the model, the option or the transform
