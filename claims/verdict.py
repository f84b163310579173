"""The verdict rules: the one table that turns paired per-seed results into SUPPORTED, REFUTED, INCONCLUSIVE or
INVALID (spec/claims-method.md §2-3), the walk over the sequential looks that applies it, and `judge`, the one entry
point every caller uses (the suite's scheduler, `tricks.apply --compare` and `claims.compare`, the answer table and
the reproduction, and `claims.declare.check`, which reads the same table back against a Decision's interval).

Units: metrics, Δ (`delta`), thresholds, σ_d and the Decision's mean and bounds are in accuracy units, fractions in
[0, 1] (0.01 is one percentage point); reasons print percentage points. `judge(claim, results, ...)`: `results` maps
a recipe's key to {seed: RunResult}, for every arm the claim needs (parts included).

Every decision is a set of one-sided tests at the design's per-look level α′ (`RULES`): a claim is SUPPORTED when
all of its support tests reject, REFUTED when any of its refutation tests rejects. A t test rejects "mean(x) > c"
when the lower bound L > c and "mean(x) < c" when the upper bound U < c.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from claims import stats
from claims.spec import Claim, Decision, Form, Verdict, claim_needs_runs, off_profile, profile_arms
from tricks.train import Recipe, RunResult

CHANCE_ACC = 0.11  # 10 classes: a final accuracy at or below this is a diverged run
SEED_SEARCH_BUDGET = 100_000  # seeds_needed looks this far before it gives up

Results = Mapping[str, Mapping[int, RunResult]]


# ------------------------------------------------------------------------------------------------ the table of rules


@dataclass(frozen=True)
class Rule:
    """One one-sided test of a form: H1 sign · (mean − bound) > 0, on the values the rules read (`on` "x": d − offset
    for paired forms, A's metric for absolute ones) or on wall time (`on` "wall": an absolute claim's time limit)."""

    sign: int
    bound: str  # "0" | "+delta" | "-delta" | "threshold" | "time_limit"
    on: str = "x"

    def shift(self, claim: Claim) -> float:
        return {"0": 0.0, "+delta": claim.delta, "-delta": -claim.delta, "threshold": claim.threshold,
                "time_limit": claim.time_limit_s}[self.bound]

    def clears(self, lower: Any, upper: Any, shift: float) -> Any:
        """Whether one-sided bounds reject: L > bound for sign +1, U < bound for sign −1."""
        return lower > shift if self.sign > 0 else upper < shift


# form -> (support rules: all must reject, refutation rules: any may reject). FEWER_PARAMS adds the parameter rule:
# REFUTED, exactly, when A does not use fewer parameters than B (`_judge_single`).
RULES: dict[Form, tuple[tuple[Rule, ...], tuple[Rule, ...]]] = {
    Form.SUPERIORITY: ((Rule(+1, "0"),), (Rule(-1, "+delta"),)),
    Form.FEWER_PARAMS: ((Rule(+1, "0"),), (Rule(-1, "+delta"),)),
    Form.NONINFERIORITY: ((Rule(+1, "-delta"),), (Rule(-1, "-delta"),)),
    Form.EQUIVALENCE: ((Rule(+1, "-delta"), Rule(-1, "+delta")), (Rule(+1, "+delta"), Rule(-1, "-delta"))),
    Form.ABSOLUTE: ((Rule(+1, "threshold"), Rule(-1, "time_limit", "wall")),
                    (Rule(-1, "threshold"), Rule(+1, "time_limit", "wall"))),
}


def interval_agrees(claim: Claim, verdict: str, lower: float, upper: float, params_a: int | None = None,
                    params_b: int | None = None) -> bool:
    """Whether one-sided bounds [lower, upper] of the values the rules read, at the deciding look, agree with
    `verdict` under the claim's form: SUPPORTED clears every support rule, REFUTED one refutation rule (or, for
    FEWER_PARAMS, the parameter rule). Rules on wall time, which the bounds do not hold, count as cleared; other
    verdicts and forms always agree."""
    if claim.form not in RULES:
        return True
    support, refute = RULES[claim.form]

    def cleared(r: Rule) -> bool:
        return r.on != "x" or bool(r.clears(lower, upper, r.shift(claim)))

    if verdict == Verdict.SUPPORTED.value:
        return all(cleared(r) for r in support)
    if verdict == Verdict.REFUTED.value:
        by_params = (claim.form is Form.FEWER_PARAMS and params_a is not None and params_b is not None
                     and not params_a < params_b)
        return by_params or any(cleared(r) for r in refute)
    return True


def compound_verdict(parts: Sequence[Verdict | str]) -> Verdict:
    """The rule of a compound claim (intersection-union, each part at α, no correction) over its parts' verdicts:
    INVALID when one is, else REFUTED when one is, SUPPORTED when every part is, INCONCLUSIVE otherwise."""
    got = [Verdict(getattr(v, "value", v)) for v in parts]
    for v in (Verdict.INVALID, Verdict.REFUTED):
        if v in got:
            return v
    return Verdict.SUPPORTED if all(v is Verdict.SUPPORTED for v in got) else Verdict.INCONCLUSIVE


@dataclass(frozen=True, eq=False)
class _Test:
    """A rule on data: H1 sign * (mean(x) - shift) > 0, on the first n values of `x` (of each row, when `x` holds
    many paths)."""

    x: np.ndarray
    sign: int
    shift: float
    rule: Rule

    def rejects(self, bounds: Mapping[str, tuple[Any, Any, Any]]) -> Any:
        """Whether the t test rejects, given (d̄, L, U) of each data series ("x", "wall") at the look."""
        _, lower, upper = bounds[self.rule.on]
        return self.rule.clears(lower, upper, self.shift)

    def t_p(self, n: int) -> Any:
        return stats.t_pvalue(self.sign * self.x[..., :n], self.sign * self.shift)

    def sign_flip_p(self, n: int) -> float:
        return stats.sign_flip_p(self.sign * (self.x[:n] - self.shift))


def _tests(claim: Claim, x: np.ndarray, wall: np.ndarray | None) -> tuple[list[_Test], list[_Test]]:
    """The claim's rules (`RULES`) on values x (and wall times, when the claim has a time limit)."""
    data = {"x": x, "wall": wall}

    def on_data(rules: tuple[Rule, ...]) -> list[_Test]:
        return [_Test(data[r.on], r.sign, r.shift(claim), r) for r in rules if data[r.on] is not None]

    support, refute = RULES[claim.form]
    return on_data(support), on_data(refute)


