"""Training: the config, the loop of SPEC.md, atomic checkpoints, resuming and the run cache."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Corpus, RNNError, Vocab
from .model import (PARAM_NAMES, evaluate_loss, init_params, loss_and_grads, loss_and_grads_batch,
                    loss_and_grads_steps, synthesize)
from .optim import OPTIMIZERS, clip_grads

CHECKPOINT_FORMAT = 1
# Part of every run-cache key: bump it when a change alters the numbers a run produces (e.g. the
# order of the sums in the kernel), so that cached runs of older code are not taken for new ones.
NUMERICS_VERSION = 3


@dataclass
class Config:
    """Everything that defines a training run. Saved in every checkpoint."""

    m: int = 100  # hidden units
    eta: float = 0.1  # learning rate (of AdaGrad or Adam)
    seq_length: int = 25  # T: characters per training sequence (BPTT length)
    batch_size: int = 1  # B: sequences per update, from B evenly spaced streams (1: the exact algorithm)
    optimizer: str = "adagrad"  # "adagrad" (the assignment) or "adam"
    beta1: float = 0.9  # Adam's decay of the first moment
    beta2: float = 0.999  # Adam's decay of the second moment
    order: str = "sequential"  # "sequential" passes; "random" locations (hprev = 0 each); "chunks" shuffled
    chunk_sequences: int = 40  # with order="chunks": sequences per chunk (hprev reset at each chunk start)
    holdout: float = 0.0  # fraction of the corpus, at its end, held out from training (0: none)
    eval_every: int = 0  # updates between evaluations on the held-out text (0: none)
    sig: float = 0.01  # standard deviation of the initial U, W, V
    epochs: int = 2  # passes through the corpus
    max_updates: int | None = None  # stop once this many updates are done in all (None: no limit)
    clip: float = 5.0  # each gradient entry is clipped to [-clip, clip] before the update
    eps: float = 1e-8  # AdaGrad's epsilon inside the square root
    seed: int = 1  # the one seed every random stream derives from
    smooth: float = 0.999  # smooth_loss = smooth * smooth_loss + (1 - smooth) * loss
    sample_every: int = 10_000  # updates between training samples (0: no samples)
    sample_until: int = 100_000  # no training samples after this update
    sample_length: int = 200  # characters per training sample
    backend: str = "auto"  # "numba": fused kernel; "numpy": vectorised form; "steps": textbook form; "auto": numba if it runs
    checkpoint_seconds: float = 60.0  # seconds between checkpoints while training (when a path is given)

    def __post_init__(self):
        for name in ("m", "seq_length", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise RNNError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_updates is not None and self.max_updates < 0:
            raise RNNError(f"max_updates must be >= 0, got {self.max_updates}")
        for name in ("eta", "sig", "clip", "eps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise RNNError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not 0 <= self.smooth < 1:
            raise RNNError(f"smooth must be in [0, 1), got {self.smooth}")
        if self.backend not in BACKENDS:
            raise RNNError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.optimizer not in OPTIMIZERS:
            raise RNNError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.order not in ORDERS:
            raise RNNError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.order != "sequential" and self.batch_size != 1:
            raise RNNError("random and chunked orders take batch_size 1")
        if not 0 <= self.holdout < 1:
            raise RNNError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.eval_every and not self.holdout:
            raise RNNError("eval_every needs a holdout fraction to evaluate on")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


ORDERS = ("sequential", "random", "chunks")

# Fields that only say how long to run or how often to save: a run may be resumed with other values.
RUN_LENGTH_FIELDS = ("epochs", "max_updates", "checkpoint_seconds")

BACKENDS = {"numpy": loss_and_grads, "steps": loss_and_grads_steps, "numba": None, "auto": None}


def resolve_backend(backend: str, batch_size: int = 1) -> str:
    """"auto" becomes "numba" where the kernel compiles, else "numpy"; other names stay.
    Mini-batches (B > 1) always use the numpy batch form, whose matrix products go to BLAS."""
    if batch_size > 1:
        return "numpy"
    if backend != "auto":
        return backend
    from . import kernel

    return "numba" if kernel.available() else "numpy"


def random_streams(seed: int) -> dict:
    """Independent generators derived from one seed: parameter init and sampling. (The third child
    of the seed, spawn_key (2,), keys the data order of each epoch: see `epoch_plan`.)"""
    init, sample, _order = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "sample": np.random.default_rng(sample)}


# ----------------------------------------------------------------------------- run state
@dataclass
class Run:
    """A training run: its config, the model, the optimiser, the loop position and the history."""

    config: Config
    vocab: Vocab
    corpus_sha256: str
    updates_per_epoch: int  # updates in one pass: floor((R - 1) / T), R = stream length (N at B = 1)
    params: dict  # U (m,K), W (m,m), V (K,m), b (m,), c (K,)
    opt_state: dict  # optimiser state, e.g. {"G": {name: array}}
    rngs: dict  # the generators of `random_streams`, advanced as the run goes
    hprev: np.ndarray  # (m,) hidden state carried to the next sequence; (B,m) with mini-batches
    update: int = 0  # updates done
    epoch: int = 0  # epochs completed
    pos: int = 0  # sequential order: e, start of the next sequence; other orders: index in the epoch's plan
    smooth_loss: float = math.nan
    loss: np.ndarray = field(default_factory=lambda: np.empty(0))  # (updates,) loss of every update
    smooth_history: np.ndarray = field(default_factory=lambda: np.empty(0))  # (updates,) smooth loss
    best_params: dict | None = None  # parameters at the lowest smooth loss seen
    best_update: int = -1  # the update whose loss gave that smooth loss
    best_smooth: float = math.inf
    samples: list = field(default_factory=list)  # [{"update", "smooth_loss", "text"}]
    val_updates: list = field(default_factory=list)  # updates at which the held-out loss was evaluated
    val_losses: list = field(default_factory=list)  # held-out loss there, nats per character
    val_seconds: list = field(default_factory=list)  # training seconds elapsed there
    best_val_params: dict | None = None  # parameters at the lowest held-out loss
    best_val_update: int = -1
    best_val: float = math.inf
    seconds: float = 0.0  # wall time spent training, over all sessions
    plan_cache: tuple | None = field(default=None, repr=False, compare=False)  # ((epoch, N), plan), not saved

    @property
    def finished(self) -> bool:
        c = self.config
        return self.epoch >= c.epochs or (c.max_updates is not None and self.update >= c.max_updates)

    @property
    def losses(self) -> np.ndarray:
        return self.loss[: self.update]

    @property
    def smooth_losses(self) -> np.ndarray:
        return self.smooth_history[: self.update]

    def target_updates(self) -> int:
        return target_updates(self.config.epochs, self.config.max_updates, self.updates_per_epoch)


def target_updates(epochs: int, max_updates: int | None, updates_per_epoch: int) -> int:
    """Updates a run does in all: its epochs, or fewer if max_updates says so."""
    total = epochs * updates_per_epoch
    return total if max_updates is None else min(total, max_updates)


def stream_length(N: int, B: int) -> int:
    """Characters in each of the B streams: stream b is data[b(R-1) : b(R-1) + R] (B = 1: all N)."""
    return (N - 1) // B + 1


def _zero_state(config: Config) -> np.ndarray:
    return np.zeros(config.m) if config.batch_size == 1 else np.zeros((config.batch_size, config.m))


def split_data(corpus: Corpus, config: Config):
    """(training data, held-out data or None) for this config: int arrays (N_train,), (N_held,)."""
    if not config.holdout:
        return corpus.data, None
    train_part, held = corpus.split(config.holdout)
    return train_part.data, held


def epoch_plan(config: Config, N: int, epoch: int):
    """Sequence starts (int (n,)) and hprev resets (bool (n,)) of one epoch in a non-sequential order.

    Drawn from a generator keyed by (seed, epoch), so a resumed run draws the same plan again.
    random: floor((N-1)/T) starts uniform in [0, N-T-1], every one with hprev = 0. chunks: the
    sequences 0, T, 2T, ... grouped in chunks of `chunk_sequences`, the chunks shuffled, hprev = 0
    at the start of each chunk."""
    T = config.seq_length
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, epoch)))
    n = (N - 1) // T
    if config.order == "random":
        return rng.integers(0, N - T, size=n), np.ones(n, dtype=bool)
    S = config.chunk_sequences
    chunks = [np.arange(j, min(j + S, n)) * T for j in range(0, n, S)]
    order = rng.permutation(len(chunks))
    starts = np.concatenate([chunks[j] for j in order])
    resets = np.concatenate([np.arange(len(chunks[j])) == 0 for j in order])
    return starts, resets


def updates_per_epoch(corpus: Corpus, config: Config) -> int:
    """floor((R - 1) / T), R the length of each stream of the training part of the corpus."""
    return (stream_length(len(split_data(corpus, config)[0]), config.batch_size) - 1) // config.seq_length


def new_run(corpus: Corpus, config: Config) -> Run:
    config = config.replace(backend=resolve_backend(config.backend, config.batch_size))
    T, B = config.seq_length, config.batch_size
    upe = updates_per_epoch(corpus, config)
    if upe < 1:  # a stream shorter than T + 1 characters
        raise RNNError(f"corpus has {len(corpus.data)} characters: too short for seq_length {T}"
                       + (f" in {B} streams" if B > 1 else f" (needs at least {T + 1})"))
    rngs = random_streams(config.seed)
    params = init_params(corpus.vocab.K, config.m, rngs["init"], config.sig)
    return Run(config=config, vocab=corpus.vocab, corpus_sha256=corpus.sha256,
               updates_per_epoch=upe, params=params,
               opt_state=OPTIMIZERS[config.optimizer][0](params), rngs=rngs, hprev=_zero_state(config))


def _grow(arr: np.ndarray, n: int, cap: int) -> np.ndarray:
    """`arr` with room for at least n entries (doubling, at most `cap` unless n needs more)."""
    if len(arr) >= n:
        return arr
    out = np.full(max(n, min(cap, max(2 * len(arr), 4096))), np.nan)
    out[: len(arr)] = arr
    return out


class TrainingDiverged(RNNError):
    """The loss became NaN or infinite."""


class _StopFlag:
    """Turns SIGINT (Ctrl-C, a notebook's interrupt) into a request to stop between two updates."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _progress_bar(total: int, initial: int, progress):
    """A tqdm bar (a widget in a notebook), or None when progress is off (RNN_PROGRESS=0)."""
    if progress is None:
        progress = os.environ.get("RNN_PROGRESS", "1").lower() not in ("0", "false", "no")
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="upd", smoothing=0.1, dynamic_ncols=True, mininterval=0.5)


