"""`python -m tricks.apply`: train a recipe with extra tricks, or compare it with and without them over paired seeds.

    python -m tricks.apply --list                                  # every trick and named recipe
    python -m tricks.apply --cb BnFreeze                           # a recipe with BatchNorm, with and without BnFreeze
    python -m tricks.apply --cb dropout_conv:p=0.3 --compare       # with vs without over seeds 0-2, and a verdict
    python -m tricks.apply --learner mypkg.exp:make_learner --cb BnFreeze --compare   # your own Learner

Without `--recipe`, a trick runs on a recipe it acts on: the first of its `TRICK_RECIPES` candidates whose model it
changes (BnFreeze needs BatchNorm layers, a BN placement transform a network without them), else doc 001's baseline.
The output names the recipe chosen. A trick given without some parameter may get the one that puts it in the use it
is made for, said in the output (`tricks.apply_plan`: BnFreeze freezes statistics learned in the first half). With
`--cb` and without `--compare`, the same recipe without the tricks trains on the same seed too (`--no-baseline` skips
it), and one line gives both accuracies and their difference, without a verdict.

Runs go through `tricks.train.run` and the claims suite's run store (`claims.store.RunStore`), keyed by (recipe key,
seed, profile, run version: the recipe's training fingerprint and the dataset copy): a run trained here is reused by
the suite and the other way round, and a run found in the store is not trained again. A run another invocation (or
suite) holds the lease on is waited for, not trained a second time. `--json` is checked before anything trains: it
never overwrites the run store, the dataset, the recipe file or any file it did not write itself, and it is written
whole (a temporary file renamed into place).

`--recipe` takes a named recipe or a JSON file holding `Recipe.to_dict()` (how the tests train a tiny recipe).
`--epochs N` rescales the recipe's schedule to N epochs in all: each phase gets its share of N by largest remainder
(ties go to the earlier phase) and a phase whose share rounds to 0 is dropped. The profile then scales the epochs as
it does for the claims suite (`smoke` keeps a tenth, at least one a phase).

Every run trains with one torch thread, as the claims suite's workers do: the thread count changes a run's numbers
(float sums split differently) and the store's key does not hold it, so a run trained here under another count could
be paired with the suite's. `--threads N` other than 1 therefore trains outside the run store. A stored run made on
another device or thread count is not taken either: it is trained again here (and not stored, its key being taken).
Deterministic-algorithm settings are torch's defaults everywhere (nothing in tricks or claims changes them).

Units: every accuracy a person or a program reads from here is in percent and every difference or margin in
percentage points (pp), `--delta` included; JSON fields say theirs (`acc_pct`, `mean_pp`, `delta_pp`).

Exit codes (docs/exit-codes.md, shared with the claims suite): 0 done, 1 a run diverged (it is kept in the store and
the JSON) or --compare's verdict is INVALID, 2 a usage or data error (one sentence on stderr; a full disk while
storing prints the finished runs first), 130 interrupted (finished runs stay in the store).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import inspect
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tricks.recipe import PROFILES, Recipe, RunResult, RunVersions, TrickUse, get_profile, kw
from tricks.recipe_check import MAX_EPOCHS, check_recipe
from tricks.registry import TrickError

DEFAULT_RECIPE = "pal2021b/baseline"
# candidate recipes of a trick, in order of preference; the first one the trick acts on is its default
TRICK_RECIPES: dict[str, tuple[str, ...]] = {
    # doc 001's CNN with BatchNorm under Adam 1e-3 (BnFreeze gets start_epoch at half its epochs: tricks.apply_plan);
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
JSON_SCHEMA_VERSION = 2  # 2: accuracies in percent, differences in pp, unit-named fields
JSON_SCHEMA = f"tricks.apply/{JSON_SCHEMA_VERSION}"
JSON_UNITS = {"*_pct": "accuracy in percent (0-100)", "*_pp": "difference or margin in percentage points",
              "loss": "cross-entropy, nats", "p_a_gt_b": "share of seeds with A > B (0-1)"}

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    from tricks.catalog import parse_spec  # the trick modules (torch): not for --help

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


# ------------------------------------------------------------------------------------------------ the command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage block + message would be several lines; keep it to one
        raise UsageError(f"{message} (see python -m tricks.apply --help)")


def _positive(kind: type, what: str):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value

    return convert


MAX_SEED = 2 ** 63 - 1  # the run store keeps seeds as SQLite INTEGERs
MAX_SEEDS = 1000  # --seeds: more paired seeds than any claim's looks use (12); a typo of 10^6 would run for weeks


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"'{text}' is not a seed (a whole number from 0 to {MAX_SEED})")
    return value


def _at_most(convert, flag: str, most: int):
    def check(text: str):
        value = convert(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"{flag} {text} is more than {most:,}")
        return value

    return check


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m tricks.apply`."""
    p = _Parser(prog="python -m tricks.apply", description=__doc__.split("\n")[0].split(": ", 1)[1],
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="exit codes: 0 done, 1 a run diverged or the comparison is INVALID, 2 usage or data error, "
                       "130 interrupted")
    p.add_argument("--list", action="store_true", help="list every trick and named recipe, then exit")
    p.add_argument("--cb", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="a trick to add (repeatable): callbacks, model transforms and data tricks alike")
    p.add_argument("--learner", default=None, metavar="MODULE:FUNCTION",
                   help="train your own fastai Learner, built by this factory, instead of a recipe "
                        "(docs/own-learner.md)")
    p.add_argument("--recipe", default=None, metavar="NAME|FILE.json",
                   help="named recipe, or a JSON file of Recipe.to_dict() (default: one the tricks act on, named in "
                        f"the output; {DEFAULT_RECIPE} without tricks)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="CIFAR-10 source: class folders, an archive, or cifar-10-batches-py (default: $TRICKS_DATA, "
                        "else fastai's download)")
    p.add_argument("--epochs", type=_at_most(_positive(int, "a positive number of epochs"), "--epochs",
                                             MAX_EPOCHS), default=None, metavar="N",
                   help="scale the recipe's phases to N epochs in all, before the profile scales them")
    p.add_argument("--bs", type=_positive(int, "a positive batch size"), default=None, metavar="N",
                   help="batch size")
    p.add_argument("--lr", type=_positive(float, "a positive learning rate"), default=None, metavar="LR",
                   help="learning rate of every phase (the peak for one-cycle and cosine phases)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_seed, default=None, metavar="S", help="train this one seed (default: 0)")
    seeds.add_argument("--seeds", type=_at_most(_positive(int, "a positive number of seeds"), "--seeds",
                                                 MAX_SEEDS), default=None, metavar="N",
                       help=f"train seeds 0..N-1 (default with --compare: {DEFAULT_COMPARE_SEEDS})")
    p.add_argument("--profile", choices=list(PROFILES), default="default",
                   help="how the recipe is scaled to this machine, as in the claims suite (default: default)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    p.add_argument("--threads", type=_positive(int, "a positive thread count"), default=None, metavar="N",
                   help=f"torch intra-op threads (default: {RUN_THREADS}, as in the claims suite; another count "
                        "trains outside the run store, since it changes the numbers)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the runs, the recipe, the options and the verdict as JSON")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--store", default=None, metavar="PATH",
                       help="run store SQLite file (default: $TRICKS_STORE, else the user cache)")
    store.add_argument("--no-store", action="store_true", help="neither read nor write the run store")
    p.add_argument("--compare", action="store_true",
                   help="train the recipe with and without the tricks over paired seeds and judge A > B")
    p.add_argument("--delta", type=_positive(float, "a positive accuracy margin"), default=None, metavar="PP",
                   help=f"the margin of --compare in percentage points (default: {DEFAULT_DELTA_PP:g}, one point; "
                        f"at least {MIN_DELTA_PP:g})")
    p.add_argument("--no-baseline", action="store_true",
                   help="with --cb and without --compare: do not also train the recipe without the tricks")
    p.add_argument("--quiet", action="store_true", help="no progress bar, epoch or status lines")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: train here, one run after another (default); ray: the missing runs as Ray tasks, "
                        "one CPU each (pip install -e '.[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the cluster's head (host:port, or auto; default: Ray's own search)")
    p.add_argument("--gpus-per-run", type=_positive(float, "a positive share of a GPU"), default=None, metavar="F",
                   help="with --executor ray: the share of a GPU each run asks for (0.25: four runs per GPU)")
    return p


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
    from tricks.apply_plan import fill_defaults

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


