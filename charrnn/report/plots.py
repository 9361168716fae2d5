"""Figures and text layout for the report. Every function takes what it shows as arguments."""
from __future__ import annotations

import functools
import math
import re
import textwrap
from pathlib import Path

import numpy as np

from charrnn.study.findings import join_names
from rnn_core import RNNError


# Text of the corpus or of samples is drawn as it is: no mathtext (a `$` pair would turn into italics,
# or raise on `a $$b`) and no LaTeX. Passed to every matplotlib call that draws such text.
LITERAL = {"parse_math": False, "usetex": False}


def check_figure_name(name) -> None:
    """A figure's name is a plain file name (no folder, no '..', not hidden): it is saved in its folder only."""
    if (not isinstance(name, str) or not name.strip() or name.startswith(".") or "/" in name or "\\" in name
            or "\0" in name or name != name.strip()):
        raise RNNError(f"figure name {name!r}: give a plain file name without folders, e.g. 'main-loss'")


def save_figure(fig, name: str, folder="figures") -> list:
    """Save `fig` as figures/<name>.png (150 dpi) and .pdf; returns the paths."""
    check_figure_name(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def note_above(ax, text: str) -> None:
    """A note just above the plot's frame, clear of the curves and the legend: "\u2191 text"."""
    ax.text(0, 1.015, "\u2191 " + text, transform=ax.transAxes, ha="left", va="bottom", fontsize=8, color="0.3")


def comma_ticks(axis) -> None:
    """Whole-number tick labels with thousands separators (100,000), as the text writes numbers."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def millions_axis(ax, label: str, xmax: float) -> None:
    """Label the x axis `label`, in millions with plain tick numbers when it reaches a million
    (no bare "1e6" offset at the axis end), else with thousands separators."""
    from matplotlib.ticker import FuncFormatter

    if xmax >= 1e6:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}"))
        head, _, tail = label.partition(" (")
        label = f"{head} (millions{', ' + tail[:-1] if tail else ''})"
    else:
        comma_ticks(ax.xaxis)
    ax.set_xlabel(label, fontsize=ax.xaxis.label.get_fontsize())


# Series told apart in grey as well as in colour: each has its own line style (dashes given as
# (offset, (on, off, ...)) in points where the named four run out) and marker, and the
# colour is a help to the eye, never the only difference.
STYLES = [dict(color="#08306b", ls="-", marker="o"), dict(color="#e6550d", ls="--", marker="s"),
          dict(color="#31a354", ls="-.", marker="^"), dict(color="#756bb1", ls=":", marker="D"),
          dict(color="#636363", ls=(0, (6, 1.5, 1, 1.5, 1, 1.5)), marker="v"),
          dict(color="#a63603", ls=(0, (1, 1)), marker="P"), dict(color="#3182bd", ls=(0, (8, 2)), marker="X"),
          dict(color="#000000", ls=(0, (3, 1, 1, 1)), marker="*")]


def series_style(i: int) -> dict:
    """Line style, marker and colour of the i-th series of a plot (see STYLES)."""
    return dict(STYLES[i % len(STYLES)])


def thin_indices(y, max_points: int = 4000, keep=()) -> np.ndarray:
    """Indices of the points of the curve `y` to draw when it has more than `max_points` points:
    in each bin of consecutive points its lowest and its highest, in order, so that the drawn curve
    keeps every dip and peak (its minimum among them), plus the first and the last point and `keep`."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    per = -(-2 * n // max_points)  # two points per bin
    bins = -(-n // per)
    pad = bins * per - n
    lo = np.concatenate([y, np.full(pad, np.inf)]).reshape(bins, per).argmin(axis=1)
    hi = np.concatenate([y, np.full(pad, -np.inf)]).reshape(bins, per).argmax(axis=1)
    start = np.arange(bins) * per
    extra = [int(k) for k in keep if 0 <= int(k) < n]
    return np.unique(np.concatenate([start + lo, start + hi, [0, n - 1], extra]).astype(int))


def plot_smooth_loss(run, ax=None, mark_best=False, title=None, max_points=4000):
    """Smooth loss against updates, epoch boundaries dotted, optionally the best point marked.

    Long histories are thinned for drawing only (`thin_indices`: the lowest and the highest point of
    each bin, and the best update), so the marked best point lies on the drawn curve.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 2.9))
    s = run.smooth_losses
    best = mark_best and run.best_update >= 0
    x = thin_indices(s, max_points, keep=[run.best_update] if best else ())
    ax.plot(x, s[x], lw=0.8, color="#4a7fb5", label="smooth loss")
    if len(s) > 200:  # the first updates fall from T log K: cut them off so the rest shows detail
        top = float(np.quantile(s, 0.995))
        lo = float(s.min())
        ax.set_ylim(lo - 0.08 * (top - lo), top + 0.05 * (top - lo))
        if s[0] > top:
            note_above(ax, f"the first updates are above the frame: the smooth loss starts at {s[0]:.1f}")
    per = run.updates_per_epoch
    for e in range(1, int(np.ceil(len(s) / per))):
        ax.axvline(e * per, color="0.75", lw=0.8, ls=":", zorder=0)
    if best:  # an open ring under the curve, so the curve's dip to the lowest point shows through it; thick for grey
        ax.plot(run.best_update, s[run.best_update], "o", ms=11, mfc="none", mec="#d62728", mew=2.0, zorder=1.5,
                label=f"lowest {run.best_smooth:.2f} at update {run.best_update:,}")
    ax.xaxis.label.set_fontsize(9)
    millions_axis(ax, f"updates (dotted lines: epoch boundaries, {per:,} updates each)", len(s))
    ax.set_ylabel(f"smooth loss\n(nats per {run.config.seq_length} characters)", fontsize=9)
    ax.tick_params(labelsize=8.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8.5)
    if title:
        ax.set_title(title, pad=14)  # clear of the note above the frame
    return ax


WORD = re.compile(r"[A-Za-z]+")  # a word: a run of letters


@functools.lru_cache(maxsize=4)
def corpus_words(corpus_text: str) -> frozenset:
    """The words of a corpus, found once per corpus (the report asks for them many times)."""
    return frozenset(WORD.findall(corpus_text))


def known_word_fraction(text: str, corpus_text: str) -> float:
    """Share of the words (runs of letters) of `text` that occur as words in `corpus_text`."""
    words = WORD.findall(text)
    if not words:
        return 0.0
    vocab = corpus_words(corpus_text)
    return sum(w in vocab for w in words) / len(words)


def markdown_table(header, rows, align=None) -> str:
    """A Markdown table; `align` is a string of 'l'/'r' per column (default: first l, others r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"
    lines = ["| " + " | ".join(map(str, header)) + " |", rule]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def gradcheck_table(checks: dict):
    """(header, rows) of the gradient-check table: one row per check ({label: table of `gradcheck`}),
    one column per gradient with its maximum relative error, then the largest absolute error."""
    names = list(next(iter(checks.values())))
    header = ["check"] + [f"$d{n}$" for n in names] + ["max abs. error"]
    rows = [[label] + [sci(table[n]["max_rel"]) for n in names]
            + [sci(max(table[n]["max_abs"] for n in names))] for label, table in checks.items()]
    return header, rows


def sci(x: float, digits: int = 1) -> str:
    """A small or large number as Markdown math, 6.8e-09 as $6.8 \\times 10^{-9}$ (0 as $0$)."""
    if x == 0 or not math.isfinite(x):
        return f"${x:g}$"
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def describe_vocab(chars) -> str:
    """The vocabulary in words: how many letters and digits, and the other characters listed."""
    lower = [c for c in chars if c.islower()]
    upper = [c for c in chars if c.isupper()]
    digits = [c for c in chars if c.isdigit()]
    named = {"\n": "newline", " ": "space", "\t": "tab"}
    other = [c for c in chars if c not in lower + upper + digits and c not in named]
    parts = [f"{len(lower)} lower-case and {len(upper)} upper-case letters"]
    if digits:
        parts.append(f"{len(digits)} digits ({' '.join(digits)})")
    parts += [named[c] for c in chars if c in named]
    if other:
        parts.append(f"{len(other)} other characters: " + " ".join(f"`{c}`" if c != "`" else "`` ` ``" for c in other))
    return join_names(parts)


def panel_lines(text: str, width: int = 44) -> list:
    """`text` as printed lines of at most `width` characters, as the report's framed passages show
    text: each line of the text ends in a return sign, and a line longer than the width continues
    on the next printed lines with a hanging indent of two spaces."""
    out = []
    pieces = text.split("\n")
    for i, line in enumerate(pieces):
        wrapped = textwrap.wrap(line, width - 1, subsequent_indent="  ", break_on_hyphens=False,
                                drop_whitespace=True) or [""]
        if i < len(pieces) - 1:  # the text's own newline
            wrapped[-1] += "\u21b5"
        out += wrapped
    return out


def plot_text_panels(panels, ncols=2, width=44, fontsize=8, math_titles=False):
    """A grid of monospace text panels: panels is a list of (title, text). Newlines of the text are
    drawn as return signs, an empty line as a gap of half a line, and long lines continue with a
    hanging indent (see panel_lines); the text is drawn literally, and so are the titles unless
    `math_titles` (titles of the caller's own, such as "top-$p$ 0.5", with their maths set). The
    figure is as wide as the page's text (6.25 in plus padding), so the type is printed at `fontsize` points."""
    import matplotlib.pyplot as plt

    n = len(panels)
    nrows = max(1, -(-n // ncols))
    blocks = [panel_lines(text, width) for _, text in panels]
    line_h = fontsize * 1.15 / 72  # inches per printed line; an empty line of the text takes half of one
    title_h, gap = 0.2, 0.1

    def height(lines):
        return sum(line_h * (0.5 if line in ("", "\u21b5") else 1) for line in lines)

    row_h = [title_h + max(height(b) for b in blocks[r * ncols:(r + 1) * ncols]) + gap for r in range(nrows)]
    W, H = 6.25, sum(row_h)  # with the 0.1-in pad of a tight bbox, within the 6.46-in text width
    fig = plt.figure(figsize=(W, H))
    col_w = W / ncols
    for k, ((title, _), lines) in enumerate(zip(panels, blocks)):
        r, c = divmod(k, ncols)
        top = H - sum(row_h[:r])
        x = c * col_w / W
        fig.text(x, top / H, title, fontsize=9, va="top", ha="left", weight="bold",
                 **({"usetex": False} if math_titles else LITERAL))
        y = top - title_h
        for line in lines:
            if line in ("", "\u21b5"):  # an empty line of the text: a gap of half a line, no sign drawn
                y -= line_h * 0.5          # (a full-size sign would not fit in it: it ran into the next line)
                continue
            fig.text(x, y / H, line, family="DejaVu Sans Mono", fontsize=fontsize, va="top", ha="left", **LITERAL)
            y -= line_h
    return fig
