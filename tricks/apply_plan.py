"""What `python -m tricks.apply` adds to a plan of its own accord: the parameters that put a trick in the use it is
made for, and the one line that compares the two arms of a plan that trains both without judging them.

BnFreeze freezes batch-norm statistics; frozen from the first step of a fresh model they are their initial values
(doc 003 freezes those of a trained network). Given as `--cb BnFreeze`, it gets `start_epoch` at half the recipe's
epochs: the first half learns the statistics, the second trains with them fixed. An explicit
`BnFreeze:start_epoch=N` is kept as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tricks.recipe import Recipe, TrickUse, get_profile, kw


def _bnfreeze(recipe: Recipe, params: dict[str, Any], profile: str) -> tuple[dict[str, Any], str]:
    from tricks.apply import _bn_freeze_acts, model_of

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


def paired_line(outcomes: Sequence[Any], trick_name: str) -> str:
    """One line: the mean of A − B over the seeds both arms ran, in points, for a plan that does not judge them."""
    acc: dict[tuple[str, int], float] = {(o.arm, o.result.seed): o.result.acc for o in outcomes
                                         if not o.result.diverged and o.result.acc is not None}
    seeds = sorted(s for arm, s in acc if arm == "trick" and ("baseline", s) in acc)
    if not seeds:
        return "A − B not computed: no seed has both arms"
    d = sum(acc[("trick", s)] - acc[("baseline", s)] for s in seeds) / len(seeds)
    a = sum(acc[("trick", s)] for s in seeds) / len(seeds)
    b = sum(acc[("baseline", s)] for s in seeds) / len(seeds)
    n = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {', '.join(map(str, seeds))}"
    return (f"with {trick_name}: {100 * a:.2f} %, without: {100 * b:.2f} %, A − B = {100 * d:+.2f} pp ({n}); "
            f"no verdict: --compare judges it over paired seeds")
