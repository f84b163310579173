"""The paper campaign's GPU part, for the few minutes of a GPU machine a session may be lent (issue 21, point 6).

The lent machine has Python 3.12 and PyTorch but no fastai, no package index and no CIFAR-10; what it trains must
come back as runs in the committed record. Three steps:

1. Here, `python benchmarks/gpu_campaign.py prepare`: into `.gpu/` (git-ignored through .git/info/exclude) the wheels
   of fastai and of what it needs that the machine lacks (pure-Python wheels, the versions of this environment), the
   CIFAR-10 archive ($TRICKS_DATA), and `.gpu/command.txt`: the one command to give the device tool, with `.gpu` in
   its carry.
2. There, that command runs `python3 benchmarks/gpu_campaign.py device --out $OUT --budget S`: the committed record
   restored into a fresh store; doc 004's ResNet9 timed alone (benchmarks/gpu_check.py's step: wall time and test
   accuracy, goal under 30 s); then the paper suite's GPU claims (doc 004 and the cross-document claims) with
   `--workers` processes sharing the GPU, stopped when the budget is spent (finished runs are in the store); then the
   store's paper runs written out as a record, `$OUT/paper-reproduction.json`, beside `$OUT/gpu.json` and the log.
3. Here again: `python -m claims.record restore --record <files_at>/paper-reproduction.json --store S` puts the runs
   the GPU trained into the campaign's store (runs already there are left alone), then `nox -s reproduce -- --store S`
   regenerates the record and the tables from it; the ResNet9 figures in `gpu.json` go into docs/performance.md.

Only four files come back (the device tool returns at most eight): the record, `gpu.json`, `log.txt` (this script's
lines) and `steps.log` (every step's own output); the suite's report stays on the machine.

`device` also runs on a CPU (the claims then say "needs a GPU" and nothing trains): that is how the path is checked
before spending device time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / ".gpu"
# Python packages the lent machines hold that fastai and this project could need (from the device tool's KINDS.md,
# read there 2026-11-17); what fastai needs beyond these is carried as wheels
DEVICE_HAS = frozenset({
    "accelerate", "aiofiles", "aiohttp", "anyio", "attrs", "certifi", "charset-normalizer", "click",
    "cloudpickle", "colorama", "contourpy", "cycler", "filelock", "fonttools", "fsspec", "h11", "httpcore",
    "httpx", "idna", "iniconfig", "jinja2", "joblib", "kiwisolver", "markdown-it-py", "markupsafe",
    "matplotlib", "mdurl", "networkx", "numpy", "packaging", "pandas", "pillow", "pip", "pluggy", "psutil",
    "pygments", "pyparsing", "pytest", "python-dateutil", "pyyaml", "regex", "requests", "rich", "scikit-learn",
    "scipy", "setuptools", "six", "sympy", "threadpoolctl", "torch", "torchvision", "tqdm", "typing-extensions",
    "urllib3", "wheel",
})
SKIP = frozenset({"spacy"})  # fastai.text only: the suite never imports it
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
SUITE = ("claims/suite/test_jovian.py", "claims/suite/test_cross.py")  # the claims whose arms need a GPU
START, END = "<!-- reproduce:start -->", "<!-- reproduce:end -->"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def carried(root: str = "fastai") -> dict[str, str]:
    """Name -> version of `root` and every package it needs (on the device's Python) that the device lacks, read from
    this environment's installed metadata."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    todo = [root]
    while todo:
        name = _norm(todo.pop())
        if name in out or name in DEVICE_HAS or name in SKIP:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"gpu_campaign: {name} (needed by {root}) is not installed here, so its wheel's version "
                             "is unknown; install the project first (README)") from None
        out[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(DEVICE_ENV):
                todo.append(req.name)
    return out


def device_command(budget_s: int) -> str:
    """The command to give the device tool (run from the repository root there, `.gpu` carried)."""
    return ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
            ".gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; "
            f"python3 benchmarks/gpu_campaign.py device --out $OUT --budget {budget_s} 2>&1 | tee $OUT/log.txt")


