"""Figures of Part II's evidence, all in bits per character: held-out curves with seed bands, sweeps, seeds.

Each function takes what it draws as arguments and returns the matplotlib figure. Series are told
apart by line style and marker as well as colour (`series_style`), so the figures read in grey.
"""
from __future__ import annotations

import re

import numpy as np

from charrnn.report.plots import comma_ticks, millions_axis, note_above, series_style, thin_indices
from charrnn.study.evidence import BITS, curve_bits, stretch_losses


def math_name(name: str) -> str:
    """A setting's name for a figure, its symbol in italics as in the text: "B = 8" -> "$B$ = 8"."""
    return re.sub(r"\b([mBKT]) = ", r"$\1$ = ", name)


def _axes(ax, size=(6.2, 3.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax.figure, ax


def _zoom(ax, values, above=0.6, note="higher values (the first evaluations) are above the frame") -> None:
    """A y range for where the curves end up (the first evaluations are far above); if some values
    are above the frame, the plot says so at its top (`note`)."""
    v = np.asarray([x for x in values if np.isfinite(x)])
    if not v.size:
        return
    lo, q = v.min(), float(np.quantile(v, 0.8))
    top = min(v.max(), q + above * (q - lo + 0.1)) + 0.02
    ax.set_ylim(lo - 0.05 * (q - lo + 0.1), top)
    if v.max() > top and note:
        note_above(ax, note)


def plot_heldout_curve(run, ax=None):
    """One run: smooth training loss and held-out loss in bits per character against updates, the
    final evaluation (its final parameters, on which it is scored) marked."""
    fig, ax = _axes(ax, (6.2, 2.6))
    s = run.smooth_losses / run.config.seq_length * BITS
    k = thin_indices(s)
    ax.plot(k, s[k], lw=0.7, color="#9ecae1", label="smooth training loss")
    u, bits = curve_bits(run)
    ax.plot(u, bits, "o-", lw=1.3, ms=3.5, color="#08306b", label="held-out loss")
    ax.plot(u[-1:], bits[-1:], "o", ms=9, mfc="none", mew=1.5, color="#d62728", label="final parameters (scored)")
    _zoom(ax, list(bits[1:]) + list(s[len(s) // 10:]), note=None)
    if max(bits.max(), s.max()) > ax.get_ylim()[1]:  # what the zoom leaves out, the first values included
        note_above(ax, "the first evaluations and the start of training are above the frame")
    millions_axis(ax, "updates", len(s))
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    # the legend goes below the plot, so that it covers no point of the curves
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig


def plot_seed_curves(groups: dict, ax=None, x="characters", note=True, styles=None):
    """Held-out curves of several settings ({label: [Run per seed]}): the mean over the seeds as a
    line, the range between the lowest and the highest seed as a band; against characters read
    (updates x T x B), updates or training seconds. Each setting has its own line style and marker
    (`styles`: {label: index of series_style}, else the reference first and the others in order).
    The y range is zoomed on where the curves end; `note`: say so above the plot when the first
    evaluations are above the frame (a figure of several panels says it once instead)."""
    fig, ax = _axes(ax)
    shown = []
    others = [label for label in groups if label != "reference"]  # the reference keeps the first style in every plot
    style_of = styles or {label: i + ("reference" in groups) for i, label in enumerate(others)} | {"reference": 0}
    for label, runs in groups.items():
        i = style_of[label]
        runs = [r for r in runs if r is not None]
        n = min(len(r.val_updates) for r in runs)
        c = runs[0].config
        u = np.array(runs[0].val_updates[:n], dtype=float)
        xs = {"characters": u * c.seq_length * c.batch_size, "updates": u,
              "seconds": np.mean([r.val_seconds[:n] for r in runs], axis=0)}[x]
        B = np.stack([curve_bits(r)[1][:n] for r in runs])  # (seeds, evaluations)
        st = series_style(i)
        ax.fill_between(xs[1:], B.min(axis=0)[1:], B.max(axis=0)[1:], color=st["color"], alpha=0.13, lw=0)
        ax.plot(xs[1:], B.mean(axis=0)[1:], lw=1.4, ms=4, mfc="white", **st, label=f"{math_name(label)} ({len(runs)} seeds)")
        shown += list(B[:, 1:].ravel())
    _zoom(ax, shown, note="higher values (the first evaluations) are above the frame" if note else None)
    millions_axis(ax, {"characters": "characters read", "updates": "updates",
                       "seconds": "training time (s, mean over the seeds)"}[x],
                  0.0 if x == "seconds" else float(np.max(xs)))
    ax.set_ylabel("held-out bits per character")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5)
    return fig


def plot_sweeps(sweeps: dict, ncols: int = 4, reference: str = "reference"):
    """Score at each learning rate of each setting's sweep ({label: {rate: bits}}), one small panel
    per setting (shared axes, log rate axis), the winner ringed; the reference's sweep is repeated
    in every other panel as a dashed grey line; a diverged rate is marked by a cross at the top."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    labels = list(sweeps)
    rows = -(-len(labels) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(6.3, 1.45 * rows + 0.9), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")

    def points(label):
        rates = np.array(sorted(sweeps[label]), dtype=float)
        vals = np.array([sweeps[label][r] for r in sorted(sweeps[label])], dtype=float)
        return rates, vals, np.isfinite(vals)

    shown = [v for lab in labels for v in points(lab)[1] if np.isfinite(v)]
    diverged = False
    for ax, label in zip(axes.ravel(), labels):
        if reference in sweeps and label != reference:
            r0, v0, ok0 = points(reference)
            ax.plot(r0[ok0], v0[ok0], ls="--", marker="o", ms=2.5, lw=0.9, color="0.6")
        rates, vals, ok = points(label)
        ax.plot(rates[ok], vals[ok], "o-", color="#08306b", lw=1.3, ms=4)
        if ok.any():
            j = int(np.argmin(np.where(ok, vals, np.inf)))
            ax.plot(rates[j], vals[j], "o", ms=10, mfc="none", mew=1.3, color="#d62728")
        top = blended_transform_factory(ax.transData, ax.transAxes)
        for r in rates[~ok]:
            ax.plot(r, 0.93, "x", ms=6, mew=1.5, color="black", transform=top)
            diverged = True
        ax.set_title(math_name(label), fontsize=9, pad=3)
        ax.grid(alpha=0.35)
        ax.grid(alpha=0.12, which="minor")
        ax.tick_params(labelsize=8)
    ax0 = axes[0, 0]
    ax0.set_xscale("log")
    _zoom(ax0, shown, above=1.0, note=None)
    lo, hi = ax0.get_ylim()
    ax0.set_ylim(lo - 0.05 * (hi - lo), hi)  # room for the ring of a tuned rate at the lowest score
    above = bool(shown) and max(shown) > ax0.get_ylim()[1]
    for ax in axes.ravel()[len(labels):]:
        ax.axis("off")
    fig.supxlabel("learning rate (log scale)" + ("; \u2191 some scores are above the frame" if above else ""), fontsize=9)
    fig.supylabel("validation bits per character\n(seed 1)", fontsize=9)
    handles = [Line2D([], [], color="#08306b", marker="o", ms=4, lw=1.3, label="the setting's rates"),
               Line2D([], [], color="#d62728", marker="o", ms=8, mfc="none", ls="none", label="tuned rate"),
               Line2D([], [], color="0.6", marker="o", ms=2.5, ls="--", lw=0.9, label=f"{reference}, for comparison")]
    handles = handles if reference in sweeps else handles[:2]
    if diverged:
        handles.append(Line2D([], [], color="black", marker="x", ls="none", ms=6, label="diverged"))
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


# verdict: (colour, marker, marker face) -- told apart in grey by the marker: a filled square, a
# filled diamond, a white circle
VERDICT_STYLE = {"ref": ("#b2182b", "s", None), "set": ("#1a9850", "D", None), "none": ("#2166ac", "o", "white")}


def plot_differences(diffs: dict, ax=None):
    """Each setting's difference from the reference (`stats.differences`: mean of its seeds minus the
    reference's, test half) with its simultaneous interval, one row per setting; right of zero the
    reference is better."""
    rows = diffs["rows"][::-1]  # the first setting at the top
    fig, ax = _axes(ax, (6.2, 0.36 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        kind = "ref" if r["lo"] > 0 else "set" if r["hi"] < 0 else "none"
        colour, marker, fill = VERDICT_STYLE[kind]
        ax.plot([r["lo"], r["hi"]], [i, i], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot(r["diff"], i, marker, color=colour, mfc=fill or colour, ms=7)
        if r["method"] != "Dunnett":
            ax.annotate(r["method"], (r["hi"], i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([math_name(r["name"]) for r in rows], fontsize=8.5)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(f"setting minus reference, test bits per character ({diffs['level']:.0%} simultaneous intervals)",
                  fontsize=8.5)
    for kind, label in (("ref", "reference better"), ("set", "setting better"), ("none", "no difference detected")):
        colour, marker, fill = VERDICT_STYLE[kind]
        ax.plot([], [], color=colour, lw=2.2, marker=marker, mfc=fill or colour, ms=7, label=label)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.grid(alpha=0.3, axis="x")
    return fig


# the saturation plot's series: no two markers of one shape and fill (in grey a triangle up and one
# down, or a plus and a cross, of one fill look alike)
SATURATION_MARKERS = [("o", True), ("s", False), ("^", True), ("D", False), ("v", False), ("P", True),
                      ("X", False), ("*", True)]


def plot_saturation(points: dict, ax=None):
    """Each seed's share of saturated hidden units against its test score ({setting: (shares, scores)});
    the legend below the plot, where it covers no point."""
    fig, ax = _axes(ax, (6.2, 3.0))
    for i, (label, (shares, scores)) in enumerate(points.items()):
        colour = series_style(i)["color"]
        marker, filled = SATURATION_MARKERS[i % len(SATURATION_MARKERS)]
        ax.plot(np.asarray(shares) * 100, scores, marker, color=colour, ms=6 if marker != "*" else 8, alpha=0.9,
                ls="none", mfc=colour if filled else "white", mew=1.2, label=math_name(label))
    ax.set_xlabel("saturated hidden units (% of the units, validation blocks)")
    ax.set_ylabel("test bits per character")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return fig


def plot_converged(run, lines: dict, ax=None):
    """The converged run's held-out curve against characters read, with horizontal reference
    lines ({label: bits}, e.g. the Kneser-Ney models on the same held-out text)."""
    fig, ax = _axes(ax, (6.2, 2.3))
    u, bits = curve_bits(run)
    c = run.config
    xs = u * c.seq_length * c.batch_size
    s = run.smooth_losses / c.seq_length * BITS
    k = thin_indices(s)
    ax.plot(k * c.seq_length * c.batch_size, s[k], lw=0.7, color="#9ecae1", label="RNN, smooth training loss")
    ax.plot(xs[1:], bits[1:], "o-", lw=1.3, ms=3.5, color="#08306b", label="RNN, held-out loss")
    for i, (label, v) in enumerate(lines.items()):
        st = series_style(i + 1)
        ax.axhline(v, color=st["color"], ls=st["ls"] if st["ls"] != "-" else "--", lw=1.4, label=label)
    _zoom(ax, list(bits[1:]) + list(lines.values()))
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.06 * (hi - lo), hi)  # the lowest line clear of the frame
    millions_axis(ax, "characters read", float(xs.max()))
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5)
    return fig


def plot_stretches(run, stretch: int = 1000, epochs=None):
    """Part I's long run: the mean loss of each stretch of `stretch` updates against its place in the
    epoch, for a few epochs, in bits per character: the same text is hard or easy in every epoch."""
    S = stretch_losses(run, stretch) / run.config.seq_length * BITS  # (epochs, stretches)
    E = S.shape[0]
    epochs = epochs or sorted({e for e in (0, 1, E // 4, E // 2, E - 1) if e < E})
    fig, a = _axes(None, (6.2, 2.6))
    x = (np.arange(S.shape[1]) + 0.5) * stretch
    for i, e in enumerate(epochs):
        st = series_style(i)
        a.plot(x, S[e], lw=1, color=st["color"], ls=st["ls"], label=f"epoch {e + 1}")
    a.set_xlabel(f"update within the epoch (stretches of {stretch:,} updates)")
    a.set_ylabel("mean loss,\nbits per character")
    a.grid(alpha=0.3)
    a.legend(fontsize=8, ncol=len(epochs), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    comma_ticks(a.xaxis)
    return fig


def plot_comparison_panels(panels: dict, size=(6.4, 5.9)):
    """One panel of held-out curves (`plot_seed_curves`) per comparison, two columns: `panels` maps a
    panel title to ({label: [Run per seed]}, x) with x "characters" or "updates" (updates on a log
    axis: runs of 80,000 and of 2,500 updates in one panel). Each setting has one style in every
    panel, and one legend for them all sits in the free slot (above the panels if there is none),
    where it covers no curve, with the key to the lines and bands."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    seeds = {}  # every setting drawn, the reference first: its style is the first
    for groups, _ in panels.values():
        for label, runs in groups.items():
            seeds[label] = sum(r is not None for r in runs)
    names = sorted(seeds, key=lambda n: n != "reference")
    styles = {n: i for i, n in enumerate(names)}
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=size, squeeze=False, layout="constrained")
    above = False
    for k, (ax, (title, (groups, x))) in enumerate(zip(axes.ravel(), panels.items())):
        plot_seed_curves(groups, ax=ax, x=x, note=False, styles=styles)
        ax.get_legend().remove()
        top = ax.get_ylim()[1]
        above |= any(np.nanmax(curve_bits(r)[1]) > top for runs in groups.values() for r in runs if r is not None)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("held-out bits per character" if k % 2 == 0 else "", fontsize=9)
        ax.tick_params(labelsize=8)
        if x == "updates":
            ax.set_xscale("log")
            ax.set_xlabel("updates (log scale)", fontsize=ax.xaxis.label.get_fontsize())
        else:
            ax.xaxis.set_major_locator(MaxNLocator(5))  # "80,000" and its neighbours clear of each other
    handles = [Line2D([], [], lw=1.4, ms=4, mfc="white", **series_style(styles[n]), label=f"{math_name(n)} ({seeds[n]} seeds)")
               for n in names]
    key = "Lines: the mean of the seeds;\nbands: from the lowest to the highest seed."
    if above:
        key += "\n\u2191 The first evaluations are above the frames."
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if len(panels) < axes.size:
        free = axes.ravel()[len(panels)]
        free.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False, handlelength=3)
        free.text(0.5, 0.02, key, fontsize=8, va="bottom", ha="center", color="0.2", transform=free.transAxes)
    else:
        fig.legend(handles=handles, loc="outside upper center", ncol=4, fontsize=8, frameon=False, handlelength=3)
        fig.text(0.5, 0.0, key.replace("\n", " "), fontsize=8, ha="center", va="top", color="0.2")
    return fig