def train(corpus: Corpus, config: Config | None = None, *, run: Run | None = None,
          checkpoint=None, progress=None, callback=None, time_limit=None) -> Run:
    """Train with the loop semantics of SPEC.md; returns the Run (a new one, or `run` continued).

    Every update: X = data[e:e+T], Y = data[e+1:e+T+1]; loss and gradients from hprev; smooth loss
    recorded; the parameters that produced the lowest smooth loss kept; gradients clipped; optimiser
    step; hprev = last hidden state; e += T. An epoch ends when fewer than T+1 characters remain,
    and the next starts at e = 0 with hprev = 0. A training sample is taken before the updates
    0, sample_every, ... up to sample_until, from hprev and the first input character.

    `checkpoint`: a path written atomically every `checkpoint_seconds`, at the end, and when
    SIGINT stops the run early (the run then returns unfinished; `train(corpus, run=run)` goes on).
    `callback(run)` is called after every update and may return True to stop. `time_limit`: stop
    after about that many seconds (checked every few hundred updates; for budgeted comparisons).
    With batch_size B > 1 the corpus is read as B evenly spaced streams, one sequence from each per
    update, each stream with its own hprev; the loss and gradients are averaged over the B.
    """
    if run is None:
        run = new_run(corpus, config if config is not None else Config())
    elif config is not None:
        run.config = check_resume_config(run.config, config)
    check_corpus(run, corpus)
    c = run.config
    data, held = split_data(corpus, c)
    use_kernel = c.backend == "numba" and c.batch_size == 1 and _kernel_usable()
    target = run.target_updates()
    if run.best_params is None:
        run.best_params = {k: np.zeros_like(v) for k, v in run.params.items()}
    bar = _progress_bar(target, run.update, progress)
    t_start, t_saved = time.perf_counter(), time.perf_counter()
    seconds0 = run.seconds
    with _StopFlag() as stop:
        while not run.finished and not stop.requested:
            u = run.update
            _evaluate_if_due(run, held, seconds0 + time.perf_counter() - t_start)
            sampled = c.sample_every and u % c.sample_every == 0 and u <= c.sample_until
            if sampled:
                start, reset = _next_start(run, len(data))
                x0 = data[start]  # the first input of the (first) stream
                h0 = run.hprev if run.hprev.ndim == 1 else run.hprev[0]
                h0 = np.zeros_like(h0) if reset else h0
                text = run.vocab.decode(synthesize(run.params, h0, x0, c.sample_length,
                                                   run.rngs["sample"]))
                run.samples.append({"update": u, "smooth_loss": None, "text": text})
            n = target - u
            if c.sample_every and u < c.sample_until:
                n = min(n, c.sample_every - u % c.sample_every)
            if c.eval_every:
                n = min(n, c.eval_every - u % c.eval_every)
            if callback is not None:
                n = 1
            n = min(n, 2000 if use_kernel else 200)
            run.loss = _grow(run.loss, u + n, target)
            run.smooth_history = _grow(run.smooth_history, u + n, target)
            if use_kernel:
                _kernel_updates(run, data, n)
            else:
                _numpy_updates(run, data, n)
            if sampled:
                run.samples[-1]["smooth_loss"] = float(run.smooth_history[u])
            if bar is not None:
                bar.update(run.update - u)
                bar.set_postfix(epoch=min(run.epoch + 1, c.epochs), smooth_loss=f"{run.smooth_loss:.2f}",
                                refresh=False)
            if callback is not None and callback(run):
                break
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                break
            if checkpoint is not None and time.perf_counter() - t_saved > c.checkpoint_seconds:
                run.seconds = seconds0 + time.perf_counter() - t_start
                save_checkpoint(run, checkpoint)
                t_saved = time.perf_counter()
    if bar is not None:
        bar.close()
    _evaluate_if_due(run, held, seconds0 + time.perf_counter() - t_start)  # where the run stops on a grid point
    run.seconds = seconds0 + time.perf_counter() - t_start
    if checkpoint is not None:
        save_checkpoint(run, checkpoint)
    return run


