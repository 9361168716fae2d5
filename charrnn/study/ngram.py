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
from collections import Counter, defaultdict

import numpy as np


class KneserNey:
    """Interpolated Kneser-Ney character models of every order 1..max_order, from one training text."""

    def __init__(self, text: str, vocab: str, max_order: int = 6):
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

    def prob(self, context: str, w: str, order: int) -> float:
        """P_order(w | the last order-1 characters of context)."""
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
        total = 0.0
        for i in range(start, len(text)):
            total -= math.log2(self.prob(text[max(0, i - order + 1):i], text[i], order))
        return total / (len(text) - start)

    def block_log2_probs(self, blocks: list, order: int) -> np.ndarray:
        """log2 P_order of each block's character j + 1 given the block's characters before it (the
        context is cut at the block start, as the RNN reads each block from a state that holds nothing of it): (n, L - 1)
        for n blocks of L characters (the held-out blocks of `charrnn.heldout`)."""
        out = np.empty((len(blocks), len(blocks[0]) - 1))
        for r, block in enumerate(blocks):
            for i in range(1, len(block)):
                out[r, i - 1] = math.log2(self.prob(block[max(0, i - order + 1):i], block[i], order))
        return out
