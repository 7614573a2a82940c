"""Local worker processes for a sweep that never outlive the ``kinsim`` process that started them.

Three ways a parent can go, three guards:

* it returns or raises (an error, Ctrl-C, SIGTERM turned into an exception by the CLI): the pool's
  context manager cancels what has not started and terminates every worker it has;
* it is killed outright (SIGKILL, the OOM killer): on Linux each worker asked the kernel at start to send
  it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
* elsewhere, or if that call is unavailable: a daemon thread in each worker checks once a second whether it
  has been re-parented and exits if so.

A worker that dies under the pool (killed, out of memory) breaks it; :func:`local_pool` turns that into one
clear error: the points stored so far stay stored and a rerun resumes from them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from kinsim.errors import KinsimError

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
_PR_SET_PDEATHSIG = 1
#: Seconds between a worker's checks that its parent is still alive (the portable guard).
PARENT_CHECK_INTERVAL_S = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: arrange to end when the process ``parent_pid`` ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then stops us
    # SIGTERM is how the parent stops us: end at once, not through the handler the CLI installed before the
    # fork (its exception would print a traceback from a worker waiting for work)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the guard was in place
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="kinsim-parent-watch", daemon=True).start()


@contextmanager
def local_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool of ``workers`` processes that are all gone when the block is left, however it is left."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    finished = False
    try:
        yield pool
        finished = True
    except BrokenProcessPool:
        raise KinsimError("a sweep worker process died (killed, or out of memory); the points finished before "
                          "it are stored, and running the sweep again resumes from them") from None
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            pool.shutdown(wait=False, cancel_futures=True)
            for child in multiprocessing.active_children():
                child.terminate()
            for child in multiprocessing.active_children():
                child.join(timeout=5)
