"""Part II's findings as rows and words: differences from the reference, power, the test-half table, saturation.

Every function takes what `experiments.results` returns (or runs and held-out blocks) and returns
table rows or Markdown, so that the notebook's cells only show them. Comparisons are made on the
test half of the held-out blocks; every choice before them was made on the validation half.
"""
from __future__ import annotations

import numpy as np

from charrnn.study import stats
from charrnn.study.evidence import BITS, split_halves
from charrnn.study.experiments import EXTEND, SETTINGS
from charrnn.study.memo import remembered
from charrnn.study.stats import setting_md, signed
from charrnn.training.heldout import block_log_probs, heldout_starts
from charrnn.training.run import first_stream_state

SATURATED = 0.95  # a hidden unit is saturated when |h| exceeds this at more than half of the positions


def differences(res: dict) -> dict:
    """`stats.differences` of every setting against the reference, from its seeds' test scores."""
    return stats.differences({n: r["test"] for n, r in res.items()}, "reference")


def verdict_paragraph(diffs: dict, names) -> str:
    """One sentence per setting of `names` (the reference left out): its verdict from its interval."""
    rows = {r["name"]: r for r in diffs["rows"]}
    parts = [f"{setting_md(n)}: {rows[n]['text']}" for n in names if n in rows]
    return ("Against the reference, on the test half ([Figure](#fig-differences), [Table](#tbl-differences)): "
            + "; ".join(parts) + ".")


def method_text(diffs: dict) -> str:
    """How the intervals of `diffs` were made, in words, with the numbers."""
    k, welch = diffs["k"], diffs["welch"]
    say = number_word(k)
    text = (f"Each interval is a simultaneous {diffs['level']:.0%} interval for the {say} comparisons with the "
            f"reference (the chance that any of the {say} misses its true difference is at most "
            f"{1 - diffs['level']:.0%}): Dunnett's many-to-one intervals from the pooled seed-to-seed spread "
            f"(the pooled standard deviation $s = {diffs['pooled_sd']:.3f}$ bits, {diffs['df']} degrees of freedom; "
            f"the critical value, the multiple of the standard error that sets each interval's half-width, is "
            f"{diffs['crit']:.2f} in place of the single comparison's {stats.sps.t.ppf(0.975, diffs['df']):.2f}), "
            "since the comparisons share the reference's mean and one spread; pooling is right where the "
            "settings' spreads agree, which an F test (the ratio of two variances against its distribution when the "
            f"spreads are equal) of each setting's variance against the reference's checks (at {stats.SPREAD_ALPHA:.0%}). ")
    if welch:
        text += (f"The spread of {join_names(setting_md(n) for n in welch)} clearly differs from the reference's, so "
                 f"{'its interval is a Welch interval' if len(welch) == 1 else 'their intervals are Welch intervals'} "
                 f"(from the setting's own spread and the reference's, not the pooled one) at "
                 f"{1 - (1 - diffs['level']) / k:.2%} each, and the Dunnett family covers "
                 f"at {1 - (1 - diffs['level']) * (k - len(welch)) / k:.2%}: together at least "
                 f"{diffs['level']:.0%} (Bonferroni). ")
    else:
        text += "No setting's spread clearly differs from the reference's, so every interval is Dunnett's. "
    return text + ("The verdict is the interval's: wholly above zero, the reference is better; wholly below, the "
                   "setting is; across zero, no difference detected, and the interval bounds how large one could be.")


def power_rows(sd: float, settings: int, seeds=(3, 4, 5, 6, 8, 10)) -> list:
    """Rows: seeds per setting, the difference detected with 80% power by Dunnett's intervals at spread sd."""
    return [[str(n), f"{stats.design_power(sd, n, settings):.3f}"] for n in seeds]