def prepare(data: str | None, budget_s: int) -> int:
    if not data or not Path(data).is_file():
        print(f"gpu_campaign: no CIFAR-10 archive at {data!r}: set TRICKS_DATA or pass --data", file=sys.stderr)
        return 2
    wheels = GPU_DIR / "whl"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    git = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT, capture_output=True, text=True)
    if git.returncode == 0:  # .gpu/ ignored by this clone only (a worktree's exclude file is the main one's)
        exclude = ROOT / git.stdout.strip()
        exclude.parent.mkdir(parents=True, exist_ok=True)
        if "/.gpu/" not in (exclude.read_text().split() if exclude.exists() else []):
            with exclude.open("a") as f:
                f.write("/.gpu/\n")
    pins = carried()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(wheels),
           *[f"{n}=={v}" for n, v in sorted(pins.items())]]
    if subprocess.run(cmd).returncode != 0:
        print("gpu_campaign: pip could not download the wheels above", file=sys.stderr)
        return 1
    shutil.copyfile(data, GPU_DIR / "cifar10.tgz")
    (GPU_DIR / "command.txt").write_text(device_command(budget_s) + "\n")
    size = sum(p.stat().st_size for p in GPU_DIR.rglob("*") if p.is_file())
    print(f"{len(pins)} wheels ({', '.join(f'{n} {v}' for n, v in sorted(pins.items()))}) and the archive in "
          f"{GPU_DIR} ({size / 2**20:.1f} MiB of the 64 MiB a call may carry); the device command, with carry "
          f"['.gpu'], is in {GPU_DIR / 'command.txt'}:\n{device_command(budget_s)}")
    return 0


def _step(name: str, cmd: list[str], timeout: float, log: Path) -> int | None:
    """Run `cmd` in its own process group under `timeout` (all of the group killed then), output appended to `log`
    and echoed; its exit code, or None when it was stopped."""
    print(f"== {name} (limit {timeout:.0f} s): {' '.join(cmd)}", flush=True)
    with log.open("a") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            rc = p.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            print(f"== {name}: stopped at its limit", flush=True)
            return None
    print(f"== {name}: exit {rc}", flush=True)
    return rc


def device(out: Path, budget_s: float, workers: int | None, data: str, k: str | None) -> int:
    """Step 2, on the lent machine: restore, time ResNet9 alone, train the GPU claims until the budget, export."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    store = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-paper.sqlite"
    log = out / "steps.log"
    py = sys.executable
    import torch  # what the machine has, for the summary

    summary: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "cpus": os.cpu_count()}
    workers = workers or (min(16, os.cpu_count() or 1) if summary["cuda"] else 1)
    env_data = ["--data", data]
    summary["restore"] = _step("restore", [py, "-m", "claims.record", "restore", "--store", str(store)], 120, log)
    check = _step("resnet9 alone", [py, "benchmarks/gpu_check.py", "--step", "resnet9", *env_data], 240, log)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith('{"recipe": "jovian/resnet9"')]
    summary["resnet9_alone"] = json.loads(lines[-1]) if check == 0 and lines else {"error": f"exit {check}"}
    left = budget_s - (time.monotonic() - t0) - 60  # a minute kept for the export
    suite = [py, "-m", "pytest", *SUITE, "-p", "no:cacheprovider", "--profile", "paper", "--pilot-seeds", "0",
             "--workers", str(workers), "--store", str(store), *env_data, "--report-dir", str(store.parent / "reports"),
             *(["-k", k] if k else [])]
    summary["suite"] = {"workers": workers, "exit": _step("paper suite, GPU claims", suite, left, log)}
    readme = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-reproduction.md"
    readme.write_text(f"{START}\n{END}\n")
    summary["export"] = _step("export", [py, "-m", "claims.reproduce", "--store", str(store), "--json",
                                         str(out / "paper-reproduction.json"), "--readme", str(readme)], 120, log)
    runs = json.loads((out / "paper-reproduction.json").read_text())["runs"] if summary["export"] == 0 else []
    summary["runs_in_record"] = len(runs)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return 0 if summary["export"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: wheels, the archive and the device command into .gpu/")
    p.add_argument("--data", default=os.environ.get("TRICKS_DATA"), help="CIFAR-10 archive (default $TRICKS_DATA)")
    d = sub.add_parser("device", help="there: restore, time ResNet9, train the GPU claims, export the record")
    d.add_argument("--out", required=True, help="folder for the record, the summary and the log ($OUT)")
    d.add_argument("--data", default=str(GPU_DIR / "cifar10.tgz"))
    d.add_argument("--workers", type=int, default=None, help="processes sharing the GPU (default: CPUs, at most 16)")
    d.add_argument("-k", default=None, help="pytest -k expression narrowing the claims")
    for s in (p, d):
        s.add_argument("--budget", type=int, default=420,
                       help="seconds the device step may take (default 420: with the machine's start and the wheels' "
                            "install, about 10 of the session's 15 device minutes)")
    args = ap.parse_args(argv)
    if args.budget < 120:
        ap.error(f"--budget must be at least 120 s, not {args.budget}")
    if args.cmd == "prepare":
        return prepare(args.data, args.budget)
    return device(Path(args.out), args.budget, args.workers, args.data, args.k)


if __name__ == "__main__":
    sys.exit(main())
