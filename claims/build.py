"""Short constructors for the claims of the source documents: `superior("C001-4", SRC, quote, "pal2021b/bn_before_relu",
"pal2021b/baseline")` names arms by recipe name and fills the suite's defaults (margin, α, looks).

Margins (Δ, accuracy units) are declared here once, before any run, and are at least the test-set noise floor of
the paper and default profiles (about 0.46 pp at 70 % on 10,000 test images):

- `DELTA` 1.5 pp: the smallest gain a reader of these blogs would call an improvement (their tables compare arms a
  point or more apart), for superiority, non-inferiority and "no significant change";
- `DELTA_WIDE` 2 pp: equivalence among configurations a source calls interchangeable, where its own numbers spread
  by about that much (doc 002's hidden-size table, 0.500-0.516);
- claims that name a size ("≫", "about 14 points") carry their own Δ.

`NotRunnable` records a claim the suite cannot test here (CIFAR-100, a statement with no measurable form), so the
report lists it with its reason instead of leaving it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from claims.spec import Claim, Form
from tricks.recipe import Recipe
from tricks.recipes import get_recipe

DELTA = 0.015
DELTA_WIDE = 0.02

Arm = str | Recipe


def _r(arm: Arm) -> Recipe:
    return arm if isinstance(arm, Recipe) else get_recipe(arm)


def _claim(cid: str, source: str, quote: str, form: Form, a: Arm | None, b: Arm | None, **kw: Any) -> Claim:
    kw.setdefault("delta", DELTA)
    return Claim(id=cid, source=source, quote=quote, form=form, a=None if a is None else _r(a),
                 b=None if b is None else _r(b), **kw)


def superior(cid: str, source: str, quote: str, a: Arm, b: Arm, **kw: Any) -> Claim:
    """A beats B: SUPPORTED when L > 0, REFUTED when U < Δ (no meaningful gain)."""
    return _claim(cid, source, quote, Form.SUPERIORITY, a, b, **kw)


def noninferior(cid: str, source: str, quote: str, a: Arm, b: Arm, **kw: Any) -> Claim:
    """A is at least as good as B, within Δ."""
    return _claim(cid, source, quote, Form.NONINFERIORITY, a, b, **kw)


def equivalent(cid: str, source: str, quote: str, a: Arm, b: Arm, **kw: Any) -> Claim:
    """A and B differ by less than Δ either way (TOST)."""
    kw.setdefault("delta", DELTA_WIDE)
    return _claim(cid, source, quote, Form.EQUIVALENCE, a, b, **kw)


def fewer_params(cid: str, source: str, quote: str, a: Arm, b: Arm, **kw: Any) -> Claim:
    """A uses fewer parameters than B and beats it."""
    return _claim(cid, source, quote, Form.FEWER_PARAMS, a, b, **kw)


def absolute(cid: str, source: str, quote: str, a: Arm, threshold: float, **kw: Any) -> Claim:
    """A's mean accuracy is at least `threshold` (and its wall time within `time_limit_s`, when given)."""
    return _claim(cid, source, quote, Form.ABSOLUTE, a, None, threshold=threshold, **kw)


def compound(cid: str, source: str, quote: str, parts: list[Claim], **kw: Any) -> Claim:
    """Every part holds (intersection-union test: each part at α, no correction)."""
    return Claim(id=cid, source=source, quote=quote, form=Form.COMPOUND, parts=tuple(parts), **kw)


def part(cid: str, form: Form, a: Arm, b: Arm, **kw: Any) -> Claim:
    """One comparison inside a compound claim (the compound carries the source and quote)."""
    if form is Form.EQUIVALENCE:
        kw.setdefault("delta", DELTA_WIDE)
    return _claim(cid, "part", f"{_r(a).name} vs {_r(b).name}", form, a, b, **kw)


@dataclass(frozen=True)
class NotRunnable:
    """A claim of a source document that this suite cannot test here, and why."""

    id: str
    source: str
    quote: str
    reason: str


def check(claim: Claim, decision: Any, params: tuple[int, int] | None = None) -> None:
    """What every claim test asserts beyond the plugin's verdict check: the decision belongs to the claim, agrees
    with its own interval under the claim's form (parts likewise), and, where runs exist, the arms use the
    parameter counts the spec sheet verified (`params`, A then B)."""
    assert decision is not None, f"{claim.id}: no decision"
    assert decision.claim_id == claim.id
    verdict = str(getattr(decision.verdict, "value", decision.verdict))
    if claim.form is Form.COMPOUND:
        got = [str(getattr(p.verdict, "value", p.verdict)) for p in decision.parts]
        if got:  # an off-profile or GPU-less compound is judged without its parts
            assert len(got) == len(claim.parts)
            for p, d in zip(claim.parts, decision.parts, strict=True):
                check(p, d)
            if verdict == "SUPPORTED":
                assert set(got) == {"SUPPORTED"}, got
            if verdict == "REFUTED":
                assert "REFUTED" in got, got
    elif decision.lower is not None and decision.upper is not None:
        off = claim.offset if claim.form is not Form.ABSOLUTE else 0.0  # the rules read d - offset
        lo, hi, delta = decision.lower - off, decision.upper - off, claim.delta
        rules = {  # (form, verdict) -> what the interval at the deciding look must show
            (Form.SUPERIORITY, "SUPPORTED"): lo > 0, (Form.SUPERIORITY, "REFUTED"): hi < delta,
            (Form.FEWER_PARAMS, "SUPPORTED"): lo > 0,
            (Form.NONINFERIORITY, "SUPPORTED"): lo > -delta, (Form.NONINFERIORITY, "REFUTED"): hi < -delta,
            (Form.EQUIVALENCE, "SUPPORTED"): -delta < lo and hi < delta,
            (Form.EQUIVALENCE, "REFUTED"): lo > delta or hi < -delta,
            (Form.ABSOLUTE, "REFUTED"): True,
        }
        assert rules.get((claim.form, verdict), True), f"{claim.id}: {verdict} with [L, U] = [{lo}, {hi}]"
        assert decision.lower <= decision.mean <= decision.upper
    if params is not None and decision.params_a is not None and decision.params_b is not None:
        assert (decision.params_a, decision.params_b) == params, \
            f"{claim.id}: arms use {decision.params_a:,} and {decision.params_b:,} parameters, the spec says {params}"