def _check_device(device: str | None) -> None:
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


def _check_model(recipe: Recipe) -> None:
    """Build the recipe's model and transforms once, so an unknown model or option, or a transform with nothing to
    act on, is reported before any data is loaded."""
    model_of(recipe)  # TrickError names the model, the option or the transform


# ------------------------------------------------------------------------------------------------ progress


def _rich_progress_class():
    """RichProgress is a fastai Callback; fastai is imported only when something trains."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class RichProgress(Callback):
        """Drives one task of a rich Progress through a run: epoch, batch, smoothed training loss, ETA."""

        order = Recorder.order + 1  # after the Recorder has smoothed this batch's loss

        def __init__(self, bar: Any, label: str, total_epochs: int):
            self._bar, self._label, self._total_epochs = bar, label, total_epochs
            self._task, self._epochs_done = None, 0

        def before_fit(self) -> None:
            if self._task is None:  # one task over every phase (each phase is its own fit)
                try:
                    total = self._total_epochs * len(self.learn.dls.train)
                except TypeError:  # a loader without a length: an indeterminate bar
                    total = None
                self._task = self._bar.add_task(self._describe(), total=total, loss="")

        def after_batch(self) -> None:
            if self.learn.training:
                self._bar.update(self._task, advance=1, loss=f"loss {float(self.learn.smooth_loss):.3f}")

        def after_epoch(self) -> None:
            self._epochs_done += 1
            self._bar.update(self._task, description=self._describe())

        def _describe(self) -> str:
            shown = min(self._epochs_done + 1, self._total_epochs)
            return f"{self._label} epoch {shown}/{self._total_epochs}"

    return RichProgress


def progress_bar(console: Any) -> Any:
    """A rich Progress with epoch, bar, batches, loss, elapsed time and ETA columns."""
    from rich import progress as rp

    return rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                       rp.TextColumn("{task.fields[loss]}"), rp.TimeElapsedColumn(), rp.TextColumn("ETA"),
                       rp.TimeRemainingColumn(), console=console)


def rich_progress(bar: Any, label: str, total_epochs: int) -> Any:
    """A fastai Callback that shows one run's batches on `bar` (a rich Progress), for `run(extra_cbs=...)`."""
    return _rich_progress_class()(bar, label, total_epochs)


