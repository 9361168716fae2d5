"""Turning runs into evidence: a run's scores on the validation and test halves, the stopping rule, the mixture.

Every number here is in bits per character. The rules, stated once:

- Score of a run: its final parameters' held-out loss on the validation half (for choices) and on
  the test half (for comparisons): `half_scores`. A curve of evaluations over all blocks is
  smoothed for the stopping rule as the mean of its last SCORE_EVALS evaluations (`score_at`).
- Verdicts: settings are compared by their differences from the reference with simultaneous
  intervals (`charrnn.study.stats`), not here.
- Stopping: a run has stopped improving when its score improved by less than STOP_BITS over its
  last STOP_PASSES passes over the training text. (A window fixed in passes, not a fraction of the
  run: a score that falls by the same amount for every doubling of the updates, as AdaGrad's
  slowing steps make it do here, falls by the same amount over every last fifth, so a rule on the
  last fifth would never stop it; `fall_per_doubling` reports that trend beside the verdict.)
- Mixture: p = lam p_rnn + (1 - lam) p_ngram, lam fitted on one half of the held-out blocks and
  scored on the other half.
- Halves: the held-out blocks alternate between a validation half (even-numbered blocks) and a
  test half (odd-numbered): every choice (rates, the best setting, the n-gram order, the mixture
  weight) is made on validation, and the final table scores the chosen models once on test.
- Matched scores: a run's validation and test scores (`half_scores`) are those of its final
  parameters, read from the state it carries at its end: every run of a comparison has read the
  same characters, and nothing of its earlier evaluations enters.
"""
from __future__ import annotations

import math

import numpy as np

from charrnn.study.memo import remembered
from charrnn.training.heldout import block_log_probs
from charrnn.training.run import first_stream_state

BITS = 1 / math.log(2)
SCORE_EVALS = 3  # evaluations averaged into a curve's smoothed score (the stopping rule)
STOP_BITS = 0.01  # "stopped improving": less than this over the last STOP_PASSES passes over the text
STOP_PASSES = 5


def curve_bits(run) -> tuple[np.ndarray, np.ndarray]:
    """(updates (n,), held-out bits per character (n,)) of a run's evaluations."""
    return np.array(run.val_updates, dtype=np.int64), np.array(run.val_losses) * BITS


def score_at(losses_bits: np.ndarray, k: int) -> float:
    """Score after evaluation k (0-based): the mean of evaluations k - SCORE_EVALS + 1 .. k."""
    return float(np.mean(losses_bits[max(0, k - SCORE_EVALS + 1):k + 1]))


def run_score(run) -> float:
    """A run's smoothed curve score in bits per character: the mean of its last SCORE_EVALS held-out
    evaluations (all blocks). Comparisons use `half_scores` instead."""
    _, bits = curve_bits(run)
    return score_at(bits, len(bits) - 1)


def train_bits(run, fraction: float = 0.05) -> float:
    """Training loss in bits per character: the mean loss of the last `fraction` of the updates."""
    n = max(1, int(run.update * fraction))
    return float(run.losses[-n:].mean() / run.config.seq_length * BITS)


def stopped_improving(updates, losses_bits, window: int, min_updates: int = 0) -> bool:
    """Whether a curve of held-out evaluations (updates (n,), bits (n,)) has stopped improving: the
    score at the last evaluation is less than STOP_BITS below the score at the last evaluation at or
    before `window` updates earlier (the updates of STOP_PASSES passes over the training text).
    Never before `min_updates`, nor before the run is longer than the window."""
    updates = np.asarray(updates)
    if len(updates) < 2 or updates[-1] < max(min_updates, 1) or updates[-1] - window <= updates[0]:
        return False
    return improvement_over(updates, losses_bits, window) < STOP_BITS


def improvement_over(updates, losses_bits, window: int) -> float:
    """The score's fall over the last `window` updates (bits; negative if it rose)."""
    updates, bits = np.asarray(updates), np.asarray(losses_bits)
    k = max(0, int(np.searchsorted(updates, updates[-1] - window, side="right")) - 1)
    return score_at(bits, k) - score_at(bits, len(bits) - 1)


def fall_per_doubling(updates, losses_bits) -> float:
    """How much the score falls for each doubling of the updates, over the second half of the run:
    the least-squares slope of the evaluations against log2(update), negated (bits)."""
    updates, bits = np.asarray(updates, dtype=float), np.asarray(losses_bits)
    late = updates >= updates[-1] / 2
    return float(-np.polyfit(np.log2(updates[late]), bits[late], 1)[0])


def mixture_bits(lam: float, logp_a: np.ndarray, logp_b: np.ndarray) -> float:
    """Bits per character of p = lam p_a + (1 - lam) p_b, from natural log-probabilities of the
    characters that occurred under each model (same shape, any)."""
    if lam >= 1:
        return float(-logp_a.mean() * BITS)
    if lam <= 0:
        return float(-logp_b.mean() * BITS)
    mixed = np.logaddexp(math.log(lam) + logp_a, math.log1p(-lam) + logp_b)
    return float(-mixed.mean() * BITS)


def fit_mixture(logp_a: np.ndarray, logp_b: np.ndarray, steps: int = 1000, coarse: int = 10) -> float:
    """The lam in [0, 1] (on a grid of `steps` + 1 points) with the lowest mixture loss on these positions.
    The loss is convex in lam, so the grid's best point is within 1/steps of the true minimum, and it is
    found by scoring every `coarse`-th grid point, then the grid points within `coarse` of the best."""
    grid = np.linspace(0.0, 1.0, steps + 1)

    def best(idx: np.ndarray) -> int:
        return int(idx[np.argmin([mixture_bits(grid[i], logp_a, logp_b) for i in idx])])

    i = best(np.arange(0, steps + 1, coarse))  # convex: the minimum lies within one coarse step of i
    return float(grid[best(np.arange(max(0, i - coarse), min(steps, i + coarse) + 1))])


