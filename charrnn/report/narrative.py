"""The report's prose with computed numbers: short templates the notebook's cells fill and display as Markdown."""
from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter

import numpy as np

import rnn_core as rc
from charrnn.report.plots import WORD, corpus_words, known_word_fraction, sci
from charrnn.study import evidence, experiments, findings, rise
from charrnn.study.stats import setting_md, signed

# Figures of the course's assignment on its own corpus, quoted in the report (never computed here) as the
# restatement of the assignment this project was built from gives them: it names no author for them.
COURSE_FIGURES = ("one published run of the assignment had a smooth loss of about 47\u201348 at update 100,000; "
                  "the assignment's reference run reached its lowest smooth loss, about 39\u201340, around epoch 7 "
                  "(after more than 300,000 updates), while one published report reached only 43.3 after 50 epochs")
COURSE_SOURCE = ("These figures are quoted, not computed here: they come from this project's specification of the "
                 "assignment, which gives them without naming the runs' authors.")


def gradcheck_verdict(checks: dict, tol: float, K: int, T: int = 25) -> str:
    """The verdict of the gradient check: `checks` maps a label to a table of rnn_core.gradcheck; the
    first two are at sigma = 0.1 (the verdict), the third at the initial scale sigma = 0.01."""
    tables = list(checks.values())
    worst = max(r["max_rel"] for table in tables[:2] for r in table.values())
    at_init = tables[2]
    return (f"**Verdict: {'pass' if worst < tol else 'FAIL'}.** The largest relative error at $\\sigma = 0.1$ "
            f"is {sci(worst)}, against a tolerance of {sci(tol, 0)}. At the initial scale $\\sigma = 0.01$ "
            f"every absolute error is at most {sci(max(r['max_abs'] for r in at_init.values()))}: the rounding of a "
            f"loss of about {T * math.log(K):.0f} divided by $2\\delta$. The entries of $dW$ and $dV$ are then small, "
            f"so their relative errors (up to {sci(max(at_init[k]['max_rel'] for k in 'WV'))}) measure that rounding, "
            "not a mistake.")


NAME = r"[A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*){0,2}"  # "King", "First Lord", "OTHELLO"
SPEAKER_LINE = re.compile(rf"^({NAME})\.$", re.M)  # a name and a full stop alone on a line


@functools.lru_cache(maxsize=4)
def corpus_speakers(corpus_text: str) -> frozenset:
    """The speakers' names of the corpus: the names that stand alone on a line, with a full stop, between
    a blank line and a line of text (the way each speech of the corpus opens) at least twice; "ACT I.",
    followed by a blank line, is no speaker."""
    count = Counter(re.findall(rf"(?:^|\n)\n({NAME})\.(?=\n[^\n])", corpus_text))
    return frozenset(name for name, k in count.items() if k >= 2)


def speaker_lines(text: str, speakers: frozenset) -> int:
    """Lines of `text` holding only the name of one of the corpus's `speakers` and a full stop: a
    sample's "WeouslldnouThout." has the shape of one, but is no speaker's name."""
    return sum(name in speakers for name in SPEAKER_LINE.findall(text))


CAPITALS = re.compile(r"[A-Z]{2,}(?: [A-Z]{2,}){0,2}")  # "ORONI", "FIRST WITCH": a tag in capitals


def tag_lines(text: str, speakers: frozenset) -> int:
    """Lines of `text` shaped like a speaker's tag of the corpus, real or made up: a name in capitals
    ("ORONI.") or one of the corpus's `speakers` ("Fran."), alone on a line with a full stop."""
    return sum(name in speakers or bool(CAPITALS.fullmatch(name)) for name in SPEAKER_LINE.findall(text))


def text_traits(text: str, vocab_words: set, speakers: frozenset = frozenset()) -> dict:
    """What a reader sees in a text, counted: the share of spaces, the mean length of its words (runs of
    letters), the share of them that are words of the corpus, lines holding only a speaker's name (one
    of `speakers`), and line breaks."""
    words = WORD.findall(text)
    n = max(len(text), 1)
    return {"spaces": text.count(" ") / n,
            "word length": float(np.mean([len(w) for w in words])) if words else 0.0,
            "known words": sum(w in vocab_words for w in words) / len(words) if words else 0.0,
            "speaker lines": speaker_lines(text, speakers),
            "tag lines": tag_lines(text, speakers),
            "line breaks per 100": 100 * text.count("\n") / n}


