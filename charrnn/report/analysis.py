"""A look inside a trained network: hidden units that track features of the text, the next-character
candidates along a line, and simple measures of sampled text."""
from __future__ import annotations

import re

import numpy as np

from charrnn.report.plots import LITERAL
from rnn_core import hidden_states, softmax


def text_features(text: str) -> dict:
    """Boolean features of each position t of `text` (the state after reading text[t]), shape (n,):

    "inside [brackets]": between a '[' and its ']' (stage directions in the plays);
    "end of line": text[t] is a newline, the next character starts a line;
    "speaker-name line": the line of text[t] is written in capitals (a speaker's name);
    "inside a word": text[t] is a letter."""
    n = len(text)
    inside = np.zeros(n, dtype=bool)
    depth = False
    for t, ch in enumerate(text):
        if ch == "[":
            depth = True
        inside[t] = depth
        if ch == "]":
            depth = False
    caps = np.zeros(n, dtype=bool)
    pos = 0
    for line in text.split("\n"):
        letters = [c for c in line if c.isalpha()]
        if letters and all(c.isupper() for c in letters):
            caps[pos:pos + len(line)] = True
        pos += len(line) + 1
    return {
        "inside [brackets]": inside,
        "end of line": np.array([c == "\n" for c in text]),
        "speaker-name line": caps,
        "inside a word": np.array([c.isalpha() for c in text]),
    }


def pick_units(H: np.ndarray, features: dict) -> dict:
    """For each feature, the hidden unit whose activation correlates most with it (either sign).

    H: activations (n,m), one row per position of the text. Returns {feature: (unit, correlation)}."""
    Hc = H - H.mean(axis=0)
    Hs = np.sqrt((Hc * Hc).sum(axis=0)) + 1e-12  # (m,)
    out = {}
    for name, f in features.items():
        fc = f.astype(float) - f.mean()
        if not fc.any():
            continue
        r = (Hc * fc[:, None]).sum(axis=0) / (Hs * np.sqrt((fc * fc).sum()))  # (m,)
        unit = int(np.argmax(np.abs(r)))
        out[name] = (unit, float(r[unit]))
    return out


def activations(params: dict, indices) -> np.ndarray:
    """Hidden states after each character of `indices`, from h = 0: shape (n, m)."""
    return hidden_states(params, np.zeros(params["W"].shape[0]), indices)[1:]


def top_candidates(params: dict, indices, k: int = 5):
    """After each character of `indices`: the k most probable next characters (int (n,k)) and their
    probabilities ((n,k)), most probable first."""
    H = activations(params, indices)
    P = softmax(H @ params["V"].T + params["c"])  # (n,K)
    top = np.argsort(-P, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(P, top, axis=1)


def distinct_word_ratio(text: str) -> float:
    """Distinct words / words (letter runs, case folded): a measure of variety."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    return len(set(words)) / len(words) if words else 0.0


def _shown(ch: str, space: bool = False) -> str:
    """A character as drawn in a figure: a newline as a return sign, a space (if asked) as a box."""
    if ch == "\n":
        return "\u21b5"
    return "\u2423" if space and ch == " " else ch


def _char_rows(text: str, width: int):
    """Lines of at most `width` characters; a newline, drawn as a return sign, ends a line."""
    rows, row = [], []
    for t, ch in enumerate(text):
        row.append(t)
        if ch == "\n" or len(row) == width:
            rows.append(row)
            row = []
    return rows + ([row] if row else [])


def plot_activation_panels(text: str, panels, width: int = 70, max_rows: int = 6):
    """One panel per (title, acts): `text` on a character grid (at most `max_rows` lines of `width`
    characters), each cell coloured by the activation (same length as text, in [-1, 1]; red
    positive, blue negative), with the colour scale below. Sized for the page at 8.5-point type."""
    import matplotlib.pyplot as plt

    rows = _char_rows(text, width)[:max_rows]
    fig, axes = plt.subplots(len(panels), 1, figsize=(width * 0.089, len(panels) * (len(rows) * 0.2 + 0.35) + 0.7),
                             squeeze=False, layout="constrained")
    image = None
    for ax, (title, acts) in zip(axes[:, 0], panels):
        grid = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            grid[i, : len(r)] = acts[r]
        image = ax.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        for i, r in enumerate(rows):
            for j, t in enumerate(r):
                ax.text(j, i, _shown(text[t]), ha="center", va="center", fontsize=8.5, family="monospace",
                        **LITERAL)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(re.sub(r"(?<![\w.])-(?=\d)", "\u2212", title), fontsize=9, loc="left", **LITERAL)  # a true minus
    bar = fig.colorbar(image, ax=axes[:, 0], orientation="horizontal", shrink=0.45, aspect=30, pad=0.02,
                       ticks=[-1, -0.5, 0, 0.5, 1])
    bar.set_label("activation of the unit after reading the character (tanh, from -1 to 1)", fontsize=8.5)
    bar.ax.tick_params(labelsize=8)
    return fig


def plot_top_candidates(line: str, top_chars: list, top_probs: np.ndarray, ax=None):
    """A column per position of `line`: the input character below, its k most probable successors
    above it, shaded by probability (colour bar at the right). Sized so that a line of up to 36
    characters fits the page's text width at 8-point type."""
    import matplotlib.pyplot as plt

    n, k = top_probs.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(n * 0.135 + 1.3, k * 0.22 + 0.8), layout="constrained")
    image = ax.imshow(top_probs.T, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for j in range(n):
        for i in range(k):
            ax.text(j, i, _shown(top_chars[j][i], space=True), ha="center", va="center", fontsize=8,
                    family="monospace", **LITERAL)
    ax.set_xticks(range(n))
    ax.set_xticklabels([_shown(c, space=True) for c in line], family="monospace", fontsize=8, **LITERAL)
    ax.set_yticks(range(k))
    ax.set_yticklabels([f"#{i + 1}" for i in range(k)], fontsize=8)
    ax.set_xlabel("input character (the next one is the target)", fontsize=9)
    bar = ax.figure.colorbar(image, ax=ax, pad=0.02, aspect=8, ticks=[0, 0.5, 1])
    bar.set_label("probability", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return ax