def epoch_lines(say: Any, label: str, total_epochs: int) -> Any:
    """A fastai Callback saying one plain line per epoch (off a terminal, where no bar is drawn): losses, accuracy."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class EpochLines(Callback):
        order = Recorder.order + 1  # after the Recorder has logged this epoch's values

        def __init__(self):
            self.done = 0

        def after_epoch(self) -> None:
            self.done += 1
            vals = self.learn.recorder.values[-1] if self.learn.recorder.values else []
            names = ("train loss", "test loss", "test accuracy")  # the Recorder's columns: losses, then the metric
            shown = [f"{n} {_num(float(v) * 100, '.2f')} %" if n == "test accuracy" else f"{n} {_num(float(v), '.4f')}"
                     for n, v in zip(names, vals, strict=False)]
            say(f"{label} epoch {self.done}/{total_epochs}: " + ", ".join(shown))

    return EpochLines()


# ------------------------------------------------------------------------------------------------ training


@dataclass
class Outcome:
    """One run of the invocation: which arm, its RunResult, whether it came from the store."""

    arm: str  # "trick" (the recipe with the tricks) or "baseline"
    recipe: Recipe
    result: RunResult
    cached: bool


@dataclass
class Session:
    """Everything one invocation did so far: what --json writes, also after Ctrl-C."""

    plan: Plan
    args: argparse.Namespace
    outcomes: list[Outcome] = field(default_factory=list)
    decision: Any = None
    status: str = "running"


def _jobs(plan: Plan) -> list[tuple[str, Recipe, int]]:
    arms = [("trick", plan.recipe)] + ([("baseline", plan.baseline)] if plan.baseline is not None else [])
    return [(arm, r, s) for s in plan.seeds for arm, r in arms]  # seed by seed: an interruption leaves whole pairs


def run_device(device: str | None) -> str:
    """The name `RunResult.device` will carry for a run on `device` (None: cuda when available, as `run` picks)."""
    import torch

    from tricks.train import device_name

    return device_name(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def mismatch(cached: RunResult, device: str, threads: int) -> str | None:
    """Why a stored run cannot be paired with runs trained here (another device or thread count), or None."""
    if (cached.device, cached.threads) == (device, threads):
        return None
    return (f"the stored run was trained on {cached.device} with {cached.threads} thread(s), runs here on {device} "
            f"with {threads}")


def train(session: Session, store: Any, *, source: str | None, device: str | None, console: Any,
          show_progress: bool, quiet: bool, threads: int = RUN_THREADS) -> None:
    """Train (or take from the store) every run of the plan, storing each as soon as it finishes; a stored run made
    on another device or thread count is trained again (and not stored: its key is taken)."""
    from tricks.cifar import load_cifar10
    from tricks.train import run

    plan = session.plan
    here = run_device(device)
    prof = get_profile(plan.profile)
    # loaded even when every run is cached: a bad --data is reported, and the store's key names this copy
    arrays = load_cifar10(source)
    version = RunVersions(arrays.digest)  # recipe key -> its store version (training fingerprint + data)
    bar = progress_bar(console) if show_progress else None

    def say(text: str) -> None:
        if not quiet:
            console.print(text, markup=False, highlight=False)

    try:
        if bar is not None:
            bar.start()
        for arm, recipe, seed in _jobs(plan):
            label = f"{'B' if arm == 'baseline' else 'A'} seed {seed}" if plan.baseline else f"seed {seed}"
            cached = store.get(recipe.key, seed, plan.profile, version(recipe.key)) if store is not None else None
            unfit = mismatch(cached, here, threads) if cached is not None else None
            if cached is not None and unfit is None:
                session.outcomes.append(Outcome(arm, recipe, cached, True))
                say(f"{label}: cached (run store {store.path})")
                continue
            if unfit is not None:
                say(f"{label}: not taken from the run store ({unfit}); trained again here and not stored")
            epochs = prof.scale(recipe).epochs
            if bar is not None:
                extra: tuple = (rich_progress(bar, label, epochs),)
            else:
                extra = () if quiet else (epoch_lines(say, label, epochs),)
            leased = store is not None and unfit is None
            if leased:  # another invocation or suite training this run: wait for its result, as the suite does
                waiting = f"{label}: waiting for the run another process is training (run store {store.path})"
                theirs = store.claim_or_wait(recipe.key, seed, plan.profile, version(recipe.key),
                                             on_wait=lambda text=waiting: say(text))
                unfit = mismatch(theirs, here, threads) if theirs is not None else None
                if theirs is not None and unfit is None:
                    session.outcomes.append(Outcome(arm, recipe, theirs, True))
                    say(f"{label}: cached (trained by another process, run store {store.path})")
                    continue
                if unfit is not None:  # their run cannot be paired with ours: trained here, outside the store
                    leased = False
                    say(f"{label}: not taken from the run store ({unfit}); trained again here and not stored")
            try:
                res = run(recipe, seed, plan.profile, source=source, device=device, arrays=arrays, extra_cbs=extra)
                session.outcomes.append(Outcome(arm, recipe, res, False))
                if leased:
                    store.put(res, recipe)  # StoreError on a full disk: the run above is still shown
            finally:
                if leased:  # put() drops the lease of a stored run; this frees one that raised or was interrupted
                    store.release(recipe.key, seed, plan.profile, version(recipe.key))
            if bar is None:
                say(f"{label}: trained, accuracy {_num(res.acc * 100, '.2f')} % in {res.wall_s:.1f} s")
    finally:
        if bar is not None:
            bar.stop()


def ray_executor(args: argparse.Namespace) -> Any:
    """--executor ray: a RayExecutor (RayError, a usage error, when Ray is missing or the cluster out of reach)."""
    from claims.executors.ray import RayExecutor, check_gpus_per_run, import_ray

    import_ray()
    check_gpus_per_run(args.gpus_per_run)
    return RayExecutor(args.ray_address, source=args.data, device=args.device, gpus_per_run=args.gpus_per_run)


def train_on(executor: Any, session: Session, store: Any, *, source: str | None, console: Any, quiet: bool) -> None:
    """`train` through an executor: cached runs from the store, the rest trained together, each stored as it ends."""
    from claims.executors.base import Job
    from tricks.cifar import load_cifar10

    plan = session.plan
    arrays = load_cifar10(source)
    version = RunVersions(arrays.digest)  # recipe key -> its store version (training fingerprint + data)
    jobs, arms, leased, theirs = [], {}, [], []
    for arm, recipe, seed in _jobs(plan):
        cached = store.get(recipe.key, seed, plan.profile, version(recipe.key)) if store is not None else None
        if cached is not None:
            session.outcomes.append(Outcome(arm, recipe, cached, True))
            continue
        if store is not None:
            if not store.claim_run(recipe.key, seed, plan.profile, version(recipe.key)):
                theirs.append((arm, recipe, seed))  # another live process trains it: wait for its result below
                continue
            leased.append((recipe.key, seed))
        jobs.append(Job(recipe, seed, plan.profile))
        arms[(recipe.key, seed)] = arm
    failures = []

    def on_done(job: Any, out: Any) -> None:
        if not isinstance(out, RunResult):
            failures.append(out)
            return
        if store is not None:
            store.put(out, job.recipe)
        session.outcomes.append(Outcome(arms[(job.recipe.key, job.seed)], job.recipe, out, False))
        if not quiet:
            console.print(f"{job.recipe.name} seed {job.seed}: trained, accuracy {_num(out.acc * 100, '.2f')} % in "
                          f"{out.wall_s:.1f} s", markup=False, highlight=False)

    try:
        if jobs and not quiet:
            console.print(f"{len(jobs)} run(s) to train as Ray tasks on {executor.workers} slot(s)", markup=False)
        executor.map_runs(jobs, on_done)
        again = []  # runs another live process held: its result, or its stale lease taken over and trained here
        for arm, recipe, seed in theirs:
            waiting = f"{recipe.name} seed {seed}: waiting for the run another process is training"
            got = store.claim_or_wait(recipe.key, seed, plan.profile, version(recipe.key),
                                      on_wait=lambda text=waiting: quiet or console.print(text, markup=False))
            if got is not None:
                session.outcomes.append(Outcome(arm, recipe, got, True))
                continue
            leased.append((recipe.key, seed))
            again.append(Job(recipe, seed, plan.profile))
            arms[(recipe.key, seed)] = arm
        if again:
            executor.map_runs(again, on_done)
    finally:
        for key, seed in leased:  # put() dropped the stored runs' leases; these free the failed or interrupted ones
            store.release(key, seed, plan.profile, version(key))
    if failures:
        raise RuntimeError(str(failures[0]))
    order = {(r.key, s): i for i, (_, r, s) in enumerate(_jobs(plan))}
    session.outcomes.sort(key=lambda o: order[(o.recipe.key, o.result.seed)])


def judge_comparison(plan: Plan, outcomes: Sequence[Outcome]) -> Any:
    """The claims engine's Decision on "the tricks beat the recipe" (superiority, margin `plan.delta_pp`), one look."""
    from claims import spec

    assert plan.baseline is not None
    claim = spec.Claim(id="tricks.apply", source="python -m tricks.apply --compare",
                       quote=f"{plan.recipe.name} beats {plan.baseline.name} by at least {plan.delta_pp:g} points.",
                       form=spec.Form.SUPERIORITY, a=plan.recipe, b=plan.baseline, delta=plan.delta_pp / 100,
                       metric="acc",  # the engine works in accuracy fractions
                       alpha=COMPARE_ALPHA, looks=(len(plan.seeds),))
    results: dict[str, dict[int, RunResult]] = {plan.recipe.key: {}, plan.baseline.key: {}}
    for o in outcomes:
        results[o.recipe.key][o.result.seed] = o.result
    return spec.judge(claim, results, last_look=True)