def power_text(diffs: dict, seeds: int, settings: int) -> str:
    """The smallest difference this design detects with 80% power, in words."""
    d = stats.design_power(diffs["pooled_sd"], seeds, settings)
    return (f"With {seeds} seeds per setting and the pooled spread $s = {diffs['pooled_sd']:.3f}$ bits, the smallest "
            f"difference from the reference these intervals detect with {stats.POWER:.0%} power (the chance that the "
            "interval excludes zero when the true difference is that large) is "
            f"**{d:.3f} bits per character** ({d / diffs['pooled_sd']:.1f} pooled standard deviations). A true "
            "difference smaller than that is more likely than not to read \"no difference detected\".")


def seed_rows(res: dict, names) -> list:
    """Rows: setting, tuned rate, validation mean, test mean, test standard deviation, each seed's test score."""
    rows = []
    for n in names:
        val = np.asarray([x for x in res[n]["scores"] if np.isfinite(x)])
        test = np.asarray([x for x in res[n]["test"] if np.isfinite(x)])
        rows.append([setting_md(n), f"{res[n]['eta']:g}", f"{val.mean():.3f}", f"{test.mean():.3f}",
                     f"{test.std(ddof=1):.3f}" if len(test) > 1 else "", ", ".join(f"{x:.3f}" for x in test)])
    return rows


SEED_HEADER = ["setting", "tuned rate", "validation mean", "test mean", "test sd", "test score of each seed"]


def summary_rows(res: dict, diffs: dict) -> list:
    """Part II's one table, a row per setting: its tuned rate, the means of its seeds' validation and
    test scores (the test standard deviation), and against the reference the difference of the test
    means, its simultaneous interval (marked where it is Welch's) and the verdict the interval gives."""
    compared = {r["name"]: r for r in diffs["rows"]}
    rows = []
    for n, r in res.items():
        val = np.asarray([x for x in r["scores"] if np.isfinite(x)])
        test = np.asarray([x for x in r["test"] if np.isfinite(x)])
        d = compared.get(n)
        against = ([f"{signed(d['diff'])} ({signed(d['lo'])}, {signed(d['hi'])})"
                    + (", Welch" if d["method"] == "Welch" else ""), stats.short_verdict(d)] if d else ["", ""])
        rows.append([setting_md(n), f"{r['eta']:g}", f"{val.mean():.3f}", f"{test.mean():.3f} ({test.std(ddof=1):.3f})",
                     *against])
    return rows


SUMMARY_HEADER = ["setting", "rate", "validation", "test (sd)", "difference (95% interval)", "verdict"]


def grid_text() -> str:
    """The learning-rate grids of the settings, in words."""
    grids = {}
    for name, (change, rates) in SETTINGS.items():
        key = ("Adam " if change.get("optimizer") == "adam" else "AdaGrad ") + ", ".join(f"{r:g}" for r in rates)
        grids.setdefault(key, []).append(name)
    parts = [f"{g} ({join_names(setting_md(n) for n in names)})" for g, names in grids.items()]
    return "; ".join(parts) + f"; a winner at an end grows its grid by one rate beyond it, up to {EXTEND} times"


def join_names(names) -> str:
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


NUMBER_WORDS = "zero one two three four five six seven eight nine ten".split()


def number_word(n: int) -> str:
    """A count as a word up to ten ("seven"), in digits above."""
    return NUMBER_WORDS[n] if 0 <= n <= 10 else str(n)


def of_total(k: int, n: int, noun: str, every: bool = False) -> str:
    """k of n things in words: "3 of the 32 positions", "one of the eight settings" (numbers spelled out
    when the total is ten or less), "all 28 blocks" or, with `every`, "every one of the 50 epochs",
    "none of the 6 seeds"."""
    k, n = int(k), int(n)
    say = number_word if n <= 10 else str
    if k == n:
        return f"every one of the {say(n)} {noun}" if every else f"all {say(n)} {noun}"
    return f"none of the {say(n)} {noun}" if k == 0 else f"{say(k)} of the {say(n)} {noun}"


