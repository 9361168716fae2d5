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


# The activation colours: light blue (-1) through grey (0) to pale yellow (+1), lightness rising all
# the way (so the order reads in grey too) and never below a relative luminance of 0.25, so black
# text keeps a contrast ratio above 6 on every cell (WCAG asks 4.5).
ACTIVATION_COLOURS = ("#5b8ccc", "#bdbdbd", "#ffeb99")


def activation_cmap():
    """The colour map of the activation pictures (see ACTIVATION_COLOURS); empty cells white."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("activation", ACTIVATION_COLOURS).with_extremes(bad="white")


def feature_excerpt(text: str, mask, width: int = 70, max_rows: int = 6) -> tuple:
    """(start, end) of the excerpt of `text` to show a feature on: whole lines from a line start (the
    text's start only if it has no other), at most `max_rows` printed rows of `width` characters,
    holding the most positions where the feature holds (`mask`) and where it does not (the larger
    of their smaller count); of those, the one with the fewest empty lines, then the one with the
    feature nearest its middle."""
    mask = np.asarray(mask, dtype=bool)
    starts = [t + 1 for t, ch in enumerate(text) if ch == "\n" and t + 1 < len(text)] or [0]
    best, where = (-1, -1, -np.inf), (0, 0)
    for start in starts:
        rows = _char_rows(text[start:start + width * max_rows], width)[:max_rows]
        end = start + sum(len(r) for r in rows)
        hits = np.flatnonzero(mask[start:end])
        centred = -abs(hits.mean() - (end - start) / 2) if hits.size else -np.inf
        full = sum(len(r) > 1 for r in rows)  # rows that are more than an empty line
        score = (min(hits.size, end - start - hits.size), full, centred)
        if score > best:
            best, where = score, (start, end)
    return where


def plot_activation_panels(text: str, panels, width: int = 70, max_rows: int = 6, math_titles: bool = False):
    """One panel per (title, acts) or (title, acts, mask): `text` on a character grid (at most
    `max_rows` lines of `width` characters), each cell coloured by the activation (acts: one per
    character of text, in [-1, 1]; the lighter the higher, see ACTIVATION_COLOURS), the colour scale
    below. With a mask (one bool per character), the panel shows the excerpt of the text that holds
    the feature (`feature_excerpt`) and underlines the characters where it holds; without one, the
    start of the text. Sized for the page at 8.5-point type."""
    import matplotlib.pyplot as plt

    shown = []
    for panel in panels:
        title, acts, mask = (tuple(panel) + (None,))[:3]
        start, end = feature_excerpt(text, mask, width, max_rows) if mask is not None else (0, len(text))
        rows = [[start + t for t in r] for r in _char_rows(text[start:end], width)[:max_rows]]
        shown.append((title, np.asarray(acts), None if mask is None else np.asarray(mask, bool), rows))
    heights = [len(rows) * 0.2 + 0.35 for *_, rows in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(width * 0.089, sum(heights) + 0.7), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": heights})
    image, cmap = None, activation_cmap()
    for ax, (title, acts, mask, rows) in zip(axes[:, 0], shown):
        grid = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            grid[i, : len(r)] = acts[r]
        image = ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        for i, r in enumerate(rows):
            for j, t in enumerate(r):
                ax.text(j, i, _shown(text[t]), ha="center", va="center", fontsize=8.5, family="monospace",
                        color="black", **LITERAL)
                if mask is not None and mask[t]:  # the feature holds here: a bar along the cell's foot
                    ax.plot([j - 0.5, j + 0.5], [i + 0.42, i + 0.42], color="black", lw=1.2, solid_capstyle="butt")
        ax.set_xlim(-0.5, width - 0.5), ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xticks([]), ax.set_yticks([])
        # a true minus; the title drawn literally unless `math_titles` (the caller's own, with maths such as $r$)
        ax.set_title(re.sub(r"(?<![\w.])-(?=\d)", "\u2212", title), fontsize=9, loc="left",
                     **({"usetex": False} if math_titles else LITERAL))
    bar = fig.colorbar(image, ax=axes[:, 0], orientation="horizontal", shrink=0.45, aspect=30, pad=0.02,
                       ticks=[-1, -0.5, 0, 0.5, 1])
    bar.set_label("activation of the unit after reading the character (tanh, from \u22121 to 1)", fontsize=8.5)
    bar.ax.tick_params(labelsize=8)
    return fig


def candidate_cmap():
    """White to a mid green (the light 60% of matplotlib's Greens): black text stays legible on
    every cell, and the shade reads in grey."""
    from matplotlib.colors import LinearSegmentedColormap
    import matplotlib

    return LinearSegmentedColormap.from_list("candidates", matplotlib.colormaps["Greens"](np.linspace(0, 0.6, 64)))


def plot_top_candidates(line: str, top_chars: list, top_probs: np.ndarray, ax=None):
    """A column per position of `line`: the input character below, its k most probable successors
    above it, shaded by probability (colour bar at the right). Sized so that a line of up to 36
    characters fits the page's text width at 8-point type."""
    import matplotlib.pyplot as plt

    n, k = top_probs.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(n * 0.135 + 1.3, k * 0.22 + 0.8), layout="constrained")
    image = ax.imshow(top_probs.T, cmap=candidate_cmap(), vmin=0, vmax=1, aspect="auto")
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
