"""The claims report: a compact table in the terminal; report.md, summary.md, report.json and PNG plots on disk.

The terminal gets one plain line a claim (id, form, n, d̄ [L, U], verdict, Holm, FDR), within 100 columns and the
same on a terminal as in a pipe or CI log, and a line of counts; the reasons live in report.md and summary.md. One
card a claim in report.md: the source's words, per-seed values of the arms joined by seed, parameter counts, the seeds
an inconclusive claim would need, the paired plot and the training curves. report.json holds every per-seed value, in
percent (`*_pct`) and percentage points (`*_pp`), its schema versioned, so anyone can re-analyse the runs. Every table
names its profile: a smoke-profile number is not a published one, and a smoke verdict checks the pipeline, not the
claim.

`python -m claims.report [REPORT_DIR] --readme docs/results.md` copies a report's summary table into that file (a
smoke report never replaces a default or paper summary there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from claims.schedule import Compute, PilotResult, Scheduler
from tricks.recipe import CODE_VERSION, PROFILES, Recipe, RunResult

REPORT_SCHEMA_VERSION = 2  # 2: accuracies in percent, differences in pp, every such field named by its unit
REPORT_UNITS = {"*_pct": "accuracy in percent (0-100)", "*_pp": "difference, margin or spread in percentage points",
                "loss": "cross-entropy, nats",
                "p_a_gt_b*": "P(A beats B on a new seed): share of seeds with A > B and its 95 % Wilson interval (0-1)",
                "alpha*, *_p, p_seq": "probabilities (0-1)"}
TERMINAL_WIDTH = 100  # the terminal report's lines never pass this, so CI logs and narrow terminals do not wrap
PIPELINE_PROFILES = ("smoke",)  # profiles whose barely trained models test the pipeline, not the claims
SUMMARY_START = "<!-- claims-summary:start -->"
SUMMARY_END = "<!-- claims-summary:end -->"
LATEST = "latest"
_RESULT_FIELDS = {f.name for f in fields(RunResult)}


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
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    not_runnable: list[Any] = field(default_factory=list)  # claims.build.NotRunnable: id, source, quote, reason
    # claim id -> its standing on the published recipes (claims.answers.Status), beside a proxy profile's verdicts
    paper: dict[str, Any] = field(default_factory=dict)

    def paper_notes(self) -> dict[str, tuple[str, str]]:
        """claim id -> (agreement, card sentence) with the published recipes' verdict, for a proxy report."""
        from claims.answers import paper_note, status_of

        return {r.claim.id: paper_note(self.paper[r.claim.id], status_of(r.verdict, r.decision))
                for r in self.rows if r.claim.id in self.paper}

    def disagreements(self) -> list[str]:
        from claims.answers import DISAGREE

        return [cid for cid, (how, _) in self.paper_notes().items() if how in DISAGREE]

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


@dataclass
class Multiplicity:
    """Holm and Benjamini-Hochberg over the family of hypotheses that trained, mapped back to the claims."""

    hypothesis: dict[str, str]  # claim id -> the hypothesis it counts as (its own id, or the id it restates)
    p: dict[str, float]  # hypothesis -> its sequential p-value
    holm: dict[str, bool]  # claim id -> SUPPORTED and rejected by Holm at the family-wise level
    fdr: dict[str, bool]  # claim id -> SUPPORTED and rejected by BH at the false-discovery rate
    q: dict[str, float]  # claim id -> its hypothesis's BH q-value


