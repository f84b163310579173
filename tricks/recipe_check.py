"""Checks on a recipe read from a file or changed on the command line, before anything trains: the types and ranges
of its fields, a known loss, optimizer options the optimizer takes, and bounds on epochs and batch size that no
published recipe comes near (a typo of 10^12 epochs would otherwise run until killed)."""

from __future__ import annotations

import inspect
import math
from typing import Any

MAX_EPOCHS = 10_000  # in all; the longest published recipe here trains 350
MAX_BS = 1 << 16  # more than CIFAR-10's 50,000 training images
LOSSES = ("ce", "nll")


class RecipeError(ValueError):
    """A recipe field of the wrong type or out of range: one sentence naming the field."""


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def optimizer_options(opt: str) -> set[str] | None:
    """The keyword options optimizer `opt` takes (besides params and lr), or None for an unknown optimizer."""
    from tricks.train import _optimizers

    fn = _optimizers().get(opt)
    if fn is None:
        return None
    return {n for n in inspect.signature(fn).parameters if n not in ("params", "lr", "cbs")}


def check_recipe(recipe: Any, where: str = "the recipe") -> None:
    """RecipeError naming the first field of `recipe` of the wrong type or out of range."""
    if not isinstance(recipe.model, str):
        raise RecipeError(f"{where}: model must be a name (a string), not {recipe.model!r}")
    if not _whole(recipe.bs):
        raise RecipeError(f"{where}: bs must be a whole number, not {recipe.bs!r}")
    if not 1 <= recipe.bs <= MAX_BS:
        raise RecipeError(f"{where}: bs must be between 1 and {MAX_BS:,}, not {recipe.bs}")
    if not isinstance(recipe.loss, str) or recipe.loss not in LOSSES:
        raise RecipeError(f"{where}: unknown loss {recipe.loss!r} (known: {', '.join(LOSSES)})".replace('"', "'"))
    if not isinstance(recipe.opt, str):
        raise RecipeError(f"{where}: opt must be an optimizer name, not {recipe.opt!r}")
    known = optimizer_options(recipe.opt)
    if known is None:
        from tricks.train import _optimizers

        raise RecipeError(f"{where}: unknown optimizer '{recipe.opt}' (known: {', '.join(_optimizers())})")
    for k, _v in recipe.opt_kwargs:
        if k not in known:
            raise RecipeError(f"{where}: optimizer {recipe.opt} takes no option '{k}' (it takes "
                              f"{', '.join(sorted(known))})")
    if not recipe.phases:
        raise RecipeError(f"{where} has no phases: nothing would train")
    for i, p in enumerate(recipe.phases, 1):
        if not _whole(p.epochs) or p.epochs < 1:
            raise RecipeError(f"{where}: phase {i}'s epochs must be a whole number of at least 1, not {p.epochs!r}")
        if isinstance(p.lr, bool) or not isinstance(p.lr, (int, float)) or not (math.isfinite(p.lr) and p.lr > 0):
            raise RecipeError(f"{where}: phase {i}'s lr must be a positive number, not {p.lr!r}")
        if not isinstance(p.schedule, str):
            raise RecipeError(f"{where}: phase {i}'s schedule must be a name, not {p.schedule!r}")
    total = sum(p.epochs for p in recipe.phases)
    if total > MAX_EPOCHS:
        raise RecipeError(f"{where} trains {total:,} epochs in all, more than the {MAX_EPOCHS:,} allowed")