def sample_reading(samples: list, corpus_text: str) -> tuple[list, list]:
    """(header, rows): the traits of each sample of a run (its update and smooth loss first), and of the
    corpus itself, scaled to the samples' length, as the last row."""
    vocab, speakers = corpus_words(corpus_text), corpus_speakers(corpus_text)
    header = ["update", "smooth loss", "spaces", "word length", "known words", "speaker tags (real names)",
              "line breaks / 100"]
    rows = []
    for s in samples:
        t = text_traits(s["text"], vocab, speakers)
        rows.append([f"{s['update']:,}", f"{s['smooth_loss']:.2f}", f"{t['spaces']:.0%}", f"{t['word length']:.1f}",
                     f"{t['known words']:.0%}", f"{t['tag lines']} ({t['speaker lines']})", f"{t['line breaks per 100']:.1f}"])
    t = text_traits(corpus_text, vocab, speakers)
    per = len(samples[0]["text"]) / max(len(corpus_text), 1)  # speaker lines in a stretch as long as a sample
    rows.append(["the corpus", "", f"{t['spaces']:.0%}", f"{t['word length']:.1f}", "100%",
                 f"{t['tag lines'] * per:.1f} ({t['speaker lines'] * per:.1f})", f"{t['line breaks per 100']:.1f}"])
    return header, rows


def sample_reading_summary(samples: list, corpus_text: str) -> str:
    """One sentence on what the table of `sample_reading` shows: the share of corpus words from the first
    sample to the last, and the first samples with speaker tags, made up and real."""
    vocab, names = corpus_words(corpus_text), corpus_speakers(corpus_text)
    first, last = (text_traits(samples[i]["text"], vocab) for i in (0, -1))
    real = [s["update"] for s in samples if speaker_lines(s["text"], names)]
    tags = [s["update"] for s in samples if tag_lines(s["text"], names)]
    when = (f"a line holding only the name of one of the corpus's speakers first appears at update {real[0]:,}" if real
            else f"lines shaped like the corpus's speaker tags (a name in capitals and a full stop, alone on a line) "
                 f"appear from update {tags[0]:,} on, but none names one of the corpus's speakers" if tags
            else "no sample holds a line shaped like a speaker's tag")
    return (f"The samples move towards the corpus: the share of their letter runs that are words of the corpus goes "
            f"from {first['known words']:.0%} at update {samples[0]['update']:,} to {last['known words']:.0%} at update "
            f"{samples[-1]['update']:,}, and {when}.")


def shared_clock() -> str:
    """Where a run's duration is given: the report's runs train side by side in its background workers,
    on the cores of the machine that builds it, so a duration is wall time shared with other runs."""
    cores = os.cpu_count() or 1
    return (f"wall time, measured while other runs of this report trained beside it on the same "
            f"{findings.number_word(cores) + ' cores' if cores > 1 else 'core'} (the appendix measures the training "
            "rate of each implementation, [Table](#tbl-speed))")


def main_run_summary(run) -> str:
    return (f"The lowest smooth loss, {run.best_smooth:.2f}, came at update {run.best_update:,}. The {run.update:,} "
            f"updates took {run.seconds:.0f} s of {shared_clock()}.")


def best_epoch(run) -> int:
    """The epoch (counted from 1) in which the run's best model was found."""
    return math.floor(run.best_update / run.updates_per_epoch) + 1


def long_run_summary(run) -> str:
    return (f"The lowest smooth loss, {run.best_smooth:.2f}, came at update {run.best_update:,} (epoch "
            f"{best_epoch(run)}); the final smooth loss is {run.smooth_loss:.2f}. The run took "
            f"{run.seconds / 60:.1f} minutes of wall time in all, with other runs training beside it.")


def part1_discussion(main, long, corpus_text: str, text_5000: str, corpus_name: str, K: int, text_1000: str = "") -> str:
    """The discussion of Part I: the start, the learning curve, the samples, the best model, the speed."""
    T, S = main.config.seq_length, main.smooth_losses
    first, at10k = S[0], (S[10_000] if len(S) > 10_000 else None)
    known = {s["update"]: known_word_fraction(s["text"], corpus_text) for s in main.samples}
    u_last = max(known)
    fall = f" (to {at10k:.2f} at update 10,000, {at10k / T:.2f} nats per character)" if at10k is not None else ""
    epochs, at = long.update / long.updates_per_epoch, best_epoch(long)
    passage_1000 = (f" {known_word_fraction(text_1000, corpus_text):.0%} in the {len(text_1000):,} characters of "
                    "[Passage](#psg-best-1000) and" if text_1000 else "")
    late = (", the last of the run: the smooth loss was still reaching new lows when the run ended"
            if at >= math.ceil(epochs) else f" of {epochs:.0f}")
    return f"""
- **Start.** The first loss, {first:.2f}, equals $T \\log K = {T * math.log(K):.2f}$ to within {abs(first - T * math.log(K)):.2f}:
  the untrained network predicts every character with probability close to $1/K$, as expected from
  weights of scale 0.01.
- **Learning.** The smooth loss falls fastest in the first thousands of updates{fall}
  and then slowly ([Figure](#fig-main-loss)).
- **Samples.** A crude but computed measure of the samples: the share of their letter runs that are
  words of the corpus. At update 0, when every character is about equally likely, it is
  {known[0]:.0%} (short runs such as "a" or "I" match by chance); at update {u_last:,} it is
  {known[u_last]:.0%}; from the best model,{passage_1000} {known_word_fraction(text_5000, corpus_text):.0%} in the
  {len(text_5000):,} characters of the HTML version.
- **Best model.** The long run's lowest smooth loss came in epoch {at}{late}.

*Not comparable, for scale only.* On the course's own corpus, an extract of a novel, {COURSE_FIGURES}.
{COURSE_SOURCE} The numbers above are for `{corpus_name}`.
"""


