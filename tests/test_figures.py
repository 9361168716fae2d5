"""The figures read in grey and on A4: the best point on the drawn curve, series told apart by line
style and marker, the rate sweep in panels, unit pictures in colours black text reads on, each unit
on an excerpt that holds its feature."""
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from charrnn.report import analysis, evidence_plots, plots

matplotlib.use("Agg")  # before pyplot is first imported (the plotting functions import it lazily)


def luminance(rgb) -> np.ndarray:
    """Relative luminance (WCAG 2) of sRGB colours, shape (..., 3 or 4)."""
    c = np.asarray(rgb, dtype=float)[..., :3]
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_with_black(rgb) -> np.ndarray:
    return (luminance(rgb) + 0.05) / 0.05


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def long_history(n=50_000, seed=0):
    """A noisy falling smooth loss whose minimum is one narrow dip, as in a long run."""
    rng = np.random.default_rng(seed)
    s = 60 - 10 * np.log1p(np.arange(n) / 1000) + rng.standard_normal(n) * 0.5
    best = int(n * 0.9) + 7
    s[best] = s.min() - 2.0
    return s, best


def test_thinning_keeps_every_bins_lowest_and_highest_point_and_the_kept_ones():
    s, best = long_history()
    k = plots.thin_indices(s, 1000, keep=[123])
    assert len(k) <= 1000 + 3 and np.all(np.diff(k) > 0)
    assert best in k and 123 in k and k[0] == 0 and k[-1] == len(s) - 1
    assert s[k].min() == s.min() and s[k].max() == s.max()
    assert np.array_equal(plots.thin_indices(s[:500], 1000), np.arange(500))


def test_the_best_point_lies_on_the_drawn_curve():
    s, best = long_history()
    run = SimpleNamespace(smooth_losses=s, best_update=best, best_smooth=float(s[best]), updates_per_epoch=10_000,
                          config=SimpleNamespace(seq_length=25))
    ax = plots.plot_smooth_loss(run, mark_best=True, max_points=1000)
    curve, point = ax.get_lines()[0], [ln for ln in ax.get_lines() if ln.get_label().startswith("lowest")][0]
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    assert len(x) <= 1003  # thinned
    px, py = float(point.get_xdata()[0]), float(point.get_ydata()[0])
    on = np.flatnonzero(x == px)
    assert on.size == 1 and y[on[0]] == py == run.best_smooth
    assert y.min() == py  # the lowest point of the drawn curve is the marked one


def test_the_activation_colours_read_in_grey_and_under_black_text():
    rgb = analysis.activation_cmap()(np.linspace(0, 1, 256))
    lum = luminance(rgb)
    assert np.all(np.diff(lum) > 0), "lightness rises from -1 to 1: the order reads in grey"
    assert contrast_with_black(rgb).min() >= 4.5  # WCAG AA for black text on every cell
    assert lum[-1] - lum[0] > 0.4  # and the scale spans enough lightness to be read
    greens = analysis.candidate_cmap()(np.linspace(0, 1, 256))
    assert np.all(np.diff(luminance(greens)) <= 1e-9) and contrast_with_black(greens).min() >= 4.5


PLAY = ("Be gone, I say.\n\nHAMLET.\nTo be, or not to be, that is the question,\nWhether 'tis nobler in the mind"
        " to suffer\n" * 6 + "The slings and arrows.\n[Exit Ghost.]\nMy tables,--meet it is I set it down.\n"
        + "That one may smile, and smile, and be a villain;\n" * 8)


def test_each_feature_is_shown_on_an_excerpt_that_holds_it():
    features = analysis.text_features(PLAY)
    assert features["inside [brackets]"][:200].sum() == 0  # the start of the text holds no brackets
    for name, mask in features.items():
        start, end = analysis.feature_excerpt(PLAY, mask, width=70, max_rows=6)
        assert mask[start:end].any() and not mask[start:end].all(), name
        assert start == 0 or PLAY[start - 1] == "\n", "the excerpt starts at a line start"
        assert len(analysis._char_rows(PLAY[start:end], 70)) <= 6
    start, end = analysis.feature_excerpt(PLAY, features["inside [brackets]"])
    assert "[Exit Ghost.]" in PLAY[start:end]


def test_the_unit_pictures_show_the_excerpt_and_underline_the_feature():
    mask = analysis.text_features(PLAY)["inside [brackets]"]
    acts = np.tanh(np.sin(np.arange(len(PLAY)) / 3.0))
    fig = analysis.plot_activation_panels(PLAY, [("unit 1: brackets", acts, mask), ("unit 2: start", acts)])
    top, bottom = fig.axes[0], fig.axes[1]
    drawn = "".join(t.get_text() for t in top.texts)
    assert "[Exit" in drawn and "Ghost.]" in drawn
    assert "".join(t.get_text() for t in bottom.texts).startswith("Be gone")  # without a mask: the start
    start, end = analysis.feature_excerpt(PLAY, mask)
    assert len(top.get_lines()) == mask[start:end].sum()  # one bar under each character inside the brackets
    assert {t.get_color() for t in top.texts} == {"black"}


def distinct_styles(lines):
    return len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == len(lines)


def fake_run(level, seed, n=6):
    rng = np.random.default_rng(seed)
    u = np.arange(n) * 1000
    return SimpleNamespace(val_updates=list(u), val_seconds=list(u / 100.0), val_losses=list(level + 1 / (1 + u / 1000)
                           + rng.standard_normal(n) * 0.01), config=SimpleNamespace(seq_length=25, batch_size=1))