def split_halves(n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation blocks, test blocks): the even- and the odd-numbered held-out blocks, so both
    halves are spread over the whole corpus; every block is in exactly one."""
    idx = np.arange(n_blocks)
    return idx[0::2], idx[1::2]


# The version of `half_scores`'s numbers in the derived-number cache (memo): bump it when they change.
HALF_SCORES_VERSION = 1


def half_scores(run, held: np.ndarray, runs_dir=None) -> dict:
    """{"validation": bits, "test": bits}: the run's final parameters on the two halves of the
    held-out blocks (n, L), every block read from the state the run carries at its end. A function
    of the parameters, that state and the blocks only; kept in runs_dir/derived when one is given."""
    h0 = np.asarray(first_stream_state(run))

    def compute():
        per_block = -block_log_probs(run.params, held, h0).mean(axis=1) * BITS
        val, test = split_halves(len(held))
        return {"validation": per_block[val].mean(), "test": per_block[test].mean()}

    inputs = [run.params[k] for k in sorted(run.params)] + [h0, np.asarray(held)]
    value = remembered(runs_dir, "half_scores", HALF_SCORES_VERSION, inputs, compute)
    return {half: float(value[half]) for half in ("validation", "test")}


def mixture_report(logp_rnn: np.ndarray, logp_ngram: np.ndarray) -> dict:
    """Fit lam on the validation (even) blocks, score on the test (odd) ones. logp_*: natural log-probabilities (n_blocks, L-1).
    Returns lam and the scoring half's bits for the RNN, the n-gram and the mixture."""
    fit, test = split_halves(len(logp_rnn))
    lam = fit_mixture(logp_rnn[fit], logp_ngram[fit])
    return {"lam": lam, "fit_mixture": mixture_bits(lam, logp_rnn[fit], logp_ngram[fit]),
            "rnn": mixture_bits(1.0, logp_rnn[test], logp_ngram[test]),
            "ngram": mixture_bits(0.0, logp_rnn[test], logp_ngram[test]),
            "mixture": mixture_bits(lam, logp_rnn[test], logp_ngram[test]),
            "fit_blocks": len(fit), "test_blocks": len(test)}


def stretch_losses(run, stretch: int) -> np.ndarray:
    """Mean loss per update (nats per sequence) of each stretch of `stretch` updates in each whole
    epoch: shape (epochs, updates_per_epoch // stretch). Row e, column j is the same text in every epoch."""
    per, E = _epochs(run)
    n = per // stretch
    L = run.losses[:E * per].reshape(E, per)[:, :n * stretch]
    return L.reshape(E, n, stretch).mean(axis=2)


def lowest_smooth_offsets(run) -> np.ndarray:
    """For each whole epoch, the update (within the epoch) at which the smooth loss was lowest: (epochs,)."""
    per, E = _epochs(run)
    return run.smooth_losses[:E * per].reshape(E, per).argmin(axis=1)


def _epochs(run) -> tuple[int, int]:
    """(updates per epoch, whole epochs done); a run shorter than an epoch counts as one epoch of its updates."""
    per = run.updates_per_epoch
    return (per, run.update // per) if run.update >= per else (run.update, 1)


def stretch_summary(run, stretch: int) -> dict:
    """How much the text decides the smooth loss in a run of whole epochs: the correlation of the
    stretch-loss profiles (`stretch_losses`) of epoch `first` (the second, when there are three or
    more) and the last epoch, the spread of the losses along the last epoch against their fall
    from epoch `first` to the last, and where in each
    epoch the smooth loss was lowest (and the share of epochs within one stretch of the most common place)."""
    S = stretch_losses(run, stretch) / run.config.seq_length * BITS  # (epochs, stretches)
    offsets = lowest_smooth_offsets(run)
    mode = int(np.bincount(offsets // stretch).argmax())
    near = np.abs(offsets // stretch - mode) <= 1
    first = 1 if len(S) > 2 else 0
    corr = float(np.corrcoef(S[first], S[-1])[0, 1]) if len(S) > 1 else float("nan")
    return {"corr": corr, "along": float(np.ptp(S[-1])), "first": first + 1,
            "fall": float(S[first].mean() - S[-1].mean()), "offsets": offsets,
            "mode_update": (mode + 0.5) * stretch, "share_near": float(near.mean()), "epochs": len(offsets)}


def top_hit_rate(top: np.ndarray, indices: np.ndarray) -> float:
    """Share of positions where the most probable candidate (top[:, 0], top (n, k)) is the actual
    next character indices[i + 1]."""
    n = len(indices) - 1
    return float(np.mean(top[:n, 0] == np.asarray(indices)[1:n + 1]))


def start_state_rows(runs: dict, held: np.ndarray) -> list:
    """For {label: Run}: [label, bits from a zero state, bits from the carried state, and from each
    state the number of blocks scored worse than a uniform guess (log2 K bits per character): a
    network in a degenerate regime] with the final parameters."""
    rows = []
    for label, run in runs.items():
        zero = -block_log_probs(run.params, held).mean(axis=1) * BITS  # (blocks,)
        carried = -block_log_probs(run.params, held, first_stream_state(run)).mean(axis=1) * BITS
        uniform = math.log2(run.params["V"].shape[0])  # a uniform guess over the K characters
        rows.append([label, f"{zero.mean():.3f}", f"{carried.mean():.3f}", f"{int(np.sum(zero > uniform))}",
                     f"{int(np.sum(carried > uniform))}"])
    return rows