def forms_table(params: dict, X, Y, h0, forms: dict) -> tuple[list, list, float]:
    """(header, rows, loss) comparing each form's loss and gradients (`forms`: {label: (loss, grads, h)})
    with rnn_core's vectorised form's, as relative differences in norm."""
    loss_v, g_v, _ = rc.loss_and_grads(params, X, Y, h0)
    rows = [[name, sci(abs(loss - loss_v) / loss_v)]
            + [sci(np.linalg.norm(g[k] - g_v[k]) / np.linalg.norm(g_v[k])) for k in rc.PARAM_NAMES]
            for name, (loss, g, _) in forms.items()]
    return ["form", "loss"] + [f"$d{k}$" for k in rc.PARAM_NAMES], rows, loss_v


def speed_rows(speed: list) -> list:
    """The speed table's rows from report.time_forms: rate, characters per second, ratio to the first form."""
    base_rate = speed[0][4]
    return [[label, f"{u:,}", f"{dt:.2f}", f"{rate:,.0f}", f"{rate * 25 * B:,.0f}", f"{rate / base_rate:.1f}×"]
            for label, B, u, dt, rate in speed]


def summary(corpus_name: str, n_chars: int, K: int, checks: dict, tol: float, main, long, text_1000: str,
            corpus_text: str, part2: str = "") -> str:
    """The report's opening summary: what was done, the gradient check's verdict, the losses reached,
    where each item of the assignment stands, and Part II's findings in `part2` (Markdown, optional).
    Each term is explained where the reader first meets it, here."""
    worst = max(r["max_rel"] for table in list(checks.values())[:2] for r in table.values())
    c = main.config
    known = known_word_fraction(text_1000, corpus_text)
    return f"""A vanilla recurrent network with $m = {c.m}$ hidden units learns to write `{corpus_name}`
({n_chars:,} characters, $K = {K}$ distinct ones) one character at a time, trained by backpropagation
through time (BPTT: the chain rule applied backwards through the steps of a sequence) over sequences of
$T = {c.seq_length}$ characters and AdaGrad ($\\eta = {c.eta:g}$, gradients clipped to $[-{c.clip:g}, {c.clip:g}]$).

- **Gradients.** BPTT's gradients agree with centred finite differences: the largest relative error is
  {sci(worst)}, against a tolerance of {sci(tol, 0)} ([Table](#tbl-gradcheck)): **{'pass' if worst < tol else 'FAIL'}**.
- **Training.** The smooth loss (a running average of the loss of each sequence) falls from
  {main.smooth_losses[0]:.2f} to {main.smooth_loss:.2f} over the {main.update:,} updates of the main run
  ({main.update / main.updates_per_epoch:.0f} epochs, that is passes over the corpus; [Figure](#fig-main-loss)); samples
  drawn every 10,000 updates turn from random characters into words and verse lines ([Passage](#psg-samples),
  [Table](#tbl-sample-traits)).
- **Best model.** Trained for {long.update / long.updates_per_epoch:.0f} epochs, the lowest smooth loss is {long.best_smooth:.2f}
  at update {long.best_update:,} ([Figure](#fig-long-loss)), or {long.best_smooth / c.seq_length / math.log(2):.2f} bits per
  character ($-\\log_2$ of the probability the model gives each next character, averaged). {known:.0%} of the words of the {len(text_1000):,}-character passage it writes ([Passage](#psg-best-1000))
  are words of the corpus.
{part2}"""