def _next_start(run: Run, N: int):
    """(start of the next sequence, whether hprev is reset before it) for batch 1."""
    c = run.config
    if c.order == "sequential":
        return run.pos, run.pos == 0
    starts, resets = _plan(run, N)
    return int(starts[run.pos]), bool(resets[run.pos])


def _plan(run: Run, N: int):
    key = (run.epoch, N)
    if run.plan_cache is None or run.plan_cache[0] != key:  # one plan per epoch, recomputed after a resume
        run.plan_cache = (key, epoch_plan(run.config, N, run.epoch))
    return run.plan_cache[1]


def _evaluate_if_due(run: Run, held: np.ndarray, seconds: float) -> None:
    """Held-out loss (nats per character) of the current parameters when the update is on the
    evaluation grid and not evaluated yet (only grid points, so that a resumed run evaluates
    where an uninterrupted one does); keeps the best parameters."""
    c = run.config
    if not c.eval_every or run.update % c.eval_every or (run.val_updates and run.val_updates[-1] == run.update):
        return
    val = evaluate_loss(run.params, held)
    run.val_seconds.append(seconds)
    run.val_updates.append(run.update)
    run.val_losses.append(val)
    if val < run.best_val:
        run.best_val, run.best_val_update = val, run.update
        run.best_val_params = {k: v.copy() for k, v in run.params.items()}