def test_the_rate_sweep_is_small_multiples_with_the_reference_in_each():
    sweeps = {name: {0.025: 2.9 + i / 100, 0.05: 2.8 + i / 100, 0.1: 2.95 + i / 50} for i, name in
              enumerate(["reference", "Adam", "random", "shuffled", "B = 8", "B = 32", "m = 50", "m = 200"])}
    sweeps["B = 32"][0.2] = float("nan")
    fig = evidence_plots.plot_sweeps(sweeps)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [evidence_plots.math_name(n) for n in sweeps]
    assert panels[4].get_title() == "$B$ = 8"  # the symbol in italics, as in the text
    assert all(len([ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_linestyle() == "-"]) == 1
               for ax in panels)  # one setting's line per panel
    assert all(any(ln.get_linestyle() == "--" for ln in ax.get_lines()) for ax in panels[1:])  # the reference
    assert any(ln.get_marker() == "x" for ln in panels[5].get_lines())  # the diverged rate
    assert fig.get_size_inches()[0] <= 6.46


def test_series_are_told_apart_without_colour():
    groups = {f"setting {i}": [fake_run(2.5 + i / 10, s) for s in range(3)] for i in range(3)}
    fig = evidence_plots.plot_seed_curves(groups)
    assert distinct_styles([ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")])
    points = {f"s{i}": (np.linspace(0, 0.5, 4), np.linspace(2.6, 2.9, 4)) for i in range(8)}
    fig = evidence_plots.plot_saturation(points)
    assert len({ln.get_marker() for ln in fig.axes[0].get_lines()}) == 8
    # in grey a series is its marker's shape and fill: triangles up and down, or a plus and a cross,
    # are told apart only by their fill
    look = {(ln.get_marker() in ("^", "v"), ln.get_marker() in ("P", "X"), ln.get_markerfacecolor() == "white")
            for ln in fig.axes[0].get_lines() if ln.get_marker() in ("^", "v", "P", "X")}
    assert len(look) == 4
    assert len({(s["ls"], s["marker"]) for s in plots.STYLES}) == len(plots.STYLES)
    assert len({k[1:] for k in evidence_plots.VERDICT_STYLE.values()}) == 3


def test_the_comparison_panels_share_one_legend_that_covers_no_curve():
    """Each setting keeps one style in every panel; one legend for all, in the free slot (no panel has
    a legend of its own over its curves), with the key and, once, the note on the first evaluations."""
    groups = {"reference": [fake_run(2.5, s) for s in range(3)], "Adam": [fake_run(2.6, s + 9) for s in range(3)]}
    other = {"reference": groups["reference"], "B = 8": [fake_run(2.7, s + 20) for s in range(3)]}
    fig = evidence_plots.plot_comparison_panels({"Optimisers": (groups, "characters"), "Again": (other, "updates"),
                                                 "Third": (groups, "characters")})
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 and not any(ax.texts or ax.get_legend() for ax in panels)
    (free,) = [ax for ax in fig.axes if not ax.get_title()]  # the free fourth slot
    assert [t.get_text() for t in free.get_legend().get_texts()] == [
        "reference (3 seeds)", "Adam (3 seeds)", "$B$ = 8 (3 seeds)"]
    assert len(free.texts) == 1 and "\u2191 The first evaluations are above the frames" in free.texts[0].get_text()
    assert panels[1].get_xscale() == "log" and panels[0].get_xscale() == "linear"  # updates: a log axis
    style = lambda ax, label: next((ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()  # noqa: E731
                                   if ln.get_label().startswith(label))
    assert style(panels[0], "reference") == style(panels[1], "reference")  # one style per setting
    assert style(panels[0], "Adam") != style(panels[1], "$B$ = 8")
    fig = evidence_plots.plot_comparison_panels({"Optimisers": (groups, "characters"), "Again": (groups, "updates")})
    assert fig.legends and any("\u2191" in t.get_text() for t in fig.texts)  # no free slot: above and below
    assert all(distinct_styles([ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]) for ax in panels)


def test_the_sampling_controls_draw_from_a_stream_other_than_the_best_models_passages():
    """With Passage 3's stream, the plain sample became Passage 3 once the prime was forgotten."""
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parent.parent / "assignment4.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    passages = re.findall(r"rng = np\.random\.default_rng\(([^\n]*)\)\n[^\n]*rc\.synthesize\(", code)
    controls = re.findall(r"rc\.sample_text\([^\n]*np\.random\.default_rng\((.*?)\), PRIME", code)
    assert passages and controls and set(passages).isdisjoint(controls), (passages, controls)


def test_panel_titles_are_literal_unless_the_caller_asks_for_their_maths():
    """Corpus text and titles from elsewhere are drawn as written ($ kept); the report's own titles
    ("top-$p$ 0.5", "$r$ = +0.37") may ask for their maths."""
    from matplotlib.text import Text

    def title_math(**kw):
        fig = plots.plot_text_panels([("top-$p$ 0.5", "cost $5")], **kw)
        (title,) = [t for t in fig.findobj(Text) if t.get_text() == "top-$p$ 0.5"]
        return bool(title._preprocess_math(title.get_text())[1])

    assert not title_math() and title_math(math_titles=True)