def multiplicity(claims: Sequence[Any], decisions: Mapping[str, Any], alpha: float) -> Multiplicity:
    """The suite's multiplicity layer over the sequential p-values of the claims that trained.

    A claim with no decision or no finite sequential p (never run, not runnable here, needs a GPU) is not in the
    family. A claim that restates another (`Claim.restates`) is the same hypothesis: the family holds it once, with
    the restated claim's p when that claim trained (else its own), and both claims share its outcome. Each claim's
    flag is True only where its own verdict is SUPPORTED and its hypothesis is rejected: a REFUTED claim with a small
    p of its support test cannot "hold"."""
    from claims.stats import bh_qvalues, holm

    def p_of(cid: str) -> float | None:
        d = decisions.get(cid)
        p = getattr(d, "p_seq", None)
        return None if p is None or math.isnan(float(p)) else float(p)

    hyp: dict[str, str] = {}
    pvals: dict[str, float] = {}
    by_id = {c.id: c for c in claims}
    for c in claims:
        if p_of(c.id) is None:
            continue
        h = getattr(c, "restates", None) or c.id
        h = h if h in by_id else c.id
        hyp[c.id] = h
        own = p_of(h)
        pvals[h] = own if own is not None else pvals.get(h, p_of(c.id))
    rejected_holm = holm(pvals, alpha) if pvals else {}
    q = bh_qvalues(pvals) if pvals else {}

    def supported(cid: str) -> bool:
        return _value(decisions[cid].verdict) == "SUPPORTED"

    return Multiplicity(hyp, pvals, {c: bool(rejected_holm[h]) and supported(c) for c, h in hyp.items()},
                        {c: q[h] <= alpha and supported(c) for c, h in hyp.items()}, {c: q[h] for c, h in hyp.items()})


def holm_status(decisions: Mapping[str, Any], alpha: float) -> dict[str, bool]:
    """Holm over the claims' sequential p-values: True where a SUPPORTED claim still holds at family level `alpha`
    (every decision its own hypothesis; `multiplicity` merges restated claims)."""
    from types import SimpleNamespace

    return multiplicity([SimpleNamespace(id=cid) for cid in decisions], decisions, alpha).holm


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
    from claims.answers import paper_column

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