def hidden_saturation(params: dict, blocks: np.ndarray, h0: np.ndarray, level: float = SATURATED) -> float:
    """Share of the hidden units whose |h| exceeds `level` at more than half of the positions, reading
    the blocks (n, L) side by side, each from h0 (m,)."""
    U, W, b = params["U"], params["W"], params["b"]
    h = np.tile(np.asarray(h0, float), (blocks.shape[0], 1))
    count = np.zeros(W.shape[0])
    for t in range(blocks.shape[1] - 1):
        h = np.tanh(h @ W.T + U[:, blocks[:, t]].T + b)
        count += (np.abs(h) > level).sum(axis=0)
    return float(np.mean(count / (blocks.shape[0] * (blocks.shape[1] - 1)) > 0.5))


def run_saturation(run, blocks: np.ndarray, runs_dir=None) -> float:
    """`hidden_saturation` of a run's final parameters on `blocks`, from the state it carries at its
    end; kept in runs_dir/derived when one is given (memo; version 1)."""
    h0 = np.asarray(first_stream_state(run))
    inputs = [run.params["U"], run.params["W"], run.params["b"], h0, np.asarray(blocks), SATURATED]
    value = remembered(runs_dir, "saturation", 1, inputs,
                       lambda: {"share": hidden_saturation(run.params, blocks, h0)})
    return float(value["share"])


def saturation_rows(res: dict, held: np.ndarray, runs_dir=None) -> tuple[list, dict]:
    """(rows: setting, seed, saturated share, test score, per seed; {setting: (shares, test scores)}),
    the shares measured on the validation blocks."""
    val = held[split_halves(len(held))[0]]
    rows, points = [], {}
    for n, r in res.items():
        pairs = [(run_saturation(run, val, runs_dir), score)
                 for run, score in zip(r["runs"], r["test"]) if run is not None]
        points[n] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        rows += [[setting_md(n), str(i + 1), f"{s:.0%}", f"{t:.3f}"] for i, (s, t) in enumerate(pairs)]
    return rows, points


def saturation_text(points: dict) -> str:
    """What the saturation says about the seed spread: the correlation, within the settings, of the
    saturated share with the test score (both centred on each setting's mean)."""
    x = np.concatenate([s - s.mean() for s, _ in points.values() if len(s) > 1])
    y = np.concatenate([t - t.mean() for _, t in points.values() if len(t) > 1])
    r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
    shares = np.concatenate([s for s, _ in points.values()])
    return (f"Within the settings (each seed against its setting's mean), the share of saturated units and the test "
            f"score correlate at $r = {signed(r, 2)}$ over {len(x)} seeds; the shares range from {shares.min():.0%} to "
            f"{shares.max():.0%}. "
            + (f"Seeds with more saturated units tend to score worse. This is an association over {len(x)} seeds, not "
               "a cause: it does not show whether saturation makes a seed lag, a lagging seed saturates, or both "
               "follow from its start." if r > 0.3 else
               "So saturation goes with little of the seed spread here." if abs(r) <= 0.3 else
               "More saturated units go with a better score here, so saturation does not go with a seed's lag."))