def _numpy_updates(run: Run, data: np.ndarray, n: int) -> None:
    """n updates with the numpy forms: the reference loop (and the mini-batch one for B > 1)."""
    c = run.config
    T, B = c.seq_length, c.batch_size
    R = stream_length(len(data), B)
    step = OPTIMIZERS[c.optimizer][1]
    opt_args = (c.eta, c.eps) if c.optimizer == "adagrad" else (c.eta, c.beta1, c.beta2, c.eps)
    if B == 1:
        grad_fn = BACKENDS.get(c.backend) or loss_and_grads  # numba that cannot run: the numpy form
        window = np.arange(T)  # (T,)
    else:
        grad_fn = loss_and_grads_batch
        window = np.arange(B)[:, None] * (R - 1) + np.arange(T)  # (B,T) offsets of the B streams
    sequential = c.order == "sequential"
    for _ in range(n):
        u = run.update
        e, reset = _next_start(run, len(data))
        if reset:
            run.hprev = _zero_state(c)
        X, Y = data[window + e], data[window + e + 1]
        loss, grads, h_last = grad_fn(run.params, X, Y, run.hprev)
        if not math.isfinite(loss):
            _diverged(run, loss)
        run.smooth_loss = loss if u == 0 else c.smooth * run.smooth_loss + (1 - c.smooth) * loss
        run.loss[u], run.smooth_history[u] = loss, run.smooth_loss
        if run.smooth_loss < run.best_smooth:
            run.best_smooth, run.best_update = run.smooth_loss, u
            for k, v in run.params.items():
                run.best_params[k][...] = v
        step(run.params, clip_grads(grads, c.clip), run.opt_state, *opt_args)
        run.hprev = h_last
        run.update = u + 1
        if sequential:
            run.pos += T
            over = run.pos + T + 1 > R  # fewer than T+1 characters left (in each stream)
        else:
            run.pos += 1
            over = run.pos >= len(_plan(run, len(data))[0])
        if over:  # the epoch is over
            run.epoch, run.pos, run.hprev = run.epoch + 1, 0, _zero_state(c)


