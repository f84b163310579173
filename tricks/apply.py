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
seed, profile, run version: the recipe's training fingerprint and the dataset copy), by the suite's own store protocol
(`claims.schedule.Scheduler.ensure_runs`, reached through `claims.compare`, this module's one way into `claims`): a
run trained here is reused by the suite and the other way round, and a run found in the store is not trained again.
A run another invocation (or suite) holds the lease on is waited for, not trained a second time. The plan (recipe,
tricks, seeds) is `tricks.apply_plan`; what is shown and written, `tricks.apply_output`. `--json` is checked before
anything trains: it never overwrites the run store, the dataset, the recipe file or any file it did not write itself,
and it is written whole (a temporary file renamed into place).

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
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from tricks.apply_output import Session, footer_lines, paired_line, print_list, results_table, write_json
from tricks.apply_plan import (
    DEFAULT_COMPARE_SEEDS,
    DEFAULT_DELTA_PP,
    DEFAULT_RECIPE,
    MIN_DELTA_PP,
    RUN_THREADS,
    UsageError,
    check_device,
    check_model,
    make_plan,
)
from tricks.plain import say
from tricks.recipe import PROFILES
from tricks.recipe_check import MAX_EPOCHS
from tricks.registry import TrickError

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
        plan = None
        if args.learner is None:
            plan = make_plan(args)
            check_device(args.device)
            check_model(plan.recipe)
            session = Session(plan, args)
        # the one way into claims: the user's own Learner, the runs through the run store, --compare's verdict
        from claims.compare import learner_main, run_session

        if plan is None:  # the user's own Learner: claims/compare.py runs it
            return learner_main(args)
        run_session(session, console=err)
        diverged = [o for o in session.outcomes if o.result.diverged]
        session.status = "diverged" if diverged else "done"
        out.print(results_table(session))
        for line in footer_lines(session):
            out.print(line, markup=False, highlight=False)
        if session.decision is not None:
            out.print(session.verdict_line, markup=False, highlight=False)
        elif plan.baseline is not None:
            tricks = plan.recipe.name.removeprefix(f"{plan.baseline.name}+")
            out.print(paired_line(session.outcomes, tricks), markup=False, highlight=False)
        if args.json is not None:
            write_json(session, argv, args.json)
        for o in diverged:
            kept = "kept in the run store and the JSON" if not args.no_store else "kept in the JSON"
            say(f"run {o.recipe.name} seed {o.result.seed} diverged ({o.result.note or 'no reason given'}); {kept}")
        # the engine also counts a run at chance accuracy as diverged: the comparison failed the same way
        invalid = session.decision is not None and str(getattr(session.decision.verdict, "value", "")) == "INVALID"
        if invalid and not diverged:
            say(f"the comparison is INVALID: {session.decision.reason}")
        return EXIT_DIVERGED if diverged or invalid else EXIT_OK
    except KeyboardInterrupt:
        done = len(session.outcomes) if session is not None else 0
        if session is not None:
            session.status = "interrupted"
            if args is not None and args.json is not None:
                with contextlib.suppress(UsageError):  # already stopping; the store holds the finished runs
                    write_json(session, argv, args.json)
        say(f"interrupted: {done} finished run{'s' if done != 1 else ''} kept"
             + ("" if args is not None and args.no_store else " in the run store"))
        return EXIT_INTERRUPTED
    except _user_errors() as e:
        if session is not None and session.outcomes and session.status == "running":  # a full disk mid-way
            _show_finished(session, out, argv)
        say(f"error: {' '.join(str(e).split())}")
        return EXIT_USAGE
    except ValueError as e:  # unknown recipe or profile, an invalid recipe field: tricks' own one-sentence errors
        say(f"error: {' '.join(str(e).split())}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
