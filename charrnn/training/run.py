"""The state of a training run (`Run`): config, model, optimiser, position, history; a new run."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from charrnn.training.config import Config, check_dtype_runs, check_memory, resolve_backend
from charrnn.training.data import Corpus, Vocab
from charrnn.kernels import float32_values
from rnn_core import OPTIMIZERS, RNNError, init_params
from charrnn.training.schedule import is_complete, target_updates, updates_per_epoch


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
        return is_complete(self.update, self.config, self.updates_per_epoch)

    @property
    def losses(self) -> np.ndarray:
        return self.loss[: self.update]

    @property
    def smooth_losses(self) -> np.ndarray:
        return self.smooth_history[: self.update]

    def target_updates(self) -> int:
        return target_updates(self.config.epochs, self.config.max_updates, self.updates_per_epoch)


def random_streams(seed: int) -> dict:
    """Independent generators derived from one seed: parameter init and sampling. (The third child
    of the seed, spawn_key (2,), keys the data order of each epoch: see `epoch_plan`.)"""
    init, sample, _order = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "sample": np.random.default_rng(sample)}


def first_stream_state(run: Run) -> np.ndarray:
    """hprev (m,) of batch 1, or of the first of the B streams."""
    return run.hprev if run.hprev.ndim == 1 else run.hprev[0]


def zero_state(config: Config) -> np.ndarray:
    return np.zeros(config.m) if config.batch_size == 1 else np.zeros((config.batch_size, config.m))


def new_run(corpus: Corpus, config: Config) -> Run:
    check_dtype_runs(config)
    config = config.replace(backend=resolve_backend(config.backend, config.batch_size))
    T, B = config.seq_length, config.batch_size
    upe = updates_per_epoch(corpus, config)
    if upe < 1:  # a stream shorter than T + 1 characters
        raise RNNError(f"corpus has {len(corpus.data)} characters: too short for seq_length {T}"
                       + (f" in {B} streams" if B > 1 else f" (needs at least {T + 1})"))
    check_memory(config, corpus.vocab.K)  # before anything is allocated
    rngs = random_streams(config.seed)
    params = init_params(corpus.vocab.K, config.m, rngs["init"], config.sig)
    if config.dtype == "float32":  # the run holds what the kernel computes with: float32 values in float64 arrays
        params = float32_values(params)
    return Run(config=config, vocab=corpus.vocab, corpus_sha256=corpus.sha256,
               updates_per_epoch=upe, params=params,
               opt_state=OPTIMIZERS[config.optimizer][0](params), rngs=rngs, hprev=zero_state(config))


def check_corpus(run: Run, corpus: Corpus) -> None:
    """Refuse a corpus that is not the one the run was trained on."""
    if corpus.vocab.chars != run.vocab.chars:
        raise RNNError(f"checkpoint vocabulary (K={run.vocab.K}) does not match the corpus "
                       f"(K={corpus.vocab.K}); was it trained on another text?")
    if corpus.sha256 != run.corpus_sha256:
        raise RNNError("checkpoint was trained on another text with the same vocabulary "
                       f"(corpus sha256 {corpus.sha256[:12]}, checkpoint {run.corpus_sha256[:12]})")
    upe = updates_per_epoch(corpus, run.config)
    if run.updates_per_epoch != upe:  # the kernel trusts the position: it must fit this corpus
        raise RNNError(f"the run has {run.updates_per_epoch} updates per epoch; this corpus and config "
                       f"give {upe}: it was not trained on them")
