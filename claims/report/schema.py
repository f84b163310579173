"""report.json: everything needed to re-analyse a suite, its schema versioned. Every per-seed value of every arm, in
percent (`*_pct`) and percentage points (`*_pp`), each field named by its unit (`REPORT_UNITS`), with the spec hash,
profile, dataset and provenance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claims.report.model import SuiteReport, _value, comparisons, per_seed, pipeline_only
from claims.report.model import pp as _pct  # fractions as percent and as percentage points: both x 100
from claims.report.text import _metric, family_line, headline
from claims.schedule import PilotResult
from tricks.plain import finite
from tricks.recipe import PROFILES, RunResult

REPORT_SCHEMA_VERSION = 2  # 2: accuracies in percent, differences in pp, every such field named by its unit
REPORT_UNITS = {"*_pct": "accuracy in percent (0-100)", "*_pp": "difference, margin or spread in percentage points",
                "loss": "cross-entropy, nats",
                "p_a_gt_b*": "P(A beats B on a new seed): share of seeds with A > B and its 95 % Wilson interval (0-1)",
                "alpha*, *_p, p_seq": "probabilities (0-1)"}


def per_seed_json(claim: Any, results: Mapping[str, Mapping[int, RunResult]]) -> list[dict[str, Any]]:
    """`per_seed` with unit-named fields: A and B in percent, their difference in pp."""
    return [{"seed": r["seed"], "a_pct": r["a"], "b_pct": r["b"], "d_pp": r["d"]} for r in per_seed(claim, results)]


def decision_json(d: Any, claim: Any) -> dict[str, Any]:
    """A Decision's dict with its accuracy-unit statistics in pp (percent for an absolute claim's mean of A)."""
    out = d.to_dict()
    unit = "pct" if _value(getattr(claim, "form", "")) == "absolute" else "pp"
    for f in ("mean", "lower", "upper"):
        if f in out:
            out[f"{f}_{unit}"] = _pct(out.pop(f))
    parts = list(comparisons(claim)) if getattr(claim, "parts", ()) else []
    out["parts"] = [decision_json(p, parts[i] if i < len(parts) else p) for i, p in enumerate(d.parts or ())]
    return out


def pilot_json(p: PilotResult) -> dict[str, Any]:
    """The A/A pilot's dict in unit-named fields: accuracies in percent, spreads and bounds in pp."""
    out = p.to_dict()
    for f in ("acc_a", "acc_b"):
        out[f"{f}_pct"] = [_pct(v) for v in out.pop(f)]
    out["repeat_acc_pct"] = _pct(out.pop("repeat_acc"))
    for f in ("sigma", "sigma_d", "mean_d", "lower", "upper"):  # already in pp
        out[f"{f}_pp"] = out.pop(f)
    return out


def _run_json(res: RunResult) -> dict[str, Any]:
    return {"acc_pct": _pct(res.acc), "loss": res.loss, "acc_per_epoch_pct": [_pct(a) for a in res.acc_per_epoch],
            "params_used": res.params_used, "wall_s": res.wall_s, "diverged": res.diverged, "device": res.device,
            "threads": res.threads, "note": res.note}


def _paper_json(rep: SuiteReport, cid: str) -> dict[str, Any]:
    """A proxy report's claim entry: its verdict on the published recipes and the agreement (none in paper reports)."""
    if cid not in rep.paper:
        return {}
    st = rep.paper[cid]
    return {"paper": {"label": st.label, "verdict": st.verdict, "final": st.final, "n": st.n, "mean_pp": st.mean,
                      "lower_pp": st.lower, "upper_pp": st.upper, "reason": st.reason},
            "agreement_with_paper": rep.paper_notes[cid][0]}


def report_json(rep: SuiteReport) -> dict[str, Any]:
    """Everything needed to re-analyse: per-seed values of every arm, the spec hash, profile, dataset, provenance
    (the command line, git commit, torchvision and scipy versions in `environment`); accuracies in percent and
    differences in pp, each field named by its unit (`REPORT_UNITS`)."""
    from claims.provenance import environment

    claims = []
    for row in rep.rows:
        c, d = row.claim, row.decision
        arms = []
        for r in c.recipes():
            runs = row.results.get(r.key, {})
            arms.append({
                "recipe_key": r.key, "recipe_name": r.name, "recipe": r.to_dict(),
                "runs": {str(s): _run_json(res) for s, res in sorted(runs.items())},
            })
        claims.append({
            "id": c.id, "key": c.key, "source": c.source, "quote": c.quote, "form": _value(c.form),
            "delta_pp": _pct(getattr(c, "delta", None)), "metric": _metric(c), "alpha": c.alpha,
            "looks": list(c.looks), "threshold_pct": _pct(getattr(c, "threshold", None)),
            "offset_pp": _pct(getattr(c, "offset", 0.0)), "paper_only": getattr(c, "paper_only", False),
            "note": getattr(c, "note", ""),
            "expected": None if getattr(c, "expected", None) is None else _value(c.expected),
            "a": None if c.a is None else c.a.key, "b": None if c.b is None else c.b.key,
            "parts": [{"id": p.id, "a": None if p.a is None else p.a.key, "b": None if p.b is None else p.b.key,
                       "per_seed": per_seed_json(p, row.results)} for p in comparisons(c) if p is not c],
            "per_seed": per_seed_json(c, row.results) if c.a is not None else [],
            "verdict": row.verdict, "reason": row.reason, "error": row.error,
            "pipeline_only": pipeline_only(rep.profile),
            "decision": None if d is None else decision_json(d, c), "holm": row.holm, "fdr": row.fdr, "q_value": row.q,
            "hypothesis": row.hypothesis, "confirmation": row.confirmation, "compute": row.compute.to_dict(),
            "arms": arms, **_paper_json(rep, c.id),
        })
    prof = PROFILES.get(rep.profile)
    return finite({
        "schema_version": REPORT_SCHEMA_VERSION, "units": REPORT_UNITS,
        "spec_hash": rep.spec_hash, "created": rep.created, "profile": rep.profile,
        "pipeline_only": pipeline_only(rep.profile), "headline": headline(rep), "family_line": family_line(rep),
        "profile_description": prof.description if prof is not None else "", "seeds": list(rep.seeds),
        "max_seeds": rep.max_seeds, "alpha_family": rep.alpha_family, "code_version": rep.code_version,
        "versions": rep.versions, "device": rep.device, "threads": rep.threads, "dataset": rep.dataset,
        "environment": environment(),
        "pilot": None if rep.pilot is None else pilot_json(rep.pilot), "total_compute": rep.total.to_dict(),
        "wall_s": rep.wall_s, "holding": rep.holding, "holding_fdr": rep.holding_fdr,
        "family": rep.family, "warnings": rep.warnings, "claims": claims,
        "not_runnable": [{"id": c.id, "source": c.source, "quote": c.quote, "reason": c.reason}
                         for c in rep.not_runnable],
    })