def _fmt(x: Any, nd: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _interval(d: Any) -> str:
    """d̄ [L, U] in pp (mean A for absolute claims, in %)."""
    if d is None or getattr(d, "mean", None) is None:
        return "—"
    return f"{_fmt(pp(d.mean), sign=True)} [{_fmt(pp(d.lower), sign=True)}, {_fmt(pp(d.upper), sign=True)}]"


def _compute(c: Compute) -> str:
    return f"{c.runs} runs, {c.seconds_split:.0f} s"


def _holm(row: ClaimRow) -> str:
    if row.holm is None:
        return "—"
    return "holds" if row.holm else ("not after Holm" if row.verdict == "SUPPORTED" else "—")


def _p(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _delta(c: Any) -> str:
    """Δ in pp; a compound claim's Δ is its parts' (listed in their tables), an absolute claim has a threshold."""
    if _value(getattr(c, "form", "")) in ("compound", "absolute"):
        return "—"
    return _fmt(pp(getattr(c, "delta", None)), 1)


def _metric(c: Any) -> str:
    m = getattr(c, "metric", None)
    return m.label() if hasattr(m, "label") else str(m or "final_acc")


def scaled_arms(claim: Any) -> list[Any]:
    """The claim's arms that are scaled variants of heavy recipes (a CPU's stand-ins for ResNet9, K-means)."""
    return [r for r in claim.recipes() if getattr(r, "scaled", "")]


def _profile(rep: SuiteReport, row: ClaimRow) -> str:
    """The profile column: the profile's name, and "scaled" when a heavy arm trained as its scaled variant."""
    return _profile_cell(rep.profile) + (", scaled" if scaled_arms(row.claim) else "")


def _n(row: ClaimRow) -> str:
    return str(row.decision.n) if row.decision is not None and row.decision.n is not None else "0"


def pipeline_only(profile: str) -> bool:
    """Whether a profile's verdicts check the pipeline rather than the claims (smoke: 14-35 % accuracy models)."""
    return profile in PIPELINE_PROFILES


def pipeline_note(profile: str) -> str:
    """The words every smoke line, card and headline carries; empty for the other profiles."""
    return "smoke profile: checks the pipeline, not the claim" if pipeline_only(profile) else ""


def _why_open(row: ClaimRow) -> str:
    """Why an INCONCLUSIVE (or never judged) claim is open: not run here, predicted underpowered, at the seed cap,
    or still sampling (an interrupted suite)."""
    d = row.decision
    if d is None or not d.n:
        return "not run here"
    if getattr(d, "underpowered", False):
        return "predicted underpowered"
    return "at the seed cap" if d.final else "still sampling"


def headline(rep: SuiteReport) -> str:
    """The suite's first line: how many claims got each verdict, each at its own α, and why the open ones are open
    (the terminal's first line, the summary caption, the rich title)."""
    seen = Counter("INCONCLUSIVE" if r.verdict == "NOT RUN" else r.verdict for r in rep.rows)
    why = Counter(_why_open(r) for r in rep.rows if r.verdict in ("INCONCLUSIVE", "NOT RUN"))
    order = ("not run here", "predicted underpowered", "at the seed cap", "still sampling")
    open_ = ", ".join(f"{why[k]} {k}" for k in order if why[k])
    alphas = ", ".join(f"{a:g}" for a in sorted({float(r.claim.alpha) for r in rep.rows})) or "—"
    parts = [f"{seen['SUPPORTED']} SUPPORTED", f"{seen['REFUTED']} REFUTED",
             f"{seen['INCONCLUSIVE']} INCONCLUSIVE" + (f" ({open_})" if open_ else "")]
    parts += [f"{seen[v]} {v}" for v in ("INVALID", "ERROR") if seen[v]]
    text = f"Of {len(rep.rows)} claims, each at its own α = {alphas}: " + ", ".join(parts)
    if rep.not_runnable:
        text += f"; {len(rep.not_runnable)} more not runnable here"
    off = rep.disagreements()
    if off:
        text += f"; {len(off)} proxy verdict(s) disagree with the published recipes' ({', '.join(off)})"
    return f"{pipeline_note(rep.profile)}s — {text}" if pipeline_only(rep.profile) else text


def family_line(rep: SuiteReport) -> str:
    """The one line on the family: how many SUPPORTED claims hold across the suite under BH and Holm, and what
    --confirm did or would do."""
    m, rate = len(rep.family), f"{100 * rep.alpha_family:g} %"
    if not m:
        return "Across claims: no claim trained, so no family to correct."
    confirmed = any(r.confirmation for r in rep.rows)
    clause = ("with --confirm: SUPPORTED claims that missed Holm took the seeds up to their cap, and count on a t test "
              "of those new seeds alone" if confirmed else
              "--confirm would let SUPPORTED claims that miss Holm take the seeds up to their cap and count on those "
              "new seeds alone")
    return (f"Across the {m} hypotheses that trained: {rep.holding_fdr} hold at a false-discovery rate of {rate} "
            f"(Benjamini-Hochberg) and {rep.holding} at a family-wise error of {rate} (Holm); {clause}.")


def _fdr(row: ClaimRow) -> str:
    """The FDR column: the row's or its decision's `fdr` flag when the engine gives one, else —."""
    if row.fdr is None:
        return "—"
    return "holds" if row.fdr else ("no" if row.verdict == "SUPPORTED" else "—")


def _fdr_cell(row: ClaimRow) -> str:
    """The summary's FDR cell: holds / no / — and the hypothesis's BH q-value where it is in the family."""
    return _fdr(row) if row.q is None else f"{_fdr(row)} (q {row.q:.2g})"


def counts_line(rep: SuiteReport) -> str:
    """How many claims got each verdict, and how many could not run here."""
    seen = Counter(r.verdict for r in rep.rows)
    order = ["SUPPORTED", "REFUTED", "INCONCLUSIVE", "INVALID", "ERROR", "NOT RUN"]
    parts = [f"{seen[v]} {v}" for v in order if seen[v] or v in order[:4]]
    line = f"{len(rep.rows)} judged: " + ", ".join(parts)
    return line + (f"; {len(rep.not_runnable)} not runnable here" if rep.not_runnable else "")


# ------------------------------------------------------------------------------------------------ terminal


def header_lines(rep: SuiteReport) -> list[str]:
    """The report's provenance, one fact a line."""
    prof = PROFILES.get(rep.profile)
    looks = "; ".join(",".join(map(str, lk)) for lk in rep.looks) or "—"
    alphas = sorted({float(r.claim.alpha) for r in rep.rows})
    lines = [
        f"profile: {rep.profile}" + (f" ({prof.description})" if prof is not None and prof.description else ""),
        f"claim-spec hash: {rep.spec_hash}   code version: {rep.code_version}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.versions.items())),
        f"device: {rep.device}   threads per run: {rep.threads or '—'}",
        f"dataset: {rep.dataset or '— (no runs)'}",
        f"seeds: {', '.join(map(str, rep.seeds))}" + (f" (max {rep.max_seeds})" if rep.max_seeds else "")
        + f"   looks at n = {looks}   α per claim: {', '.join(map(str, alphas)) or '—'}"
        + f"   Holm family α: {rep.alpha_family}",
    ]
    if rep.pilot is not None:
        p = rep.pilot
        det = {True: "deterministic", False: "NOT deterministic", None: "determinism unknown"}[p.deterministic]
        lines.append(f"A/A pilot ({p.recipe_name or p.recipe_key[:12]}, {len(p.seeds_a)}+{len(p.seeds_b)} seeds, "
                     f"{rep.profile} profile): σ = {p.sigma:.2f} pp, σ_d = {p.sigma_d:.2f} pp unpaired, "
                     f"A vs A {'SUPPORTED (engine fault)' if p.aa_supported else 'not supported'}, {det}")
    else:
        lines.append("A/A pilot: not run")
    lines.append(f"compute: {rep.total.runs} distinct runs, {rep.total.seconds:.0f} s of training "
                 f"({rep.total.trained} trained now, the rest from the store); per claim, shared runs are split")
    return lines


_STYLE = {"SUPPORTED": "green", "REFUTED": "red", "INCONCLUSIVE": "yellow", "INVALID": "magenta", "ERROR": "bold red"}


_FORM_SHORT = {"non_inferiority": "non-inferior", "fewer_params": "fewer-params"}


def _holm_short(row: ClaimRow) -> str:
    return {"holds": "holds", "not after Holm": "no"}.get(_holm(row), "—")


def terminal_table(rep: SuiteReport) -> list[str]:
    """The claims as plain fixed-width lines within TERMINAL_WIDTH, in document order: ids in full, no reasons (they
    are in report.md) but the few words saying why a claim with n 0 trained nothing."""
    from claims.order import in_document_order, short_reason

    checks = "pipeline" if pipeline_only(rep.profile) else "claim"
    head = ["claim", "form", "n", "d̄ [L, U] pp", "verdict", "Holm", "FDR", "checks"]
    rows = [[r.claim.id, _FORM_SHORT.get(_value(r.claim.form), _value(r.claim.form)), _n(r),
             short_reason(r.reason) if _n(r) == "0" else _interval(r.decision),  # n 0: why, in a few words
             r.verdict, _holm_short(r), _fdr(r), checks] for r in in_document_order(rep.rows)]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    right = {2}  # n

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                    strict=True)))
    return [line(head).rstrip(), line(["-" * w for w in widths]).rstrip()] + [line(r).rstrip() for r in rows]