# ------------------------------------------------------------------------------------------------ output


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def results_table(session: Session) -> Any:
    """A rich table of every run: accuracy, loss, wall time, img/s, parameters, seed, profile, whether cached."""
    from rich.table import Table

    comparing = session.plan.baseline is not None
    t = Table(title=f"{session.plan.recipe.name}" + (f" vs {session.plan.baseline.name}" if comparing else ""),
              title_justify="left")
    if comparing:
        t.add_column("arm")
    for name in ("seed", "accuracy", "loss", "wall", "img/s", "params", "profile", "run"):
        t.add_column(name, justify="right" if name not in ("profile", "run") else "left")
    for o in session.outcomes:
        r = o.result
        acc = "diverged" if r.diverged else _num(r.acc * 100, ".2f") + " %"
        row = [str(r.seed), acc, _num(r.loss, ".4f"), _num(r.wall_s, ".1f") + " s", _num(r.img_per_s, ",.0f"),
               "—" if r.params_used is None else f"{r.params_used:,}", r.profile, "cached" if o.cached else "trained"]
        t.add_row(*([("A: tricks" if o.arm == "trick" else "B: recipe")] if comparing else []), *row)
    return t


def _footer(session: Session) -> list[str]:
    plan = session.plan
    prof = get_profile(plan.profile)
    epochs = prof.scale(plan.recipe).epochs
    lines = [plan.note] if plan.note else []
    lines.append(f"recipe {plan.recipe.name} (key {plan.recipe.key[:12]}), {epochs} epoch{'s' if epochs != 1 else ''} "
                 f"under profile {plan.profile}: {prof.description}")
    if plan.baseline is not None:
        lines.append(f"baseline {plan.baseline.name} (key {plan.baseline.key[:12]})")
    for what in ("dataset", "device"):
        seen = sorted({getattr(o.result, what) for o in session.outcomes})
        if seen:
            lines.append(f"{what}: {'; '.join(seen)}")
    return lines