def protocol_markdown(v: dict) -> str:
    """The protocol of Part II as a Markdown list, from the numbers of this corpus and design in `v`
    (L, n_held, first, last, N, period, seams, train_chars, predictions, evals, seeds, settings,
    runs, chars_per_run, updates, passes)."""
    return f"""
- **Held-out text.** The corpus is cut into blocks of {v['L']:,} characters and every {v['period']}th block is
  held out ([Table](#tbl-split)): {v['n_held']} blocks, from character {v['first']:,} to character
  {v['last']:,} of {v['N']:,}, so every play contributes. The choice depends on the corpus length and
  the fraction only, is made before any run and is the same for every run and for the n-gram
  baseline. The training text is the rest, concatenated in corpus order: at its {v['seams']} seams the
  network reads on from the end of one block into the start of the next, one jump in every
  {v['train_chars'] // max(v['seams'], 1):,} characters, like the jumps at the play boundaries.
- **Validation and test halves.** The held-out blocks alternate between a validation half (the
  even-numbered blocks, {(v['n_held'] + 1) // 2}) and a test half (the odd-numbered, {v['n_held'] // 2}), both spread over the
  whole corpus. The learning rates, the best setting, the n-gram order and the mixture weight are
  chosen on the validation half; the comparisons of the settings and the final table are scored on
  the test half, which no choice has seen. (The stopping rule of the run trained longer reads the
  evaluations recorded during training, over all blocks, since those are not kept block by block.)
- **Scoring.** The n-gram reads each held-out block with its context cut at the block start; the
  RNN reads every block from one hidden state, the one it carries at the end of training (which
  holds nothing of the block), not from a zero state, from which a trained network can fall into a
  degenerate regime (predicting worse than a uniform guess) for a whole block. A run's **score** on a half is that of
  its final parameters: every run of a comparison has read the same characters, and nothing of its
  earlier evaluations enters. (It is also evaluated {v['evals']} times over its updates on all blocks,
  for the curves.)
- **Learning rates.** Each setting is trained at three learning rates with the first seed and
  compared at the one with the lowest validation score: {grid_text()}, so that the rate compared at is one
  with a worse rate on either side. Its other seeds are trained at that rate, and the first seed's
  run at that rate is one of its seeds.
- **Seeds and verdicts.** {v['seeds']} seeds per setting: runs that differ only in their random numbers
  (the initial weights, and for the random and chunked orders the reading order). Each setting is set against the reference as the difference of
  their mean test scores with a 95% interval that holds for all {number_word(v['settings'] - 1)} comparisons at once
  (Dunnett's, from the pooled seed-to-seed spread; a Welch interval, from the setting's own spread and
  the reference's, for a setting whose spread clearly differs from the reference's), and the verdict is the interval's
  ([Figure](#fig-differences)).
- **Budget.** {v['settings']} settings, {v['runs']} runs before any grid grows, each reading {v['chars_per_run']:,} characters
  ({v['updates']:,} updates of one sequence, or {v['updates']:,} / $B$ updates of $B$ sequences),
  {v['passes']:.1f} passes over the training text: a short budget, at which the comparisons measure how
  fast each setting learns as much as where it would end. The setting with the lowest validation mean
  is then trained longer, until its held-out score stops improving or a cap on its updates is reached.
"""


def discussion_lines(diffs: dict, res: dict, seeds: int) -> list:
    """The discussion's bullets on the seeds and the verdicts."""
    d = stats.design_power(diffs["pooled_sd"], seeds, len(res))
    rows = diffs["rows"]
    ref_better = [setting_md(r["name"]) for r in rows if r["lo"] > 0]
    set_better = [setting_md(r["name"]) for r in rows if r["hi"] < 0]
    none = [r for r in rows if r["lo"] <= 0 <= r["hi"]]
    lines = [f"- **Seeds.** The seed-to-seed spread is $s = {diffs['pooled_sd']:.3f}$ bits per character (pooled); with "
             f"{seeds} seeds per setting the intervals detect a difference of {d:.3f} bits with {stats.POWER:.0%} power."]
    words = []
    if ref_better:
        words.append(f"the reference is better than {join_names(ref_better)}")
    if set_better:
        words.append(f"{join_names(set_better)} {'is' if len(set_better) == 1 else 'are'} better than the reference")
    said = "; ".join(words)
    text = "- **Verdicts** (test half, 95% simultaneous intervals). " + (said[:1].upper() + said[1:] + ". " if words else "")
    if none:
        text += (f"No difference is detected for {join_names(setting_md(r['name']) for r in none)}: their intervals rule out differences "
                 f"above {max(max(-r['lo'], r['hi']) for r in none):.3f} bits, which does not make the settings equal.")
    lines.append(text)
    return lines


