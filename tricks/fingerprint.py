"""Training fingerprints: what a recipe computes, as numbers, so that runs are keyed by them and not by source bytes.

A recipe's fingerprint is the recipe trained on fixed synthetic data (200 + 40 random 32x32 images with a pattern
per class; a 100-image class-balanced subset drawn by seed, 20 for the heavy recipes; a 20-image curve subset)
through every phase it has, at most two epochs a phase (its callbacks' epoch indices scaled with them, as a profile
scales them), with every transform, callback, optimizer, schedule, data option and feature trick it uses: the
per-epoch training and test losses, and the sums of squares of the initial weights, the trained weights and their
change. On the CPU in double precision, so the numbers agree between machines, thread counts and memory layouts to
about 1e-9, and a change of what training computes moves them by far more.

`tricks/fingerprints.json` (committed) holds each named recipe's numbers and an id. The run store keys a run by that
id (`tricks.recipe.run_version`, which reads the file), so a docstring, a rename or a function moved between
modules retrains nothing, while a change that moves a recipe's numbers is caught by `tests/test_fingerprint.py`,
which recomputes every fingerprint and fails until the file is regenerated (`nox -s fingerprints`); regenerating
gives a new id only to the recipes whose numbers moved beyond float tolerance, so only those retrain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE = Path(__file__).with_name("fingerprints.json")  # read through `tricks.recipe.committed`
N_TRAIN, N_TEST, SUBSET, HEAVY_SUBSET, CURVE, MAX_PHASE_EPOCHS = 200, 40, 100, 20, 20, 2
SEED = 1234
# a data trick's own sizes would dwarf the synthetic set (K-means: 1,600 centroids); its code path runs at these
FEATURES_KWARGS = (("iters", 2), ("n_centroids", 8), ("n_patches", 400))

# The procedure below also runs over an old checkout's `tricks` package (`claims.record.rekey` fingerprints the code
# that trained a run): so it imports what it trains with inside the functions, from the modules of today's layout or,
# where an old checkout lacks them, of the layout before `tricks.recipe` and `tricks.cifar` existed.


def new_id(values: Sequence[float]) -> str:
    """A fresh id for numbers that moved: a short hash of them (4 significant digits, enough to be a label)."""
    blob = json.dumps([f"{v:.4g}" for v in values])
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def synthetic_arrays() -> Any:
    """The fixed synthetic CIFAR-shaped data every fingerprint trains on (uint8 images, 10 classes)."""
    import numpy as np
    import torch

    try:
        from tricks.cifar import CifarArrays
    except ImportError:  # an old checkout (see above)
        from tricks.data import CifarArrays

    rng = np.random.default_rng(SEED)
    y_train = torch.arange(N_TRAIN) % 10
    y_test = torch.arange(N_TEST) % 10
    templates = rng.integers(0, 2, size=(10, 3, 32, 32)) * 150  # a full-contrast pattern per class, under noise,
    # so that gradients are large and the losses and weights move within a few steps

    def images(y: torch.Tensor) -> torch.Tensor:
        noise = rng.integers(0, 106, size=(len(y), 3, 32, 32))
        return torch.from_numpy(templates[y.numpy()] + noise).to(torch.uint8)

    x_train, x_test = images(y_train), images(y_test)
    classes = tuple(f"c{i}" for i in range(10))
    return CifarArrays(x_train, y_train, x_test, y_test, classes=classes, source="synthetic fingerprint data",
                       digest="f" * 64)


def fingerprint_profile(recipe: Any) -> Any:
    """The profile a fingerprint trains `recipe` under: the synthetic subsets and at most two epochs a phase."""
    try:
        from tricks.recipe import Profile
    except ImportError:  # an old checkout (see above)
        from tricks.train import Profile

    longest = max((p.epochs for p in recipe.phases), default=1)
    subset = HEAVY_SUBSET if recipe.heavy else SUBSET  # a full-size ResNet9 step in double precision costs seconds
    return Profile("fingerprint", train_subset=subset, curve_test=CURVE,
                   epoch_scale=min(1.0, MAX_PHASE_EPOCHS / longest), features_kwargs=FEATURES_KWARGS)


def compute(recipe: Any, arrays: Any = None) -> tuple[float, ...]:
    """The recipe's fingerprint numbers: per-epoch training and test losses, then the sums of squares of the initial
    weights, the trained weights and the change between them."""
    import torch
    from fastai.callback.core import Callback

    from tricks.train import run

    class Weights(Callback):  # the weights' sums of squares at the start and end, and of the change between them
        order, start = 99, None

        def before_fit(self) -> None:
            if self.start is None:
                self.start = [p.detach().double().clone() for p in self.learn.model.parameters()]

        def after_fit(self) -> None:
            end = [p.detach().double() for p in self.learn.model.parameters()]
            self.sums = (_sq(self.start), _sq(end), _sq(e - s for s, e in zip(self.start, end, strict=True)))

    class Float64(Callback):  # train in double precision: float rounding (kernels, memory layout) then moves the
        order = -99            # numbers by ~1e-12, far below anything a code change does

        def before_fit(self) -> None:
            self.learn.model.double()  # the same Parameter objects, so the optimizer keeps them

        def before_batch(self) -> None:
            self.learn.xb = tuple(x.double() if x.is_floating_point() else x for x in self.learn.xb)
            smooth = getattr(getattr(self.learn, "recorder", None), "smooth_loss", None)
            if isinstance(getattr(smooth, "val", None), torch.Tensor):  # reset to a float32 zero at each fit
                smooth.val = smooth.val.double()

        def after_loss(self) -> None:  # fastai's cross-entropy answers in float32 (only its value is rounded)
            self.learn.loss_grad = self.learn.loss_grad.double()
            self.learn.loss = self.learn.loss.double()

    cb = Weights()
    res = run(recipe, 0, fingerprint_profile(recipe), device="cpu", arrays=arrays or synthetic_arrays(),
              extra_cbs=(Float64(), cb))
    sums = getattr(cb, "sums", (float("nan"),) * 3)
    return tuple(float(v) for v in (*res.train_loss_per_epoch, *res.loss_per_epoch, *sums))


def _sq(tensors: Iterable[Any]) -> float:
    return float(sum(float(t.pow(2).sum()) for t in tensors))


# ------------------------------------------------------------------------------------------------ the committed file

def recipes_to_fingerprint() -> dict[str, Any]:
    """Every named recipe (scaled variants included), by key: what the suite and the command line can train."""
    from tricks.recipes import RECIPES

    out: dict[str, Any] = {}
    for name in sorted(RECIPES):
        out.setdefault(RECIPES[name].key, RECIPES[name])
    return out


@dataclass
class Check:
    """Recomputed fingerprints against the committed file."""

    moved: dict[str, tuple[str, tuple[float, ...], tuple[float, ...]]]  # key -> (name, committed, now)
    missing: dict[str, str]  # key -> name: recipes the file lacks
    stale: dict[str, str]  # key -> name: file entries no recipe has any more
    now: dict[str, tuple[str, tuple[float, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.moved or self.missing or self.stale)


def check(recipes: dict[str, Any] | None = None, path: Path = FILE) -> Check:
    """Recompute the fingerprint of every recipe and compare with the committed file."""
    from tricks.recipe import committed

    recipes = recipes_to_fingerprint() if recipes is None else recipes
    have = committed(path)
    arrays = synthetic_arrays()
    now = {k: (r.name, compute(r, arrays)) for k, r in recipes.items()}
    moved = {k: (name, have[k].values, vals) for k, (name, vals) in now.items()
             if k in have and not have[k].matches(vals)}
    missing = {k: name for k, (name, _) in now.items() if k not in have}
    stale = {k: fp.name for k, fp in have.items() if k not in now}
    return Check(moved, missing, stale, now)


def write(result: Check, path: Path = FILE) -> list[str]:
    """Write the file from a check: unmoved recipes keep their id (their stored runs stay valid), moved and new ones
    get a fresh id, stale entries go. Returns the names of the recipes whose id changed or is new."""
    from tricks.recipe import ATOL, RTOL, _load, committed

    have = committed(path)
    recipes, changed = {}, []
    for k, (name, vals) in sorted(result.now.items(), key=lambda kv: kv[1][0]):
        keep = k in have and have[k].matches(vals)
        fid = have[k].id if keep else new_id(vals)
        if not keep:
            changed.append(name)
        # the committed numbers stay those the id was given for, so tolerance is always measured from them
        values = have[k].values if keep else vals
        recipes[k] = {"name": name, "id": fid, "values": [float(f"{v:.9g}") for v in values]}
    about = ("Training fingerprints of the named recipes (tricks/fingerprint.py): runs are stored under these ids. "
             "Regenerate with `nox -s fingerprints` when tests/test_fingerprint.py says a recipe's numbers moved.")
    text = json.dumps({"about": about, "rtol": RTOL, "atol": ATOL, "recipes": recipes}, separators=(",", ":"),
                      sort_keys=True)
    from tricks.plain import write_atomic  # here, not at the top: `rekey` runs this module over old checkouts

    write_atomic(Path(path), text + "\n")
    _load.cache_clear()
    return changed


def describe(result: Check) -> Iterable[str]:
    for k, (name, old, new) in result.moved.items():
        worst = max((abs(a - b) / max(abs(a), 1e-12) for a, b in zip(old, new, strict=False)), default=float("inf"))
        yield f"moved: {name} ({k[:12]}): largest relative change {worst:.2g}" + (
            f", {len(old)} -> {len(new)} numbers" if len(old) != len(new) else "")
    for k, name in result.missing.items():
        yield f"missing: {name} ({k[:12]}) has no committed fingerprint"
    for k, name in result.stale.items():
        yield f"stale: {name} ({k[:12]}) is in the file but no recipe has that key any more"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import time

    p = argparse.ArgumentParser(prog="python -m tricks.fingerprint", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true",
                   help="regenerate tricks/fingerprints.json (moved recipes get new ids)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result = check()
    for line in describe(result):
        print(line)
    print(f"{len(result.now)} recipes fingerprinted in {time.perf_counter() - t0:.0f} s")
    if args.write:
        changed = write(result)
        print(f"wrote {FILE.name}: {len(changed)} new or moved id(s){': ' + ', '.join(changed) if changed else ''}")
        return 0
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
