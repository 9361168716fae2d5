"""A character n-gram baseline with interpolated Kneser-Ney smoothing (Chen and Goodman's form).

For an order-n model and a context h of n-1 characters,

    P_n(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P_{n-1}(w | h')

where h' drops the first character of h, c are raw counts at the highest order and continuation
counts (the number of distinct characters seen before the n-gram) at every lower order, N1+(h .)
is the number of distinct characters seen after h, and D = n1 / (n1 + 2 n2) from the numbers of
n-grams seen once and twice at that level (0.5 if either number is zero, as in a text made of
repeats). A context never seen passes P_{n-1} through unchanged.
The recursion ends in the uniform distribution 1/K over the vocabulary, so every character of
the vocabulary, seen in training or not, has a positive probability and each P_n sums to one.
"""
from __future__ import annotations

import math
import numbers
import os
from collections import Counter, defaultdict

import numpy as np

from charrnn.study.memo import remembered
from rnn_core import RNNError

# Resident bytes per distinct n-gram of the text (its raw and continuation counts in Python dicts, and
# the Counters they are built from): about 400 measured (order 7 on the 1.1 MB Shakespeare corpus:
# 1.0 million distinct n-grams, 413 MB).
BYTES_PER_NGRAM = 400
# A model is refused, before any counting, when it would need more than this share of the memory.
MEMORY_SHARE = 0.5


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def distinct_ngrams(text: str, max_order: int) -> int:
    """How many distinct n-grams of orders 1..max_order the text has: exact but for rare hash
    collisions (each n-gram a base-K number in int64, wrapping), in O(len(text)) memory."""
    idx = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    K = max(int(idx.max()) + 1, 2) if len(idx) else 2
    h, total = np.zeros(len(idx), dtype=np.int64), 0
    with np.errstate(over="ignore"):
        for k in range(1, max_order + 1):
            if len(idx) < k:
                break
            h = h[:len(idx) - k + 1] * K + idx[k - 1:]
            total += len(np.unique(h))
    return total


def check_ngram_memory(text: str, K: int, max_order: int) -> int:
    """Refuse (RNNError), before counting, a model that would not fit in memory; returns its estimated
    bytes. The quick bound min(N, K^k) per order is tried first; only above the limit are the n-grams counted."""
    limit = MEMORY_SHARE * physical_memory()
    bound = sum(min(max(len(text) - k + 1, 0), K ** k) for k in range(1, max_order + 1))
    if bound * BYTES_PER_NGRAM <= limit:
        return bound * BYTES_PER_NGRAM
    need = distinct_ngrams(text, max_order) * BYTES_PER_NGRAM
    if need > limit:
        raise RNNError(f"a Kneser-Ney model of order {max_order} on {len(text):,} characters needs about "
                       f"{need / 2**30:.1f} GiB, more than half of this machine's {limit / MEMORY_SHARE / 2**30:.1f} GiB: "
                       "use a lower order or a shorter text")
    return need


