"""Sampling text from a network: temperature and top-p, priming, streaming output in bounded memory."""
from __future__ import annotations

import itertools

import numpy as np

from .data import RNNError
from .model import PARAM_NAMES, hidden_states, softmax


# Bounds that keep sampling finite: o / temperature stays far from overflow for any sane logits.
TEMPERATURE_RANGE = (1e-3, 1e3)


class SamplingError(RNNError, ValueError):
    """Sampling settings out of range, or a network whose outputs are not finite."""


def sampling_probs(o: np.ndarray, temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """Next-character distribution from logits o (K,): softmax(o / temperature), then the nucleus.

    The nucleus is the smallest set of most probable characters whose total reaches top_p; the
    others get probability zero and the rest is renormalised. temperature=1, top_p=1: plain softmax.
    """
    if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise SamplingError(f"temperature must be in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}], "
                            f"got {temperature}")
    if not 0 < top_p <= 1:
        raise SamplingError(f"top_p must be in (0, 1], got {top_p}")
    with np.errstate(over="ignore", invalid="ignore"):
        z = o / temperature  # (K,)
    if not np.isfinite(z).all():
        raise SamplingError("the network's outputs are not finite: its parameters are too large or not finite")
    p = softmax(z)  # finite logits: the shift by the maximum keeps every term in [0, 1]
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = int(np.searchsorted(cum, top_p)) + 1  # first position where the total reaches top_p
        q = np.zeros_like(p)
        q[order[:keep]] = p[order[:keep]]
        p = q / q.sum()
    return p


def sample_text(params: dict, vocab, n: int, rng: np.random.Generator, prime: str = "\n",
                temperature: float = 1.0, top_p: float = 1.0) -> str:
    """n characters that continue `prime`: the hidden state is warmed on all of prime but its last
    character (from h = 0), which is then the first input. Returns the sampled characters only."""
    return "".join(itertools.islice(sample_chars(params, vocab, rng, prime, temperature, top_p), n))


def sample_chars(params: dict, vocab, rng: np.random.Generator, prime: str = "\n",
                 temperature: float = 1.0, top_p: float = 1.0):
    """The characters of `sample_text`, one at a time and without end (for streaming output)."""
    idx = vocab.encode(prime or "\n")
    h = hidden_states(params, np.zeros(params["W"].shape[0]), idx[:-1])[-1]
    return (vocab.chars[x] for x in generate(params, h, idx[-1], rng, temperature, top_p))


def synthesize(params: dict, h0: np.ndarray, x0: int, n: int, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """Sample n character indices (int64, (n,)), starting from hidden state h0 and input x0.

    Each step draws one uniform number u from rng and takes the first index whose cumulative
    probability exceeds u (inverse-CDF sampling). x0 itself is not part of the output.
    """
    return np.fromiter(generate(params, h0, x0, rng, temperature, top_p), dtype=np.int64, count=n)  # (n,)


def generate(params: dict, h0: np.ndarray, x0: int, rng: np.random.Generator,
             temperature: float = 1.0, top_p: float = 1.0):
    """The indices of `synthesize`, one at a time and without end, in bounded memory."""
    U, W, V, b, c = (params[k] for k in PARAM_NAMES)
    h, x = np.array(h0, dtype=float), int(x0)
    while True:
        h = np.tanh(W @ h + U[:, x] + b)
        p = sampling_probs(V @ h + c, temperature, top_p)
        cdf = np.cumsum(p)
        x = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))  # never a p = 0 entry
        yield x
