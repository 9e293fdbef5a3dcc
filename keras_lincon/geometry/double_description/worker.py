"""The kept worker process: long cddlib runs there, bounded by a time budget, Ctrl-C and the cap guard.

A worker process start costs 10-30 ms (fork, measured with TensorFlow
imported), once: the process is kept between calls and replaced after a
timeout, Ctrl-C, a guard's refusal or an error.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time

import numpy as np

from keras_lincon.errors import ConstructionTimeoutError, RepresentationCheckError
from keras_lincon.geometry.double_description.cddlib import run_cdd
from keras_lincon.geometry.double_description.vertex_walk import CapGuard
from keras_lincon.geometry.generator_check import ADVICE

#: Seconds a worker run goes unwatched before the parent starts its guard
#: (the certain lower bound, then the vertex walk): short runs never pay for
#: it, and a set certainly above the cap is still refused within ~0.1 s.
GUARD_DELAY = 0.05


def _worker_main(conn) -> None:
    """Loop of the kept worker process: (table, num_ineq, exact) in, a result out."""
    # The parent handles Ctrl-C and terminates this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        result: tuple
        try:
            result = ("ok", run_cdd(*task))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = ("error", type(exc).__name__, str(exc))
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


def _start_method() -> str:
    # fork: no re-import of the parent (importing keras_lincon pulls in Keras
    # and TensorFlow: seconds); the child only runs cddlib. spawn elsewhere.
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _stop(proc) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    if proc.is_alive():  # pragma: no cover - SIGTERM ignored
        proc.kill()
        proc.join()


# The kept worker: (pid of the process that started it, process, connection).
_WORKER: tuple | None = None


def shutdown_worker() -> None:
    """Stops the kept double-description worker process, if any (the next run starts a new one)."""
    global _WORKER
    worker, _WORKER = _WORKER, None
    if worker is not None and worker[0] == os.getpid():
        _stop(worker[1])
        worker[2].close()


def _worker():
    """The kept worker process and its connection, started (forked) on first use."""
    global _WORKER
    if _WORKER is not None and (_WORKER[0] != os.getpid() or not _WORKER[1].is_alive()):
        shutdown_worker()  # a dead worker, or one that belongs to our parent (we were forked)
    if _WORKER is None:
        ctx = multiprocessing.get_context(_start_method())
        here, there = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(there,), daemon=True, name="keras_lincon-double-description")
        proc.start()
        there.close()
        _WORKER = (os.getpid(), proc, here)
    return _WORKER[1], _WORKER[2]


def run_in_worker(table, num_ineq, exact, time_budget, describe: str, guard: CapGuard | None = None):
    """:func:`~.cddlib.run_cdd` in the kept worker process, bounded by ``time_budget`` and Ctrl-C.

    A timeout, Ctrl-C or a dead worker ends the process (cddlib cannot be
    interrupted otherwise); the next call starts a new one. While it runs,
    the parent advances ``guard`` (if given: the certain lower bound, then
    the vertex walk, in slices of 50 ms), which stops the worker by raising
    as soon as the set is certainly, or counted, above the cap.

    Returns:
        ``(vertices, rays, lineality)`` float arrays, as ``run_cdd``.
    """
    proc, conn = _worker()
    start = time.monotonic()
    message, finished = None, False
    try:
        conn.send((table, num_ineq, exact))
        while True:
            left = _time_left(time_budget, start, describe)
            timeout = 0.5 if left is None else min(0.5, left)
            if guard is not None and not guard.done:
                found, timeout = _advance_guard(guard, start, left, timeout)
                if found is not None:  # the walk found every vertex first: cddlib is not needed
                    return found, np.zeros((0, found.shape[1])), np.zeros((0, found.shape[1]))
            # Wakes on a result, on the child's exit, or every 0.5 s (so that
            # the budget is checked; Ctrl-C interrupts the wait at once).
            ready = multiprocessing.connection.wait([conn, proc.sentinel], timeout=timeout)
            if conn in ready or proc.sentinel in ready:
                message = _receive(conn)
                finished = message is not None
                break
    finally:
        if not finished:
            shutdown_worker()
    return _result(message, proc.exitcode, describe)


def _time_left(time_budget, start: float, describe: str) -> float | None:
    """Seconds left of ``time_budget`` (None: no limit); raises :class:`ConstructionTimeoutError` at 0."""
    left = None if time_budget is None else time_budget - (time.monotonic() - start)
    if left is not None and left <= 0:
        raise ConstructionTimeoutError(
            f"double description of {describe} did not finish within the time budget "
            f"(time_budget={time_budget:g} s) and was stopped: the set may have too many "
            "generators, or is only slow to enumerate. Split the constraints into "
            "independent blocks, use fewer rows, put a box on a cone (box=...) "
            "instead of listing bounds as rows, or pass a larger time_budget "
            "(None waits without limit)."
        )
    return left


def _advance_guard(guard: CapGuard, start: float, left, timeout: float) -> tuple:
    """One slice of the guard once :data:`GUARD_DELAY` has passed: ``(all vertices or None, next wait)``.

    Raises past the cap (the guard's errors). Most runs end within
    GUARD_DELAY: they never pay for the guard.
    """
    wait_more = GUARD_DELAY - (time.monotonic() - start)
    if wait_more > 0:
        return None, min(timeout, wait_more)
    return guard.step(0.05 if left is None else min(0.05, left)), 0.0


def _receive(conn):
    """The worker's message, or None when it died without one."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _result(message, exitcode, describe: str):
    """The worker's result, or its error raised again in the parent (a dead worker: RepresentationCheckError)."""
    if message is None:
        raise RepresentationCheckError(
            f"the double description worker for {describe} died without a result "
            f"(exit code {exitcode}; a negative code is the signal, e.g. -9 when the "
            f"system ran out of memory). {ADVICE}."
        )
    if message[0] == "ok":
        return message[1]
    _, name, text = message
    cls = {
        "RepresentationCheckError": RepresentationCheckError,
        "MemoryError": MemoryError,
        "ImportError": ImportError,
    }.get(name, RepresentationCheckError)
    raise cls(text if name in ("RepresentationCheckError", "ImportError") else f"{name}: {text}")
