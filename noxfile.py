"""Sessions: `nox` (unit tests), `nox -s lint`, `nox -s claims [-- pytest args]`, `nox -s bench`, `nox -s readme`,
`nox -s reproduce`.

Every session runs in the environment nox itself was started from (the README's `.venv`): the PyTorch CUDA wheel
is 5.5 GB, and a fresh virtualenv per session would install it again each time.
"""

import sys

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"
PY = sys.executable


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
    session.run(PY, "-m", "pytest", "claims", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks: ratios measured side by side in one run."""
    session.run(PY, "benchmarks/throughput.py", *session.posargs)


@nox.session
def readme(session: nox.Session) -> None:
    """Copy the latest claims report's summary table into README.md (`-- REPORT_DIR` for another report)."""
    session.run(PY, "-m", "claims.report", *(session.posargs or ["reports"]), "--readme", "README.md")


@nox.session
def reproduce(session: nox.Session) -> None:
    """The paper-profile runs in the store beside the published numbers: README table + results/ record."""
    session.run(PY, "-m", "claims.reproduce", "--readme", "README.md", "--json", "results/paper-reproduction.json",
                *session.posargs)
