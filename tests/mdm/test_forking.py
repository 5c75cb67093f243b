"""The helper process of a full run (``mdm.forking``): started from a daemonic process (a
Celery prefork worker's child) and never left behind when its parent dies."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import Any

import pytest

from mdm.forking import helper_pool

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="helpers die with their parent on Linux only"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its new parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_helper_then(conn: Any, exit_abruptly: bool) -> None:
    """In a daemonic process: start a helper, report (its pid, the pid it answers with),
    then either shut it down or die without a word."""
    pool = helper_pool()
    if pool is None:
        conn.send(None)
        os._exit(0)
    helper = next(iter(pool._processes))  # the pool's one process
    conn.send((helper, pool.submit(os.getpid).result()))
    if exit_abruptly:
        os._exit(0)  # as a Celery child killed at its hard time limit: no cleanup
    pool.shutdown()
    conn.send(_alive(helper))
    os._exit(0)


def _run_daemonic(exit_abruptly: bool) -> tuple[Any, ...]:
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_start_helper_then, args=(theirs, exit_abruptly), daemon=True)
    process.start()
    first = ours.recv()
    later = None if exit_abruptly else ours.recv()
    process.join(10)
    return first, later


def test_a_daemonic_process_gets_a_helper_and_stops_it():
    # Given a daemonic process (multiprocessing refuses it children by default)
    # When it starts a helper, uses it and shuts it down
    first, helper_alive_after_shutdown = _run_daemonic(exit_abruptly=False)

    # Then the helper was a process of its own, and is gone afterwards
    assert first is not None
    helper, answered = first
    assert answered == helper
    assert helper_alive_after_shutdown is False


def test_a_helper_dies_with_its_parent():
    # Given a daemonic process with a helper
    # When that process dies without shutting its helper down
    first, _ = _run_daemonic(exit_abruptly=True)
    assert first is not None
    helper, _ = first

    # Then the kernel kills the helper: nothing is left behind
    deadline = time.monotonic() + 10
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)