class KneserNey:
    """Interpolated Kneser-Ney character models of every order 1..max_order, from one training text."""

    def __init__(self, text: str, vocab: str, max_order: int = 6):
        if not isinstance(text, str) or not isinstance(vocab, str) or not text or not vocab:
            raise RNNError("KneserNey needs a non-empty training text and a non-empty vocabulary (strings)")
        if isinstance(max_order, bool) or not isinstance(max_order, numbers.Integral) or not 1 <= max_order <= 64:
            raise RNNError(f"max_order must be a whole number in [1, 64], got {max_order!r}")
        unknown = set(text) - set(vocab)
        if unknown:
            raise RNNError(f"the training text has characters not in the vocabulary: {''.join(sorted(unknown))[:20]!r}")
        max_order = int(max_order)
        check_ngram_memory(text, len(vocab), max_order)
        self.vocab, self.K, self.max_order = vocab, len(vocab), max_order
        raw = {k: Counter(text[i:i + k] for i in range(len(text) - k + 1)) for k in range(1, max_order + 1)}
        # continuation count of a k-gram: how many distinct characters precede it in the text
        cont = {k: Counter(g[1:] for g in raw[k + 1]) for k in range(1, max_order)}
        self.levels = {}  # (k, "raw"|"cont") -> (table: context -> (counts dict, total, distinct), D)
        for k in range(1, max_order + 1):
            kinds = ["raw"] + (["cont"] if k < max_order else [])
            for kind in kinds:
                counts = raw[k] if kind == "raw" else cont[k]
                table: dict = defaultdict(dict)
                for gram, n in counts.items():
                    table[gram[:-1]][gram[-1]] = n
                n1 = sum(1 for n in counts.values() if n == 1)
                n2 = sum(1 for n in counts.values() if n == 2)
                D = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5  # the estimate needs both (always so on real text)
                self.levels[(k, kind)] = ({h: (d, sum(d.values()), len(d)) for h, d in table.items()}, D)

    def check_order(self, order) -> None:
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 1 <= order <= self.max_order:
            raise RNNError(f"order must be a whole number in [1, {self.max_order}] (the model's max_order), got {order!r}")

    def prob(self, context: str, w: str, order: int) -> float:
        """P_order(w | the last order-1 characters of context)."""
        self.check_order(order)
        p = 1.0 / self.K
        for k in range(1, order + 1):
            table, D = self.levels[(k, "raw" if k == order else "cont")]
            h = context[len(context) - (k - 1):] if k > 1 else ""
            if k > 1 and len(h) < k - 1:
                continue  # not enough context at the start of the text: stay at the lower order
            entry = table.get(h)
            if entry is None:
                continue
            counts, total, distinct = entry
            p = max(counts.get(w, 0) - D, 0.0) / total + D * distinct / total * p
        return p

    def counts_stored(self, order: int) -> int:
        """How many (context, next character) counts the order-`order` model reads: its size."""
        return sum(len(entry[0]) for k in range(1, order + 1)
                   for entry in self.levels[(k, "raw" if k == order else "cont")][0].values())

    def distribution(self, context: str, order: int) -> np.ndarray:
        """P_order(. | context) over the vocabulary, shape (K,)."""
        return np.array([self.prob(context, w, order) for w in self.vocab])

    def bits_per_char(self, text: str, start: int, order: int) -> float:
        """Mean -log2 P of text[start:], each character given the characters before it in `text`."""
        if not isinstance(start, numbers.Integral) or not 0 <= start < len(text):
            raise RNNError(f"start must be a position in the text [0, {len(text)}), got {start!r}")
        total = 0.0
        for i in range(start, len(text)):
            total -= math.log2(self.prob(text[max(0, i - order + 1):i], text[i], order))
        return total / (len(text) - start)

    def block_log2_probs(self, blocks: list, order: int) -> np.ndarray:
        """log2 P_order of each block's character j + 1 given the block's characters before it (the
        context is cut at the block start, as the RNN reads each block from a state that holds nothing of it): (n, L - 1)
        for n blocks of L characters (the held-out blocks of `charrnn.heldout`)."""
        self.check_order(order)
        if not len(blocks) or any(not isinstance(b, str) or len(b) != len(blocks[0]) for b in blocks) or len(blocks[0]) < 2:
            raise RNNError("blocks must be a non-empty list of strings of one length >= 2")
        out = np.empty((len(blocks), len(blocks[0]) - 1))
        for r, block in enumerate(blocks):
            for i in range(1, len(block)):
                out[r, i - 1] = math.log2(self.prob(block[max(0, i - order + 1):i], block[i], order))
        return out


def kneser_ney_scores(text: str, vocab: str, blocks: list, max_order: int, runs_dir=None) -> tuple[dict, dict]:
    """({order: `block_log2_probs` (n, L-1)}, {order: `counts_stored`}) for every order 1..max_order of
    the models trained on `text`; kept in runs_dir/derived when one is given (memo; version 1)."""
    def compute():
        kn = KneserNey(text, vocab, max_order)
        out = {f"log2p{n}": kn.block_log2_probs(blocks, n) for n in range(1, max_order + 1)}
        return out | {f"counts{n}": kn.counts_stored(n) for n in range(1, max_order + 1)}

    value = remembered(runs_dir, "kneser_ney", 1, [text, vocab, list(blocks), max_order], compute)
    return ({n: value[f"log2p{n}"] for n in range(1, max_order + 1)},
            {n: int(value[f"counts{n}"]) for n in range(1, max_order + 1)})
