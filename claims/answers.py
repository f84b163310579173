"""The answer table: for every claim, its words, its source document, its verdict on the published recipes (profile
`paper`), its verdict on the quick proxy (profile `default`), and whether the two agree.

The paper column is recomputed from the campaign's record (`results/paper-reproduction.json`) by the suite's engine,
look by look as the sequential design takes them (looks 3, 5, 8 under the paper profile's cap of 8): a claim whose
arms have runs for a look that decides gets that verdict; one whose next look still lacks runs reads "paper: n seeds
so far" with its interim d̄ [L, U]. No training. The proxy column comes from the latest default report's verdicts
(`results/proxy-verdicts.json`, written by `nox -s readme` from a default report).

`python -m claims.answers` prints the table; `--readme README.md` writes it between the answers markers and
`--json` writes it as JSON. A proxy (default-profile) report carries each claim's paper standing and agreement in
report.json (`paper`, `agreement_with_paper`), on its card, and in its headline where they disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from claims.order import claim_order
from claims.record import RECORD, latest_per_seed, read
from claims.report.readme import find_report, publish, run_writer
from tricks.recipe import PROFILES, RunResult

PROXY = Path("results") / "proxy-verdicts.json"
START, END = "<!-- answers:start -->", "<!-- answers:end -->"
DOCS = {"doc 000": "pal2021a", "doc 001": "pal2021b", "doc 002": "he2016", "doc 003": "fastai2018",
        "doc 004": "jovian"}


def all_claims() -> list[Any]:
    """Every claim of the suite's claim modules (`claims/suite/test_*.py`), by document, then id."""
    import importlib
    import pkgutil

    import claims.suite
    from claims.spec import Claim

    out: dict[str, Any] = {}
    for mod in sorted(m.name for m in pkgutil.iter_modules(claims.suite.__path__) if m.name.startswith("test_")):
        for value in vars(importlib.import_module(f"claims.suite.{mod}")).values():
            if isinstance(value, Claim):
                out.setdefault(value.id, value)
    return [out[c] for c in sorted(out, key=claim_order)]


def source_of(claim: Any) -> str:
    """The claim's source document, e.g. "doc 001" (a cross claim: "docs 001, 003")."""
    found = sorted(set(re.findall(r"doc (\d{3})", claim.source)))
    if claim.id.startswith("X-"):
        found = sorted({p.id.split("/")[-1] for p in claim.parts})
        return "docs " + ", ".join(found)
    return f"doc {found[0]}" if found else claim.source.split(":")[0]


def short_source(source: str) -> str:
    """A source with each document's short name, as the sources list names it: "doc 001 (pal2021b)"."""
    names = [DOCS[f"doc {d}"] for d in re.findall(r"\d{3}", source) if f"doc {d}" in DOCS]
    return f"{source} ({', '.join(names)})" if names else source


# ------------------------------------------------------------------------------------------------ the paper column


@dataclass
class Status:
    """A claim's standing under one profile: its verdict, or how far it got."""

    verdict: str | None  # SUPPORTED / REFUTED / INCONCLUSIVE / INVALID once final; None while seeds are missing
    n: int  # paired seeds judged (the latest look with every run present)
    mean: float | None = None  # d̄ (pp) at that look; None for compound and absolute claims
    lower: float | None = None
    upper: float | None = None
    reason: str = ""
    final: bool = False
    off: str = ""  # why the profile cannot judge the claim on this machine (needs a GPU, a published number)

    @property
    def label(self) -> str:
        if self.off:
            return self.off
        if self.final and self.verdict:
            return self.verdict + (f", {why}" if (why := short_why(self.reason)) and self.verdict == "INCONCLUSIVE"
                                   else "")
        return f"paper: {self.n} seed{'s' if self.n != 1 else ''} so far" if self.n else "paper: no runs yet"


_PART = re.compile(r"\b[A-Z]\d{3}-\d+[\w@]*/([\w@.-]+): ")  # a compound claim's part in its reason: "C002-3/rmsprop: "


def short_why(reason: str) -> str:
    """The few words of an INCONCLUSIVE reason a table cell can hold: the seeds a verdict would need, or the cap; for
    a claim of several parts, how many are undecided and the seeds each of those would need."""
    if found := re.search(r"(\d+) of (\d+) parts undecided", reason):
        starts = list(_PART.finditer(reason))
        needs = []
        for i, here in enumerate(starts):
            why = short_why(reason[here.end():starts[i + 1].start() if i + 1 < len(starts) else len(reason)])
            if why:
                needs.append(f"{here.group(1)} {why}")
        return f"{found.group(1)} of {found.group(2)} parts undecided" + (f" ({'; '.join(needs)})" if needs else "")
    if found := re.search(r"needs (~[\d,]+|more than [\d,]+) seeds", reason):
        return f"needs {found.group(1).replace('more than ', '> ')} seeds"
    return "at the cap" if "budget exhausted" in reason else ""