def _kernel_updates(run: Run, data: np.ndarray, n: int) -> None:
    """n updates with the fused numba kernel; the same loop as `_numpy_updates`, compiled."""
    from . import kernel

    c = run.config
    adam = c.optimizer == "adam"
    p, B = run.params, run.best_params
    S = run.opt_state["m"] if adam else run.opt_state["G"]
    R = run.opt_state["v"] if adam else S  # AdaGrad has no second array: R is not read
    if c.order == "sequential":
        starts, resets = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    else:
        starts, resets = _plan(run, len(data))
        starts = np.ascontiguousarray(starts, dtype=np.int64)
    istate = np.array([run.update, run.epoch, run.pos, run.best_update, 0,
                       run.opt_state.get("t", 0) if adam else 0], dtype=np.int64)
    fstate = np.array([run.smooth_loss, run.best_smooth])
    hprev = np.array(run.hprev, dtype=np.float64)  # (m,) updated in place
    kernel.run_updates(*(p[k] for k in PARAM_NAMES), *(S[k] for k in PARAM_NAMES),
                       *(R[k] for k in PARAM_NAMES), *(B[k] for k in PARAM_NAMES), data, hprev,
                       run.loss, run.smooth_history, istate, fstate, n, c.seq_length, c.eta, c.eps,
                       c.clip, c.smooth, adam, c.beta1, c.beta2, starts, resets)
    run.update, run.epoch, run.pos, run.best_update = (int(v) for v in istate[:4])
    if adam:
        run.opt_state["t"] = int(istate[5])
    run.smooth_loss, run.best_smooth = float(fstate[0]), float(fstate[1])
    run.hprev = hprev
    if istate[4] != kernel.OK:
        e = _next_start(run, len(data))[0]
        X, Y = data[e: e + c.seq_length], data[e + 1: e + c.seq_length + 1]
        _diverged(run, loss_and_grads(run.params, X, Y, run.hprev)[0])