def conclusion_verdicts(diffs: dict) -> str:
    """The conclusion's bullet on the verdicts, briefly: which changes differ detectably from the
    reference, and the largest difference the others' intervals leave open."""
    rows, k = diffs["rows"], diffs["k"]
    found = [f"{setting_md(r['name'])} ({'worse' if r['lo'] > 0 else 'better'})" for r in rows if r["lo"] > 0 or r["hi"] < 0]
    rest = [r for r in rows if r["lo"] <= 0 <= r["hi"]]
    say = number_word
    text = (f"- **Verdicts.** Of the {say(k)} changes, " + ("only " if len(found) == 1 else "")
            + (f"{join_names(found)} {'differs' if len(found) == 1 else 'differ'} detectably from the reference"
               if found else "none differs detectably from the reference"))
    # an interval that only just excludes zero: its end nearest zero within a tenth of its other end
    close = [r for r in rows if 0 < r["lo"] < 0.1 * r["hi"] or 0.1 * r["lo"] < r["hi"] < 0]
    for r in close:
        text += (f" ({setting_md(r['name'])}: the interval's end nearest zero is "
                 f"{signed(r['lo'] if r['lo'] > 0 else r['hi'])} bits, a narrow call)")
    if rest:
        bound = max(max(-r["lo"], r["hi"]) for r in rest)
        text += (f"; the intervals of {'the other ' + say(len(rest)) if found else 'all of them'} rule out differences "
                 f"above {bound:.3f} bits")
    return text + " ([Figure](#fig-differences)).\n"


def final_rows(res: dict, best: str, conv, conv_half: dict, ngram_val: dict, ngram_test: dict, order: int,
               mix: dict, mix_order: int) -> list:
    """The final table's rows: model, what was chosen on the validation half, validation bits, test bits."""
    budget = res[best]["runs"][0].update if res[best]["runs"][0] is not None else res[best]["config"].max_updates
    return [[f"RNN, {setting_md(best)}, {budget:,} updates ({len(res[best]['test'])} seeds)", "setting, rate",
             f"{np.mean(res[best]['scores']):.3f}", f"{np.mean(res[best]['test']):.3f}"],
            [f"RNN, {setting_md(best)}, {conv.update:,} updates", "setting, rate (stopping: all blocks)",
             f"{conv_half['validation']:.3f}", f"{conv_half['test']:.3f}"],
            [f"Kneser–Ney, order {order}", "order", f"{ngram_val[order]:.3f}", f"{ngram_test[order]:.3f}"],
            [f"mixture, order {mix_order}, $\\lambda = {mix['lam']:.3f}$", "order and $\\lambda$",
             f"{mix['fit_mixture']:.3f}", f"{mix['mixture']:.3f}"]]


FINAL_HEADER = ["model", "chosen on validation", "validation", "test"]


def stability_text(res: dict) -> str:
    """How many of the verdicts change when any one seed of any setting is left out (the design's
    robustness to one lagging seed), in words."""
    scores = {n: [x for x in r["test"] if np.isfinite(x)] for n, r in res.items()}
    base = {r["name"]: stats.short_verdict(r) for r in stats.differences(scores)["rows"]}
    flips = []
    for n, s in scores.items():
        for k in range(len(s)):
            fewer = dict(scores, **{n: s[:k] + s[k + 1:]})
            flips.append(sum(stats.short_verdict(r) != base[r["name"]] for r in stats.differences(fewer)["rows"]))
    flips = np.array(flips)
    return (f"How firm the verdicts are: dropping one seed at a time (each of the {len(flips)} in turn) and redoing "
            f"the comparisons changes at most {flips.max()} of the {len(base)} verdicts; {int(np.sum(flips > 0))} of the "
            f"{len(flips)} drops change any.")
