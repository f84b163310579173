"""Claim specs: what a source document claims (form, arms, margin Δ, α, looks), frozen and hashed before any run;
what a profile can test of it on this device; and the Decision the verdict rules (claims/verdict.py) give it.

Units: metrics, Δ (`delta`), thresholds and the Decision's mean and bounds are in accuracy units, fractions in
[0, 1] (0.01 is one percentage point).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from claims import stats
from claims.arm import LearnerArm
from tricks.recipe import PROFILES, Recipe, RunResult

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
