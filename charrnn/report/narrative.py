"""Part I's prose with computed numbers: short templates the notebook's cells fill and display as Markdown."""
from __future__ import annotations

import math

import numpy as np

import rnn_core as rc
from charrnn.report.plots import known_word_fraction

# The course's published figures on its own corpus (quoted in the report, never computed here): the
# reference run of the course's assignment text, and one published student report.
COURSE_FIGURES = ('"about 47-48 at update 100,000" and a lowest smooth loss of "about 39-40 around epoch 7"; '
                  "one published report gives 43.3 after 50 epochs")


def gradcheck_verdict(checks: dict, tol: float, K: int, T: int = 25) -> str:
    """The verdict of the gradient check: `checks` maps a label to a table of rnn_core.gradcheck; the
    first two are at sigma = 0.1 (the verdict), the third at the initial scale sigma = 0.01."""
    tables = list(checks.values())
    worst = max(r["max_rel"] for table in tables[:2] for r in table.values())
    at_init = tables[2]
    return (f"**Verdict: {'pass' if worst < tol else 'FAIL'}.** The largest relative error at $\\sigma = 0.1$ "
            f"is {worst:.1e}, against a tolerance of {tol:.0e}. At the initial scale $\\sigma = 0.01$ "
            f"every absolute error is at most {max(r['max_abs'] for r in at_init.values()):.1e}: the rounding of a "
            f"loss of about {T * math.log(K):.0f} divided by $2h$. The entries of dW and dV are then small, so their "
            f"relative errors (up to {max(at_init[k]['max_rel'] for k in 'WV'):.1e}) measure that rounding, not a mistake.")


def milestones(run, updates=(0, 1_000, 10_000, 30_000, 100_000)) -> tuple[list, list]:
    """(header, rows) of the smooth loss of `run` at the given updates it reached and at its last."""
    S = run.smooth_losses
    at = [u for u in updates if u < len(S)] + [len(S) - 1]
    return (["update"] + [f"{u:,}" for u in at[:-1]] + ["final"], [["smooth loss"] + [f"{S[u]:.2f}" for u in at]])


def main_run_summary(run) -> str:
    return (f"The {run.update:,} updates took {run.seconds:.0f} s of training ({run.update / run.seconds:,.0f} updates "
            f"per second); the lowest smooth loss, {run.best_smooth:.2f}, came at update {run.best_update:,}.")


def best_epoch(run) -> int:
    """The epoch (counted from 1) in which the run's best model was found."""
    return math.floor(run.best_update / run.updates_per_epoch) + 1


def long_run_summary(run) -> str:
    return (f"The lowest smooth loss, {run.best_smooth:.2f}, came at update {run.best_update:,} (epoch "
            f"{best_epoch(run)}); the final smooth loss is {run.smooth_loss:.2f}, after "
            f"{run.seconds / 60:.1f} minutes of training in all.")


def part1_discussion(main, long, corpus_text: str, text_5000: str, corpus_name: str, K: int) -> str:
    """The discussion of Part I: the start, the learning curve, the samples, the best model, the speed."""
    T, S = main.config.seq_length, main.smooth_losses
    first, at10k = S[0], (S[10_000] if len(S) > 10_000 else None)
    known = {s["update"]: known_word_fraction(s["text"], corpus_text) for s in main.samples}
    u_last = max(known)
    fall = f" (to {at10k:.2f} at update 10,000, {at10k / T:.2f} nats per character)" if at10k is not None else ""
    return f"""
- **Start.** The first loss, {first:.2f}, equals $T \\log K = {T * math.log(K):.2f}$ to within {abs(first - T * math.log(K)):.2f}:
  the untrained network predicts every character with probability close to $1/K$, as expected from
  weights of scale 0.01.
- **Learning.** The smooth loss falls fastest in the first thousands of updates{fall}
  and then slowly ([Figure](#fig-main-loss)); at the end of the main run ({main.update:,} updates) it is {main.smooth_loss:.2f}.
- **Samples.** A crude but computed measure of the samples: the share of their letter runs that are
  words of the corpus. At update 0, when every character is about equally likely, it is
  {known[0]:.0%} (short runs such as "a" or "I" match by chance); at update {u_last:,} it is
  {known[u_last]:.0%}; in the 5000 characters from the best model ([Passage](#psg-best-5000)), {known_word_fraction(text_5000, corpus_text):.0%}.
- **Best model.** The lowest smooth loss of the long run is {long.best_smooth:.2f}
  ({long.best_smooth / T:.3f} nats, {long.best_smooth / T / math.log(2):.3f} bits per character)
  at update {long.best_update:,}, in epoch {best_epoch(long)} of a run of {long.update / long.updates_per_epoch:.1f} epochs.
- **Speed.** Training ran at {long.update / long.seconds:,.0f} updates per second over the whole long run,
  so its {long.update:,} updates took {long.seconds / 60:.1f} minutes.

*Not comparable, for scale only.* The course's published reference runs, on the course's own
corpus, report (quoted, not computed here) {COURSE_FIGURES}. The numbers above are for `{corpus_name}`.
"""


def forms_table(params: dict, X, Y, h0, forms: dict) -> tuple[list, list, float]:
    """(header, rows, loss) comparing each form's loss and gradients (`forms`: {label: (loss, grads, h)})
    with rnn_core's vectorised form's, as relative differences in norm."""
    loss_v, g_v, _ = rc.loss_and_grads(params, X, Y, h0)
    rows = [[name, f"{abs(loss - loss_v) / loss_v:.1e}"]
            + [f"{np.linalg.norm(g[k] - g_v[k]) / np.linalg.norm(g_v[k]):.1e}" for k in rc.PARAM_NAMES]
            for name, (loss, g, _) in forms.items()]
    return ["form", "loss"] + [f"d{k}" for k in rc.PARAM_NAMES], rows, loss_v


def speed_rows(speed: list) -> list:
    """The speed table's rows from report.time_forms: rate, characters per second, ratio to the first form."""
    base_rate = speed[0][4]
    return [[label, f"{u:,}", f"{dt:.2f}", f"{rate:,.0f}", f"{rate * 25 * B:,.0f}", f"{rate / base_rate:.1f}×"]
            for label, B, u, dt, rate in speed]