def off_label(reason: str) -> str:
    """An off-profile reason, short: why no run was made."""
    if reason.startswith("needs a GPU"):
        return "needs a GPU: not run on a CPU"
    if reason.startswith("a published number"):
        return "not judged: a published number"
    return "not judged here"


def _pp(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(100 * x, 2)


@dataclass
class PaperPlan:
    """A claim as the paper profile runs it from a set of runs: its arms' keys, its looks (capped), how many leading
    seeds every arm has, or why the profile cannot judge it on this machine (`off`)."""
    claim: Any
    keys: list[str]
    looks: list[int]
    have: int
    gpu: bool = False
    off: str | None = None

    @property
    def done(self) -> int:
        """The latest look every arm has the seeds of (0 before the first)."""
        return max((n for n in self.looks if n <= self.have), default=0)


def paper_plan(claim: Any, by_key: dict[str, dict[int, RunResult]], device_has_gpu: bool = False) -> PaperPlan:
    """The claim gated for the paper profile (GPU-sized arms with every run present, trained on a GPU, count) and how
    far its arms' runs reach."""
    from claims.schedule import DEFAULT_SEEDS, capped_looks
    from claims.verdict import gate, gpu_pairs

    profile = PROFILES["paper"]
    looks = capped_looks(claim.looks, profile.max_seeds, len(DEFAULT_SEEDS))

    def gpu_runs(c: Any) -> bool:
        pairs = gpu_pairs(c, DEFAULT_SEEDS[:looks[-1]])
        return bool(pairs) and all(s in by_key.get(k, {}) for k, s in pairs)

    g = gate(claim, profile.name, device_has_gpu, gpu_runs)
    if g.off is not None:
        return PaperPlan(claim, [], looks, 0, off=g.off)
    keys = list(dict.fromkeys(r.key for r in g.claim.recipes()))
    have = 0
    for s in DEFAULT_SEEDS:
        if not all(s in by_key.get(k, {}) for k in keys):
            break
        have += 1
    return PaperPlan(g.claim, keys, looks, have, g.gpu)


def judge_paper(claim: Any, by_key: dict[str, dict[int, RunResult]],
                device_has_gpu: bool = False) -> tuple[Any, int, str | None]:
    """The claim as the suite would judge it under the paper profile from these runs, without training: the decision
    at the latest look whose seeds every arm has (None before the first look), that look's n, and the off-profile
    reason when the profile cannot judge it here."""
    from claims.schedule import DEFAULT_SEEDS
    from claims.verdict import judge

    plan = paper_plan(claim, by_key, device_has_gpu)
    if plan.off is not None:
        return None, 0, plan.off
    if not (n := plan.done):
        return None, plan.have, None
    results = {k: {s: by_key[k][s] for s in DEFAULT_SEEDS[:n]} for k in plan.keys}
    return judge(plan.claim, results, last_look=n == plan.looks[-1], device_has_gpu=plan.gpu,
                 looks=plan.looks), n, None


def paper_status(claim: Any, runs: Sequence[RunResult], device_has_gpu: bool = False) -> Status:
    """The claim judged on the record's runs under the paper profile, as the suite's engine takes its looks."""
    return judged_status(*judge_paper(claim, latest_per_seed(runs), device_has_gpu))


def judged_status(d: Any, n: int, reason: str | None) -> Status:
    """judge_paper's (decision, n, off-profile reason) as a Status."""
    if reason is not None:
        return Status(None, 0, reason=reason, off=off_label(reason))
    if d is None:
        return Status(None, n)
    verdict = str(getattr(d.verdict, "value", d.verdict))
    return Status(verdict if d.final else None, d.n, _pp(d.mean), _pp(d.lower), _pp(d.upper), d.reason, d.final)


def paper_column(claims: Sequence[Any], record_path: Path | None = None) -> dict[str, Status]:
    """Each claim's paper standing from the committed record (the repository's, by default): what a proxy report
    sets its verdicts beside. Empty when there is no record (an installed copy without the repository)."""
    path = record_path or Path(__file__).resolve().parents[1] / RECORD
    runs = read(path) if path.exists() else []
    return {c.id: paper_status(c, runs) for c in claims} if runs else {}


def status_of(verdict: str, d: Any) -> Status:
    """A report's own verdict and decision as a Status (the proxy side of `agreement`)."""
    if d is None:
        return Status(verdict, 0, final=True)
    return Status(verdict, int(d.n or 0), _pp(d.mean), _pp(d.lower), _pp(d.upper), d.reason or "", True)


DISAGREE = ("contradictory verdicts", "opposite sign", "same sign, different verdict", "different verdict")


def paper_note(paper: Status, own: Status) -> tuple[str, str]:
    """(agreement, a sentence for a card) of a proxy verdict beside the claim's verdict on the published recipes."""
    how = agreement(paper, own)
    cell = paper.label + (f" ({_interval(paper)})" if paper.n or paper.mean is not None else "")
    flag = " **This verdict disagrees with the published recipes'.**" if how in DISAGREE else ""
    return how, f"On the published recipes (paper profile, the committed record): {cell}; {how}.{flag}"


# ------------------------------------------------------------------------------------------------ the proxy column


def proxy_status(entry: dict[str, Any] | None) -> Status | None:
    if entry is None:
        return None
    reason = entry.get("reason") or ""
    n = int(entry.get("n") or 0)
    off = off_label(reason) if n == 0 and reason.startswith(("needs a GPU", "a published number")) else ""
    return Status(entry["verdict"], n, entry.get("mean"), entry.get("lower"), entry.get("upper"), reason, True, off)


def proxy_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """The proxy verdicts file from a default report.json: per claim verdict, n, d̄ [L, U] (pp), reason."""
    if report.get("profile") != "default":
        raise ValueError(f"the proxy column comes from a default-profile report, not a {report.get('profile')} one")
    out = {}
    for c in report.get("claims", []):
        d = c.get("decision") or {}
        out[c["id"]] = {"verdict": c.get("verdict"), "n": d.get("n", 0), "reason": c.get("reason"),
                        **{k: d.get(f"{k}_pp") for k in ("mean", "lower", "upper")}}
    return {"profile": "default", "created": report.get("created"), "code_version": report.get("code_version"),
            "source": "report.json of a default-profile suite run", "claims": out}


def agreement(paper: Status, proxy: Status | None) -> str:
    """agree | same sign, different verdict | opposite sign | contradictory verdicts | pending (paper) | no proxy."""
    if proxy is None or proxy.off:
        return "no proxy verdict"
    if paper.off:
        return "no paper verdict"
    if not paper.final:
        return "pending"
    if paper.verdict == proxy.verdict:
        return "agree"
    if {paper.verdict, proxy.verdict} == {"SUPPORTED", "REFUTED"}:
        return "contradictory verdicts"
    if paper.mean is not None and proxy.mean is not None and paper.mean * proxy.mean < 0:
        return "opposite sign"
    if paper.mean is not None and proxy.mean is not None:
        return "same sign, different verdict"
    return "different verdict"


@dataclass
class Row:
    id: str
    words: str
    source: str
    paper: Status
    proxy: Status | None
    agreement: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["paper"]["label"] = self.paper.label
        return d


def rows(runs: Sequence[RunResult], proxy: dict[str, Any] | None, claims: Sequence[Any] | None = None) -> list[Row]:
    claims = all_claims() if claims is None else claims
    found = (proxy or {}).get("claims", {})
    out = []
    for c in claims:
        p = paper_status(c, runs)
        q = proxy_status(found.get(c.id))
        out.append(Row(c.id, c.quote, source_of(c), p, q, agreement(p, q)))
    return out


def _interval(s: Status | None) -> str:
    if s is None:
        return "—"
    if s.mean is None:
        return f"n {s.n}" if s.n else "—"
    return f"{s.mean:+.2f} [{bound(s.lower)}, {bound(s.upper)}], n {s.n}"


def bound(x: float | None) -> str:
    """A bound of an interval in pp, signed; a missing one is −∞."""
    return "−∞" if x is None or x == -math.inf else ("+∞" if x == math.inf else f"{x:+.2f}")


_COUNTED = {"agree": "{n} agree", "contradictory verdicts": "{n} contradict it (SUPPORTED against REFUTED)",
            "opposite sign": "{n} with the opposite sign",
            "same sign, different verdict": "{n} with the same sign but a different verdict",
            "different verdict": "{n} with a different verdict", "pending": "{n} pending"}


def _counted(agreement_class: str, n: int) -> str:
    """'11 agree', '1 contradict it (...)': an agreement class with its count, worded to read right for any count."""
    return _COUNTED.get(agreement_class, "{n} " + agreement_class).format(n=n)


def comparison_summary(table: Sequence[Row]) -> str:
    """How the proxy compares with the published recipes, in figures: verdicts so far and their agreement, and where
    both have a mean difference, how often its sign differs and how much larger the proxy's is (median ratio)."""
    decided = [r for r in table if r.paper.final]
    classes = Counter(r.agreement for r in decided if r.agreement != "no proxy verdict")
    text = (f"{len(decided)} of {len(table)} claims have a verdict on the published recipes"
            + ("; beside the proxy's verdicts: " + ", ".join(_counted(k, v) for k, v in classes.most_common())
               if classes else "") + ".")
    both = [r for r in table if r.paper.mean is not None and r.proxy is not None and r.proxy.mean is not None
            and not r.proxy.off]
    if both:
        flips = sum(r.paper.mean * r.proxy.mean < 0 for r in both)
        ratios = sorted(abs(r.proxy.mean) / abs(r.paper.mean) for r in both if abs(r.paper.mean) >= 0.1)
        seeds = sorted({r.paper.n for r in both})
        text += (f" Where both have a mean difference ({len(both)} claims, the paper's at "
                 f"{'-'.join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds))} seeds so far), the "
                 f"proxy's has the opposite sign in {flips}"
                 + (f" and is {statistics.median(ratios):.1f}× the paper's in size (median)" if ratios else "") + ".")
    return text


def markdown(table: Sequence[Row], record_note: str, proxy_note: str) -> str:
    lines = ["| claim | source | what it says | published recipes (paper) | quick proxy (default) | agreement |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in table:
        paper = f"**{r.paper.label}**" if r.paper.final else r.paper.label
        if r.paper.n or r.paper.mean is not None:
            paper += f" ({_interval(r.paper)})"
        proxy = "—" if r.proxy is None else r.proxy.label if r.proxy.off else (
            f"{r.proxy.label} ({_interval(r.proxy)})")
        words = r.words if len(r.words) <= 90 else r.words[:87].rstrip() + "…"
        lines.append(f"| {r.id} | {short_source(r.source)} | {words} | {paper} | {proxy} | {r.agreement} |")
    head = f"{comparison_summary(table)} d̄ [L, U] in percentage points (A − B), n paired seeds."
    return "\n".join([head, "", *lines, "", record_note, proxy_note])


def notes(record_path: Path, proxy: dict[str, Any] | None, runs: Sequence[RunResult]) -> tuple[str, str]:
    data = json.loads(record_path.read_text()) if record_path.exists() else {}
    devices = sorted({r.device for r in runs})
    rec = (f"Paper column: the engine on the {len(runs)} paper-profile runs of `{record_path}` (generated "
           f"{data.get('generated', '?')}; {', '.join(devices) or 'no runs'}), written by `nox -s reproduce` (and "
           "`nox -s readme`).")
    prox = ("Proxy column: none yet." if proxy is None else
            f"Proxy column: the default-profile report of {str(proxy.get('created') or '?')[:10]} "
            f"(code {proxy.get('code_version')}; {proxy.get('source')}).")
    return rec, prox


def update_proxy(report_dir: Path, proxy_path: Path = PROXY) -> str:
    """Rewrite the proxy verdicts from a default report; say what was done (a smoke or paper report changes nothing)."""
    folder = find_report(report_dir)
    report = json.loads((folder / "report.json").read_text())
    if report.get("profile") != "default":
        return f"{folder}: a {report.get('profile')}-profile report; the proxy column keeps {proxy_path}"
    proxy_path.write_text(json.dumps(proxy_from_report(report), separators=(",", ":"), sort_keys=True) + "\n")
    return f"{proxy_path}: proxy verdicts from {folder}"


def build(record_path: Path = RECORD, proxy_path: Path = PROXY) -> tuple[list[Row], str]:
    runs = read(record_path) if record_path.exists() else []
    proxy = json.loads(proxy_path.read_text()) if proxy_path.exists() else None
    table = rows(runs, proxy)
    return table, markdown(table, *notes(record_path, proxy, runs))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m claims.answers`: the answer table (paper beside proxy) from the committed record."""
    ap = argparse.ArgumentParser(prog="python -m claims.answers", description=main.__doc__)
    ap.add_argument("--record", default=str(RECORD))
    ap.add_argument("--proxy", default=str(PROXY))
    ap.add_argument("--readme", default=None, help="write the table into this file between the answers markers")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--proxy-from", default=None, metavar="REPORT_DIR",
                    help="first rewrite the proxy file from this report (or the latest under it) when it is a "
                         "default-profile report; other profiles leave the proxy column as it is")
    args = ap.parse_args(argv)

    def write() -> None:
        if args.proxy_from:
            print(update_proxy(Path(args.proxy_from), Path(args.proxy)))
        table, text = build(Path(args.record), Path(args.proxy))
        print(text)
        publish(text, args.readme, (START, END), args.json,
                json.dumps([r.to_dict() for r in table], separators=(",", ":")) + "\n")

    return run_writer(write)


if __name__ == "__main__":
    raise SystemExit(main())
