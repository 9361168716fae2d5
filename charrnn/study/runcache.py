"""The run cache in runs/: keys, serving a finished run, continuing a shorter one, background workers."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from charrnn import kernels
from charrnn.training.checkpoint import CheckpointBusy, held_elsewhere, load_checkpoint
from charrnn.training.config import Config, result_fields
from charrnn.training.data import Corpus
from charrnn.training.run import Run, check_corpus
from charrnn.training.schedule import is_complete, target_updates, updates_per_epoch
from charrnn.training.loop import progress_bar, train
from charrnn.training.validate import read_meta
from rnn_core import RNNError

# Part of every run-cache key: bump it when a change alters the numbers a run produces (e.g. the
# order of the sums in the kernel), so that cached runs of older code are not taken for new ones.
NUMERICS_VERSION = 7
# Part of the key of every run with a held-out part: bump it when the held-out split changes
# (2: blocks spread over the corpus, charrnn/heldout.py; before: the last part of the corpus;
# 3: each block scored from the hidden state training carries, not from zero).
SPLIT_VERSION = 3


def run_key(corpus: Corpus, config: Config) -> str:
    """Hash of the corpus content, every config field that decides the numbers (all but how long to
    run and how often to save), NUMERICS_VERSION and, with a held-out part, SPLIT_VERSION."""
    fields = result_fields(config)
    dtype = fields.pop("dtype")
    key = {"corpus": corpus.sha256, "config": fields, "numerics": NUMERICS_VERSION}
    if config.holdout:  # runs with a held-out part also depend on how it is chosen
        key["split"] = SPLIT_VERSION
    if dtype != "float64":  # float64 runs keep the keys they had before the float32 mode existed
        key["dtype"] = dtype
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_path(corpus: Corpus, config: Config, runs_dir) -> Path:
    length = f"e{config.epochs}" + (f"u{config.max_updates}" if config.max_updates is not None else "")
    return Path(runs_dir) / f"{run_key(corpus, config)}-{length}.npz"


def _stored_config(meta: dict | None) -> Config | None:
    """The config of a checkpoint's meta as `read_meta` returns it (checked already, or None)."""
    return None if meta is None else Config.from_json(json.dumps(meta["config"]))


def _same_settings(meta: dict | None, config: Config) -> bool:
    """Whether a checkpoint's meta is of a run with exactly these result fields (any length)."""
    stored = _stored_config(meta)
    return stored is not None and result_fields(stored) == result_fields(config)


def _serves(meta: dict | None, config: Config) -> bool:
    """Whether a cached checkpoint's meta is a finished run of exactly `config` (not just of its key)."""
    if not _same_settings(meta, config):
        return False
    stored = _stored_config(meta)
    return ((stored.epochs, stored.max_updates) == (config.epochs, config.max_updates)
            and is_complete(meta["update"], stored, meta["updates_per_epoch"]))


def _set_aside(path: Path, why: str) -> Path:
    """Move a cache entry that must not be used into runs/set-aside/ (kept for a look), saying so."""
    aside = path.parent / "set-aside"
    aside.mkdir(exist_ok=True)
    dest = aside / path.name
    n = 1
    while dest.exists():
        dest, n = aside / f"{path.stem}.{n}{path.suffix}", n + 1
    os.replace(path, dest)
    print(f"notice: cached run {path} set aside as {dest}: {why}; training it again", file=sys.stderr)
    return dest


def _is_cached(path: Path, config: Config) -> bool:
    return path.exists() and _serves(read_meta(path), config)


_PENDING: dict = {}  # run path -> Future of a background job that will write it
_POOL = None  # the ProcessPoolExecutor of `prefetch`, started on first use


def cached_run(corpus: Corpus, config: Config, runs_dir="runs", progress=None) -> Run:
    """The run for this config and corpus: loaded from `runs_dir` when it was trained before, else
    trained, continuing the longest cached run of the same settings that stopped earlier (resuming
    is bit-exact, so this equals training from scratch). Interrupted runs are resumed too. A run
    that `prefetch` is training in the background is waited for. A cached file is served only if
    its stored config equals `config` field by field. A run that another process (a background
    worker) is training is waited for too, then loaded."""
    runs_dir = Path(runs_dir)
    path = _run_path(corpus, config, runs_dir)
    pending = _PENDING.pop(str(path), None)
    if pending is not None:
        _wait_for(pending, path, corpus, config, progress)
    while True:
        while held_elsewhere(path):
            time.sleep(0.5)
        try:
            return _load_or_train(corpus, config, runs_dir, path, progress)
        except CheckpointBusy:  # another process began this very run a moment before us
            continue


def _load_or_train(corpus: Corpus, config: Config, runs_dir: Path, path: Path, progress) -> Run:
    """`cached_run` once no other process is writing `path`."""
    key = path.stem.split("-")[0]
    want = target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config))
    run = None
    if path.exists():
        meta = read_meta(path)
        if meta is None:
            _load_or_set_aside(path, corpus)  # sets it aside, saying why
        elif not _same_settings(meta, config):
            _set_aside(path, "it holds a run of other settings")
        else:
            run = _load_or_set_aside(path, corpus)  # an interrupted run of these settings is resumed below
            if run is not None and _serves(meta, config):
                return run
    if run is None:  # continue the longest shorter run of these settings that loads
        shorter = []
        for other in runs_dir.glob(f"{key}-*.npz"):
            meta = read_meta(other)
            if meta is None:
                _load_or_set_aside(other, corpus)  # sets it aside, saying why
            elif _same_settings(meta, config) and meta["update"] <= want:
                shorter.append((meta["update"], other))
        for _, other in sorted(shorter, reverse=True):
            run = _load_or_set_aside(other, corpus)
            if run is not None:
                break
    _plan(runs_dir, [(path, want, config)])
    return train(corpus, config, run=run, checkpoint=path, progress=progress)


