"""What `python -m tricks.apply` shows and writes: the progress of a run (a rich bar on a terminal, one plain line
an epoch elsewhere), the invocation's runs (`Outcome`, `Session`), the results table, the footer, the one line that
compares the two arms of a plan that does not judge them, the JSON, and `--list`.

Units: every accuracy a person or a program reads from here is in percent and every difference or margin in
percentage points (pp); JSON fields say theirs (`acc_pct`, `mean_pp`, `delta_pp`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tricks.apply_plan import COMPARE_ALPHA, Plan, UsageError
from tricks.plain import finite
from tricks.recipe import Recipe, RunResult, get_profile

JSON_SCHEMA_VERSION = 2  # 2: accuracies in percent, differences in pp, unit-named fields
JSON_SCHEMA = f"tricks.apply/{JSON_SCHEMA_VERSION}"
JSON_UNITS = {"*_pct": "accuracy in percent (0-100)", "*_pp": "difference or margin in percentage points",
              "loss": "cross-entropy, nats", "p_a_gt_b": "share of seeds with A > B (0-1)"}


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
            shown = [f"{n} {number(float(v) * 100, '.2f')} %" if n == "test accuracy"
                     else f"{n} {number(float(v), '.4f')}" for n, v in zip(names, vals, strict=False)]
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
    verdict_line: str = ""  # --compare's verdict in one line, as the claims engine words it


def jobs_of(plan: Plan) -> list[tuple[str, Recipe, int]]:
    """Every (arm, recipe, seed) run of the plan, seed by seed, the tricks' arm first."""
    arms = [("trick", plan.recipe)] + ([("baseline", plan.baseline)] if plan.baseline is not None else [])
    return [(arm, r, s) for s in plan.seeds for arm, r in arms]  # seed by seed: an interruption leaves whole pairs


# ------------------------------------------------------------------------------------------------ output


def number(x: float | None, fmt: str) -> str:
    """`x` formatted, or a dash when there is none (None, NaN)."""
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
        acc = "diverged" if r.diverged else number(r.acc * 100, ".2f") + " %"
        row = [str(r.seed), acc, number(r.loss, ".4f"), number(r.wall_s, ".1f") + " s", number(r.img_per_s, ",.0f"),
               "—" if r.params_used is None else f"{r.params_used:,}", r.profile, "cached" if o.cached else "trained"]
        t.add_row(*([("A: tricks" if o.arm == "trick" else "B: recipe")] if comparing else []), *row)
    return t


def footer_lines(session: Session) -> list[str]:
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


def decision_dict(plan: Plan, d: Any) -> dict[str, Any]:
    """The --compare part of the JSON: the engine's Decision and the claim it judged."""
    fields = ("verdict", "reason", "n", "alpha_look", "sign_flip_p", "fragile", "p_a_gt_b", "params_a", "params_b")
    out = {f: getattr(d, f, None) for f in fields}
    for f in ("mean", "lower", "upper"):  # the engine's accuracy fractions, in pp like every report
        v = getattr(d, f, None)
        out[f"{f}_pp"] = None if v is None else 100 * v
    out.update(form="superiority", metric="final_acc", delta_pp=plan.delta_pp, alpha=COMPARE_ALPHA,
               a=plan.recipe.key, b=plan.baseline.key if plan.baseline else None)
    return finite(out)


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
    return finite({
        "schema": JSON_SCHEMA, "schema_version": JSON_SCHEMA_VERSION, "units": JSON_UNITS, "status": session.status,
        "argv": list(argv), "options": opts,
        "profile": plan.profile, "seeds": list(plan.seeds), "recipe": recipe(plan.recipe),
        "baseline": recipe(plan.baseline), "runs": runs,
        "comparison": None if session.decision is None else decision_dict(plan, session.decision),
    })


def write_json(session: Session, argv: Sequence[str], path: str) -> None:
    """Write `session_dict` to `path`, whole or not at all (a temporary file renamed into place)."""
    from tricks.plain import write_atomic

    p = Path(path).expanduser()
    try:
        write_atomic(p, json.dumps(session_dict(session, argv), indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write --json {p}: {e.strerror or e}") from None


def print_list(console: Any) -> None:
    """Every registered trick by kind, and every named recipe, each with its one-line description and parameters."""
    from rich.table import Table

    from tricks.catalog import all_tricks
    from tricks.recipes import RECIPES

    tricks = Table(title="tricks (--cb NAME[:k=v,...])", title_justify="left")
    tricks.add_column("kind")
    tricks.add_column("name", no_wrap=True)
    tricks.add_column("parameters")
    tricks.add_column("description")
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
