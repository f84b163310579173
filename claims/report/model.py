"""The report's model: one `ClaimRow` a claim and the `SuiteReport` around them, gathered from a finished scheduler
by `build_report` (Holm and Benjamini-Hochberg from `claims.stats.multiplicity`, and for a proxy profile each claim's
standing on the published recipes from `claims.answers`), and the values every view of it shares: a claim's
comparisons, its per-seed values joined by seed, the test set's noise floor, whether a profile checks only the
pipeline. The views: `claims.report.text` (terminal, Markdown), `schema` (report.json), `plots`, `write` (the report
folder) and `readme` (the README blocks).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claims.answers import DISAGREE, paper_column, paper_note, status_of
from claims.schedule import Compute, PilotResult, Scheduler
from claims.stats import multiplicity
from tricks.plain import utc_stamp
from tricks.recipe import CODE_VERSION, PROFILES, Recipe, RunResult

PIPELINE_PROFILES = ("smoke",)  # profiles whose barely trained models test the pipeline, not the claims


@dataclass
class ClaimRow:
    """What the report shows about one claim."""

    claim: Any
    decision: Any | None
    error: str | None
    results: dict[str, dict[int, RunResult]]  # recipe key -> seed -> run
    compute: Compute
    holm: bool | None = None  # still SUPPORTED after Holm across the suite; None when not in the Holm family
    fdr: bool | None = None  # SUPPORTED and rejected by Benjamini-Hochberg at the family's FDR; None: not in the family
    q: float | None = None  # its hypothesis's BH q-value (the smallest FDR at which it would be rejected)
    hypothesis: str | None = None  # the family member it counts as: its own id, or the id of the claim it restates
    confirmation: str | None = None  # under --confirm: what confirmation sampling did for this SUPPORTED claim

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        return _value(self.decision.verdict) if self.decision is not None else "NOT RUN"

    @property
    def reason(self) -> str:
        return self.error if self.error is not None else (self.decision.reason if self.decision is not None else "")


@dataclass
class SuiteReport:
    """A whole suite's outcome with the provenance that lets a reader judge and redo it."""

    rows: list[ClaimRow]
    profile: str
    seeds: tuple[int, ...]
    max_seeds: int | None
    spec_hash: str
    alpha_family: float
    code_version: str = CODE_VERSION
    versions: dict[str, str] = field(default_factory=dict)
    device: str = ""
    threads: str = ""
    dataset: str = ""
    pilot: PilotResult | None = None
    total: Compute = field(default_factory=Compute)
    wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=utc_stamp)
    not_runnable: list[Any] = field(default_factory=list)  # claims.declare.NotRunnable: id, source, quote, reason
    # claim id -> its standing on the published recipes (claims.answers.Status), beside a proxy profile's verdicts
    paper: dict[str, Any] = field(default_factory=dict)
    # claim id -> (agreement, card sentence) beside the published recipes' verdict: computed once, from `paper`
    paper_notes: dict[str, tuple[str, str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.paper_notes = {r.claim.id: paper_note(self.paper[r.claim.id], status_of(r.verdict, r.decision))
                            for r in self.rows if r.claim.id in self.paper}

    def disagreements(self) -> list[str]:
        return [cid for cid, (how, _) in self.paper_notes.items() if how in DISAGREE]

    @property
    def looks(self) -> list[tuple[int, ...]]:
        return sorted({tuple(r.claim.looks) for r in self.rows})

    @property
    def family(self) -> list[str]:
        """The distinct hypotheses of the multiplicity family: claims that trained, a restated claim counted once."""
        return list(dict.fromkeys(r.hypothesis for r in self.rows if r.hypothesis is not None))

    def _holding(self, flag: str) -> int:
        return len({r.hypothesis for r in self.rows if r.hypothesis is not None and getattr(r, flag)})

    @property
    def holding(self) -> int:
        """Hypotheses of the family SUPPORTED that stay so after Holm (family-wise level `alpha_family`)."""
        return self._holding("holm")

    @property
    def holding_fdr(self) -> int:
        """Hypotheses of the family SUPPORTED that stay so under Benjamini-Hochberg (false-discovery rate
        `alpha_family`)."""
        return self._holding("fdr")


# ------------------------------------------------------------------------------------------------ building


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def spec_hash(claims: Sequence[Any]) -> str:
    """A short hash of every claim's frozen spec, in id order: two reports with the same hash judged the same claims."""
    h = hashlib.sha256()
    for c in sorted(claims, key=lambda c: c.id):
        h.update(f"{c.id}={c.key}\n".encode())
    return h.hexdigest()[:16]


def _distinct(values: Sequence[Any]) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    return " + ".join(seen)


def build_report(scheduler: Scheduler, *, pilot: PilotResult | None = None, alpha_family: float = 0.05,
                 not_runnable: Sequence[Any] = ()) -> SuiteReport:
    """Gather a finished scheduler's claims, decisions, runs and provenance into a report, Holm applied."""
    from tricks.train import device_name, versions

    decisions = scheduler.decisions
    mult = multiplicity(scheduler.claims, decisions, alpha_family)
    compute = scheduler.compute()
    rows = [ClaimRow(c, decisions.get(c.id), scheduler.errors.get(c.id), scheduler.results_for(c.id),
                     compute.get(c.id, Compute()), mult.holm.get(c.id), mult.fdr.get(c.id), mult.q.get(c.id),
                     mult.hypothesis.get(c.id), getattr(scheduler, "confirmations", {}).get(c.id))
            for c in scheduler.claims]
    runs = [r for row in rows for by_seed in row.results.values() for r in by_seed.values()]
    vers: dict[str, str] = {}
    for r in runs:
        for k, v in r.versions.items():
            vers[k] = v if vers.get(k, v) == v else f"{vers[k]} + {v}"
    return SuiteReport(
        rows=rows, profile=scheduler.profile, seeds=scheduler.seeds, max_seeds=scheduler.max_seeds,
        spec_hash=spec_hash(scheduler.claims), alpha_family=alpha_family, code_version=scheduler.code_version,
        versions=vers or versions(), device=_distinct([r.device for r in runs]) or device_name("cpu"),
        threads=_distinct(sorted({r.threads for r in runs})), dataset=_distinct([r.dataset for r in runs]),
        pilot=pilot, total=scheduler.total_compute(), wall_s=scheduler.wall_s, warnings=list(scheduler.warnings),
        not_runnable=sorted(not_runnable, key=lambda c: c.id), paper=_paper_column(scheduler),
    )


def _paper_column(scheduler: Scheduler) -> dict[str, Any]:
    """The published recipes' standing of each claim, for a proxy (not paper, not pipeline-only) report."""
    if scheduler.profile == "paper" or pipeline_only(scheduler.profile):
        return {}
    return paper_column(scheduler.claims)


# ------------------------------------------------------------------------------------------------ values


def comparisons(claim: Any) -> list[Any]:
    """The claim itself, or each part of a compound claim: the units that compare arms."""
    return list(claim.parts) if getattr(claim, "parts", ()) else [claim]


def metric_value(claim: Any, res: RunResult) -> float:
    """A run's value of the claim's metric (final accuracy, accuracy at an epoch, mean accuracy), in percent."""
    metric = getattr(claim, "metric", None)
    if hasattr(metric, "value"):
        return 100.0 * float(metric.value(res))
    return 100.0 * float(res.acc)


def pp(x: float | None) -> float | None:
    """Accuracy units (the engine's fractions) as percentage points, for display."""
    return None if x is None else 100.0 * float(x)


def per_seed(claim: Any, results: Mapping[str, Mapping[int, RunResult]]) -> list[dict[str, Any]]:
    """Rows of seed, A, B (and A - B) in the claim's metric, joined by seed; B is absent for absolute claims."""
    a, b = claim.a, claim.b
    ra = results.get(a.key, {}) if a is not None else {}
    rb = results.get(b.key, {}) if b is not None else {}
    out = []
    for s in sorted(set(ra) | set(rb)):
        va = metric_value(claim, ra[s]) if s in ra else None
        vb = metric_value(claim, rb[s]) if s in rb else None
        diff = va - vb if va is not None and vb is not None else None
        out.append({"seed": s, "a": va, "b": vb, "d": diff})
    return out


def noise_floor_pp(report_profile: str, recipe: Recipe | None, acc_pp: float | None) -> float | None:
    """The test-set noise floor sqrt(p(1-p)/n_test) in pp, at the arm's mean accuracy and the profile's test size."""
    if recipe is None or acc_pp is None or math.isnan(acc_pp):
        return None
    prof = PROFILES.get(report_profile)
    n_test = (prof.test_subset if prof is not None else None) or 10_000  # CIFAR-10's full test set
    p = min(max(acc_pp / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n_test)


def scaled_arms(claim: Any) -> list[Any]:
    """The claim's arms that are scaled variants of heavy recipes (a CPU's stand-ins for ResNet9, K-means)."""
    return [r for r in claim.recipes() if getattr(r, "scaled", "")]


def pipeline_only(profile: str) -> bool:
    """Whether a profile's verdicts check the pipeline rather than the claims (smoke: 14-35 % accuracy models)."""
    return profile in PIPELINE_PROFILES


def pipeline_note(profile: str) -> str:
    """The words every smoke line, card and headline carries; empty for the other profiles."""
    return "smoke profile: checks the pipeline, not the claim" if pipeline_only(profile) else ""


