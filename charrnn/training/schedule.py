"""The schedule of a run: the held-out split, stream lengths, updates per epoch, epoch plans, the end."""
from __future__ import annotations

import numpy as np

from charrnn.training.config import Config
from charrnn.training.data import Corpus


def target_updates(epochs: int, max_updates: int | None, updates_per_epoch: int) -> int:
    """Updates a run does in all: its epochs, or fewer if max_updates says so."""
    total = epochs * updates_per_epoch
    return total if max_updates is None else min(total, max_updates)


def is_complete(update: int, config: Config, updates_per_epoch: int) -> bool:
    """Whether a run at `update` has done all it was asked to: the one definition of "finished"."""
    return update >= target_updates(config.epochs, config.max_updates, updates_per_epoch)


def stream_length(N: int, B: int) -> int:
    """Characters in each of the B streams: stream b is data[b(R-1) : b(R-1) + R] (B = 1: all N)."""
    return (N - 1) // B + 1


def split_data(corpus: Corpus, config: Config):
    """(training data, held-out blocks or None) for this config: int arrays (N_train,), (n_held, L)
    (the split of `charrnn.heldout`: blocks spread over the corpus, the rest concatenated)."""
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