def converged_notes(conv, stopped: bool, conv_score: float, conv_train: float, kn_best: float, order: int,
                    stored_counts: int, mix: dict, train_chars: int, mix_order: int | None = None) -> str:
    """The notes under the final table: the stopping rule and where the run stopped, the RNN against the
    n-gram (and why, when it loses), and the mixture (with the n-gram of `mix_order`); every number from
    the arguments."""
    u, bits = evidence.curve_bits(conv)
    window = experiments.stop_window(conv)
    gain, per_doubling = evidence.improvement_over(u, bits, window), evidence.fall_per_doubling(u, bits)
    gap, per = round(conv_score - kn_best, 3), round(per_doubling, 3)
    c = conv.config
    shown = next(f"{gain:.{d}f}" for d in range(3, 9)
                 if float(f"{gain:.{d}f}") != evidence.STOP_BITS or d == 8)  # 0.0098 against "less than 0.01"
    trend = (f", so at that trend closing the {gap:.3f}-bit gap to the n-gram below would take about {gap / per:.0f} "
             "more doublings of the updates" if per > 0 and gap > 0 else "")
    lines = [f"- **Stopping.** The rule: the score fell by less than {evidence.STOP_BITS:g} bits over the last "
             f"{evidence.STOP_PASSES} passes over the training text ({window:,} updates here). "
             f"{'The run met it' if stopped else 'The run reached its cap without meeting it'} after {conv.update:,} "
             f"updates ({conv.update * c.seq_length * c.batch_size / train_chars:.1f} passes): its score fell by "
             f"{shown} bits over those last {evidence.STOP_PASSES} passes (the evaluations recorded during training, "
             "over all held-out blocks: they are not kept block by block, so the stopping point is the one choice that "
             f"has seen the test half). It is a plateau, not a floor: over the second half of the run the score fell by "
             f"{per_doubling:.3f} bits for each doubling of the updates{trend}.",
             f"- **Against the n-gram.** On the test half the RNN is {'worse' if conv_score > kn_best else 'better'} "
             f"than the order-{order} Kneser\u2013Ney model by {abs(conv_score - kn_best):.3f} bits per character "
             "([Table](#tbl-converged))."]
    if conv_score > kn_best:
        why = (f"Its loss on its own training text, {conv_train:.3f} bits per character, is above the n-gram's loss on "
               f"text it never saw, {kn_best:.3f}. So the network underfits: it is limited by its capacity or by its "
               "optimisation, not by overfitting." if conv_train > kn_best else
               f"Its training loss, {conv_train:.3f} bits per character, is below the n-gram's held-out loss, and its "
               f"held-out score is {signed(conv_score - conv_train)} bits from its training loss. So it fits the training "
               "text but does not generalise as well.")
        lines[-1] += (f" {why} Whether a larger network would close the gap is not answered here: the "
                      "capacity comparison above is at the short comparison budget, where it measures learning speed as "
                      f"much as capacity. As a model, the order-{order} n-gram holds {stored_counts:,} stored counts; the "
                      f"RNN has {sum(v.size for v in conv.params.values()):,} parameters.")
    better = min(mix["rnn"], mix["ngram"])
    ngram = f"the order-{mix_order} n-gram" if mix_order is not None else "the n-gram"
    lines.append(f"- **Mixture.** With $\\lambda = {mix['lam']:.3f}$ the mixture of the RNN with {ngram} scores "
                 f"{mix['mixture']:.3f} bits on the test half, against {mix['rnn']:.3f} for the RNN and {mix['ngram']:.3f} "
                 f"for {ngram} alone: "
                 + (f"{better - mix['mixture']:.3f} bits below the better of the two, so the two models err on partly "
                    "different characters." if mix["mixture"] < better else "no better than the better of the two."))
    return "\n".join(lines) + "\n"


def rise_count_text(res: dict) -> str:
    """One sentence from `rise.rise_count_rows`: which settings have seeds whose held-out curve rises."""
    rows = [(name, *map(int, seeds.split(" of "))) for name, seeds, _ in rise.rise_count_rows(res)]
    rising = [f"{setting_md(name)} ({f'all {n}' if k == n else f'{k} of {n}'})" for name, k, n in rows if k]
    flat = [setting_md(name) for name, k, _ in rows if not k]
    said = (f"Seeds whose held-out curve ever rises from one evaluation to the next: {findings.join_names(rising)}"
            if rising else "No seed's held-out curve ever rises from one evaluation to the next")
    return said + (f"; never in {findings.join_names(flat)}." if flat else ".")


