"""Sessions: `nox` (unit tests), `nox -s lint`, `nox -s claims [-- pytest args]`, `nox -s bench`, `nox -s readme`,
`nox -s reproduce`, `nox -s figures`,
`nox -s fingerprints`, `nox -s campaign`.

Every session runs in the environment nox itself was started from (the README's `.venv`): the PyTorch CUDA wheel
is 5.5 GB, and a fresh virtualenv per session would install it again each time.
"""

import os
import subprocess
import sys

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"
PY = sys.executable
DIE_WITH_NOX = {"TRICKS_DIE_WITH_PARENT": "1"}  # kill -9 of nox stops the suite it started (claims/lifeline.py)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests on tiny synthetic data (the integration test also reads $TRICKS_DATA when it is set)."""
    session.run(PY, "-m", "pytest", "tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the packages, tests, benchmarks and this file."""
    session.run(PY, "-m", "ruff", "check", "tricks", "claims", "tests", "benchmarks", "noxfile.py")


@nox.session
def claims(session: nox.Session) -> None:
    """The claims suite (default profile) and its report; `nox -s claims -- --profile paper -k bn_before`."""
    session.run(PY, "-m", "pytest", "claims", "-p", "no:cacheprovider", *session.posargs, env=DIE_WITH_NOX)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks: ratios measured side by side in one run."""
    session.run(PY, "benchmarks/throughput.py", *session.posargs)


@nox.session
def readme(session: nox.Session) -> None:
    """Copy the latest claims report's summary table into docs/results.md (`-- REPORT_DIR` for another report; a
    smoke report never replaces a default or paper one), and the answer table (published recipes beside the proxy)
    into the README's answers block, then the method cards docs/tricks/<name>.md and the paper campaign's standing in
    docs/campaign.md."""
    session.run(PY, "-m", "claims.report", *(session.posargs or ["reports"]), "--readme", "docs/results.md")
    # the answer table: the paper column from the committed record, the proxy column from a default report
    session.run(PY, "-m", "claims.answers", "--proxy-from", *(session.posargs or ["reports"]), "--readme", "README.md")
    session.run(PY, "-m", "claims.cards")  # docs/tricks/<name>.md from the registry and those verdicts
    session.run(PY, "-m", "claims.standing", "--doc", "docs/campaign.md")  # where the paper campaign stands


# the paper campaign's order: the user's own examples (doc 001) first, then doc 003, doc 002 without its K-means arms,
# the published recipes no claim trains (UNCLAIMED: for the reproduction table), doc 000, the claims several documents
# share, and the full-size K-means arms last; the last step judges every claim
UNCLAIMED = ("unclaimed",)
CAMPAIGN = (
    ("claims/suite/test_pal2021b.py",),
    ("claims/suite/test_fastai2018.py",),
    ("claims/suite/test_he2016.py", "-k", "not (kmeans or c002_9 or c002_10)"),
    UNCLAIMED,
    ("claims/suite/test_pal2021a.py",),
    ("claims/suite/test_cross.py",),
    ("claims",),
)


@nox.session
def figures(session: nox.Session) -> None:
    """Time the commands the README and docs quote, into docs/performance.md with the date and the machine."""
    session.run(PY, "benchmarks/figures.py", *session.posargs)


@nox.session
def campaign(session: nox.Session) -> None:
    """The paper profile over every claim, document by document at the lowest CPU priority, from the run store (so
    it resumes where it stopped); `nox -s campaign -- --workers 2 --store S`. Its record: `nox -s reproduce`."""
    from tricks.plain import autogroup_nice

    before = autogroup_nice(19)  # nice alone does not yield to other sessions under Linux's autogroup scheduler
    if before is not None:
        session.log("this session's CPU group set to nice 19 (Linux autogroup) while the campaign runs")
    try:
        for step in CAMPAIGN:
            if step == UNCLAIMED:
                _train_unclaimed(session)
                continue
            session.run("nice", "-n", "19", PY, "-m", "pytest", *step, "-p", "no:cacheprovider", "--profile",
                        "paper", "--pilot-seeds", "0", *session.posargs, success_codes=[0, 1], env=DIE_WITH_NOX)
    finally:
        if before is not None and autogroup_nice(before) is None:
            session.log(f"could not set this session's CPU group back to nice {before} (it needs privilege)")


def _train_unclaimed(session: nox.Session) -> None:
    """The campaign's seeds of each published recipe no claim trains, through `tricks.apply` into the same store (and
    from the same `--data`), one process a (recipe, seed) and `--workers` of them at once (one torch thread each, as
    the suite's workers); a run already stored is taken from it."""
    from claims.reproduce import UNCLAIMED_SEEDS

    store, data = _option(session.posargs, "--store"), _option(session.posargs, "--data")
    workers = _option(session.posargs, "--workers")
    names = session.run(PY, "-m", "claims.reproduce", "--unclaimed", silent=True,
                        stderr=subprocess.DEVNULL).split()  # stdout only: fastai's import warns on stderr
    jobs = [(name, seed) for name in names for seed in range(UNCLAIMED_SEEDS)]
    cmds = [["nice", "-n", "19", PY, "-m", "tricks.apply", "--recipe", name, "--profile", "paper", "--seed", str(seed),
             "--quiet", *(["--store", store] if store else []), *(["--data", data] if data else [])]
            for name, seed in jobs]
    width = int(workers) if workers and workers.isdigit() and int(workers) > 0 else (os.cpu_count() or 1)
    codes = _run_pool(cmds, width, session.log)
    # 1: a run diverged; it is stored and reported, the campaign goes on
    failed = [f"{name} seed {seed} (exit {rc})" for (name, seed), rc in zip(jobs, codes, strict=True)
              if rc not in (0, 1)]
    if failed:
        session.error(f"{len(failed)} of the {len(jobs)} unclaimed run(s) failed: {'; '.join(failed)}")


def _run_pool(cmds: list[list[str]], workers: int, log=print) -> list[int]:
    """Run the commands, at most `workers` at once, each killed with nox (DIE_WITH_NOX); their exit codes in order."""
    from concurrent.futures import ThreadPoolExecutor

    def one(cmd: list[str]) -> int:
        log(" ".join(cmd))
        return subprocess.run(cmd, env={**os.environ, **DIE_WITH_NOX}).returncode

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, cmds))


def _option(args: list[str], flag: str) -> str | None:
    """The value of `flag` in pytest-style arguments (`--flag V` or `--flag=V`), or None."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@nox.session
def fingerprints(session: nox.Session) -> None:
    """Recompute every recipe's training fingerprint and rewrite tricks/fingerprints.json (only moved recipes get new
    ids, so only their stored runs retrain)."""
    session.run(PY, "-m", "tricks.fingerprint", "--write", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """The paper-profile runs in the store beside the published numbers: docs/reproduction.md + results/ record; then
    what the record feeds: the README's answer table and the campaign's standing in docs/campaign.md."""
    session.run(PY, "-m", "claims.reproduce", "--readme", "docs/reproduction.md", "--json",
                "results/paper-reproduction.json", *session.posargs)
    session.run(PY, "-m", "claims.answers", "--readme", "README.md")
    session.run(PY, "-m", "claims.standing", "--doc", "docs/campaign.md")