def terminal_lines(rep: SuiteReport) -> list[str]:
    """The whole terminal report: headline, counts, a little provenance, the table, where the reasons are."""
    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, TERMINAL_WIDTH, subsequent_indent="  ", break_on_hyphens=False) or [""]

    out = wrap(headline(rep)) + wrap(family_line(rep))
    keep = ("profile: ", "claim-spec hash: ", "device: ", "dataset: ", "seeds: ", "A/A pilot", "compute: ")
    for fact in header_lines(rep):
        if fact.startswith("profile: "):
            fact = f"profile: {rep.profile}" + (f" ({pipeline_note(rep.profile)})" if pipeline_only(rep.profile)
                                                else "")
        if fact.startswith(keep):
            out += wrap(fact)
    for w in rep.warnings:
        out += wrap(f"warning: {w}")
    out += [""] + terminal_table(rep)
    if rep.not_runnable:
        out += [""] + wrap(f"not runnable here ({len(rep.not_runnable)}): "
                           + ", ".join(c.id for c in rep.not_runnable))
    out += wrap("reasons, per-seed values and plots: report.md; the summary table with reasons: summary.md")
    return out


def rich_table(rep: SuiteReport) -> Any:
    """The claims as a rich Table, one row a claim (with reasons: for wide displays; the terminal report is
    `terminal_lines`)."""
    from rich.table import Table

    t = Table(title=f"{headline(rep)} — {rep.profile} profile, not the published numbers", show_lines=False,
              expand=False)
    for col, kw in [("claim", {}), ("form", {}), ("Δ pp", {"justify": "right"}), ("n", {"justify": "right"}),
                    ("d̄ [L, U] pp", {}), ("verdict", {}), ("Holm", {}), ("P(A>B)", {"justify": "right"}),
                    ("compute", {}), ("profile", {})]:
        t.add_column(col, **kw)
    for row in rep.rows:
        c, d = row.claim, row.decision
        style = _STYLE.get(row.verdict, "")
        t.add_row(c.id, _value(c.form), _delta(c), _n(row), _interval(d),
                  f"[{style}]{row.verdict}[/]\n{row.reason}" if style else f"{row.verdict}\n{row.reason}",
                  _holm(row), _p(getattr(d, "p_a_gt_b", None)), _compute(row.compute), _profile(rep, row))
    return t


