"""The held-out protocol: which characters are held out (blocks spread over the corpus) and per-block scoring.

The corpus of N characters is cut into consecutive blocks of L characters (L = BLOCK, or less for a
short corpus, so that there are always at least MIN_HELD_BLOCKS held-out blocks). Block i is held out
when floor((i + 1) f) > floor(i f), f the held-out fraction: for f = 0.05 that is every 20th block
(i = 19, 39, ...), spread evenly from the start of the corpus to its end. The characters after the
last whole block, and every other block, are the training text, concatenated in corpus order.

The split depends on (N, f) only: no seed, no setting of any run, so every run and the n-gram
baseline are trained and scored on the same characters. Scoring restarts at every held-out block:
the first character of a block is only read, each of the other L - 1 is predicted from the block's
characters before it (the n-gram with its context cut at the block start; the RNN from one start
state for every block: the hidden state training carries at the time of the evaluation, which holds
nothing of the block. From a zero state, met in training only at epoch starts, some trained networks
fall into a degenerate regime for a whole block, tens of bits per character, on held-out and
training text alike.)
"""
from __future__ import annotations

import math

import numpy as np

from charrnn import kernels

BLOCK = 2000  # characters per block
MIN_HELD_BLOCKS = 4  # a short corpus gets shorter blocks rather than fewer held-out ones


def block_length(N: int, fraction: float) -> int:
    """L: BLOCK, or the largest length that still leaves about MIN_HELD_BLOCKS held-out blocks."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    need = MIN_HELD_BLOCKS / fraction  # blocks in all (inf for a fraction as small as 1e-308)
    L = min(BLOCK, N // math.ceil(need)) if need <= N else 0
    if L < 2:
        raise ValueError(f"a text of {N} characters is too short to hold out {fraction:g} of it in blocks")
    return L


def heldout_starts(N: int, fraction: float) -> tuple[int, np.ndarray]:
    """(L, starts): the block length and the first character of each held-out block, int (n_held,)."""
    L = block_length(N, fraction)
    i = np.arange(N // L)
    # the small margin keeps f = 0.05 from missing a block where (i + 1) * f rounds to just below an integer
    held = np.floor((i + 1) * fraction + 1e-9) > np.floor(i * fraction + 1e-9)
    return L, i[held] * L


def training_pieces(N: int, fraction: float) -> list[tuple[int, int]]:
    """The [start, end) ranges of the training text in corpus order (between the held-out blocks)."""
    L, starts = heldout_starts(N, fraction)
    pieces, a = [], 0
    for s in starts:
        if s > a:
            pieces.append((a, int(s)))
        a = int(s) + L
    if a < N:
        pieces.append((a, N))
    return pieces


def split_array(data: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training data (N_train,), held-out blocks (n_held, L)); N_train + n_held * L = N."""
    L, starts = heldout_starts(len(data), fraction)
    train = np.concatenate([data[a:b] for a, b in training_pieces(len(data), fraction)])
    return train, data[starts[:, None] + np.arange(L)]


def block_log_probs(params: dict, blocks: np.ndarray, h0=None) -> np.ndarray:
    """Natural log-probability the RNN gives each block's character j + 1 after reading its characters
    0..j, every block from the same state h0 (m,) (default 0): shape (n, L - 1) for blocks (n, L).
    All blocks are run side by side: by the compiled evaluation where it runs, else by numpy
    (`numpy_block_log_probs`); tests/test_evidence.py holds the two together."""
    if kernels.evaluation_available():
        m = params["W"].shape[0]
        return kernels.block_log_probs(params, blocks, np.zeros(m) if h0 is None else h0)
    return numpy_block_log_probs(params, blocks, h0)


def heldout_loss(params: dict, blocks: np.ndarray, h0=None) -> float:
    """Mean loss in nats per predicted character of the held-out blocks (n, L), each read from h0."""
    return float(-block_log_probs(params, blocks, h0).mean())


def numpy_block_log_probs(params: dict, blocks: np.ndarray, h0=None) -> np.ndarray:
    """`block_log_probs` in numpy."""
    U, W, V, b, c = params["U"], params["W"], params["V"], params["b"], params["c"]
    n, L = blocks.shape
    H = np.empty((L - 1, n, W.shape[0]))  # (L-1,n,m): the state after reading character t of each block
    h = np.zeros((n, W.shape[0])) if h0 is None else np.tile(np.asarray(h0, dtype=float), (n, 1))
    for t in range(L - 1):
        h = H[t] = np.tanh(h @ W.T + U[:, blocks[:, t]].T + b)
    o = H.reshape(-1, W.shape[0]) @ V.T + c  # ((L-1)n,K)
    o -= o.max(axis=1, keepdims=True)
    y = blocks[:, 1:].T.ravel()  # ((L-1)n,) the characters to predict, in the order of H's rows
    logp = o[np.arange(len(y)), y] - np.log(np.exp(o).sum(axis=1))
    return logp.reshape(L - 1, n).T


def block_texts(text: str, fraction: float) -> list[str]:
    """The held-out blocks as strings, in corpus order (for the n-gram baseline)."""
    L, starts = heldout_starts(len(text), fraction)
    return [text[s:s + L] for s in starts]
