"""A suite that ends with the process that started it: with `TRICKS_DIE_WITH_PARENT=1` (the nox sessions set it), the
pytest process and its workers ask Linux for SIGTERM when their parent dies (prctl PR_SET_PDEATHSIG), so `kill -9`
of nox stops the training instead of leaving it to run on unseen. pytest turns that SIGTERM into the Ctrl-C path:
the workers are stopped, leases freed, finished runs kept. Elsewhere (or without the variable) nothing changes: a
suite started under `nohup` keeps running when its shell goes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

ENV = "TRICKS_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def wanted() -> bool:
    """Whether this process was asked to end with its parent."""
    return os.environ.get(ENV, "") == "1"


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send `sig` to this process when its parent dies (Linux only); True when that is set up."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the request: act now
        os.kill(os.getpid(), sig)
    return True


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}: the parent process is gone")


def install_in_suite() -> None:
    """In the pytest process: end with the parent, by way of KeyboardInterrupt (the Ctrl-C path)."""
    if wanted() and die_with_parent(signal.SIGTERM):
        signal.signal(signal.SIGTERM, _interrupt)


def install_in_worker() -> None:
    """In a worker process: end with the suite process (SIGTERM's default action)."""
    if wanted():
        die_with_parent(signal.SIGTERM)