def verdict_text(plan: Plan, d: Any) -> str:
    """One line: the verdict, A − B in points with its one-sided bounds, n, Δ and the engine's reason."""
    verdict = str(getattr(d.verdict, "value", d.verdict))
    level = d.alpha_look if getattr(d, "alpha_look", None) is not None else COMPARE_ALPHA
    if d.mean is None:
        interval = "A − B not computed"
    else:  # the engine works in accuracy units; people read points
        interval = (f"A − B = {_num(100 * d.mean, '+.2f')} pp, one-sided {100 * (1 - level):g}% bounds "
                    f"[{_num(100 * d.lower, '+.2f')}, {_num(100 * d.upper, '+.2f')}] pp")
    from claims.report import pipeline_note

    note = pipeline_note(plan.profile)  # a smoke verdict comes from barely trained models
    head = f"verdict {verdict}" + (f" ({note})" if note else "")
    return f"{head}: {interval}, n = {d.n}, Δ = {plan.delta_pp:g} pp; {d.reason}"


def _clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null (json.dumps would write the non-standard NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, enum.Enum):
        return _clean(x.value)
    return x


def decision_dict(plan: Plan, d: Any) -> dict[str, Any]:
    """The --compare part of the JSON: the engine's Decision and the claim it judged."""
    fields = ("verdict", "reason", "n", "alpha_look", "sign_flip_p", "fragile", "p_a_gt_b", "params_a", "params_b")
    out = {f: getattr(d, f, None) for f in fields}
    for f in ("mean", "lower", "upper"):  # the engine's accuracy fractions, in pp like every report
        v = getattr(d, f, None)
        out[f"{f}_pp"] = None if v is None else 100 * v
    out.update(form="superiority", metric="final_acc", delta_pp=plan.delta_pp, alpha=COMPARE_ALPHA,
               a=plan.recipe.key, b=plan.baseline.key if plan.baseline else None)
    return _clean(out)


