"""The claims suite through Ray against the local executor: wall time side by side, and whether the verdicts agree.

Each arm runs `python -m pytest claims --profile smoke [-k EXPR]` in a subprocess from its own empty run store and
report folder: `local` with `--workers N` (N one-thread worker processes), `ray` with `--executor ray` on a Ray
instance with N CPUs that this script starts once (`ray.init(num_cpus=N)`) and names by `--ray-address`, so the suite
connects as it would to a cluster; the instance's start-up is timed apart (`ray_start_s`). The dataset is loaded into
the cache before either arm. Both arms train the same (recipe, seed) runs, so the verdicts must be identical; the
per-run accuracies are compared too (identical when training is deterministic on this machine).

Goal (issue 11): ray >= 0.9x local, i.e. `speed_ratio` = local wall / ray wall >= 0.9 (Ray's overhead costs at most
10 %). The script exits 0 whether or not it is met; the last line of stdout is one JSON object with every number and
the provenance (versions, CPUs, load average before and after, the -k expression, the date).

Usage: `python benchmarks/executors.py [-k EXPR] [--cpus 2] [--order local,ray] [-- more pytest args]`, with
`$TRICKS_DATA` set (e.g. `-k "c003_1 or c003_3" -- --pilot-seeds 0` for a subset of a minute or two).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.9


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-k", dest="k", default=None, help="pytest -k expression: a subset of the claims")
    p.add_argument("--profile", default="smoke", help="claims profile (default: smoke)")
    p.add_argument("--cpus", type=int, default=2, help="local worker processes, and the Ray instance's CPUs")
    p.add_argument("--order", default="local,ray", help="the order the arms run in (default: local,ray)")
    p.add_argument("--keep", default=None, help="keep each arm's store, report and log under this folder")
    p.add_argument("pytest_args", nargs="*", help="after --: more arguments for both pytest runs")
    return p.parse_args(argv)


def suite(arm: str, folder: Path, args: argparse.Namespace, address: str | None) -> dict[str, Any]:
    """One arm: the claims suite from an empty store; its wall time, exit code and verdicts."""
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pytest", "claims", "-p", "no:cacheprovider", "-q", "--profile", args.profile,
           "--store", str(folder / "runs.sqlite"), "--report-dir", str(folder / "reports")]
    cmd += ["-k", args.k] if args.k else []
    cmd += ["--executor", "ray", "--ray-address", address] if arm == "ray" else ["--workers", str(args.cpus)]
    cmd += args.pytest_args
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    with open(folder / "pytest.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    report = folder / "reports" / "latest" / "report.json"
    claims = json.loads(report.read_text())["claims"] if report.exists() else []
    print(f"{arm}: {wall:.1f} s, exit {rc}, {len(claims)} claims ({folder / 'pytest.log'})", flush=True)
    return {"wall_s": wall, "rc": rc, "verdicts": {c["id"]: c["verdict"] for c in claims},
            "accs": _accs(folder / "runs.sqlite")}


def _accs(path: Path) -> dict[str, float]:
    from claims.store import RunStore

    if not path.exists():
        return {}
    return {f"{r.recipe_key[:12]}/{r.seed}": r.acc for r in RunStore(path).runs()}


def _versions() -> dict[str, str]:
    import ray
    import torch

    return {"python": platform.python_version(), "ray": ray.__version__, "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    data = os.environ.get("TRICKS_DATA")
    if not data:
        print("error: set TRICKS_DATA to the CIFAR-10 archive (the arms train real smoke-profile runs)",
              file=sys.stderr)
        return 2
    try:
        import ray
    except ImportError:
        print("error: this benchmark needs Ray: pip install -e '.[ray]'", file=sys.stderr)
        return 2
    from tricks.cifar import load_cifar10

    digest = load_cifar10(data).digest  # into the cache, outside both arms' time
    order = [a.strip() for a in args.order.split(",")]
    if sorted(order) != ["local", "ray"]:
        print("error: --order names local and ray once each, e.g. ray,local", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    address = ray.get_runtime_context().gcs_address
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-executors-"))
    try:
        arms = {arm: suite(arm, root / arm, args, address) for arm in order}
    finally:
        ray.shutdown()
    local, rayd = arms["local"], arms["ray"]
    ratio = local["wall_s"] / rayd["wall_s"]
    same_verdicts = bool(local["verdicts"]) and local["verdicts"] == rayd["verdicts"]
    shared = sorted(set(local["accs"]) & set(rayd["accs"]))
    same_accs = sum(local["accs"][k] == rayd["accs"][k] for k in shared)
    print(f"local {local['wall_s']:.1f} s, ray {rayd['wall_s']:.1f} s (+ {ray_start_s:.1f} s to start the instance): "
          f"speed ratio ray/local {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'NOT met'}); "
          f"verdicts identical: {same_verdicts} ({len(local['verdicts'])} claims); "
          f"identical accuracy in {same_accs}/{len(shared)} runs")
    print(json.dumps({
        "benchmark": "executors", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "profile": args.profile, "k": args.k, "pytest_args": args.pytest_args, "cpus": args.cpus, "order": order,
        "local_s": local["wall_s"], "ray_s": rayd["wall_s"], "ray_start_s": ray_start_s, "speed_ratio": ratio,
        "goal": GOAL, "goal_met": ratio >= GOAL, "verdicts_identical": same_verdicts, "verdicts": local["verdicts"],
        "ray_verdicts": rayd["verdicts"], "runs": len(shared), "runs_identical_acc": same_accs,
        "exit_codes": {"local": local["rc"], "ray": rayd["rc"]}, "load_before": load_before,
        "load_after": os.getloadavg(), "cpu_count": os.cpu_count(), "versions": _versions(),
        "dataset_sha256": digest, "folder": str(root),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
