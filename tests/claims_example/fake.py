"""A fake run function for engine tests: accuracy is a deterministic function of (recipe, seed), no training.

A fake recipe is `Recipe("fake", kw(effect=..., ...))`: its accuracy is 0.60 + `effect` + a per-seed shift shared by
every recipe (common random numbers, as in real paired runs) + a small per-(recipe, seed) jitter. Options in
`model_kwargs`: `effect` (accuracy points as a fraction), `jitter` (SD of the per-run noise), `sleep` (seconds),
`params` (parameters used), `fail_seeds` (raise on these seeds), `die_seeds` (kill the worker process on these),
`diverge_seeds` (return a diverged run, accuracy NaN).
Every call appends a line to the file named by `$TRICKS_FAKE_RUN_LOG`, so tests can count what was trained, and
sleeps `$TRICKS_FAKE_RUN_SLEEP` seconds more (a pause that leaves the recipe's key alone).
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from tricks.recipe import CODE_VERSION, Recipe, RunResult, kw

LOG_ENV = "TRICKS_FAKE_RUN_LOG"
SLEEP_ENV = "TRICKS_FAKE_RUN_SLEEP"


def fake_recipe(name: str, effect: float = 0.0, **options) -> Recipe:
    """A recipe the fake run function understands; `name` keeps recipes with equal options apart."""
    return Recipe("fake", kw(arm=name, effect=effect, **options), name=f"fake/{name}")


def _unit_noise(*parts: object) -> float:
    """A standard normal draw fixed by `parts`, identical in every process."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little")).gauss(0.0, 1.0)


def fake_run(recipe: Recipe, seed: int, profile="default", *, source: str | None = None,
             device: str | None = None) -> RunResult:
    """A RunResult whose accuracy is a deterministic function of (recipe, seed), after sleeping `sleep` seconds."""
    opts = dict(recipe.model_kwargs)
    profile_name = getattr(profile, "name", profile)
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:  # one short O_APPEND write per call: lines from many processes do not interleave
            f.write(f"{recipe.key} {seed} {profile_name} {os.getpid()}\n")
    if seed in opts.get("fail_seeds", ()):
        raise RuntimeError(f"fake failure on seed {seed}")
    if seed in opts.get("die_seeds", ()):
        os._exit(3)
    time.sleep(float(opts.get("sleep", 0.0)) + float(os.environ.get(SLEEP_ENV, "0")))
    acc = 0.60 + float(opts.get("effect", 0.0)) + 0.02 * _unit_noise("seed", seed)
    acc += float(opts.get("jitter", 0.003)) * _unit_noise(recipe.key, seed)
    diverged = seed in opts.get("diverge_seeds", ())
    if diverged:
        acc = float("nan")
    return RunResult(
        recipe_key=recipe.key, recipe_name=recipe.name, seed=seed, profile=profile_name, code_version=CODE_VERSION,
        acc=acc, loss=1.0 - acc, acc_per_epoch=[acc - 0.05, acc], loss_per_epoch=[1.05 - acc, 1.0 - acc],
        train_loss_per_epoch=[1.2, 1.0], params_used=int(opts.get("params", 1000)),
        wall_s=float(opts.get("sleep", 0.0)) + 0.5, img_per_s=1000.0, device="cpu:fake", threads=1,
        versions={"fake": "1"}, dataset=source or "synthetic (fake run)", diverged=diverged,
        note="fake divergence: NaN loss" if diverged else "",
    )


def torch_threads_run(recipe: Recipe, seed: int, profile="default", **kwargs) -> RunResult:
    """`fake_run` that imports torch and records its intra-op thread count, to check what workers run with."""
    import torch

    res = fake_run(recipe, seed, profile, **kwargs)
    res.threads = torch.get_num_threads()
    return res