def _sign_flip_rejects(p: float, n: int, alpha: float) -> bool:
    """The sign-flip test's decision at α_j, for the fragile flag. Below about 6 seeds its smallest p, 1/2^n, exceeds
    α_j (0.125 at 3 seeds, 0.031 at 5), so there it rejects when p is at that floor: every seed on the tested side.
    A t verdict with one seed against it is then fragile, and so is an undecided t interval with every seed agreeing.
    """
    return p <= max(alpha, stats.sign_flip_floor(n)) * (1 + 1e-9)


# ------------------------------------------------------------------------------------------------ gating


@dataclass(frozen=True)
class Gate:
    """What a profile does with a claim on this device, decided once a session (`gate`)."""

    claim: Claim  # with the arms the profile trains for it here (spec.profile_arms)
    off: str | None  # why the profile cannot test it here (spec.off_profile): a final INCONCLUSIVE, no run
    needs_runs: bool  # whether any run can inform it here (spec.claim_needs_runs); False: judged on no runs
    gpu: bool  # judged as on a GPU: the device has one, or the runs of its GPU-sized arms are at hand


def gate(claim: Claim, profile: str | None, device_has_gpu: bool,
         gpu_runs: Callable[[Claim], bool] | None = None) -> Gate:
    """The claim as `profile` takes it on this device: its arms, and whether it is off-profile or needs no run.
    `gpu_runs(claim)`: whether the runs of its GPU-sized arms are at hand already (trained on a GPU, restored from
    the record); then they are judged as on a GPU, and nothing is trained here."""
    claim = profile_arms(claim, profile, device_has_gpu)
    gpu = device_has_gpu or (gpu_runs is not None and gpu_runs(claim))
    needs = claim_needs_runs(claim, gpu, profile)  # False when off-profile, among other reasons
    return Gate(claim, None if needs else off_profile(claim, profile, gpu), needs, gpu)


def gpu_pairs(claim: Claim, seeds: Sequence[int]) -> list[tuple[str, int]]:
    """(recipe key, seed) of each GPU-sized arm of the claim for each seed: the runs that, all present (trained on a
    GPU, restored from the record), let a CPU session judge the claim (`gate`'s `gpu_runs`) and train its other arms.
    Empty when the claim has no GPU-sized arm."""
    return [(r.key, s) for r in dict.fromkeys(claim.recipes()) if r.gpu_sized for s in seeds]


def judge_off_profile(claim: Claim, reason: str) -> Decision:
    """The final INCONCLUSIVE of a claim its profile cannot test here (`off_profile`'s reason): no run is made."""
    return _bare(claim, Verdict.INCONCLUSIVE, reason, final=True)


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


