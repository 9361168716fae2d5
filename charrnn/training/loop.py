"""The training loop: updates in the assignment's order (or another), samples, held-out checks, stopping."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

from charrnn.training.checkpoint import check_not_corpus, checkpoint_lock, lock_held, save_checkpoint
from charrnn import kernels
from charrnn.training.config import Config, check_dtype_runs, check_resume_config
from charrnn.training.data import Corpus
from charrnn.training.heldout import heldout_loss
from rnn_core import (DIVERGED_NATS_PER_CHAR, OPTIMIZERS, RNNError, clip_grads, loss_and_grads, loss_and_grads_batch,
                      loss_and_grads_steps, synthesize)
from charrnn.training.run import Run, check_corpus, first_stream_state, new_run, zero_state
from charrnn.training.schedule import epoch_plan, split_data, stream_length
from charrnn.training.validate import check_run

# Updates per call of the compiled kernel / of the numpy loop between two looks at the clock: few enough
# that Ctrl-C, time limits and checkpoint times are honoured promptly, enough that the calls cost nothing.
KERNEL_CHUNK, NUMPY_CHUNK = 2000, 200


def _grow(arr: np.ndarray, n: int, cap: int) -> np.ndarray:
    """`arr` with room for at least n entries (doubling, at most `cap` unless n needs more)."""
    if len(arr) >= n:
        return arr
    out = np.full(max(n, min(cap, max(2 * len(arr), 4096))), np.nan)
    out[: len(arr)] = arr
    return out


class TrainingDiverged(RNNError):
    """The loss became NaN or infinite."""


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _StopFlag:
    """Turns SIGINT (Ctrl-C, a notebook's interrupt), SIGTERM and SIGHUP into a request to stop
    between two updates; the signal is kept in `_StopFlag.last` (see `stop_signal`)."""

    last = None  # the signal that stopped the latest run, or None

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        _StopFlag.last = None
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        _StopFlag.last = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def stop_signal():
    """The signal (SIGINT, SIGTERM or SIGHUP) that stopped the latest `train` early, or None."""
    return _StopFlag.last


def progress_bar(total: int, initial: int, progress):
    """A tqdm bar (a widget in a notebook), or None when progress is off (RNN_PROGRESS=0)."""
    if progress is None:
        progress = os.environ.get("RNN_PROGRESS", "1").lower() not in ("0", "false", "no")
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="upd", smoothing=0.1, dynamic_ncols=True, mininterval=0.5)


def train(corpus: Corpus, config: Config | None = None, *, run: Run | None = None,
          checkpoint=None, progress=None, callback=None, time_limit=None) -> Run:
    """Train with the loop of docs/algorithm.md; returns the Run (a new one, or `run` continued).

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
    if checkpoint is not None and not lock_held(checkpoint):
        check_not_corpus(checkpoint, corpus.path)
        with checkpoint_lock(checkpoint):  # one writer per checkpoint
            return train(corpus, config, run=run, checkpoint=checkpoint, progress=progress,
                         callback=callback, time_limit=time_limit)
    if run is None:
        run = new_run(corpus, config if config is not None else Config())
    elif config is not None:
        run.config = check_resume_config(run.config, config)
    check_corpus(run, corpus)
    c = run.config
    data, held = check_heldout(corpus, c)
    check_dtype_runs(c)
    use_kernel = c.backend == "numba" and _kernel_usable(c.batch_size)
    target = run.target_updates()
    if run.best_params is None:
        run.best_params = {k: np.zeros_like(v) for k, v in run.params.items()}
    check_run(run)  # the kernel runs without bounds checks: nothing unchecked reaches it
    bar = progress_bar(target, run.update, progress)
    t_start = t_saved = time.perf_counter()
    seconds0 = run.seconds
    with _StopFlag() as stop, np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # divergence: one line
        while not run.finished and not stop.requested:
            u = run.update
            _evaluate_if_due(run, held, seconds0 + time.perf_counter() - t_start)
            sampled = _sample_if_due(run, data)
            n = 1 if callback is not None else _updates_to_next_event(run, target, use_kernel)
            run.loss = _grow(run.loss, u + n, target)
            run.smooth_history = _grow(run.smooth_history, u + n, target)
            (_kernel_updates if use_kernel else _numpy_updates)(run, data, n)
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


def check_heldout(corpus: Corpus, config: Config):
    """(training data, held-out data) of `split_data`; refuses a held-out part too small to evaluate
    on (fewer than 3 sequences of characters to predict)."""
    data, held = split_data(corpus, config)
    T = config.seq_length
    if held is not None and held.size - (held.shape[0] if held.ndim == 2 else 1) < 3 * T:
        raise RNNError(f"holdout {config.holdout} leaves {held.size} characters to evaluate on; "
                       f"it needs at least {3 * T + 1} (3 sequences): use a larger --holdout")
    return data, held


def _sample_if_due(run: Run, data: np.ndarray) -> bool:
    """Before updates 0, sample_every, ... up to sample_until: a training sample from the current
    hprev (of the first stream) and the next input character. Returns whether one was taken."""
    c, u = run.config, run.update
    if not (c.sample_every and u % c.sample_every == 0 and u <= c.sample_until):
        return False
    start, reset = _next_start(run, len(data))
    h0 = np.zeros(c.m) if reset else first_stream_state(run)
    text = run.vocab.decode(synthesize(run.params, h0, data[start], c.sample_length, run.rngs["sample"]))
    run.samples.append({"update": u, "smooth_loss": None, "text": text})
    return True


def _stream_windows(c: Config, N: int) -> np.ndarray:
    """Offsets (B,T) of the B streams' sequences from a position e: stream b starts at b (R - 1)."""
    return np.arange(c.batch_size)[:, None] * (stream_length(N, c.batch_size) - 1) + np.arange(c.seq_length)


def _updates_to_next_event(run: Run, target: int, use_kernel: bool) -> int:
    """Updates until the next sample, evaluation or the end, at most one chunk."""
    c, u = run.config, run.update
    n = target - u
    if c.sample_every and u < c.sample_until:
        n = min(n, c.sample_every - u % c.sample_every)
    if c.eval_every:
        n = min(n, c.eval_every - u % c.eval_every)
    return min(n, max(1, KERNEL_CHUNK // c.batch_size) if use_kernel else NUMPY_CHUNK)


def _next_start(run: Run, N: int):
    """(start of the next sequence, whether hprev is reset before it) for batch 1."""
    c = run.config
    if c.order == "sequential":
        return run.pos, run.pos == 0
    starts, resets = _epoch_plan(run, N)
    return int(starts[run.pos]), bool(resets[run.pos])


def _epoch_plan(run: Run, N: int):
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
    # each held-out block starts from the state training carries (of the first stream): from a zero
    # state, which training meets only at epoch starts, some networks fall into a degenerate regime
    val = heldout_loss(run.params, held, first_stream_state(run))
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
        grad_fn = loss_and_grads_steps if c.backend == "steps" else loss_and_grads  # numba that cannot run: numpy
        window = np.arange(T)  # (T,)
    else:
        grad_fn = loss_and_grads_batch
        window = _stream_windows(c, len(data))  # (B,T)
    sequential = c.order == "sequential"
    for _ in range(n):
        u = run.update
        e, reset = _next_start(run, len(data))
        if reset:
            run.hprev = zero_state(c)
        X, Y = data[window + e], data[window + e + 1]
        loss, grads, h_last = grad_fn(run.params, X, Y, run.hprev)
        if not loss <= DIVERGED_NATS_PER_CHAR * T:  # also NaN
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
            over = run.pos >= len(_epoch_plan(run, len(data))[0])
        if over:  # the epoch is over
            run.epoch, run.pos, run.hprev = run.epoch + 1, 0, zero_state(c)


def _kernel_updates(run: Run, data: np.ndarray, n: int) -> None:
    """n updates with the fused numba kernel; the same loop as `_numpy_updates`, compiled."""
    c = run.config
    if c.batch_size > 1:
        if not kernels.advance_batch(run, data, n, stream_length(len(data), c.batch_size)):
            window = _stream_windows(c, len(data)) + run.pos  # (B,T)
            _diverged(run, loss_and_grads_batch(run.params, data[window], data[window + 1], run.hprev)[0])
        return
    plan = (None, None) if c.order == "sequential" else _epoch_plan(run, len(data))
    if not kernels.advance(run, data, n, *plan):
        e = _next_start(run, len(data))[0]
        T = c.seq_length
        _diverged(run, loss_and_grads(run.params, data[e: e + T], data[e + 1: e + T + 1], run.hprev)[0])


def _diverged(run: Run, loss: float):
    raise TrainingDiverged(f"loss became {loss} at update {run.update} (epoch {run.epoch + 1}, "
                           f"position {run.pos}); try a smaller eta")


_NOTICE_SHOWN = False


def _kernel_usable(batch_size: int = 1) -> bool:
    """Whether the numba kernel (the mini-batch one for B > 1) runs here; says once, in one line,
    when it does not."""
    global _NOTICE_SHOWN
    reason = kernels.unavailable_reason(batch_size)
    if reason is None:
        return True
    if not _NOTICE_SHOWN:
        print(f"notice: {reason}; training with the numpy form instead", file=sys.stderr)
        _NOTICE_SHOWN = True
    return False
