"""Live progress while waiting for runs trained elsewhere: a tqdm bar fed by the checkpoints in the run cache.

A background worker or another process trains the run; its checkpoint (saved every
`checkpoint_seconds`) holds its update count, which is all the bar reads. The bar is the one of
`training.loop.progress_bar`: a widget in Jupyter, nothing when progress is off (RNN_PROGRESS=0,
as under `make report`, whose terminal watcher reports instead).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Callable

from charrnn.training.loop import progress_bar
from charrnn.training.validate import read_meta

POLL_SECONDS = 1.0  # between two looks at the run cache


def checkpoint_updates(path) -> int:
    """The update count of the checkpoint at `path` (0 when there is none, or it does not read)."""
    meta = read_meta(path) if os.path.exists(path) else None
    return int(meta["update"]) if meta else 0


def updates_of(runs, total: int) -> Callable[[], tuple]:
    """A bar's source for several runs: a function returning (the sum of the updates of the
    checkpoints `runs` [(path, target)] hold, each at most its target; `total`, or more when the
    runs have done more). A checkpoint that reached its target is not read again."""
    finished: dict = {}

    def source():
        done = 0
        for path, target in runs:
            n = finished.get(path)
            if n is None:
                n = min(checkpoint_updates(path), target)
                if n >= target:
                    finished[path] = n
            done += n
        return done, max(total, done)

    return source


def job_done(jobs) -> Callable[[float], bool]:
    """`wait_showing`'s `until` for Futures: blocks at most the timeout; True once every job is
    done or one has failed (its error is then raised by whoever reads its result)."""
    def until(timeout: float) -> bool:
        done, pending = cf.wait(jobs, timeout=timeout, return_when=cf.FIRST_EXCEPTION)
        return not pending or any(j.exception() is not None for j in done)

    return until


def wait_showing(until: Callable[[float], bool], source: Callable[[], tuple], desc: str, progress=None) -> None:
    """Wait until `until(timeout)` (which blocks at most `timeout` seconds) returns True; meanwhile
    a progress bar of `source()` = (updates done, updates in all), unless progress is off
    (`progress` False, or None and RNN_PROGRESS=0)."""
    if until(0):
        return
    done, total = source()
    bar = progress_bar(total, done, progress)
    if bar is not None:
        bar.set_description(desc)
    try:
        while not until(POLL_SECONDS):
            if bar is not None:
                _show(bar, *source())
        if bar is not None:
            _show(bar, *source())
    finally:
        if bar is not None:
            bar.close()


def _show(bar, done: int, total: int) -> None:
    if total != bar.total:
        bar.total = total
    if done > bar.n:
        bar.update(done - bar.n)  # update(), not n =: tqdm's rate and time left follow it
    elif done < bar.n:
        bar.n = done
        bar.refresh()