def _diverged(run: Run, loss: float):
    raise TrainingDiverged(f"loss became {loss} at update {run.update} (epoch {run.epoch + 1}, "
                           f"position {run.pos}); try a smaller eta")


_NOTICE_SHOWN = False


def _kernel_usable() -> bool:
    """Whether the numba kernel runs here; says once, in one line, when it does not."""
    global _NOTICE_SHOWN
    from . import kernel

    if kernel.available():
        return True
    if not _NOTICE_SHOWN:
        print(f"notice: {kernel.unavailable_reason()}; training with the numpy form instead", file=sys.stderr)
        _NOTICE_SHOWN = True
    return False


def check_corpus(run: Run, corpus: Corpus) -> None:
    """Refuse a corpus that is not the one the run was trained on."""
    if corpus.vocab.chars != run.vocab.chars:
        raise RNNError(f"checkpoint vocabulary (K={run.vocab.K}) does not match the corpus "
                       f"(K={corpus.vocab.K}); was it trained on another text?")
    if corpus.sha256 != run.corpus_sha256:
        raise RNNError("checkpoint was trained on another text with the same vocabulary "
                       f"(corpus sha256 {corpus.sha256[:12]}, checkpoint {run.corpus_sha256[:12]})")


def check_resume_config(old: Config, new: Config) -> Config:
    if new.backend == "auto":
        new = new.replace(backend=old.backend)
    differ = [f.name for f in dataclasses.fields(Config)
              if f.name not in RUN_LENGTH_FIELDS and getattr(old, f.name) != getattr(new, f.name)]
    if differ:
        pairs = ", ".join(f"{n}={getattr(old, n)!r} (asked {getattr(new, n)!r})" for n in differ)
        raise RNNError(f"cannot resume: the checkpoint was trained with {pairs}")
    return new


# ----------------------------------------------------------------------------- checkpoints
def _flatten(prefix: str, tree, out: dict) -> None:
    for k, v in tree.items():
        if isinstance(v, dict):
            _flatten(f"{prefix}{k}/", v, out)
        else:
            out[f"{prefix}{k}"] = np.asarray(v)


def _unflatten(prefix: str, arrays) -> dict:
    tree: dict = {}
    for key in arrays:
        if key.startswith(prefix):
            *path, leaf = key[len(prefix):].split("/")
            node = tree
            for p in path:
                node = node.setdefault(p, {})
            value = arrays[key]
            node[leaf] = value.item() if value.ndim == 0 else value
    return tree