def print_report(rep: SuiteReport, console: Any = None) -> None:
    """Print `terminal_lines` (to stdout unless a rich Console is given): plain text, the same on any console."""
    if console is None:
        for line in terminal_lines(rep):
            print(line)
        return
    for line in terminal_lines(rep):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------ markdown


def _md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def summary_markdown(rep: SuiteReport) -> str:
    """The summary table (the README's block): a caption naming profile, dataset, machine and date, then the rows."""
    lines = [
        f"Profile **{rep.profile}**, dataset {_md_escape(rep.dataset or '—')}, machine {_md_escape(rep.device)} "
        f"({rep.threads or '—'} thread(s) per run), {rep.created[:10]}, code {rep.code_version}, "
        f"claim-spec hash `{rep.spec_hash}`: **{headline(rep)}**. {family_line(rep)} Accuracies are from the "
        f"{rep.profile} profile, not the published recipes.",
        "",
        "| claim | what it says | form | Δ (pp) | n | d̄ [L, U] (pp) | verdict | Holm | FDR (BH q) | P(A>B) | compute "
        "| profile |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    from claims.order import in_document_order, short_words

    for row in in_document_order(rep.rows):
        c, d = row.claim, row.decision
        lines.append(f"| {c.id} | {_md_escape(short_words(c.quote))} | {_value(c.form)} | {_delta(c)} | {_n(row)} | "
                     f"{_interval(d)} | **{row.verdict}**: {_md_escape(row.reason)} | {_holm(row)} | "
                     f"{_fdr_cell(row)} | {_p(getattr(d, 'p_a_gt_b', None))} | {_compute(row.compute)} | "
                     f"{_profile(rep, row)} |")
    if rep.not_runnable:
        lines += ["", f"Not runnable here ({len(rep.not_runnable)}): "
                  + "; ".join(f"**{c.id}** ({_md_escape(c.reason)})" for c in rep.not_runnable)]
    return "\n".join(lines) + "\n"


def _profile_cell(profile: str) -> str:
    return f"{profile} ({pipeline_note(profile).split(': ', 1)[1]})" if pipeline_only(profile) else profile


def _card(rep: SuiteReport, row: ClaimRow, plot: str | None, curves: str | None = None) -> list[str]:
    c, d = row.claim, row.decision
    title = f"### {c.id}: {row.verdict}" + (" (smoke: a pipeline check)" if pipeline_only(rep.profile) else "")
    out = [title, "", f"> {_md_escape(c.quote)}", "", f"— {_md_escape(c.source)}", ""]
    if pipeline_only(rep.profile):
        out += [f"**{pipeline_note(rep.profile).capitalize()}**: its models are barely trained, so this verdict says "
                "the runs, the store and the statistics work end to end, not whether the claim holds.", ""]
    out.append(f"Form {_value(c.form)}, Δ = {_delta(c)} pp, α = {c.alpha}, looks at "
               f"{', '.join(map(str, c.looks))}; metric {_metric(c)}; profile **{rep.profile}**.")
    if getattr(c, "offset", 0.0):
        out[-1] += f" Magnitude claim: the rules apply to A − B − {_fmt(pp(c.offset), 1)} pp."
    if getattr(c, "expected", None) is not None:
        out[-1] += f" Pinned expectation: {_value(c.expected)}."
    if getattr(c, "note", ""):
        out += ["", f"Note: {_md_escape(c.note)}"]
    for r in scaled_arms(c):
        out += ["", f"Scaled: arm `{r.name or r.key[:12]}` is a CPU stand-in for a heavy recipe: "
                    f"{_md_escape(r.scaled)}; its numbers are not the published recipe's."]
    out += ["", f"Verdict: **{row.verdict}**: {_md_escape(row.reason)}", ""]
    if c.id in rep.paper:
        out += [rep.paper_notes()[c.id][1], ""]
    if row.hypothesis is not None:
        same = f" (one hypothesis with {row.hypothesis}, which it restates)" if row.hypothesis != c.id else ""
        out += [f"Multiplicity{same}: BH q = {row.q:.3g}, {'holds' if row.fdr else 'does not hold'} at FDR "
                f"{100 * rep.alpha_family:g} %; {'holds' if row.holm else 'does not hold'} after Holm (family-wise "
                f"α {rep.alpha_family}).", ""]
    if row.confirmation:
        out += [f"Confirmation (--confirm): {_md_escape(row.confirmation)}.", ""]
    if d is not None:
        out.append(f"Mean difference ({rep.profile} profile) over n = {d.n} seeds: {_interval(d)} pp "
                   f"(one-sided bounds at the look's α′ = {_fmt(getattr(d, 'alpha_look', None), 4)}); "
                   f"sign-flip p = {_fmt(getattr(d, 'sign_flip_p', None), 4)}"
                   + (" — **fragile**: the t interval and the sign-flip test disagree" if d.fragile else "")
                   + f"; sequential p = {_fmt(getattr(d, 'p_seq', None), 4)}.")
        if d.p_a_gt_b is not None:
            lo, hi = getattr(d, "p_a_gt_b_lower", None), getattr(d, "p_a_gt_b_upper", None)
            ci = f", 95 % Wilson interval [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
            out.append(f"P(A beats B on a new seed) = {_p(d.p_a_gt_b)}{ci}: the share of the {d.n} seeds on which A "
                       "was ahead (ties half), an interval that assumes nothing of the shape of the differences.")
        if d.params_a is not None or d.params_b is not None:
            out.append(f"Parameters used by the forward pass: A {d.params_a if d.params_a is not None else '—'}, "
                       f"B {d.params_b if d.params_b is not None else '—'}.")
        if d.seeds_needed is not None and row.verdict == "INCONCLUSIVE":
            out.append(f"Seeds that would resolve it at the measured spread: about {d.seeds_needed}.")
        out.append("")
    for part in comparisons(c):
        rows = per_seed(part, row.results)
        if not rows:
            continue
        title = f"{part.id}: " if part is not c else ""
        a_name = part.a.name or part.a.key[:12]
        if part.b is not None:
            b_name = part.b.name or part.b.key[:12]
            out += [f"{title}per seed, {rep.profile} profile (accuracy %): A = `{a_name}`, B = `{b_name}`", "",
                    "| seed | A | B | A − B |", "| ---: | ---: | ---: | ---: |"]
            out += [f"| {r['seed']} | {_fmt(r['a'])} | {_fmt(r['b'])} | {_fmt(r['d'], sign=True)} |" for r in rows]
        else:
            out += [f"{title}per seed, {rep.profile} profile (accuracy %): A = `{a_name}`, threshold "
                    f"{_fmt(pp(getattr(part, 'threshold', None)))}", "", "| seed | A |", "| ---: | ---: |"]
            out += [f"| {r['seed']} | {_fmt(r['a'])} |" for r in rows]
        out.append("")
    if plot:
        out += [f"![{c.id}]({plot})", ""]
    if curves:
        out += [f"Training curves ({rep.profile} profile): test accuracy after each epoch, per arm, every seed thin "
                "and their mean thick" + (f"; the epochs before the last on {_curve_test(rep.profile):,} test images"
                                          if _curve_test(rep.profile) else "") + ".", "",
                f"![{c.id} training curves]({curves})", ""]
    out += [f"Compute: {row.compute.runs} runs, {row.compute.seconds:.0f} s counted in full, "
            f"{row.compute.seconds_split:.0f} s with shared runs split; {row.compute.trained} trained in this session.",
            ""]
    return out


def _curve_test(profile: str) -> int | None:
    prof = PROFILES.get(profile)
    return getattr(prof, "curve_test", None) if prof is not None else None


def report_markdown(rep: SuiteReport, plots: Mapping[str, str] | None = None,
                    curves: Mapping[str, str] | None = None) -> str:
    """report.md: header, the summary table, then one card a claim."""
    plots, curves = plots or {}, curves or {}
    out = [f"# Claims report — {rep.profile} profile, {rep.created}", ""]
    out += [f"- {_md_escape(line)}" for line in header_lines(rep)]
    out += [f"- warning: {_md_escape(w)}" for w in rep.warnings]
    out += ["", summary_markdown(rep), "## Claims", ""]
    for row in rep.rows:
        out += _card(rep, row, plots.get(row.claim.id), curves.get(row.claim.id))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ json


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None  # strict JSON, readable by any tool
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "value") and isinstance(x.value, str):
        return x.value
    return x


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


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
            "agreement_with_paper": rep.paper_notes()[cid][0]}


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
    return _jsonable({
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


# ------------------------------------------------------------------------------------------------ plots


# plot_claim and plot_curves live in claims/plots.py (one figure a claim, small multiples for a compound claim)


# ------------------------------------------------------------------------------------------------ files


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(rep: SuiteReport, reports_root: str | Path = "reports") -> Path:
    """Write `<reports_root>/<timestamp>-<profile>/` (report.md, report.json, summary.md, plots) and `latest/`."""
    root = Path(reports_root)
    stamp = rep.created.replace(":", "").replace("-", "")
    out = root / f"{stamp}-{rep.profile}"
    k = 1
    while out.exists():
        k += 1
        out = root / f"{stamp}-{rep.profile}-{k}"
    out.mkdir(parents=True)
    from claims.plots import plot_claim, plot_curves

    plots: dict[str, str] = {}
    curves: dict[str, str] = {}
    (out / "plots").mkdir()
    for row in rep.rows:
        p = plot_claim(rep, row, out / "plots" / f"{_safe(row.claim.id)}.png")
        if p is not None:
            plots[row.claim.id] = f"plots/{p.name}"
        p = plot_curves(rep, row, out / "plots" / f"{_safe(row.claim.id)}-curves.png")
        if p is not None:
            curves[row.claim.id] = f"plots/{p.name}"
    (out / "report.md").write_text(report_markdown(rep, plots, curves))
    (out / "summary.md").write_text(summary_markdown(rep))
    (out / "report.json").write_text(json.dumps(report_json(rep), indent=1, sort_keys=False, allow_nan=False))
    latest = root / LATEST
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(out, latest)  # a copy, not a symlink: it survives archiving and works on every platform
    (latest / "SOURCE").write_text(out.name + "\n")
    return out


def _report_dir(path: str | Path) -> Path:
    p = Path(path)
    if (p / "summary.md").is_file():
        return p
    if (p / LATEST / "summary.md").is_file():
        return p / LATEST
    raise FileNotFoundError(f"{p} holds no claims report (no summary.md in it or in its '{LATEST}' folder)")


def replace_block(readme_path: str | Path, start_marker: str, end_marker: str, body: str) -> None:
    """Replace what lies between two marker lines of a README with `body`; the rest of the file stays as it is."""
    readme = Path(readme_path)
    if not readme.is_file():
        raise FileNotFoundError(f"README {readme} does not exist")
    text = readme.read_text()
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README {readme} has no '{start_marker}' ... '{end_marker}' block to fill")
    readme.write_text(text[: start + len(start_marker)] + "\n" + body.strip() + "\n" + text[end:])


def write_readme_summary(report_dir: str | Path, readme_path: str | Path) -> str:
    """Replace the block between the claims-summary markers of the README with the report's summary table, unless a
    smoke report would replace a default or paper summary (ValueError); returns the report used, with its profile."""
    from claims.summary_guard import check_replacement, describe

    folder = _report_dir(report_dir)
    summary = (folder / "summary.md").read_text().strip()
    check_replacement(readme_path, SUMMARY_START, SUMMARY_END, summary, folder)
    replace_block(readme_path, SUMMARY_START, SUMMARY_END, summary)
    return describe(folder, summary)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.report [REPORT_DIR] --readme README.md`: copy a report's summary into the README."""
    ap = argparse.ArgumentParser(prog="python -m claims.report", description=main.__doc__)
    ap.add_argument("report_dir", nargs="?", default="reports", help="a report folder, or reports/ for its latest")
    ap.add_argument("--readme", required=True, help="the README whose claims-summary block is replaced")
    args = ap.parse_args(argv)
    try:
        used = write_readme_summary(args.report_dir, args.readme)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.readme}: claims summary replaced from {used}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
