"""Claim specs and verdicts: what a source document claims, frozen and hashed before any run, and the rules that
turn paired per-seed results into SUPPORTED, REFUTED, INCONCLUSIVE or INVALID (spec/claims-method.md §2-3).

Units: metrics, Δ (`delta`), thresholds, σ_d and the Decision's mean and bounds are in accuracy units, fractions in
[0, 1] (0.01 is one percentage point); reasons print percentage points. `judge(claim, results, ...)` is the one
entry point: `results` maps a recipe's key to {seed: RunResult}, for every arm the claim needs (parts included).

Every decision is a set of one-sided tests at the design's per-look level α′: a claim is SUPPORTED when all of its
support tests reject, REFUTED when any of its refutation tests rejects. A t test rejects "mean(x) > c" when the
lower bound L > c and "mean(x) < c" when the upper bound U < c.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import numpy as np

from claims import stats
from claims.arm import LearnerArm
from tricks.recipe import PROFILES, Recipe, RunResult

CHANCE_ACC = 0.11  # 10 classes: a final accuracy at or below this is a diverged run
SEED_SEARCH_BUDGET = 100_000  # seeds_needed looks this far before it gives up
PAPER_PROFILE = "paper"  # the profile that trains the published recipes exactly


class Form(str, Enum):
    """What a claim asserts about arm A against arm B (or against a threshold)."""

    SUPERIORITY = "superiority"
    NONINFERIORITY = "non_inferiority"
    EQUIVALENCE = "equivalence"
    FEWER_PARAMS = "fewer_params"
    ABSOLUTE = "absolute"
    COMPOUND = "compound"


class Verdict(str, Enum):
    """The engine's answer to a claim."""

    SUPPORTED = "SUPPORTED"
    REFUTED = "REFUTED"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


_PAIRED = (Form.SUPERIORITY, Form.NONINFERIORITY, Form.EQUIVALENCE, Form.FEWER_PARAMS)


# ------------------------------------------------------------------------------------------------ metric


@dataclass(frozen=True)
class Metric:
    """What is compared, read from a RunResult: final_acc | acc_at_epoch (with `epoch`, 1-based) | acc_auc."""

    kind: str = "final_acc"
    epoch: int | None = None

    KINDS = ("final_acc", "acc_at_epoch", "acc_auc")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown metric '{self.kind}' (known: {', '.join(self.KINDS)})")
        if self.kind == "acc_at_epoch":
            if not isinstance(self.epoch, int) or self.epoch < 1:
                raise ValueError(f"metric acc_at_epoch needs epoch >= 1 (1-based), not {self.epoch!r}")
        elif self.epoch is not None:
            raise ValueError(f"metric {self.kind} takes no epoch (got {self.epoch})")

    @classmethod
    def parse(cls, text: str) -> Metric:
        """`final_acc` (or `acc`), `acc_auc`, or `acc_at_epoch:K`."""
        name, _, arg = text.strip().partition(":")
        if name == "acc":
            name = "final_acc"
        if name == "acc_at_epoch":
            try:
                return cls(name, int(arg))
            except ValueError:
                raise ValueError(f"metric '{text}' is malformed: write acc_at_epoch:K with K an epoch from 1") from None
        if arg:
            raise ValueError(f"metric '{text}' is malformed: only acc_at_epoch takes an argument")
        return cls(name)

    def value(self, result: RunResult) -> float:
        """This metric of one run; a run too short for the epoch asked raises ValueError."""
        if self.kind == "final_acc":
            return float(result.acc)
        accs = list(result.acc_per_epoch)
        if self.kind == "acc_auc":
            if not accs:
                raise ValueError(f"seed {result.seed} has no per-epoch accuracy to average")
            return float(sum(accs) / len(accs))
        if len(accs) < self.epoch:
            raise ValueError(f"seed {result.seed} trained {len(accs)} epochs, fewer than the {self.epoch} the "
                             "metric reads")
        return float(accs[self.epoch - 1])

    def label(self) -> str:
        """Short name for reports: `final_acc`, `acc_at_epoch:3`, `acc_auc`."""
        return f"acc_at_epoch:{self.epoch}" if self.kind == "acc_at_epoch" else self.kind


# ------------------------------------------------------------------------------------------------ claim


