"""The scheduler of background runs: a pool of worker processes, the chains and jobs submitted to it, waiting for them.

`prefetch` queues chains of runs (a longer run continues a shorter one in the same worker) and
`submit_job` any importable function (Part II's jobs); the workers train with `cache.load_or_train`
and save to the run cache, which is all they share with this process. `cached_run` is the run a
notebook asks for: after the background job that trains it, if one was queued here (a progress
bar follows its checkpoints), `cache.load_or_train`.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

from charrnn import kernels
from charrnn.study.cache import check_request, is_cached, load_or_train, run_path, run_updates
from charrnn.study.journal import note_planned
from charrnn.study.progress import job_done, wait_showing
from charrnn.training.config import Config
from charrnn.training.data import Corpus
from charrnn.training.run import Run
from charrnn.training.schedule import target_updates, updates_per_epoch

WORKER_CHECKPOINT_SECONDS = 15.0  # how often a worker saves: often enough for a waiting progress bar to move

_PENDING: dict = {}  # run path -> Future of the background job that will write it
_POOL = None  # the ProcessPoolExecutor of the workers, started on first use


def cached_run(corpus: Corpus, config: Config, runs_dir="runs", progress=None) -> Run:
    """The run of `config` on `corpus`: when `prefetch` queued it, its background job is waited for
    first (with a progress bar fed by its checkpoints; interrupting the wait leaves the job queued);
    then `cache.load_or_train` loads it (or trains it here: when nothing was queued, or when an
    interrupt stopped the job, whose run is saved and resumes here)."""
    check_request(corpus, config, runs_dir)
    path = run_path(corpus, config, runs_dir)
    job = _PENDING.get(str(path))
    if job is not None:
        want = target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config))
        wait_showing(job_done([job]), lambda: (min(run_updates(path), want), want),
                     f"{path.stem} (in the background)", progress)
        _PENDING.pop(str(path), None)
        if not isinstance(job.exception(), KeyboardInterrupt):
            job.result()  # re-raises the job's error, if any
    return load_or_train(corpus, config, runs_dir, progress)


def prefetch(corpus: Corpus, chains: list, runs_dir="runs", workers: int = 2) -> list:
    """Start training, in `workers` background processes, the runs that are not cached yet.

    `chains`: a list of configs or of lists of configs; the configs of one list run in order in one
    process (so that a long run continues a shorter one of the same settings). `cached_run` then
    waits for a run that is still being trained. Returns the paths being trained."""
    started = []
    with _one_thread_each():
        for chain in chains:
            chain = chain if isinstance(chain, (list, tuple)) else [chain]
            for c in chain:
                check_request(corpus, c, runs_dir)
            paths = [str(run_path(corpus, c, runs_dir)) for c in chain]
            if all(is_cached(Path(p), c) or p in _PENDING for c, p in zip(chain, paths)):
                continue
            note_planned(runs_dir, [(p, target_updates(c.epochs, c.max_updates, updates_per_epoch(corpus, c)), c)
                                    for c, p in zip(chain, paths)])
            job = _pool(workers).submit(_train_chain, corpus, chain, str(runs_dir))
            for p in paths:
                _PENDING[p] = job
            started += paths
    return started


def submit_job(fn, *args, workers: int = 2) -> cf.Future:
    """Run fn(*args) in the background workers (started here if need be, with one BLAS thread each);
    returns its Future. For jobs whose runs depend on other runs (e.g. a learning-rate sweep and then
    seeds at the winning rate); fn must be importable (a module-level function)."""
    with _one_thread_each():
        return _pool(workers).submit(fn, *args)


def _train_chain(corpus: Corpus, configs: list, runs_dir: str) -> list:
    """Worker job: the runs of `configs` one after the other (a longer run continues a shorter one)."""
    # checkpoint_seconds only says how often to save (not part of the run's key)
    return [str(load_or_train(corpus, c.replace(checkpoint_seconds=WORKER_CHECKPOINT_SECONDS), runs_dir,
                              progress=False).update) for c in configs]


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                       initializer=_quiet_worker, initargs=(os.getpid(),))
    return _POOL


def _quiet_worker(parent: int):
    """Idle workers ignore SIGINT (a notebook kernel's interrupt or shutdown reaches the whole
    process group); while training, `train` handles it as everywhere: stop and save, and
    `load_or_train` raises KeyboardInterrupt, which ends the job (`cached_run` and Part II's
    waits then resume the saved run in the notebook's process when asked for it).
    A worker whose parent dies (a kernel killed, a notebook closed) exits within a second or two:
    its run keeps its last checkpoint (at most `checkpoint_seconds` old, written atomically) and is
    resumed bit for bit by the next `load_or_train`. `parent` is the pool's process, named when the
    pool is made: a worker that starts after its parent has died exits at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kernels.one_numba_thread()  # the workers already use the cores

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # orphaned: nobody will ever read this worker's results

    threading.Thread(target=watch_parent, daemon=True).start()


# Not NUMBA_NUM_THREADS: numba rereads its variables at every compilation, and one changed after
# its threads started stops the compilation ("Cannot set NUMBA_NUM_THREADS ..."). A first render
# failed so, compiling the float32 kernel late in the notebook; workers call numba.set_num_threads.
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_each():
    """One BLAS thread per background worker while workers are started: the workers already use the
    cores (spawned workers inherit the environment). Restored afterwards."""
    saved = {v: os.environ.get(v) for v in _THREAD_VARS}
    os.environ.update({v: "1" for v in saved})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old
