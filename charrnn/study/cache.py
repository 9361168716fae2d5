"""The run cache in runs/: a run's key and file, and `load_or_train`: load a finished run, or train it in this process.

A run is stored as <runs>/<key>-e<epochs>[u<max_updates>].npz, its key a hash of everything that
decides its numbers (`run_key`). `load_or_train` serves a finished run of exactly the settings
asked for, else continues the longest shorter run of those settings (resuming is bit-exact), and
waits for a run that another process is training. Background workers are `scheduler`'s.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from charrnn.study.journal import note_planned
from charrnn.study.progress import checkpoint_updates, wait_showing
from charrnn.training.checkpoint import CheckpointBusy, held_elsewhere, load_checkpoint
from charrnn.training.config import Config, result_fields
from charrnn.training.data import Corpus
from charrnn.training.loop import stop_signal, train
from charrnn.training.run import Run, check_corpus
from charrnn.training.schedule import is_complete, target_updates, updates_per_epoch
from charrnn.training.validate import read_meta
from rnn_core import RNNError

# Part of every run-cache key: bump it when a change alters the numbers a run produces (e.g. the
# order of the sums in the kernel), so that cached runs of older code are not taken for new ones.
NUMERICS_VERSION = 7
# Part of the key of every run with a held-out part: bump it when the held-out split or the way its
# blocks are scored changes (training/heldout.py: blocks spread over the corpus, each read from the
# hidden state training carries).
SPLIT_VERSION = 3


def check_request(corpus, config, runs_dir) -> None:
    """Refuse, in one line (RNNError), arguments that are not a corpus, a Config and a folder name:
    the run cache is the notebook's API, and a dict or None would otherwise fail deep inside it."""
    if not isinstance(corpus, Corpus):
        raise RNNError(f"corpus must be a Corpus (training.open_corpus(path)), got {type(corpus).__name__}")
    if not isinstance(config, Config):
        raise RNNError(f"config must be a training.Config, got {type(config).__name__}")
    if not isinstance(runs_dir, (str, os.PathLike)) or not str(runs_dir):
        raise RNNError(f"runs_dir must name a folder, got {runs_dir!r}")


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


def run_path(corpus: Corpus, config: Config, runs_dir) -> Path:
    """The file of the run of `config` on `corpus` in the run cache `runs_dir`."""
    length = f"e{config.epochs}" + (f"u{config.max_updates}" if config.max_updates is not None else "")
    return Path(runs_dir) / f"{run_key(corpus, config)}-{length}.npz"


def _stored_config(meta: dict | None) -> Config | None:
    """The config of a checkpoint's meta as `read_meta` returns it (checked already, or None)."""
    return None if meta is None else Config.from_json(json.dumps(meta["config"]))


def _same_settings(meta: dict | None, config: Config) -> bool:
    """Whether a checkpoint's meta is of a run with exactly these result fields (any length)."""
    stored = _stored_config(meta)
    return stored is not None and result_fields(stored) == result_fields(config)


def serves(meta: dict | None, config: Config) -> bool:
    """Whether a cached checkpoint's meta is a finished run of exactly `config` (not just of its key)."""
    if not _same_settings(meta, config):
        return False
    stored = _stored_config(meta)
    return ((stored.epochs, stored.max_updates) == (config.epochs, config.max_updates)
            and is_complete(meta["update"], stored, meta["updates_per_epoch"]))


def is_cached(path: Path, config: Config) -> bool:
    """Whether `path` holds a finished run of exactly `config`."""
    return path.exists() and serves(read_meta(path), config)


def run_updates(path: Path) -> int:
    """The most updates a checkpoint of the settings of `path` holds (its own file, or a shorter or
    longer run of the same key, which a longer run continues): the progress of a run being trained."""
    key = path.name.split("-")[0]
    return max((checkpoint_updates(p) for p in path.parent.glob(f"{key}-*.npz")), default=0)


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


def load_or_train(corpus: Corpus, config: Config, runs_dir="runs", progress=None) -> Run:
    """The run of `config` on `corpus`: loaded from `runs_dir` when a finished run of exactly these
    settings (compared field by field) is there; else trained here, continuing the longest cached
    run of the same settings that stopped earlier, an interrupted one included (resuming is
    bit-exact, so this equals training from scratch). A run that another process is training is
    waited for (a progress bar follows its checkpoints), then loaded. Training stopped by a signal
    (Ctrl-C, a notebook's interrupt) saves the checkpoint and raises KeyboardInterrupt: a partial
    run is never returned; the next call resumes it."""
    check_request(corpus, config, runs_dir)
    runs_dir = Path(runs_dir)
    path = run_path(corpus, config, runs_dir)
    want = target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config))
    while True:
        _wait_while_held(path, want, progress)
        try:
            run, served = _cached_or_start(corpus, config, runs_dir, path, want)
            if served:
                return run
            return _train_here(corpus, config, path, run, want, progress)
        except CheckpointBusy:  # another process began this very run a moment before us
            continue


def _wait_while_held(path: Path, want: int, progress) -> None:
    """Wait while another process holds the lock of `path` (it is training that run)."""
    def released(timeout: float) -> bool:
        if held_elsewhere(path):
            time.sleep(timeout)
        return not held_elsewhere(path)

    wait_showing(released, lambda: (min(run_updates(path), want), want),
                 f"{path.stem} (trained by another process)", progress)


def _cached_or_start(corpus: Corpus, config: Config, runs_dir: Path, path: Path, want: int):
    """(the cached run of `config`, True), or (the run to continue or None, False)."""
    if path.exists():
        meta = read_meta(path)
        if meta is None:
            _load_or_set_aside(path, corpus)  # sets it aside, saying why
        elif not _same_settings(meta, config):
            _set_aside(path, "it holds a run of other settings")
        else:
            run = _load_or_set_aside(path, corpus)  # an interrupted run of these settings is resumed
            if run is not None:
                return run, serves(meta, config)
    shorter = []  # the longest shorter run of these settings that loads is continued
    for other in runs_dir.glob(f"{path.name.split('-')[0]}-*.npz"):
        meta = read_meta(other)
        if meta is None:
            _load_or_set_aside(other, corpus)  # sets it aside, saying why
        elif _same_settings(meta, config) and meta["update"] <= want:
            shorter.append((meta["update"], other))
    for _, other in sorted(shorter, reverse=True):
        run = _load_or_set_aside(other, corpus)
        if run is not None:
            return run, False
    return None, False


def _train_here(corpus: Corpus, config: Config, path: Path, run: Run | None, want: int, progress) -> Run:
    """Train (or continue) the run in this process, saving it to `path`; KeyboardInterrupt when a
    signal stopped it early (it is saved)."""
    note_planned(path.parent, [(path, want, config)])
    run = train(corpus, config, run=run, checkpoint=path, progress=progress)
    if not run.finished:
        sig = stop_signal()
        raise KeyboardInterrupt(f"{signal.Signals(sig).name if sig else 'a stop request'} stopped the run at "
                                f"update {run.update:,} of {want:,}; it is saved in {path}, and asking for it "
                                "again resumes it")
    return run


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