@dataclass(frozen=True)
class Claim:
    """A claim of a source document with its arms, form, margin and design, frozen before any run.

    `form`, `metric` and `expected` also accept their text forms ("superiority", "acc_at_epoch:3", "SUPPORTED").
    """

    id: str
    source: str
    quote: str
    form: Form
    a: Recipe | None = None  # None only for COMPOUND
    b: Recipe | None = None  # None for ABSOLUTE
    delta: float = 0.01  # practical margin Δ in accuracy units (0.01 = 1 point), declared before any run
    metric: Metric = Metric()
    alpha: float = 0.05
    looks: tuple[int, ...] = (3, 5, 8, 12)
    threshold: float | None = None  # ABSOLUTE: metric(A) >= threshold (accuracy units)
    time_limit_s: float | None = None  # ABSOLUTE: and wall time <= this
    needs_gpu: bool = False  # ABSOLUTE claims about GPU timing
    parts: tuple[Claim, ...] = ()  # COMPOUND: intersection-union of these (each at alpha, no correction)
    expected: Verdict | None = None  # a pinned expected verdict (the test fails if the engine disagrees)
    note: str = ""  # bugs of the original, confounds, what the arm really tests
    offset: float = 0.0  # paired forms: the rules apply to d - offset (a magnitude claim "A - B ≈ 14 pp")
    paper_only: bool = False  # a published number: judged only under the paper profile (scaled runs cannot tell)
    restates: str | None = None  # the id of a claim this one restates: one hypothesis in the Holm/BH family

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a claim needs a non-empty string id, not {self.id!r}")
        who = f"claim {self.id}"
        try:
            fix("form", Form(self.form))
        except ValueError:
            raise ValueError(f"{who}: unknown form '{self.form}' (known: {', '.join(f.value for f in Form)})") \
                from None
        if isinstance(self.metric, str):
            try:
                fix("metric", Metric.parse(self.metric))
            except ValueError as e:
                raise ValueError(f"{who}: {e}") from None
        elif not isinstance(self.metric, Metric):
            raise ValueError(f"{who}: metric must be a Metric or its name, not {type(self.metric).__name__}")
        if self.expected is not None:
            try:
                fix("expected", Verdict(str(getattr(self.expected, "value", self.expected)).upper()))
            except ValueError:
                raise ValueError(f"{who}: unknown expected verdict '{self.expected}'") from None
        fix("looks", tuple(self.looks))
        fix("parts", tuple(self.parts))
        self._check(who)

    def _check(self, who: str) -> None:
        if not 0 < self.delta < 1:
            raise ValueError(f"{who}: delta {self.delta} must lie in (0, 1): it is in accuracy units, 0.01 is one "
                             "point")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"{who}: alpha {self.alpha} must lie in (0, 0.5)")
        try:
            stats.validate_looks(self.looks)
        except ValueError as e:
            raise ValueError(f"{who}: {e}") from None
        form = self.form
        if form is Form.COMPOUND:
            if not self.parts:
                raise ValueError(f"{who}: a compound claim needs parts")
            if any(not isinstance(p, Claim) for p in self.parts):
                raise ValueError(f"{who}: every part of a compound claim must be a Claim")
            ids = [p.id for p in self.parts]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{who}: two parts share an id")
        elif self.parts:
            raise ValueError(f"{who}: only a compound claim has parts")
        if form is not Form.COMPOUND and not _is_arm(self.a):
            raise ValueError(f"{who}: a {form.value} claim needs a Recipe or a LearnerArm as arm a")
        if form in _PAIRED and not _is_arm(self.b):
            raise ValueError(f"{who}: a {form.value} claim needs a Recipe or a LearnerArm as arm b")
        if form is Form.ABSOLUTE:
            if self.b is not None:
                raise ValueError(f"{who}: an absolute claim compares arm a with a threshold, so b must be None")
            if self.threshold is None or not 0 < self.threshold < 1:
                raise ValueError(f"{who}: an absolute claim needs a threshold in (0, 1) (accuracy units), not "
                                 f"{self.threshold}")
            if self.time_limit_s is not None and not self.time_limit_s > 0:
                raise ValueError(f"{who}: time_limit_s must be positive, not {self.time_limit_s}")
        elif self.threshold is not None or self.time_limit_s is not None:
            raise ValueError(f"{who}: threshold and time_limit_s belong to absolute claims only")
        if self.offset and form not in _PAIRED:
            raise ValueError(f"{who}: an offset shifts paired differences, so a {form.value} claim takes none")
        if not -1 < self.offset < 1:
            raise ValueError(f"{who}: offset {self.offset} must lie in (-1, 1) (accuracy units)")
        if self.restates is not None and (not isinstance(self.restates, str) or self.restates in ("", self.id)):
            raise ValueError(f"{who}: restates must name another claim's id, not {self.restates!r}")

    @property
    def key(self) -> str:
        """sha256 over every field of the frozen spec (recipes by their key), stable across processes."""
        blob = json.dumps(_canonical(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def recipes(self) -> tuple[Recipe, ...]:
        """Every distinct arm the claim needs, parts included, in first-use order."""
        seen: dict[str, Recipe] = {}
        for r in (self.a, self.b, *(r for p in self.parts for r in p.recipes())):
            if r is not None:
                seen.setdefault(r.key, r)
        return tuple(seen.values())


_LATER_FIELDS = ("restates",)


def _is_arm(x: Any) -> bool:
    return isinstance(x, (Recipe, LearnerArm))


def _canonical(x: Any) -> Any:
    if isinstance(x, Recipe):
        return {"recipe": x.key}
    if isinstance(x, LearnerArm):
        return {"arm": x.key}
    if isinstance(x, Claim):  # a field added at its default leaves the keys of older specs unchanged
        return {f.name: _canonical(getattr(x, f.name)) for f in fields(x)
                if not (f.name in _LATER_FIELDS and getattr(x, f.name) is None)}
    if isinstance(x, Metric):
        return {"kind": x.kind, "epoch": x.epoch}
    if isinstance(x, Enum):
        return x.value
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, float):
        return repr(x)  # exact, and 1 and 1.0 stay apart from the int
    return x


def claim_needs_runs(claim: Claim, device_has_gpu: bool, profile: str | None = None) -> bool:
    """False when no run can inform the claim here: it needs a GPU and the device has none, or `profile` (when
    given) cannot test it (see `off_profile`)."""
    if claim.needs_gpu and not device_has_gpu:
        return False
    if off_profile(claim, profile, device_has_gpu) is not None:
        return False
    if claim.form is Form.COMPOUND:
        return any(claim_needs_runs(p, device_has_gpu, profile) for p in claim.parts)
    return True


def off_profile(claim: Claim, profile: str | None, device_has_gpu: bool = False) -> str | None:
    """Why `profile` cannot test the claim on this device, or None: a published number under a scaled profile; a
    GPU-sized arm (ResNet9) under the paper profile without a GPU; or a heavy arm (ResNet9-sized, or K-means
    features) under a scaled profile without a GPU: on a CPU such runs take hours at full size and learn nothing at a
    scaled size."""
    if profile is None:
        return None
    if claim.paper_only and profile != PAPER_PROFILE:
        return (f"a published number: judged only under the {PAPER_PROFILE} profile, and runs scaled by the "
                f"{profile} profile cannot tell; no run was made")
    prof = PROFILES.get(profile)
    big = [r.name or r.key[:12] for r in claim.recipes() if r.gpu_sized]
    if big and prof is not None and prof.cpu_skips_gpu_sized and not device_has_gpu:
        return (f"needs a GPU: not run under the {profile} profile on a CPU ({big[0]} is ResNet9-sized, hours a run "
                f"on one core at its published size)")
    heavy = [r.name or r.key[:12] for r in claim.recipes() if r.heavy]
    if heavy and prof is not None and prof.cpu_skips_heavy and not device_has_gpu:
        return (f"needs a GPU under the {profile} profile: {heavy[0]} is a heavy recipe, too slow for a CPU at full "
                f"size and uninformative at the profile's size; run it on a GPU, or with --profile {PAPER_PROFILE}")
    return None


def judge_off_profile(claim: Claim, reason: str) -> Decision:
    """The final INCONCLUSIVE of a claim its profile cannot test here (`off_profile`'s reason): no run is made."""
    return _bare(claim, Verdict.INCONCLUSIVE, reason, final=True)


def profile_arms(claim: Claim, profile: str | None, device_has_gpu: bool) -> Claim:
    """The claim with each arm (parts included) replaced by the recipe `profile` trains for it on this device: a
    heavy arm's named scaled variant on a CPU under a scaled profile (`Profile.arm`); the claim itself otherwise."""
    prof = PROFILES.get(profile) if profile is not None else None
    if prof is None:
        return claim
    a = None if claim.a is None else prof.arm(claim.a, device_has_gpu)
    b = None if claim.b is None else prof.arm(claim.b, device_has_gpu)
    parts = tuple(profile_arms(p, profile, device_has_gpu) for p in claim.parts)
    if a is claim.a and b is claim.b and all(x is y for x, y in zip(parts, claim.parts, strict=True)):
        return claim
    return replace(claim, a=a, b=b, parts=parts)


def next_look(claim: Claim, n_done: int) -> int | None:
    """Seeds needed at the next look after `n_done`, None when the looks are exhausted."""
    return next((n for n in claim.looks if n > n_done), None)


def margin_ok(claim: Claim, acc: float, n_test: int) -> bool:
    """Whether the claim's Δ is at least the test-set noise floor sqrt(p(1-p)/n_test) at accuracy `acc`."""
    if claim.form is Form.COMPOUND:
        return all(margin_ok(p, acc, n_test) for p in claim.parts)
    if claim.form is Form.ABSOLUTE:
        return True  # no margin: the threshold is the claim's own number
    return claim.delta >= stats.noise_floor(acc, n_test)


# ------------------------------------------------------------------------------------------------ decision


@dataclass
class Decision:
    """The engine's verdict on a claim at one look, with the statistics behind it (accuracy units)."""

    claim_id: str
    verdict: Verdict
    reason: str  # one sentence, e.g. "L = +1.20 pp > 0 at n = 5"
    n: int
    mean: float | None  # d̄ = mean(A - B) (paired forms; not shifted by an offset) or mean of A (absolute)
    lower: float | None  # one-sided (1 - α′) bounds at that look
    upper: float | None
    alpha_look: float | None  # α_j, the one-sided level of the deciding look in the claim's design
    sign_flip_p: float | None  # exact sign-flip p of the support test (the largest, for several)
    fragile: bool  # the t verdict and the exact sign-flip verdict at the same α′ differ, either way round
    p_a_gt_b: float | None  # P(A beats B on a new seed): the share of seeds with A > B, ties half
    p_seq: float | None  # sequential p of the support test (stats.sequential_p), for Holm across claims
    params_a: int | None = None
    params_b: int | None = None
    seeds_needed: int | None = None  # seeds that would resolve an inconclusive claim at the d̄ and σ_d seen
    seeds_needed_at_delta: int | None = None  # the same at the form's design truth (a gain of Δ; 0 for equivalence)
    final: bool = False  # SUPPORTED/REFUTED/INVALID, budget exhausted, or no run can help
    ci_lower: float | None = None  # two-sided (1 - α) repeated confidence interval at that look
    ci_upper: float | None = None
    looks: tuple[int, ...] = ()  # the design's looks as the seed cap allows them
    underpowered: bool = False  # stopped by the prediction that the cap cannot resolve it
    p_confirm: float | None = None  # --confirm: the t p of the support test on the seeds added after the decision
    p_a_gt_b_lower: float | None = None  # two-sided 95 % Wilson interval of p_a_gt_b (stats.prob_a_gt_b_interval)
    p_a_gt_b_upper: float | None = None
    parts: list[Decision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; the verdict by name, parts as dicts."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "parts"}
        out["verdict"] = Verdict(self.verdict).value
        out["parts"] = [p.to_dict() for p in self.parts]
        return out


Results = Mapping[str, Mapping[int, RunResult]]


def judge(claim: Claim, results: Results, *, last_look: bool, device_has_gpu: bool = False,
          sigma_d_pilot: float | None = None, looks: Sequence[int] | None = None,
          confirm_from: int | None = None) -> Decision:
    """The claim's Decision from `results` (recipe key -> seed -> RunResult) at the current look.

    Seeds are taken in the order the A arm's mapping gives them (the scheduler's seed-list order); earlier looks are
    the first seeds of that order. The verdict is the one of the first look that decided, so a claim judged on more
    seeds than it needed is judged as the sequential design would have. `looks` are the design's looks as the seed
    cap allows them (default: the claim's own; a last look below the claim's last one is taken as the cap). A look
    of at least FUTILITY_FROM seeds that leaves the claim undecided, and at which the cap's chance of a verdict
    averaged over the uncertainty of the effect is small, stops it INCONCLUSIVE (predicted underpowered) with the
    seeds it would need. With no runs a claim is INCONCLUSIVE and not final (before its last look):
    `sigma_d_pilot`, the A/A pilot's SD of differences on disjoint seeds (accuracy units), is unpaired noise, so it
    informs the reason of an equivalence claim but stops nothing (`_no_runs`).
    `confirm_from`: the seeds the claim had when it was decided (--confirm); a SUPPORTED claim judged on at least
    stats.CONFIRM_MIN_NEW more gets `p_confirm`, the t p on those new seeds only, and its sequential p becomes the
    smaller of the two; the verdict is unchanged.
    """
    if claim.needs_gpu and not device_has_gpu:
        return _bare(claim, Verdict.INCONCLUSIVE, "needs a GPU: this device has none, so no run was made", final=True)
    if claim.form is Form.COMPOUND:
        return _judge_compound(claim, results, last_look, device_has_gpu, sigma_d_pilot, looks, confirm_from)
    return _judge_single(claim, results, last_look, sigma_d_pilot, looks, confirm_from)


def claim_design(claim: Claim, looks: Sequence[int] | None = None, n: int | None = None,
                 last_look: bool = False) -> stats.Design:
    """The sequential design a claim is judged under: `looks` (the cap's) or its own, cut at n when n is the last."""
    lk = stats.validate_looks(claim.looks if looks is None else looks)
    if last_look and n is not None and 2 <= n < lk[-1]:
        lk = stats.allowed_looks(lk, n)
    return stats.design(lk, design_alpha(claim))


def design_alpha(claim: Claim) -> float:
    """The one-sided α a claim's sequential design spends: its own α times `stats.SKEW_GUARD` (see there)."""
    return claim.alpha * stats.SKEW_GUARD


def reported_p(p_design: float) -> float:
    """A sequential p on the claim's own α scale: p of the design / SKEW_GUARD, so SUPPORTED iff it is <= α."""
    return min(1.0, p_design / stats.SKEW_GUARD)


def _bare(claim: Claim, verdict: Verdict, reason: str, *, n: int = 0, final: bool,
          looks: Sequence[int] | None = None, **more: Any) -> Decision:
    des = claim_design(claim, looks)
    return Decision(claim_id=claim.id, verdict=verdict, reason=reason, n=n, mean=None, lower=None, upper=None,
                    alpha_look=des.levels[0], sign_flip_p=None, fragile=False, p_a_gt_b=None, p_seq=None,
                    final=final, looks=des.looks, **more)


def _pp(x: float, sign: bool = True) -> str:
    return f"{100 * x:+.2f} pp" if sign else f"{100 * x:.2f} pp"


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _arm(r: Recipe) -> str:
    return r.name or r.key[:12]


# ------------------------------------------------------------------------------------------------ run checks


def _invalid_reason(claim: Claim, arms: Sequence[tuple[Recipe, Mapping[int, RunResult]]]) -> str | None:
    """Why these runs cannot be judged (missing seed, diverged or at-chance run, unreadable metric), or None."""
    if len(arms) == 2:
        (ra, a), (rb, b) = arms
        for s in a:
            if s not in b:
                return f"seed {s} has a run in arm {_arm(ra)} but not in arm {_arm(rb)}"
        for s in b:
            if s not in a:
                return f"seed {s} has a run in arm {_arm(rb)} but not in arm {_arm(ra)}"
    for r, runs in arms:
        for s, res in runs.items():
            acc = res.acc
            if res.diverged or acc is None or not math.isfinite(acc):
                note = f": {res.note}" if res.note else " (no note)"
                return f"seed {s} of arm {_arm(r)} diverged{note}"
            if acc <= CHANCE_ACC:
                return (f"seed {s} of arm {_arm(r)} is at chance (accuracy {_pct(acc)} <= {_pct(CHANCE_ACC)}), "
                        "counted as diverged")
            try:
                v = claim.metric.value(res)
            except ValueError as e:
                return f"arm {_arm(r)}: {e}"
            if not math.isfinite(v):
                return f"seed {s} of arm {_arm(r)} has a non-finite {claim.metric.label()}"
    return None


def _param_count(r: Recipe, runs: Mapping[int, RunResult]) -> tuple[int | None, str | None]:
    """The arm's parameter count, the same on every seed, or None with the reason it is unusable."""
    counts = {s: res.params_used for s, res in runs.items()}
    missing = [s for s, c in counts.items() if c is None]
    if missing:
        return None, f"seed {missing[0]} of arm {_arm(r)} has no parameter count"
    distinct = sorted(set(counts.values()))
    if len(distinct) > 1:
        return None, f"arm {_arm(r)} reports different parameter counts across seeds ({distinct})"
    return (distinct[0] if distinct else None), None


# ------------------------------------------------------------------------------------------------ one-sided tests


@dataclass(frozen=True, eq=False)
class _Test:
    """H1: sign * (mean(x) - shift) > 0, on the first n values of `x` (of each row, when `x` holds many paths)."""

    x: np.ndarray
    sign: int
    shift: float

    def t_rejects(self, n: int, alpha: float) -> Any:
        _, lower, upper = stats.paired_bounds(self.x[..., :n], alpha)
        return lower > self.shift if self.sign > 0 else upper < self.shift

    def t_p(self, n: int) -> Any:
        return stats.t_pvalue(self.sign * self.x[..., :n], self.sign * self.shift)

    def sign_flip_p(self, n: int) -> float:
        return stats.sign_flip_p(self.sign * (self.x[:n] - self.shift))


def _sign_flip_rejects(p: float, n: int, alpha: float) -> bool:
    """The sign-flip test's decision at α_j, for the fragile flag. Below about 6 seeds its smallest p, 1/2^n, exceeds
    α_j (0.125 at 3 seeds, 0.031 at 5), so there it rejects when p is at that floor: every seed on the tested side.
    A t verdict with one seed against it is then fragile, and so is an undecided t interval with every seed agreeing.
    """
    return p <= max(alpha, stats.sign_flip_floor(n)) * (1 + 1e-9)


def _rules(claim: Claim, x: np.ndarray, wall: np.ndarray | None) -> tuple[list[_Test], list[_Test]]:
    """The support tests (all must reject) and refutation tests (any may reject) of a form, on values x."""
    f, delta = claim.form, claim.delta
    if f in (Form.SUPERIORITY, Form.FEWER_PARAMS):
        return [_Test(x, +1, 0.0)], [_Test(x, -1, delta)]
    if f is Form.NONINFERIORITY:
        return [_Test(x, +1, -delta)], [_Test(x, -1, -delta)]
    if f is Form.EQUIVALENCE:
        return [_Test(x, +1, -delta), _Test(x, -1, delta)], [_Test(x, +1, delta), _Test(x, -1, -delta)]
    if f is Form.ABSOLUTE:
        support, refute = [_Test(x, +1, claim.threshold)], [_Test(x, -1, claim.threshold)]
        if wall is not None:
            support.append(_Test(wall, -1, claim.time_limit_s))
            refute.append(_Test(wall, +1, claim.time_limit_s))
        return support, refute
    raise AssertionError(f"no rules for form {f}")


# ------------------------------------------------------------------------------------------------ the walk over looks

PREDICT_POWER = 0.8  # "needs ~N seeds": the seeds at which a verdict has this chance at the observed d̄ and σ_d
# stop at a look when the cap's predictive chance of a verdict (`cap_power`) is below this: at 0.1 the stop costs
# at most about 2 % of the SUPPORTED verdicts the cap would reach (docs/statistics.md; 0.2 cost 11 % under strong skew)
FUTILITY_POWER = 0.1
FUTILITY_FROM = 5  # no futility stop at a look of fewer seeds: 2 df say too little of the effect to give up on it
OPEN, SUPPORTED_, REFUTED_, UNDERPOWERED = 0, 1, 2, 3  # verdict codes of `walk`


def _centred(claim: Claim, x: np.ndarray) -> np.ndarray:
    """The values the power formulas read: d - offset for paired forms (x already is), A - threshold for absolute."""
    return x - claim.threshold if claim.form is Form.ABSOLUTE else x


def _power_form(claim: Claim) -> str:
    return "superiority" if claim.form is Form.FEWER_PARAMS else claim.form.value


def cap_power(claim: Claim, x: np.ndarray, des: stats.Design) -> Any:
    """Predictive chance of a verdict at the design's last look, averaged over the t posterior of the true mean
    given `x` (`stats.assurance`; rows: many paths); the futility rule reads it."""
    v = _centred(claim, np.atleast_2d(np.asarray(x, dtype=float)))
    mean, sd = v.mean(axis=-1), v.std(axis=-1, ddof=1)
    step = 2048  # rows a chunk: the equivalence form integrates over s too, rows x nodes x 41 values
    out = [stats.assurance(_power_form(claim), mean[i:i + step], sd[i:i + step], v.shape[-1], claim.delta,
                           des.looks[-1], des.levels[-1]) for i in range(0, len(mean), step)]
    return np.concatenate(out) if out else np.zeros(0)


def walk(claim: Claim, x: np.ndarray, wall: np.ndarray | None, des: stats.Design,
         examined: Sequence[int], *, futility: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sequential rules over the looks `examined`, for every row of `x` (one path of paired values a row):
    the verdict code, the index of the deciding look, and the support test's p at every examined look.

    At look j: SUPPORTED when every support test rejects at α_j, else REFUTED when a refutation test does, else, at
    a look of FUTILITY_FROM seeds or more before the design's last, UNDERPOWERED when `cap_power` (the predictive
    chance of a verdict at the cap) is below FUTILITY_POWER (`futility=False`: never, for simulations of what the
    stop costs). `judge` runs this on one
    row; simulations run it on thousands.
    """
    x2 = np.atleast_2d(x)
    w2 = None if wall is None else np.atleast_2d(wall)
    rows = x2.shape[0]
    code = np.full(rows, OPEN)
    at = np.full(rows, len(examined) - 1)
    p = np.ones((rows, len(examined)))
    support, refute = _rules(claim, x2, w2)
    for j, m in enumerate(examined):
        a = des.level(m)
        p[:, j] = np.max([np.broadcast_to(t.t_p(m), (rows,)) for t in support], axis=0)
        undecided = code == OPEN
        sup = undecided & np.all([t.t_rejects(m, a) for t in support], axis=0)
        ref = undecided & ~sup & np.any([t.t_rejects(m, a) for t in refute], axis=0)
        code[sup], code[ref] = SUPPORTED_, REFUTED_
        at[sup | ref] = j
        if futility and FUTILITY_FROM <= m < des.looks[-1]:
            still = code == OPEN
            if still.any():
                fut = np.zeros(rows, dtype=bool)
                fut[still] = cap_power(claim, x2[still, :m], des) < FUTILITY_POWER
                code[fut], at[fut] = UNDERPOWERED, j
    return code, at, p


def _examined(des: stats.Design, n: int) -> list[int]:
    """The design's looks that n seeds reach."""
    return [m for m in des.looks if m <= n]


# ------------------------------------------------------------------------------------------------ judging


def _judge_single(claim: Claim, results: Results, last_look: bool, sigma_d_pilot: float | None,
                  looks: Sequence[int] | None, confirm_from: int | None) -> Decision:
    ra, rb = claim.a, claim.b
    arms = [(ra, results.get(ra.key, {}))] + ([(rb, results.get(rb.key, {}))] if rb is not None else [])
    bad = _invalid_reason(claim, arms)
    if bad is not None:
        return _bare(claim, Verdict.INVALID, bad, n=len(arms[0][1]), final=True, looks=looks)
    a_runs = arms[0][1]
    seeds = list(a_runs)
    n = len(seeds)
    params: dict[str, int | None] = {"params_a": None, "params_b": None}
    if rb is not None:
        (pa, why_a), (pb, why_b) = _param_count(ra, a_runs), _param_count(rb, arms[1][1])
        params = {"params_a": pa, "params_b": pb}
        if claim.form is Form.FEWER_PARAMS and n and (why_a or why_b):
            return _bare(claim, Verdict.INVALID, why_a or why_b, n=n, final=True, looks=looks, **params)
    des = claim_design(claim, looks, n, last_look)
    if n == 0:
        return _no_runs(claim, last_look, sigma_d_pilot, params, des)
    examined = _examined(des, n)
    if n == 1 or not examined:
        why = "one seed gives no interval" if n == 1 else f"{n} seeds, fewer than the first look at {des.looks[0]}"
        return _bare(claim, Verdict.INCONCLUSIVE, why, n=n, final=last_look, looks=des.looks, **params)

    va = np.array([claim.metric.value(a_runs[s]) for s in seeds])
    if rb is not None:
        b_runs = arms[1][1]
        x = va - np.array([claim.metric.value(b_runs[s]) for s in seeds]) - claim.offset
    else:
        x = va
    wall = None
    if claim.form is Form.ABSOLUTE and claim.time_limit_s is not None:
        wall = np.array([float(a_runs[s].wall_s) for s in seeds])

    if claim.form is Form.FEWER_PARAMS and not params["params_a"] < params["params_b"]:
        return _decide(claim, x, wall, des, examined[0], Verdict.REFUTED, last_look, params, p_seq=1.0,
                       reason=f"A uses {params['params_a']:,} parameters, not fewer than B's {params['params_b']:,}",
                       exact=True)

    code, at, p = walk(claim, x, wall, des, examined)
    j = int(at[0])
    p_seq = reported_p(stats.sequential_p(list(p[0, :j + 1]), des.looks, des.shape))
    verdict = {SUPPORTED_: Verdict.SUPPORTED, REFUTED_: Verdict.REFUTED}.get(int(code[0]), Verdict.INCONCLUSIVE)
    p_confirm = None
    if confirm_from is not None and verdict is Verdict.SUPPORTED and n - confirm_from >= stats.CONFIRM_MIN_NEW:
        # only the seeds after the decision: independent of the lucky stretch that selected the claim
        new, _ = _rules(claim, x[confirm_from:n], None if wall is None else wall[confirm_from:n])
        p_confirm = reported_p(max(float(stats.confirmation_p(t.sign * t.x, t.sign * t.shift)) for t in new))
        p_seq = min(p_seq, p_confirm)
    return _decide(claim, x, wall, des, examined[j], verdict, last_look, params, p_seq=p_seq,
                   underpowered=int(code[0]) == UNDERPOWERED, p_confirm=p_confirm)


def _no_runs(claim: Claim, last_look: bool, sigma_d_pilot: float | None, params: dict[str, Any],
             des: stats.Design) -> Decision:
    """A look at zero seeds: INCONCLUSIVE, and final only at the last look; never a stop before any run.

    The A/A pilot's σ_d comes from two disjoint seed lists: it measures run-to-run noise (√2 σ), not the paired noise
    of a claim's two arms on shared seeds, which the shared seed (data order, initialisation, training subset) makes
    far smaller (C001-10's arms: 0.84 pp paired against the pilot's 4.24 pp). A claim is predicted only from its own
    paired differences, at a look of FUTILITY_FROM seeds or more (`walk`); for an equivalence claim the reason says
    how many seeds the pilot's σ_d would need, as an upper bound.
    """
    if sigma_d_pilot is None or claim.form is not Form.EQUIVALENCE:
        return _bare(claim, Verdict.INCONCLUSIVE, "no runs yet", final=last_look, looks=des.looks, **params)
    need = stats.seeds_needed(sigma_d_pilot, claim.delta, claim.form.value, des.looks, des.alpha,
                              budget=SEED_SEARCH_BUDGET, shape=des.shape)
    need_text = f"~{need}" if need is not None else f"more than {SEED_SEARCH_BUDGET:,}"
    return _bare(claim, Verdict.INCONCLUSIVE, f"no runs yet; at the A/A pilot's unpaired σ_d = "
                 f"{_pp(sigma_d_pilot, False)} Δ = {_pp(claim.delta, False)} would need {need_text} seeds, an upper "
                 "bound: the claim is judged on its own paired differences", final=last_look, seeds_needed=need,
                 looks=des.looks, **params)


def _decide(claim: Claim, x: np.ndarray, wall: np.ndarray | None, des: stats.Design, m: int, verdict: Verdict,
            last_look: bool, params: dict[str, Any], *, p_seq: float, reason: str | None = None, exact: bool = False,
            underpowered: bool = False, p_confirm: float | None = None) -> Decision:
    """The Decision at look m with its statistics and a reason; `exact`: a verdict by the parameter rule, not the t
    interval, so it cannot be fragile; `underpowered`: stopped by the futility prediction."""
    alpha_look = des.level(m)
    mean, lower, upper = stats.paired_bounds(x[:m], alpha_look)  # of d - offset, as the rules read them
    _, ci_lo, ci_hi = stats.paired_bounds(x[:m], stats.design(des.looks, claim.alpha / 2, des.shape).level(m))
    support, refute = _rules(claim, x, wall)
    sf_support_p = [t.sign_flip_p(m) for t in support]
    sf_p = max(sf_support_p)
    sf_support = all(_sign_flip_rejects(p, m, alpha_look) for p in sf_support_p)
    sf_refute = any(_sign_flip_rejects(t.sign_flip_p(m), m, alpha_look) for t in refute)
    sf_verdict = Verdict.SUPPORTED if sf_support else Verdict.REFUTED if sf_refute else Verdict.INCONCLUSIVE
    paired = claim.form is not Form.ABSOLUTE
    seeds_needed = at_delta = None
    if verdict is Verdict.INCONCLUSIVE:
        v = _centred(claim, x[:m])
        sd = float(np.std(v, ddof=1))
        seeds_needed = stats.seeds_to_decide(_power_form(claim), float(v.mean()), sd, claim.delta, des.levels[-1],
                                             PREDICT_POWER, budget=SEED_SEARCH_BUDGET)
        at_delta = stats.seeds_needed(sd, claim.delta, _power_form(claim), des.looks, des.alpha, PREDICT_POWER,
                                      budget=SEED_SEARCH_BUDGET, shape=des.shape)
    if reason is None:
        reason = _reason(claim, verdict, m, lower, upper, wall, alpha_look, (seeds_needed, at_delta), last_look, x,
                         params, des, underpowered)
    if paired and m >= 2 and np.allclose(x[:m] + claim.offset, 0.0, rtol=0.0, atol=1e-12):
        reason += ("; both arms gave the same accuracy on every seed: they may train identically under this "
                   "profile, so the verdict compares nothing")
    final = verdict is not Verdict.INCONCLUSIVE or last_look or underpowered
    off = claim.offset  # the Decision reports d itself: d̄ and its bounds with the offset added back
    beats = stats.prob_a_gt_b_interval(x[:m] + off) if paired else (None, None, None)
    return Decision(
        claim_id=claim.id, verdict=verdict, reason=reason, n=m, mean=mean + off, lower=lower + off,
        upper=upper + off, alpha_look=alpha_look, sign_flip_p=sf_p, fragile=sf_verdict is not verdict and not exact,
        p_a_gt_b=beats[0], p_a_gt_b_lower=beats[1], p_a_gt_b_upper=beats[2], p_seq=p_seq, seeds_needed=seeds_needed,
        seeds_needed_at_delta=at_delta, final=final, ci_lower=ci_lo + off, ci_upper=ci_hi + off, looks=des.looks,
        underpowered=underpowered, p_confirm=p_confirm, **params,
    )


def _reason(claim: Claim, verdict: Verdict, m: int, lower: float, upper: float, wall: np.ndarray | None,
            alpha_look: float, needs: tuple[int | None, int | None], last_look: bool, x: np.ndarray,
            params: dict[str, Any], des: stats.Design, underpowered: bool) -> str:
    f, delta = claim.form, claim.delta
    at = f"at n = {m}"
    prefix = f"A uses {params['params_a']:,} < {params['params_b']:,} parameters and " if f is Form.FEWER_PARAMS else ""
    if claim.offset:
        at = f"for d − {_pp(claim.offset, False)} {at}"
    if f is Form.ABSOLUTE:
        thr = claim.threshold
        time_part = ""
        if wall is not None:
            _, w_lo, w_hi = stats.paired_bounds(wall[:m], alpha_look)
            time_part = f", wall time U = {w_hi:.0f} s < {claim.time_limit_s:.0f} s"
            if verdict is Verdict.REFUTED and w_lo > claim.time_limit_s:
                return f"wall time L = {w_lo:.0f} s > limit {claim.time_limit_s:.0f} s {at}"
        if verdict is Verdict.SUPPORTED:
            return f"L = {_pct(lower)} > threshold {_pct(thr)}{time_part} {at}"
        if verdict is Verdict.REFUTED:
            return f"U = {_pct(upper)} < threshold {_pct(thr)} {at}"
        interval = f"[L, U] = [{_pct(lower)}, {_pct(upper)}] around the threshold {_pct(thr)}"
    else:
        if verdict is Verdict.SUPPORTED:
            if f is Form.EQUIVALENCE:
                return f"[L, U] = [{_pp(lower)}, {_pp(upper)}] inside ±Δ = {_pp(delta, False)} {at}"
            if f is Form.NONINFERIORITY:
                return f"L = {_pp(lower)} > −Δ = {_pp(-delta)} {at}"
            extra = f"; U = {_pp(upper)} < Δ: a real gain, below the margin" if upper < delta else ""
            return f"{prefix}L = {_pp(lower)} > 0 {at}{extra}"
        if verdict is Verdict.REFUTED:
            if f is Form.EQUIVALENCE:
                return (f"L = {_pp(lower)} > Δ = {_pp(delta, False)} {at}" if lower > delta
                        else f"U = {_pp(upper)} < −Δ = {_pp(-delta)} {at}")
            if f is Form.NONINFERIORITY:
                return f"U = {_pp(upper)} < −Δ = {_pp(-delta)} {at}: A is worse by more than the margin"
            return f"U = {_pp(upper)} < Δ = {_pp(delta, False)} {at}: no meaningful gain"
        interval = f"[L, U] = [{_pp(lower)}, {_pp(upper)}] straddles the margin (Δ = {_pp(delta, False)})"
    if not last_look and not underpowered:
        return f"interval straddles the margin: {interval} {at}"
    v = x[:m] if f is not Form.ABSOLUTE else x[:m]
    mean, sd = float(np.mean(v)), float(np.std(v, ddof=1))
    sigma = "σ_d" if f is not Form.ABSOLUTE else "σ"
    centre = (f"d̄ = {_pp(mean + claim.offset)}" if f is not Form.ABSOLUTE else f"mean {_pct(mean)}")
    cap = max(des.looks)

    def count(k: int | None) -> str:  # "needs ~3 seeds" after 3 would read as a contradiction
        return f"more than {SEED_SEARCH_BUDGET:,}" if k is None else f"more than {m}" if k <= m else f"~{k}"

    need = (f"a verdict needs {count(needs[0])} seeds at the observed {centre}, {sigma} = {_pp(sd, False)}, and "
            f"{count(needs[1])} {_DESIGN_TRUTH[_power_form(claim)]}")
    if underpowered:
        chance = float(cap_power(claim, x[:m], des)[0])
        return (f"predicted underpowered at n = {m}: {interval}; averaged over the uncertainty of the effect, the cap "
                f"of {cap} seeds gives a verdict with a chance of {100 * chance:.0f} % at most, so no more were spent; "
                f"{need}")
    capped = "" if m >= max(claim.looks) else " (seed cap)"
    return f"budget exhausted at n = {m}{capped}: {interval}; {need}"


_DESIGN_TRUTH = {"superiority": "if the true gain were Δ", "non_inferiority": "if A and B were equal",
                 "equivalence": "if the true difference were 0", "absolute": "if the mean were Δ above the threshold"}


def _judge_compound(claim: Claim, results: Results, last_look: bool, device_has_gpu: bool,
                    sigma_d_pilot: float | None, looks: Sequence[int] | None, confirm_from: int | None) -> Decision:
    """Intersection-union: SUPPORTED when every part is, REFUTED when one is, INVALID when one is."""
    parts = [judge(p, results, last_look=last_look, device_has_gpu=device_has_gpu, sigma_d_pilot=sigma_d_pilot,
                   looks=looks, confirm_from=confirm_from) for p in claim.parts]
    n = max(d.n for d in parts)
    by = {v: [d for d in parts if d.verdict is v] for v in Verdict}
    open_ = by[Verdict.INCONCLUSIVE]
    if by[Verdict.INVALID]:
        d = by[Verdict.INVALID][0]
        verdict, reason = Verdict.INVALID, f"part {d.claim_id}: {d.reason}"
    elif by[Verdict.REFUTED]:
        d = by[Verdict.REFUTED][0]
        verdict, reason = Verdict.REFUTED, f"part {d.claim_id} is refuted: {d.reason}"
    elif len(by[Verdict.SUPPORTED]) == len(parts):
        verdict, reason = Verdict.SUPPORTED, "every part holds: " + "; ".join(f"{d.claim_id}: {d.reason}"
                                                                            for d in parts)
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = (f"{len(open_)} of {len(parts)} parts undecided: "
                  + "; ".join(f"{d.claim_id}: {d.reason}" for d in open_))
    # A part predicted underpowered puts SUPPORTED out of reach, but another open part may still be REFUTED, which
    # refutes the whole claim: so the claim stops early only once every open part is final (underpowered itself).
    underpowered = (verdict is Verdict.INCONCLUSIVE and all(d.final for d in open_)
                    and any(d.underpowered for d in open_))
    final = verdict is not Verdict.INCONCLUSIVE or last_look or all(d.final for d in parts)  # underpowered too
    p_seqs = [d.p_seq for d in parts]
    sf = [d.sign_flip_p for d in parts]
    needs = [d.seeds_needed for d in parts if d.verdict is Verdict.INCONCLUSIVE and d.seeds_needed is not None]
    with_params = next((d for d in parts if d.params_a is not None or d.params_b is not None), None)
    return Decision(
        claim_id=claim.id, verdict=verdict, reason=reason, n=n, mean=None, lower=None, upper=None,
        alpha_look=parts[0].alpha_look if parts else None,
        sign_flip_p=max(sf) if None not in sf else None, fragile=any(d.fragile for d in parts), p_a_gt_b=None,
        p_seq=max(p_seqs) if None not in p_seqs else None,
        params_a=with_params.params_a if with_params else None, params_b=with_params.params_b if with_params else None,
        seeds_needed=max(needs) if needs else None, final=final, parts=parts, looks=parts[0].looks if parts else (),
        underpowered=underpowered,
    )