@dataclass
class Walk:
    """What `walk` found, a value a row: the verdict code and index of the deciding look, the support test's p at
    every examined look, and d̄ with its one-sided bounds at the deciding look's α_j (the last examined look while
    open), of the values the rules read."""

    code: np.ndarray
    at: np.ndarray
    p: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def walk(claim: Claim, x: np.ndarray, wall: np.ndarray | None, des: stats.Design,
         examined: Sequence[int], *, futility: bool = True) -> Walk:
    """The sequential rules (`RULES`) over the looks `examined`, for every row of `x` (one path of paired values a
    row).

    At look j: SUPPORTED when every support test rejects at α_j, else REFUTED when a refutation test does, else, at
    a look of FUTILITY_FROM seeds or more before the design's last, UNDERPOWERED when `cap_power` (the predictive
    chance of a verdict at the cap) is below FUTILITY_POWER (`futility=False`: never, for simulations of what the
    stop costs). `judge` runs this on one row; simulations run it on thousands.
    """
    x2 = np.atleast_2d(x)
    w2 = None if wall is None else np.atleast_2d(wall)
    rows = x2.shape[0]
    code = np.full(rows, OPEN)
    at = np.full(rows, len(examined) - 1)
    p = np.ones((rows, len(examined)))
    bounds_x = np.empty((3, rows, len(examined)))  # d̄, L, U of x at every examined look
    support, refute = _tests(claim, x2, w2)
    for j, m in enumerate(examined):
        a = des.level(m)
        bounds = {"x": stats.paired_bounds(x2[:, :m], a)}
        if w2 is not None:
            bounds["wall"] = stats.paired_bounds(w2[:, :m], a)
        bounds_x[:, :, j] = bounds["x"]

        p[:, j] = np.max([np.broadcast_to(t.t_p(m), (rows,)) for t in support], axis=0)
        undecided = code == OPEN
        sup = undecided & np.all([t.rejects(bounds) for t in support], axis=0)
        ref = undecided & ~sup & np.any([t.rejects(bounds) for t in refute], axis=0)
        code[sup], code[ref] = SUPPORTED_, REFUTED_
        at[sup | ref] = j
        if futility and FUTILITY_FROM <= m < des.looks[-1]:
            still = code == OPEN
            if still.any():
                fut = np.zeros(rows, dtype=bool)
                fut[still] = cap_power(claim, x2[still, :m], des) < FUTILITY_POWER
                code[fut], at[fut] = UNDERPOWERED, j
    mean, lower, upper = bounds_x[:, np.arange(rows), at]
    return Walk(code, at, p, mean, lower, upper)


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

    if claim.form is Form.FEWER_PARAMS and not params["params_a"] < params["params_b"]:  # the parameter rule
        w = walk(claim, x, wall, des, examined[:1], futility=False)  # for the bounds at the first look
        return _decide(claim, x, wall, des, examined[0], w, Verdict.REFUTED, last_look, params, p_seq=1.0,
                       reason=f"A uses {params['params_a']:,} parameters, not fewer than B's {params['params_b']:,}",
                       exact=True)

    w = walk(claim, x, wall, des, examined)
    j = int(w.at[0])
    p_seq = reported_p(stats.sequential_p(list(w.p[0, :j + 1]), des.looks, des.shape))
    verdict = {SUPPORTED_: Verdict.SUPPORTED, REFUTED_: Verdict.REFUTED}.get(int(w.code[0]), Verdict.INCONCLUSIVE)
    p_confirm = None
    if confirm_from is not None and verdict is Verdict.SUPPORTED and n - confirm_from >= stats.CONFIRM_MIN_NEW:
        # only the seeds after the decision: independent of the lucky stretch that selected the claim
        new, _ = _tests(claim, x[confirm_from:n], None if wall is None else wall[confirm_from:n])
        p_confirm = reported_p(max(float(stats.confirmation_p(t.sign * t.x, t.sign * t.shift)) for t in new))
        p_seq = min(p_seq, p_confirm)
    return _decide(claim, x, wall, des, examined[j], w, verdict, last_look, params, p_seq=p_seq,
                   underpowered=int(w.code[0]) == UNDERPOWERED, p_confirm=p_confirm)


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


def _decide(claim: Claim, x: np.ndarray, wall: np.ndarray | None, des: stats.Design, m: int, w: Walk,
            verdict: Verdict, last_look: bool, params: dict[str, Any], *, p_seq: float, reason: str | None = None,
            exact: bool = False, underpowered: bool = False, p_confirm: float | None = None) -> Decision:
    """The Decision at look m, the deciding look of the walk `w` (one row), with its statistics and a reason;
    `exact`: a verdict by the parameter rule, not the t interval, so it cannot be fragile; `underpowered`: stopped
    by the futility prediction."""
    alpha_look = des.level(m)
    mean, lower, upper = float(w.mean[0]), float(w.lower[0]), float(w.upper[0])  # of d - offset, as the rules read
    _, ci_lo, ci_hi = stats.paired_bounds(x[:m], stats.design(des.looks, claim.alpha / 2, des.shape).level(m))
    support, refute = _tests(claim, x, wall)
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
    verdict = compound_verdict([d.verdict for d in parts])
    if verdict is Verdict.INVALID:
        d = by[Verdict.INVALID][0]
        reason = f"part {d.claim_id}: {d.reason}"
    elif verdict is Verdict.REFUTED:
        d = by[Verdict.REFUTED][0]
        reason = f"part {d.claim_id} is refuted: {d.reason}"
    elif verdict is Verdict.SUPPORTED:
        reason = "every part holds: " + "; ".join(f"{d.claim_id}: {d.reason}" for d in parts)
    else:
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