def _load_or_set_aside(path: Path, corpus: Corpus) -> Run | None:
    """The cached run in `path` if it loads, validates (finite parameters included) and fits the
    corpus; else the file is set aside (said in one line) and None returned."""
    try:
        run = load_checkpoint(path)
        check_corpus(run, corpus)  # the vocabulary, the text and the updates per epoch
    except RNNError as exc:
        _set_aside(path, f"it does not validate ({exc})")
        return None
    return run


def _wait_for(future, path: Path, corpus: Corpus, config: Config, progress) -> None:
    """Wait for a background job; with a progress bar fed by the checkpoints it writes."""
    import concurrent.futures as cf

    bar = None
    if not future.done():
        bar = progress_bar(target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config)),
                            0, progress)
        if bar is not None:
            bar.set_description(f"{path.stem} (in the background)")
    while True:
        try:
            future.result(timeout=2.0)  # re-raises the job's error, if any
            break
        except cf.TimeoutError:
            meta = read_meta(path) if bar is not None and path.exists() else None
            if meta and meta["update"] > bar.n:
                bar.update(meta["update"] - bar.n)
    if bar is not None:
        bar.close()


def _quiet_worker():
    """Idle workers ignore SIGINT (a notebook kernel's interrupt or shutdown reaches the whole
    process group); while training, `train` handles it as everywhere: stop, save, return.
    A worker whose parent dies (a kernel killed, a notebook closed) exits within a second or two:
    its run keeps its last checkpoint (at most `checkpoint_seconds` old, written atomically) and is
    resumed bit for bit by the next `cached_run`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kernels.one_numba_thread()  # the workers already use the cores
    parent = os.getppid()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # orphaned: nobody will ever read this worker's results

    threading.Thread(target=watch_parent, daemon=True).start()


def _train_chain(corpus: Corpus, configs: list, runs_dir: str) -> list:
    """Worker job: the runs of `configs` one after the other (a longer run continues a shorter one)."""
    # checkpoint_seconds only says how often to save (not part of the run's key): often enough here
    # for a waiting notebook's progress bar to move
    return [str(cached_run(corpus, c.replace(checkpoint_seconds=15.0), runs_dir, progress=False).update)
            for c in configs]


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


def prefetch(corpus: Corpus, chains: list, runs_dir="runs", workers: int = 2) -> list:
    """Start training, in `workers` background processes, the runs that are not cached yet.

    `chains`: a list of configs or of lists of configs; the configs of one list run in order in one
    process (so that a long run continues a shorter one of the same settings). `cached_run` then
    waits for a run that is still being trained. Returns the paths being trained."""
    started = []
    with _one_thread_each():
        _submit_chains(corpus, chains, runs_dir, workers, started)
    return started


def submit_job(fn, *args, workers: int = 2):
    """Run fn(*args) in the background workers of `prefetch` (started here if need be, with one BLAS
    thread each); returns its Future. For jobs whose runs depend on other runs (e.g. a learning-rate
    sweep and then seeds at the winning rate); fn must be importable (a module-level function)."""
    with _one_thread_each():
        return _pool(workers).submit(fn, *args)


def _pool(workers: int):
    import concurrent.futures as cf
    import multiprocessing as mp

    global _POOL
    if _POOL is None:
        _POOL = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                       initializer=_quiet_worker)
    return _POOL


def _submit_chains(corpus, chains, runs_dir, workers, started):
    for chain in chains:
        chain = chain if isinstance(chain, (list, tuple)) else [chain]
        paths = [str(_run_path(corpus, c, runs_dir)) for c in chain]
        todo = [c for c, p in zip(chain, paths) if not _is_cached(Path(p), c) and p not in _PENDING]
        if not todo:
            continue
        _plan(runs_dir, [(p, target_updates(c.epochs, c.max_updates, updates_per_epoch(corpus, c)), c)
                         for c, p in zip(chain, paths)])
        future = _pool(workers).submit(_train_chain, corpus, chain, str(runs_dir))
        for p in paths:
            _PENDING[p] = future
        started += paths


def _plan(runs_dir, items) -> None:
    """Note runs to be trained, [(path, target updates, config)], in <runs>/.plan.jsonl: `prefetch`
    when it starts them, `cached_run` when it trains one. `charrnn.watch` reads it to show on the
    terminal of `make report` which runs train, how many there are and how far they are."""
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    default = result_fields(Config())
    now = time.time()
    with open(Path(runs_dir) / ".plan.jsonl", "a") as fh:
        for path, target, config in items:
            label = " ".join(f"{k}={v}" for k, v in result_fields(config).items()
                             if v != default[k] and k not in ("backend", "sample_every", "sample_until", "eval_every"))
            fh.write(json.dumps({"time": now, "path": str(Path(path).resolve()), "target": target,
                                 "label": label or "assignment settings"}) + "\n")