def run_dict(o: Outcome) -> dict[str, Any]:
    """One run for the JSON: the RunResult's fields with accuracies in percent (`acc_pct`, `acc_per_epoch_pct`)."""
    r = asdict(o.result)
    acc, per_epoch = r.pop("acc"), r.pop("acc_per_epoch")
    r["acc_pct"] = None if acc is None else 100 * acc
    r["acc_per_epoch_pct"] = [100 * a for a in per_epoch]
    return {**r, "arm": o.arm, "cached": o.cached}


def session_dict(session: Session, argv: Sequence[str]) -> dict[str, Any]:
    """The machine-readable record of an invocation: schema, status, options, recipes, runs, verdict."""
    plan = session.plan
    opts = {k: v for k, v in vars(session.args).items() if k != "list"}

    def recipe(r: Recipe | None) -> dict[str, Any] | None:
        return None if r is None else {**r.to_dict(), "key": r.key}

    runs = [run_dict(o) for o in session.outcomes]
    return _clean({
        "schema": JSON_SCHEMA, "schema_version": JSON_SCHEMA_VERSION, "units": JSON_UNITS, "status": session.status,
        "argv": list(argv), "options": opts,
        "profile": plan.profile, "seeds": list(plan.seeds), "recipe": recipe(plan.recipe),
        "baseline": recipe(plan.baseline), "runs": runs,
        "comparison": None if session.decision is None else decision_dict(plan, session.decision),
    })


