"""How a report was made, beside the run provenance every RunResult carries: the command line, the git commit of
the checkout (None outside one), whether the tree had uncommitted changes, and the versions of torchvision (image
decoding) and scipy (intervals)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    """The installed version, read from its metadata: importing torchvision here (inside a running suite) can clash
    with torch operator registrations already made."""
    from importlib.metadata import PackageNotFoundError, version

    loaded = sys.modules.get(package)
    if getattr(loaded, "__version__", None):  # the imported module's own, with a build label such as +cu130
        return loaded.__version__
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """argv, git_commit, git_dirty, torchvision and scipy versions (None where not known)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"argv": list(sys.argv), "git_commit": commit, "git_dirty": None if status is None else bool(status),
            "torchvision": _version("torchvision"), "scipy": _version("scipy")}