def part2_summary(diffs: dict, res: dict, seeds: int, best: str, conv_score: float, kn_best: float, order: int,
                  mix: dict, mix_order: int | None = None) -> str:
    """The summary's bullet for Part II: the changes, the verdicts, the RNN against the n-gram and the
    mixture (with the n-gram of `mix_order`), each term explained at its first use."""
    verdicts = findings.discussion_lines(diffs, res, seeds)[1].split("). ", 1)[1]  # after "(test half, ...)."
    changes = [n for n in res if n != "reference"]
    k = len(changes)
    say = findings.number_word(k)
    told = [text for key, text in (("Adam", "Adam is an optimiser that scales each step by running averages of the "
                                             "gradient and of its square"), ("B =", "$B$ is the number of sequences per update"))
            if any(n.startswith(key) for n in changes)]
    mixed = f"the order-{mix_order} n-gram" if mix_order is not None else "the n-gram"
    return (f"- **Part II.** {say.capitalize()} changes of the reference run ({findings.join_names(setting_md(n) for n in changes)}"
            f"{''.join('; ' + t for t in told)}) are trained from {seeds} seeds each (runs that differ only in "
            "their random numbers) and compared on held-out text (text no run trains on) with 95% simultaneous "
            f"intervals (intervals that hold for all {say} comparisons at once; [Figure](#fig-differences)). "
            f"{verdicts} Trained until it stops improving, the best setting ({setting_md(best)}) scores {conv_score:.3f} "
            f"bits per character on the test half, against {kn_best:.3f} for the order-{order} Kneser\u2013Ney n-gram (a "
            f"model that predicts each character from the {order - 1} before it by their counts in the training text, "
            "with Kneser\u2013Ney smoothing for contexts seen rarely) and "
            f"{mix['mixture']:.3f} for the mixture of the RNN with {mixed} ([Table](#tbl-converged)).\n")


def conclusion(checks: dict, tol: float, main, long, text_5000: str, samples: dict, train_text: str, diffs: dict,
               res: dict, seeds: int, best: str, conv_score: float, kn_best: float, order: int, mix: dict,
               mix_order: int | None = None) -> str:
    """The report's conclusion, every number from the arguments: Part I, Part II's verdicts (briefly:
    the summary states them in full), sampling, and the RNN against the n-gram and the mixture."""
    worst = max(r["max_rel"] for table in list(checks.values())[:2] for r in table.values())
    T = main.config.seq_length
    known = {k: known_word_fraction(t, train_text) for k, t in samples.items()}
    n_sample = len(next(iter(samples.values())))
    mixed = f"the order-{mix_order} n-gram" if mix_order is not None else "the n-gram"
    lines = [
        f"- **Part I.** The gradients of BPTT are right ({'pass' if worst < tol else 'FAIL'}: largest relative error "
        f"{sci(worst)}). Trained with the assignment's settings, the network goes from a uniform guess "
        f"({main.smooth_losses[0]:.2f}) to a smooth loss of {main.smooth_loss:.2f} in {main.update:,} updates; the long "
        f"run's lowest smooth loss is {long.best_smooth:.2f} ({long.best_smooth / T / math.log(2):.2f} bits per "
        f"character) at update {long.best_update:,} of {long.update:,}. "
        f"{known_word_fraction(text_5000, train_text):.0%} of the words in {len(text_5000):,} characters it writes are "
        "words of the corpus.",
        findings.discussion_lines(diffs, res, seeds)[0],
        findings.conclusion_verdicts(diffs).rstrip("\n"),
        f"- **Sampling.** In one sample of {n_sample:,} characters at each setting, lowering the temperature to 0.5 "
        f"raises the share of real words from {known['temperature 1.0 (plain)']:.0%} to {known['temperature 0.5']:.0%}, "
        f"and top-$p$ 0.5 to {known['top-$p$ 0.5']:.0%}, at the cost of variety ([Table](#tbl-sampling)).",
        f"- **Against n-grams.** Trained until it stops improving, the best setting ({setting_md(best)}) scores "
        f"{conv_score:.3f} bits per character on the test half, the order-{order} Kneser\u2013Ney model {kn_best:.3f}: "
        f"the RNN is {'worse' if conv_score > kn_best else 'better'} by {abs(conv_score - kn_best):.3f} bits, and "
        f"its mixture with {mixed}, {mix['mixture']:.3f}, is "
        + ("better than either model alone." if mix["mixture"] < min(mix["rnn"], mix["ngram"])
           else "no better than the better one."),
        "- **Budgets.** Every comparison of Part II is at one short budget (under two passes over the text): $B = 32$ "
        "makes 32 times fewer updates for the same characters, and the capacity results measure learning speed as "
        "much as capacity; neither says where a long run would end.",
    ]
    return "\n".join(lines) + "\n"