def write_json(session: Session, argv: Sequence[str], path: str) -> None:
    """Write `session_dict` to `path`, whole or not at all (a temporary file renamed into place)."""
    from tricks.jsonfile import write_atomic

    p = Path(path).expanduser()
    try:
        write_atomic(p, json.dumps(session_dict(session, argv), indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write --json {p}: {e.strerror or e}") from None


def print_list(console: Any) -> None:
    """Every registered trick by kind, and every named recipe, each with its one-line description and parameters."""
    from rich.table import Table

    from tricks.recipes import RECIPES

    tricks = Table(title="tricks (--cb NAME[:k=v,...])", title_justify="left")
    tricks.add_column("kind")
    tricks.add_column("name", no_wrap=True)
    tricks.add_column("parameters")
    tricks.add_column("description")
    from tricks.catalog import all_tricks

    for t in all_tricks():
        tricks.add_row(t.kind, t.name, ", ".join(p.describe() for p in t.params) or "—", t.description)
    recipes = Table(title="recipes (--recipe NAME)", title_justify="left")
    recipes.add_column("name", no_wrap=True)
    recipes.add_column("epochs", justify="right")
    recipes.add_column("description")
    from tricks.listing import describe

    for name, r in RECIPES.items():
        recipes.add_row(name, str(r.epochs), describe(name, r))
    console.print(tricks)
    console.print(recipes)


# ------------------------------------------------------------------------------------------------ main


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user as is (the data and store modules are imported lazily)."""
    errors: list[type[BaseException]] = [UsageError, TrickError]
    for module, name in (("tricks.cifar", "DataError"), ("claims.store", "StoreError"),
                         ("claims.executors.ray", "RayError")):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            errors.append(getattr(mod, name))
    return tuple(errors)


def _say(text: str) -> None:
    sys.stderr.write(text.rstrip() + "\n")
    sys.stderr.flush()


def _check_json(args: argparse.Namespace) -> None:
    """JsonTargetError (a usage error) when --json would overwrite the store, the data, or a file not ours."""
    import os

    from tricks.jsonfile import check_target

    store = None
    if not args.no_store:
        from claims.store import default_store_path

        store = args.store or default_store_path()
    recipe = args.recipe if args.recipe and Path(args.recipe).expanduser().is_file() else None
    check_target(args.json, {"run store": store, "dataset": args.data or os.environ.get("TRICKS_DATA") or None,
                             "recipe file": recipe})


def _show_finished(session: Session, out: Any, argv: Sequence[str]) -> None:
    """After an error that stopped the runs (a full disk): the finished runs' table, and the JSON where it can be."""
    session.status = "error"
    out.print(results_table(session))
    if session.args.json is not None:
        with contextlib.suppress(UsageError):
            write_json(session, argv, session.args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    # fastai's import calls torch.jit.script, which torch deprecates: noise that would bury a one-line error
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
    out, err = Console(), Console(stderr=True)
    session: Session | None = None
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            print_list(out)
            return EXIT_OK
        if args.learner is not None:  # the user's own Learner: claims/compare.py runs it
            from claims.compare import learner_main

            return learner_main(args)
        plan = make_plan(args)
        executor = ray_executor(args) if args.executor == "ray" else None  # Ray missing: said before any work
        _check_device(args.device)
        _check_model(plan.recipe)
        session = Session(plan, args)
        if args.json is not None:  # before any training: never over the store, the data or a file not ours
            _check_json(args)
        store = None
        if not args.no_store:
            from claims.store import RunStore

            store = RunStore(args.store)
        threads = RUN_THREADS if args.threads is None else args.threads
        if store is not None and threads != RUN_THREADS:
            store = None  # its runs, and the suite's, are one-thread runs: these would pair with them unfairly
            _say(f"note: --threads {threads} trains outside the run store, whose runs all use {RUN_THREADS} thread")
        import torch

        torch.set_num_threads(threads)
        if plan.note and not args.quiet:
            _say(plan.note)
        if executor is not None:
            train_on(executor, session, store, source=args.data, console=err, quiet=args.quiet)
        else:
            train(session, store, source=args.data, device=args.device, console=err,
                  show_progress=not args.quiet and err.is_terminal, quiet=args.quiet, threads=threads)
        if plan.baseline is not None and plan.compare:
            session.decision = judge_comparison(plan, session.outcomes)
        diverged = [o for o in session.outcomes if o.result.diverged]
        session.status = "diverged" if diverged else "done"
        out.print(results_table(session))
        for line in _footer(session):
            out.print(line, markup=False, highlight=False)
        if session.decision is not None:
            out.print(verdict_text(plan, session.decision), markup=False, highlight=False)
        elif plan.baseline is not None:
            from tricks.apply_plan import paired_line

            tricks = plan.recipe.name.removeprefix(f"{plan.baseline.name}+")
            out.print(paired_line(session.outcomes, tricks), markup=False, highlight=False)
        if args.json is not None:
            write_json(session, argv, args.json)
        for o in diverged:
            kept = "kept in the run store and the JSON" if not args.no_store else "kept in the JSON"
            _say(f"run {o.recipe.name} seed {o.result.seed} diverged ({o.result.note or 'no reason given'}); {kept}")
        # the engine also counts a run at chance accuracy as diverged: the comparison failed the same way
        invalid = session.decision is not None and str(getattr(session.decision.verdict, "value", "")) == "INVALID"
        if invalid and not diverged:
            _say(f"the comparison is INVALID: {session.decision.reason}")
        return EXIT_DIVERGED if diverged or invalid else EXIT_OK
    except KeyboardInterrupt:
        done = len(session.outcomes) if session is not None else 0
        if session is not None:
            session.status = "interrupted"
            if args is not None and args.json is not None:
                with contextlib.suppress(UsageError):  # already stopping; the store holds the finished runs
                    write_json(session, argv, args.json)
        _say(f"interrupted: {done} finished run{'s' if done != 1 else ''} kept"
             + ("" if args is not None and args.no_store else " in the run store"))
        return EXIT_INTERRUPTED
    except _user_errors() as e:
        if session is not None and session.outcomes and session.status == "running":  # a full disk mid-way
            _show_finished(session, out, argv)
        _say(f"error: {' '.join(str(e).split())}")
        return EXIT_USAGE
    except ValueError as e:  # unknown recipe or profile, an invalid recipe field: tricks' own one-sentence errors
        _say(f"error: {' '.join(str(e).split())}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
