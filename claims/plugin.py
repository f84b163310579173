"""The pytest side of the claims engine: options, the `claims` marker, one scheduler for every selected claim.

A claim is a test marked with its Claim:

    @pytest.mark.claims(C001_4)
    def test_c001_4_bn_before_relu_beats_baseline(claim_decision):
        ...  # optional extra checks on the Decision

After collection the plugin gathers the claims of the selected tests; before the first of them runs, one Scheduler
judges them all together, so runs are shared and every worker stays busy. Each test then reads its Decision: it
passes when the engine reached a verdict (the pinned `expected` one, when the claim has one) and fails on INVALID or
an engine error, with the decision's reason in the message. It does not pass "when the claim is true". At the end of
the session Holm is applied across the claims and the report is printed and written.

The package installs this module as a pytest plugin (entry point `pytest11`, in pyproject.toml), so any project can
declare claims over its own arms (`claims.compare.LearnerArm`) in its own test files. A claim whose arms are all
user arms trains them as they define (profile `own`; `--profile` and the profile's seed cap do not apply). Where the
entry point is not installed, `claims/conftest.py` registers the module for sessions that collect from `claims/`.
Every hook runs once a session even when a conftest star-imports this module under the entry point too.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tricks.recipe import PROFILES

__all__ = [
    "pytest_addoption", "pytest_configure", "pytest_collection_finish", "pytest_runtest_setup", "pytest_runtest_call",
    "pytest_sessionfinish", "pytest_terminal_summary", "claim_decision",
]

FAMILY_ALPHA = 0.05  # Holm's family level for the suite headline
# exit codes, the same as python -m tricks.apply's (docs/exit-codes.md): pytest's 0 and 1 for passed and failed
EXIT_USAGE = 2  # a bad option, data or store error (a full disk included), a report that cannot be written
EXIT_INTERRUPTED = 130  # Ctrl-C: the finished runs stay in the store
RAY_EXIT = EXIT_USAGE  # --executor ray without Ray installed, or without a cluster to reach


def _exit(config: pytest.Config | None, message: str) -> None:
    """End the session with one sentence and exit code 2 (not taken for an interruption at the session's end)."""
    if config is not None:
        config.stash[_EXITED] = True
    pytest.exit(message, returncode=EXIT_USAGE)


class ClaimSession:
    """The claims of one pytest session, their scheduler, decisions and report."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.items: list[pytest.Item] = []
        self.claims: dict[str, Any] = {}  # id -> Claim, in collection order
        self.item_errors: dict[str, str] = {}  # nodeid -> why the item is not a proper claim test
        self.not_runnable: dict[str, Any] = {}  # id -> NotRunnable: claims listed with the reason they cannot run
        self.ran = False
        self.crash: str | None = None
        self.scheduler: Any = None
        self.pilot: Any = None
        self.pilot_error: str | None = None
        self.report: Any = None
        self.report_dir: Path | None = None
        self.report_error: str | None = None
        self.collected = self.finished = self.summarized = False
        self.checked: set[str] = set()  # nodeids already checked (the hooks may be registered twice)

    # ------------------------------------------------------------------------------------------ options

    def opt(self, name: str) -> Any:
        return self.config.getoption(name)

    @property
    def own(self) -> bool:
        """Whether every selected claim compares only user arms, which define their own training."""
        from claims.arm import is_arm

        return bool(self.claims) and all(is_arm(r) for c in self.claims.values() for r in c.recipes())

    @property
    def profile(self) -> str:
        """The profile runs are stored under: `own` for a session of user arms only, else --profile."""
        from claims.arm import OWN_PROFILE

        return OWN_PROFILE if self.own else self.opt("profile")

    @property
    def max_seeds(self) -> int | None:
        """--max-seeds, else the profile's own cap (smoke stops at its first look; user arms: their claims' looks)."""
        given = self.opt("max_seeds")
        return given if given is not None or self.own else PROFILES[self.opt("profile")].max_seeds

    def collect(self, items: list[pytest.Item]) -> None:
        """Remember the selected claim tests and their claims (after -k/-m deselection)."""
        from claims.spec import Claim

        if self.collected:
            return
        self.collected = True
        for item in items:
            unrunnable = item.get_closest_marker("claims_not_runnable")
            if unrunnable is not None and unrunnable.args:
                nr = unrunnable.args[0]
                self.not_runnable[nr.id] = nr
            marker = item.get_closest_marker("claims")
            if marker is None:
                continue
            claim = marker.args[0] if marker.args else marker.kwargs.get("claim")
            if not isinstance(claim, Claim):
                self.item_errors[item.nodeid] = (f"test {item.name} is marked claims but its marker holds "
                                                 f"{type(claim).__name__}, not a Claim")
                continue
            known = self.claims.get(claim.id)
            if known is not None and known.key != claim.key:
                self.item_errors[item.nodeid] = f"claim id {claim.id} names two different claims"
                continue
            self.claims[claim.id] = claim
            self.items.append(item)

    # ------------------------------------------------------------------------------------------ the engine

    def ensure_run(self) -> None:
        """Judge every selected claim at once, the first time a claim test needs its Decision."""
        if self.ran:
            return
        self.ran = True
        if not self.claims:
            return
        from claims.arm import is_arm
        from claims.executors import LocalExecutor
        from claims.schedule import PilotError, Scheduler, pilot
        from claims.store import RunStore, StoreError
        from claims.verdict import gate
        from tricks.recipes import recipe_source

        capman = self.config.pluginmanager.getplugin("capturemanager")
        try:
            store = RunStore(self.opt("store"))
        except StoreError as e:
            _exit(self.config, f"claims: {e}")
        claims = list(self.claims.values())
        gpu = _device_has_gpu(claims)
        stored = self.opt("code_version")  # judge the runs stored under an earlier code version, train none
        run_fn = not_stored if stored else _run_fn(self.opt("run_fn"))
        source = _data(self.config)
        profile = self.profile
        gates = {c.id: gate(c, profile, gpu) for c in claims}  # heavy arms scaled on a CPU, named as such
        claims = [g.claim for g in gates.values()]
        needing = [g.claim for g in gates.values() if g.needs_runs]
        cifar = [c for c in needing if not all(is_arm(r) for r in c.recipes())]  # claims over the project's recipes
        version = stored or (_data_version(source) if run_fn is None and cifar else None)
        if len(cifar) < len(claims):  # user arms: their own versions, trained by run_arm
            from claims.arm import ArmVersions
            from claims.compare import run_job

            version = ArmVersions.of(claims, fallback=version)
            run_fn = run_fn or run_job
        executor = self.executor(run_fn, source) if self.opt("executor") == "ray" and not stored else \
            LocalExecutor(0 if stored else self.opt("workers"), run_fn=run_fn, source=source)
        try:
            with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                baseline = _pilot_recipe(needing)
                n_pilot = self.opt("pilot_seeds")
                if baseline is not None and n_pilot:
                    try:
                        self.pilot = pilot(baseline, store, executor, profile, n_pilot, progress=True,
                                           code_version=version)
                    except PilotError as e:  # the claims that share those runs report the failure themselves
                        self.pilot_error = str(e)
                self.scheduler = Scheduler(claims, store, executor, profile, max_seeds=self.max_seeds,
                                           device_has_gpu=gpu, progress=True, code_version=version,
                                           sigma_d_pilot=None if self.pilot is None else self.pilot.sigma_d / 100,
                                           pilot_source=recipe_source(self.pilot.recipe_name) if self.pilot else None,
                                           confirm=bool(self.opt("confirm")), alpha_family=FAMILY_ALPHA,
                                           gates=gates)
                self.scheduler.run()
        except (KeyboardInterrupt, pytest.exit.Exception):
            raise
        except StoreError as e:  # a full disk: the runs stored so far stay; one sentence, not a crash
            _exit(self.config, f"claims: {e}")
        except Exception as e:  # a bug in the engine: every claim test reports it, the first with the traceback
            self.crash = f"{type(e).__name__}: {e}"
            raise

    def executor(self, run_fn: Any, source: str | None) -> Any:
        """--executor ray: a RayExecutor on --ray-address; an unreachable cluster ends the session in one sentence."""
        from claims.executors.ray import RayError, RayExecutor

        try:
            return RayExecutor(self.opt("ray_address"), run_fn=run_fn, source=source,
                               gpus_per_run=self.opt("gpus_per_run"))
        except RayError as e:
            _exit(self.config, f"claims: {e}")

    def check(self, item: pytest.Item) -> None:
        """Fail the claim test unless the engine reached a verdict (the pinned one, when given)."""
        if item.nodeid in self.item_errors:
            pytest.fail(self.item_errors[item.nodeid], pytrace=False)
        if self.crash is not None:
            pytest.fail(f"the claims engine crashed: {self.crash}", pytrace=False)
        claim = _claim_of(item)
        if self.scheduler is None:
            pytest.fail(f"{claim.id}: the claims engine did not run", pytrace=False)
        error = self.scheduler.errors.get(claim.id)
        if error is not None:
            pytest.fail(f"{claim.id}: ERROR: {error}", pytrace=False)
        d = self.scheduler.decisions[claim.id]
        verdict = _value(d.verdict)
        text = f"{claim.id}: {verdict} ({self.profile} profile, n = {d.n}): {d.reason}"
        if verdict == "INVALID":
            pytest.fail(text, pytrace=False)
        expected = getattr(claim, "expected", None)
        if expected is not None and _value(expected) != verdict:
            capped = self.max_seeds is not None and self.max_seeds < max(claim.looks)
            if verdict == "INCONCLUSIVE" and capped:
                pytest.xfail(f"expected {_value(expected)}, got {text} (seed budget capped at "
                             f"{self.max_seeds})")
            pytest.fail(f"expected {_value(expected)}, got {text}", pytrace=False)
        item.add_report_section("call", "claim", text)  # shown by `pytest -rP`

    # ------------------------------------------------------------------------------------------ the report

    def finish(self) -> None:
        """Apply Holm, build the report and write it under --report-dir."""
        if self.scheduler is None or self.finished:
            return
        self.finished = True
        from claims.report.model import build_report
        from claims.report.write import write_report

        try:
            self.report = build_report(self.scheduler, pilot=self.pilot, alpha_family=FAMILY_ALPHA,
                                       not_runnable=list(self.not_runnable.values()))
            if self.pilot_error is not None:
                self.report.warnings.append(f"no A/A pilot: {self.pilot_error}")
            root = self.opt("report_dir")
            root = Path(root) if root else self.config.rootpath / "reports"
            self.report_dir = write_report(self.report, root)
        except Exception as e:  # the verdicts stand; a broken report must not hide them
            self.report_error = f"{type(e).__name__}: {e}"


_SESSION = pytest.StashKey[ClaimSession]()
_EXITED = pytest.StashKey[bool]()  # the session ended through _exit (exit code 2), not by Ctrl-C


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _claim_of(item: pytest.Item) -> Any:
    marker = item.get_closest_marker("claims")
    return marker.args[0] if marker.args else marker.kwargs.get("claim")


def _device_has_gpu(claims: list[Any]) -> bool:
    if not any(getattr(c, "needs_gpu", False) or any(r.heavy for r in c.recipes()) for c in claims):
        return False  # only GPU claims and heavy arms care; spare other sessions the torch import
    import torch

    return torch.cuda.is_available()


def _data_version(source: str | None) -> Any:
    """Decode (and cache) the dataset once here where the cache lacks it, before any worker starts, and return the
    store versions of its runs (`tricks.recipe.RunVersions`: each recipe's training fingerprint with the dataset's
    digest); a cached copy's digest is read without loading its tensors.

    A missing or corrupt dataset ends the session with the data module's one-sentence message.
    """
    from tricks.cifar import DataError, dataset_digest
    from tricks.recipe import RunVersions

    try:
        return RunVersions(dataset_digest(source))
    except DataError as e:
        _exit(None, f"claims: {e}")


def _pilot_recipe(claims: list[Any]) -> Any:
    """The baseline the most claims compare against (their B arm, parts included), or None."""
    from claims.report.model import comparisons

    counts: Counter = Counter()
    recipes = {}
    for c in claims:
        for part in comparisons(c):
            if part.b is not None:
                counts[part.b.key] += 1
                recipes[part.b.key] = part.b
    return recipes[counts.most_common(1)[0][0]] if counts else None


def _run_fn(spec: str | None) -> Any:
    if not spec:
        return None
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise pytest.UsageError(f"--run-fn {spec} does not name a function (module.path:function)") from None


def not_stored(recipe: Any, seed: int, profile: Any, **_: Any) -> Any:
    """The run function under --code-version: every run the scheduler asks it for is missing from the store."""
    raise LookupError("not in the run store under the --code-version given, which judges stored runs only "
                      "(--max-seeds N stops at the seeds stored)")


def _data(config: pytest.Config) -> str | None:
    return config.getoption("data") or os.environ.get("TRICKS_DATA") or None


# ---------------------------------------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    """The claims suite's command-line options."""
    g = parser.getgroup("claims", "claims engine (paired seeds, sequential looks)")
    if any("--max-seeds" in o.names() for o in g.options):
        return  # added already: this module is registered twice (the entry point and a conftest's star import)
    g.addoption("--profile", default="default",
                help="how recipes are scaled to this machine: " + ", ".join(PROFILES) + " (default: default)")
    g.addoption("--max-seeds", default=None,
                help="cap on seeds per arm: the last look within it is final (e.g. 3 for a smoke run)")
    g.addoption("--workers", default=None,
                help="worker processes, one thread each (default: CPU count; 0 trains in this process)")
    g.addoption("--store", default=None, help="run store SQLite file (default: $TRICKS_STORE or the user cache)")
    g.addoption("--data", default=None, help="CIFAR-10 source (default: $TRICKS_DATA, else fastai's download)")
    g.addoption("--report-dir", default=None, help="where reports/<timestamp>/ goes (default: <rootdir>/reports)")
    g.addoption("--pilot-seeds", default=5, help="seeds per arm of the A/A pilot (0 skips it)")
    g.addoption("--code-version", default=None,
                help="judge from the runs stored under this code version (python -m claims.reproduce lists them) "
                     "and train none: a claim that needs a run missing there fails with that reason")
    g.addoption("--executor", default="local",
                help="local: worker processes here (default); ray: one Ray task a run (pip install -e '.[ray]')")
    g.addoption("--ray-address", default=None, metavar="ADDR",
                help="with --executor ray: the cluster's head (host:port, or auto for the one `ray start` began; "
                     "default: Ray's own search, else a new local instance)")
    g.addoption("--gpus-per-run", type=float, default=None, metavar="F",
                help="with --executor ray: the share of a GPU each run asks for (0.25: four runs per GPU)")
    g.addoption("--confirm", action="store_true", default=False,
                help="SUPPORTED claims that do not clear Holm across the suite keep sampling, within the seed cap, "
                     "until they clear it or reach the cap; the report says which did (verdicts unchanged)")
    g.addoption("--run-fn", default=None,
                help="module:function that trains one run (default tricks.train:run; tests use a fake)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, check the options, set up the session's claim registry."""
    if _SESSION in config.stash:
        return
    config.addinivalue_line("markers", "claims(claim): a claim of a source document, judged by the claims engine")
    config.addinivalue_line("markers", "claims_not_runnable(entry): a claim the suite cannot test here, listed in "
                                       "the report with its reason")
    from claims.lifeline import install_in_suite

    install_in_suite()  # under nox: kill -9 of nox stops this suite too
    try:
        _check_options(config)
        _run_fn(config.getoption("run_fn"))
        _check_executor(config)
    except pytest.UsageError as e:  # pytest's own code for these is 4; the project's is 2 (docs/exit-codes.md)
        _exit(None, f"claims: {e}")
    config.stash[_SESSION] = ClaimSession(config)


def _check_options(config: pytest.Config) -> None:
    """The integer and choice options (checked here, so that a bad one exits 2 like every other usage error) and
    --data."""
    for name, allowed in (("profile", tuple(PROFILES)), ("executor", ("local", "ray"))):
        if config.getoption(name) not in allowed:
            raise pytest.UsageError(f"--{name} {config.getoption(name)} is not one of {', '.join(allowed)}")
    for name, low in (("max_seeds", 2), ("workers", 0), ("pilot_seeds", 0)):
        value = config.getoption(name)
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        try:
            value = int(value)
        except ValueError:
            raise pytest.UsageError(f"{flag} takes a whole number, not '{value}'") from None
        if value < low:
            raise pytest.UsageError(f"{flag} must be at least {low}, not {value}")
        setattr(config.option, name, value)
    if config.getoption("pilot_seeds") == 1:
        raise pytest.UsageError("--pilot-seeds must be 0 (no pilot) or at least 2")
    data = config.getoption("data")
    if data and "://" not in data and not Path(data).expanduser().exists():
        raise pytest.UsageError(f"--data {data} does not exist")


def _check_executor(config: pytest.Config) -> None:
    """--ray-address and --gpus-per-run only with --executor ray, which needs Ray installed (exit 2 otherwise)."""
    if config.getoption("executor") != "ray":
        for name in ("ray_address", "gpus_per_run"):
            if config.getoption(name) is not None:
                raise pytest.UsageError(f"--{name.replace('_', '-')} only applies with --executor ray")
        return
    from claims.executors.ray import RayError, check_gpus_per_run, import_ray

    try:
        check_gpus_per_run(config.getoption("gpus_per_run"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    try:
        import_ray()
    except RayError as e:
        pytest.exit(f"claims: {e}", returncode=RAY_EXIT)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Gather the claims of the selected tests, so that one scheduler judges them together."""
    if any(item.get_closest_marker("claims") or item.get_closest_marker("claims_not_runnable")
           for item in session.items):
        session.config.stash[_SESSION].collect(session.items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first claim test: run the engine over every selected claim."""
    if item.get_closest_marker("claims") is not None:
        item.config.stash[_SESSION].ensure_run()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A claim test fails on INVALID, an engine error, or a verdict other than the pinned one, before its body runs."""
    cs = item.config.stash[_SESSION]
    if item.get_closest_marker("claims") is not None and item.nodeid not in cs.checked:
        cs.checked.add(item.nodeid)
        cs.check(item)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Holm across the claims, then the report files."""
    cs = session.config.stash.get(_SESSION, None)
    if cs is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED and not session.config.stash.get(_EXITED, False):
        session.exitstatus = EXIT_INTERRUPTED  # Ctrl-C, as python -m tricks.apply says it (no half-judged report)
    elif exitstatus != pytest.ExitCode.INTERRUPTED:
        try:
            cs.finish()
        except KeyboardInterrupt:  # Ctrl-C while the report is built: the runs are stored, the report is not written
            cs.report_error = "interrupted (Ctrl-C) before it was complete; the finished runs are in the store"
            session.exitstatus = EXIT_INTERRUPTED
            return
        if cs.report_error is not None:  # the verdicts are printed; a missing report is still a failure
            session.exitstatus = EXIT_USAGE


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The claims table, under the usual pytest summary."""
    cs = config.stash.get(_SESSION, None)
    if cs is None or cs.scheduler is None or cs.summarized:
        return
    cs.summarized = True
    tr = terminalreporter
    tr.section(f"claims ({cs.profile} profile)")
    if cs.report is not None:  # plain lines within 100 columns: the same on a terminal and in a CI log
        from claims.report.text import terminal_lines

        for line in terminal_lines(cs.report):
            tr.write_line(line)
    if cs.report_dir is not None:
        tr.write_line(f"report: {cs.report_dir} (and {cs.report_dir.parent / 'latest'})")
    if cs.pilot_error is not None:
        tr.write_line(f"no A/A pilot: {cs.pilot_error}", yellow=True)
    if cs.report_error is not None:
        tr.write_line(f"the report could not be written: {cs.report_error}", red=True)


@pytest.fixture
def claim_decision(request: pytest.FixtureRequest) -> Any:
    """The Decision the engine reached for this test's claim."""
    cs = request.config.stash[_SESSION]
    cs.ensure_run()
    claim = _claim_of(request.node)
    if claim is None or cs.scheduler is None or claim.id not in cs.scheduler.decisions:
        return None
    return cs.scheduler.decisions[claim.id]