def save_checkpoint(run: Run, path) -> Path:
    """Write the whole run to one .npz (no pickled objects), atomically: temp file, fsync, rename."""
    path = Path(path)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": json.loads(run.config.to_json()),
        "vocab": run.vocab.chars,
        "corpus_sha256": run.corpus_sha256,
        "updates_per_epoch": run.updates_per_epoch,
        "update": run.update, "epoch": run.epoch, "pos": run.pos,
        "smooth_loss": run.smooth_loss,
        "best_update": run.best_update, "best_smooth": run.best_smooth,
        "samples": run.samples,
        "val_updates": run.val_updates, "val_losses": run.val_losses, "val_seconds": run.val_seconds,
        "best_val_update": run.best_val_update, "best_val": run.best_val,
        "rng_states": {k: g.bit_generator.state for k, g in run.rngs.items()},
        "seconds": run.seconds,
    }
    arrays = {"meta": np.array(json.dumps(meta)), "hprev": run.hprev,
              "loss": run.losses, "smooth_loss": run.smooth_losses}
    _flatten("params/", run.params, arrays)
    _flatten("opt/", run.opt_state, arrays)
    if run.best_params is not None:
        _flatten("best/", run.best_params, arrays)
    if run.best_val_params is not None:
        _flatten("bestval/", run.best_val_params, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_npz(path: Path) -> dict:
    if not path.exists():
        raise RNNError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise RNNError(f"checkpoint path is a directory: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RNNError(f"not a readable checkpoint: {path} ({exc.__class__.__name__})") from None


def load_checkpoint(path) -> Run:
    """Read a checkpoint written by `save_checkpoint` (np.load with allow_pickle=False)."""
    path = Path(path)
    arrays = _read_npz(path)
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise RNNError(f"checkpoint format {meta.get('format')} is not {CHECKPOINT_FORMAT}: {path}")
        config = Config.from_json(json.dumps(meta["config"]))
        rngs = {}
        for name, state in meta["rng_states"].items():
            g = np.random.default_rng()
            g.bit_generator.state = state
            rngs[name] = g
        params = _unflatten("params/", arrays)
        run = Run(config=config, vocab=Vocab(meta["vocab"]), corpus_sha256=meta["corpus_sha256"],
                  updates_per_epoch=meta["updates_per_epoch"], params=params,
                  opt_state=_unflatten("opt/", arrays), rngs=rngs, hprev=arrays["hprev"],
                  update=meta["update"], epoch=meta["epoch"], pos=meta["pos"],
                  smooth_loss=meta["smooth_loss"], loss=arrays["loss"],
                  smooth_history=arrays["smooth_loss"], best_params=_unflatten("best/", arrays) or None,
                  best_update=meta["best_update"], best_smooth=meta["best_smooth"],
                  samples=meta["samples"], seconds=meta.get("seconds", 0.0),
                  val_updates=meta.get("val_updates", []), val_losses=meta.get("val_losses", []),
                  val_seconds=meta.get("val_seconds", []),
                  best_val_params=_unflatten("bestval/", arrays) or None,
                  best_val_update=meta.get("best_val_update", -1), best_val=meta.get("best_val", math.inf))
    except KeyError as exc:
        raise RNNError(f"checkpoint {path} lacks {exc.args[0]!r}; was it written by this program?") from None
    if set(params) != set(PARAM_NAMES):
        raise RNNError(f"checkpoint {path} holds parameters {sorted(params)}, expected {list(PARAM_NAMES)}")
    return run


# ----------------------------------------------------------------------------- run cache
def run_key(corpus: Corpus, config: Config) -> str:
    """Hash of the corpus content and every config field that changes the result."""
    config = config.replace(backend=resolve_backend(config.backend, config.batch_size))
    defaults = json.loads(Config().to_json())
    # fields at their default values are left out, so that adding a field keeps existing keys
    fields = {k: v for k, v in json.loads(config.to_json()).items()
              if k not in RUN_LENGTH_FIELDS and (k == "backend" or v != defaults[k])}
    blob = json.dumps({"corpus": corpus.sha256, "config": fields, "numerics": NUMERICS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _meta_of(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except Exception:  # an unreadable cache entry is simply not used
        return None


def _run_path(corpus: Corpus, config: Config, runs_dir) -> Path:
    length = f"e{config.epochs}" + (f"u{config.max_updates}" if config.max_updates is not None else "")
    return Path(runs_dir) / f"{run_key(corpus, config)}-{length}.npz"


_PENDING: dict = {}  # run path -> Future of a background job that will write it
_POOL = None


def cached_run(corpus: Corpus, config: Config, runs_dir="runs", progress=None) -> Run:
    """The run for this config and corpus: loaded from `runs_dir` when it was trained before, else
    trained, continuing the longest cached run of the same settings that stopped earlier (resuming
    is bit-exact, so this equals training from scratch). Interrupted runs are resumed too. A run
    that `prefetch` is training in the background is waited for."""
    runs_dir = Path(runs_dir)
    path = _run_path(corpus, config, runs_dir)
    key = path.stem.split("-")[0]
    pending = _PENDING.pop(str(path), None)
    if pending is not None:
        _wait_for(pending, path, corpus, config, progress)
    if path.exists():
        run = load_checkpoint(path)
        if run.finished and run.config.epochs == config.epochs and run.config.max_updates == config.max_updates:
            return run
    else:
        want = target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config))
        best = None
        for other in runs_dir.glob(f"{key}-*.npz"):
            meta = _meta_of(other)
            if meta and meta["update"] <= want and (best is None or meta["update"] > best[0]):
                best = (meta["update"], other)
        run = load_checkpoint(best[1]) if best else None
    return train(corpus, config, run=run, checkpoint=path, progress=progress)


def _wait_for(future, path: Path, corpus: Corpus, config: Config, progress) -> None:
    """Wait for a background job; with a progress bar fed by the checkpoints it writes."""
    import concurrent.futures as cf

    bar = None
    if not future.done():
        bar = _progress_bar(target_updates(config.epochs, config.max_updates, updates_per_epoch(corpus, config)),
                            0, progress)
        if bar is not None:
            bar.set_description(f"{path.stem} (in the background)")
    while True:
        try:
            future.result(timeout=2.0)  # re-raises the job's error, if any
            break
        except cf.TimeoutError:
            meta = _meta_of(path) if bar is not None and path.exists() else None
            if meta and meta["update"] > bar.n:
                bar.update(meta["update"] - bar.n)
    if bar is not None:
        bar.close()


def _quiet_worker():
    """Idle workers ignore SIGINT (a notebook kernel's interrupt or shutdown reaches the whole
    process group); while training, `train` handles it as everywhere: stop, save, return."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_chain(corpus: Corpus, configs: list, runs_dir: str) -> list:
    """Worker job: the runs of `configs` one after the other (a longer run continues a shorter one)."""
    # checkpoint_seconds only says how often to save (not part of the run's key): often enough here
    # for a waiting notebook's progress bar to move
    return [str(cached_run(corpus, c.replace(checkpoint_seconds=15.0), runs_dir, progress=False).update)
            for c in configs]


def prefetch(corpus: Corpus, chains: list, runs_dir="runs", workers: int = 2) -> list:
    """Start training, in `workers` background processes, the runs that are not cached yet.

    `chains`: a list of configs or of lists of configs; the configs of one list run in order in one
    process (so that a long run continues a shorter one of the same settings). `cached_run` then
    waits for a run that is still being trained. Returns the paths being trained."""
    started = []
    # one BLAS thread per worker: the workers already use the cores (spawned workers inherit this)
    saved = {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({v: "1" for v in saved})
    try:
        _submit_chains(corpus, chains, runs_dir, workers, started)
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old
    return started


def _submit_chains(corpus, chains, runs_dir, workers, started):
    import concurrent.futures as cf
    import multiprocessing as mp

    global _POOL
    for chain in chains:
        chain = chain if isinstance(chain, (list, tuple)) else [chain]
        paths = [str(_run_path(corpus, c, runs_dir)) for c in chain]
        todo = [c for c, p in zip(chain, paths) if not _is_finished(Path(p)) and p not in _PENDING]
        if not todo:
            continue
        if _POOL is None:
            _POOL = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                           initializer=_quiet_worker)
        future = _POOL.submit(_train_chain, corpus, chain, str(runs_dir))
        for p in paths:
            _PENDING[p] = future
        started += paths


def _is_finished(path: Path) -> bool:
    meta = _meta_of(path) if path.exists() else None
    if not meta:
        return False
    c = meta["config"]
    return meta["update"] >= target_updates(c["epochs"], c.get("max_updates"), meta["updates_per_epoch"])
