"""The report as text: the terminal's compact table and report.md / summary.md.

The terminal gets one plain line a claim (id, form, n, d̄ [L, U], verdict, Holm, FDR), within 100 columns and the
same on a terminal as in a pipe or CI log, and a line of counts; the reasons live in report.md and summary.md. One
card a claim in report.md: the source's words, per-seed values of the arms joined by seed, parameter counts, the seeds
an inconclusive claim would need, the paired plot and the training curves. Every table names its profile: a
smoke-profile number is not a published one, and a smoke verdict checks the pipeline, not the claim.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Mapping
from typing import Any

from claims.order import in_document_order, short_reason, short_words
from claims.report.model import (
    ClaimRow,
    SuiteReport,
    _value,
    comparisons,
    per_seed,
    pipeline_note,
    pipeline_only,
    pp,
    scaled_arms,
)
from claims.report.readme import md_cell
from claims.schedule import Compute
from tricks.recipe import PROFILES

TERMINAL_WIDTH = 100  # the terminal report's lines never pass this, so CI logs and narrow terminals do not wrap


# ------------------------------------------------------------------------------------------------ cells and lines


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


def _profile(rep: SuiteReport, row: ClaimRow) -> str:
    """The profile column: the profile's name, and "scaled" when a heavy arm trained as its scaled variant."""
    return _profile_cell(rep.profile) + (", scaled" if scaled_arms(row.claim) else "")


def _n(row: ClaimRow) -> str:
    return str(row.decision.n) if row.decision is not None and row.decision.n is not None else "0"


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


_FORM_SHORT = {"non_inferiority": "non-inferior", "fewer_params": "fewer-params"}


def _holm_short(row: ClaimRow) -> str:
    return {"holds": "holds", "not after Holm": "no"}.get(_holm(row), "—")


def terminal_table(rep: SuiteReport) -> list[str]:
    """The claims as plain fixed-width lines within TERMINAL_WIDTH, in document order: ids in full, no reasons (they
    are in report.md) but the few words saying why a claim with n 0 trained nothing."""
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


def print_report(rep: SuiteReport, console: Any = None) -> None:
    """Print `terminal_lines` (to stdout unless a rich Console is given): plain text, the same on any console."""
    if console is None:
        for line in terminal_lines(rep):
            print(line)
        return
    for line in terminal_lines(rep):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------ markdown


def summary_markdown(rep: SuiteReport) -> str:
    """The summary table (the README's block): a caption naming profile, dataset, machine and date, then the rows."""
    lines = [
        f"Profile **{rep.profile}**, dataset {md_cell(rep.dataset or '—')}, machine {md_cell(rep.device)} "
        f"({rep.threads or '—'} thread(s) per run), {rep.created[:10]}, code {rep.code_version}, "
        f"claim-spec hash `{rep.spec_hash}`: **{headline(rep)}**. {family_line(rep)} Accuracies are from the "
        f"{rep.profile} profile, not the published recipes.",
        "",
        "| claim | what it says | form | Δ (pp) | n | d̄ [L, U] (pp) | verdict | Holm | FDR (BH q) | P(A>B) | compute "
        "| profile |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    for row in in_document_order(rep.rows):
        c, d = row.claim, row.decision
        lines.append(f"| {c.id} | {md_cell(short_words(c.quote))} | {_value(c.form)} | {_delta(c)} | {_n(row)} | "
                     f"{_interval(d)} | **{row.verdict}**: {md_cell(row.reason)} | {_holm(row)} | "
                     f"{_fdr_cell(row)} | {_p(getattr(d, 'p_a_gt_b', None))} | {_compute(row.compute)} | "
                     f"{_profile(rep, row)} |")
    if rep.not_runnable:
        lines += ["", f"Not runnable here ({len(rep.not_runnable)}): "
                  + "; ".join(f"**{c.id}** ({md_cell(c.reason)})" for c in rep.not_runnable)]
    return "\n".join(lines) + "\n"


def _profile_cell(profile: str) -> str:
    return f"{profile} ({pipeline_note(profile).split(': ', 1)[1]})" if pipeline_only(profile) else profile


def _card(rep: SuiteReport, row: ClaimRow, plot: str | None, curves: str | None = None) -> list[str]:
    c, d = row.claim, row.decision
    title = f"### {c.id}: {row.verdict}" + (" (smoke: a pipeline check)" if pipeline_only(rep.profile) else "")
    out = [title, "", f"> {md_cell(c.quote)}", "", f"— {md_cell(c.source)}", ""]
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
        out += ["", f"Note: {md_cell(c.note)}"]
    for r in scaled_arms(c):
        out += ["", f"Scaled: arm `{r.name or r.key[:12]}` is a CPU stand-in for a heavy recipe: "
                    f"{md_cell(r.scaled)}; its numbers are not the published recipe's."]
    out += ["", f"Verdict: **{row.verdict}**: {md_cell(row.reason)}", ""]
    if c.id in rep.paper:
        out += [rep.paper_notes[c.id][1], ""]
    if row.hypothesis is not None:
        same = f" (one hypothesis with {row.hypothesis}, which it restates)" if row.hypothesis != c.id else ""
        out += [f"Multiplicity{same}: BH q = {row.q:.3g}, {'holds' if row.fdr else 'does not hold'} at FDR "
                f"{100 * rep.alpha_family:g} %; {'holds' if row.holm else 'does not hold'} after Holm (family-wise "
                f"α {rep.alpha_family}).", ""]
    if row.confirmation:
        out += [f"Confirmation (--confirm): {md_cell(row.confirmation)}.", ""]
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
    out += [f"- {md_cell(line)}" for line in header_lines(rep)]
    out += [f"- warning: {md_cell(w)}" for w in rep.warnings]
    out += ["", summary_markdown(rep), "## Claims", ""]
    for row in rep.rows:
        out += _card(rep, row, plots.get(row.claim.id), curves.get(row.claim.id))
    return "\n".join(out)
