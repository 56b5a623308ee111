"""Partition work dies with the process that started it.

A Prefect worker (or ``serve``) runs each flow run as a child process, and a flow with
``dask_workers`` starts its Dask worker processes as children of the flow run. Killed with SIGKILL, a
parent cannot clean up, so without help its children live on as orphans that keep writing into the
output folder. On Linux the kernel can do the cleanup: ``prctl(PR_SET_PDEATHSIG, sig)`` asks it to
send ``sig`` to this process when its parent dies.

- the flow-run process of a worker or ``serve`` gets SIGKILL when the worker dies (SIGTERM was tried:
  with it, Prefect 3.9's flow-run process did not exit after its worker was SIGKILLed); the
  server learns of it through the zombie automation (``flows/zombies.py``), which marks it Crashed;
- a Dask worker process running a partition gets SIGKILL when its parent (the flow run, for a
  temporary cluster, or the ``dask worker`` nanny of an existing one) dies.

Elsewhere (macOS, Windows) this is a no-op: stop the flow run's process group instead
(``kill -- -PGID``; docs/ORCHESTRATION.md).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when it is set.
    If the parent already died before the call (this process was re-parented to init), exit now."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the call: nothing will ever signal it
        os.kill(os.getpid(), sig)
    return True


def started_by_prefect_runner() -> bool:
    """A worker or ``serve`` started this flow-run process (it sets the run id in the environment);
    a flow run started from a shell is left alone, so ``nohup python -m flows.build_pairs`` survives
    its terminal."""
    return bool(os.environ.get("PREFECT__FLOW_RUN_ID"))


def in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False
