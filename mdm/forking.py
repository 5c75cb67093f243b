"""A helper process forked from this one, for a full run's work beside its own.

A full match prepares records (``matching.engine.splink_engine._Preparer``) and reads and
survives new golden records' members (``mdm.services.golden._AsideReader``) in a second
process: the work is Python, and a thread would share this interpreter with the run.

A Celery prefork worker runs each task in a daemonic process, and Python's multiprocessing
refuses children to daemonic processes ("daemonic processes are not allowed to have
children"): they are killed, not waited for, when their parent exits, and a child could be
left behind. A helper here is forked with that check lifted and asks the kernel to kill it
when the process that forked it dies (``PR_SET_PDEATHSIG``, Linux), so none is left behind
whatever ends its parent; the caller also shuts it down when its work is done. Where that
cannot be asked (not Linux) a daemonic process gets no helper and the caller does the work
itself.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> bool:
    """In the helper: be killed when the process that forked it dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (AttributeError, OSError):
        return False
    if os.getppid() != parent:  # the parent died before the request: nothing will tell us
        os._exit(1)
    return True


def _start(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    _die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def helper_pool(
    initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor | None:
    """A pool of one process forked from this one, started (its ``initializer`` run), or
    None where none can be: no ``fork``, or a daemonic process off Linux. ``initargs`` are
    inherited by the fork, not pickled."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    current: Any = multiprocessing.current_process()
    daemonic = bool(current._config.get("daemon"))
    if daemonic and not sys.platform.startswith("linux"):
        return None
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start,
        initargs=(os.getpid(), initializer, initargs),
    )
    try:
        if daemonic:  # the helper dies with this process: the check guards against orphans
            current._config["daemon"] = False
        try:
            pool.submit(os.getpid).result()  # forks now, under the lifted check
        finally:
            if daemonic:
                current._config["daemon"] = True
    except Exception as exc:
        logger.warning("no helper process, the work is done in this one: %s", exc)
        pool.shutdown(wait=True, cancel_futures=True)
        return None
    return pool
