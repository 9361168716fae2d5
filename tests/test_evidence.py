"""The held-out split and its validation and test halves, the scores, the stopping rule, and the RNN / n-gram mixture."""
import math

import numpy as np
import pytest

import rnn_core as rc
from charrnn import study, training
from charrnn.study import evidence as ev
from charrnn.training import heldout


# ----------------------------------------------------------------------------- the split
@pytest.mark.parametrize("N, f", [(1_151_368, 0.05), (1221, 0.1), (1221, 0.2), (50_000, 0.3), (9_999, 0.05)])
def test_split_sizes_add_up_and_no_held_out_character_is_trained_on(N, f):
    data = np.arange(N)  # every position its own value: where each character went is visible
    train, held = heldout.split_array(data, f)
    assert len(train) + held.size == N
    assert np.intersect1d(train, held.ravel()).size == 0  # exact: positions are integers
    assert np.array_equal(np.sort(np.concatenate([train, held.ravel()])), data)
    assert np.all(np.diff(train) > 0)  # the training text keeps the corpus order
    L = held.shape[1]
    assert held.shape[0] >= heldout.MIN_HELD_BLOCKS
    # whole blocks: the held-out size is within two blocks of the fraction asked for (the selection
    # rounds down the number of blocks, and the tail shorter than a block always goes to training)
    assert abs(held.size - f * N) <= 2 * L


def test_split_of_the_default_size_is_every_20th_block_over_the_whole_text():
    L, starts = heldout.heldout_starts(1_151_368, 0.05)
    assert L == heldout.BLOCK
    assert np.all(np.diff(starts) == 20 * L)
    assert starts[0] < 20 * L and starts[-1] > 1_151_368 - 21 * L  # from the start to the end


def test_split_is_deterministic_and_the_same_for_every_run(corpus):
    a_train, a_held = corpus.split(0.2)
    b_train, b_held = corpus.split(0.2)
    assert a_train.text == b_train.text and np.array_equal(a_held, b_held)
    assert np.array_equal(a_train.data, corpus.vocab.encode(a_train.text))  # text and data agree
    for seed, m in [(1, 5), (7, 20)]:
        c = training.Config(m=m, seed=seed, holdout=0.2, seq_length=10)
        d_train, d_held = training.split_data(corpus, c)
        assert np.array_equal(d_train, a_train.data) and np.array_equal(d_held, a_held)
    texts = heldout.block_texts(corpus.text, 0.2)
    assert [corpus.vocab.encode(t).tolist() for t in texts] == a_held.tolist()


def test_a_text_too_short_for_blocks_is_refused():
    with pytest.raises(rc.RNNError, match="too short"):
        training.corpus_from_text("abcdefghij" * 4, seq_length=5).split(0.05)


def test_block_scoring_restarts_at_each_block(corpus):
    params = rc.init_params(corpus.vocab.K, 8, np.random.default_rng(0), 0.5)
    _, held = corpus.split(0.2)
    lp = heldout.block_log_probs(params, held)
    assert lp.shape == (held.shape[0], held.shape[1] - 1)
    for r in range(held.shape[0]):  # each block alone, from h = 0, by the one-sequence evaluator
        # the two evaluators sum the same terms in another order: agreement to rounding (1e-12)
        assert -lp[r].mean() == pytest.approx(rc.evaluate_loss(params, held[r]), rel=1e-12)
    assert heldout.heldout_loss(params, held) == pytest.approx(-lp.mean(), rel=1e-15)
    # from a given start state: each block as if the state had been reached before it
    h0 = np.tanh(np.random.default_rng(1).standard_normal(8))
    lp0 = heldout.block_log_probs(params, held, h0)
    U, W, b = params["U"], params["W"], params["b"]
    h = np.tanh(W @ h0 + U[:, held[2, 0]] + b)  # block 2 by hand: the first step from h0
    o = params["V"] @ h + params["c"]
    assert lp0[2, 0] == pytest.approx(o[held[2, 1]] - np.log(np.exp(o).sum()), rel=1e-12)
    assert not np.allclose(lp0, lp)


@pytest.mark.parametrize("m, sig, start", [(8, 0.5, False), (100, 0.1, True), (37, 0.3, True)])
def test_the_compiled_evaluation_equals_the_numpy_one(corpus, m, sig, start):
    """Blocks longer than the compiled evaluator's chunk of steps (and not a multiple of it), from
    h = 0 and from a carried state. Tolerance 1e-12 in norm: the two sum the same terms in another
    order, with tanh and exp within 3 ulp of libm (measured: about 1e-15)."""
    from charrnn.kernels import evaluate as kernel_eval

    if not kernel_eval.available():
        pytest.skip(f"no compiled evaluation: {kernel_eval.unavailable_reason()}")
    params = rc.init_params(corpus.vocab.K, m, np.random.default_rng(m), sig)
    _, held = corpus.split(0.2)
    assert held.shape[1] - 1 > kernel_eval.CHUNK and (held.shape[1] - 1) % kernel_eval.CHUNK
    h0 = np.tanh(np.random.default_rng(2).standard_normal(m)) if start else None
    got = heldout.block_log_probs(params, held, h0)
    want = heldout.numpy_block_log_probs(params, held, h0)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-12


def test_ngram_block_scores_cut_the_context_at_block_starts(corpus):
    kn = study.KneserNey(corpus.text, corpus.vocab.chars, max_order=3)
    blocks = heldout.block_texts(corpus.text, 0.2)
    lp = kn.block_log2_probs(blocks, 3)
    assert lp.shape == (len(blocks), len(blocks[0]) - 1)
    # the second character of a block is predicted from the first alone (order 2 context), not
    # from the characters before the block
    b = blocks[1]
    assert lp[1, 0] == math.log2(kn.prob(b[0], b[1], 3))


# ----------------------------------------------------------------------------- score
class _FakeRun:
    def __init__(self, losses_nats):
        self.val_updates = list(range(0, 100 * len(losses_nats), 100))
        self.val_losses = list(losses_nats)


def test_run_score_is_the_mean_of_the_last_evaluations_not_the_best():
    run = _FakeRun([3.0, 1.0, 2.0, 2.0, 2.0])  # a lucky dip at the second evaluation
    assert ev.run_score(run) == pytest.approx(2.0 * ev.BITS, rel=1e-12)


# ----------------------------------------------------------------------------- stopping rule
def test_stopping_rule_on_a_synthetic_curve():
    u = np.arange(0, 1_000_001, 10_000)
    bits = 2.0 + 1.5 * np.exp(-u / 100_000)  # falls by 1.5 bits, with time constant 100k updates
    window = 100_000
    # over the last 100k updates the score falls by 1.5 (e^(1 - U/1e5) - e^(-U/1e5)) = 2.58 e^(-U/1e5)
    # bits: 0.128 at 300k, 0.0100 at 557k, 0.0094 at 563k. The rule must say "still improving" at 300k
    # and "stopped" at 700k
    k300, k700 = 30, 70
    assert not ev.stopped_improving(u[:k300 + 1], bits[:k300 + 1], window)
    assert ev.stopped_improving(u[:k700 + 1], bits[:k700 + 1], window)
    first = next(k for k in range(2, len(u)) if ev.stopped_improving(u[:k + 1], bits[:k + 1], window))
    # evaluations every 10k, and a score is the mean of the last 3, which multiplies both ends of
    # the window by (1 + e^0.1 + e^0.2) / 3 = 1.107: the fall is 2.853 e^(-U/1e5) bits, below 0.01
    # from U = 565k, so the first stop is on the grid point 570k
    assert u[first] == 570_000
    assert ev.stopped_improving(u, bits + 0.002 * (u / 1e5), window)  # a rising tail has stopped too
    assert not ev.stopped_improving(u[:k700 + 1], bits[:k700 + 1], window, min_updates=800_000)
    assert not ev.stopped_improving(u[:5], bits[:5] * 0, window)  # a run shorter than its window: not yet


def test_a_log_linear_fall_never_stops_a_last_fifth_rule_but_stops_a_fixed_window():
    """Why the window is fixed in passes: a fall of 0.04 bits per doubling is 0.013 bits over every
    last fifth of any run, while over a fixed window of 100k updates it shrinks below 0.01 by 560k."""
    u = np.arange(10_000, 2_000_001, 10_000)
    bits = 3.0 - 0.04 * np.log2(u)
    assert ev.fall_per_doubling(u, bits) == pytest.approx(0.04, rel=1e-9)
    for n in (200, 100, 50):  # last fifth at 2M, 1M and 500k updates: 0.04 log2(1.25) = 0.0129 each time
        k = int(np.searchsorted(u, 0.8 * u[n - 1], side="right")) - 1
        assert bits[k] - bits[n - 1] == pytest.approx(0.0129, abs=2e-4)
    first = next(k for k in range(len(u)) if ev.stopped_improving(u[:k + 1], bits[:k + 1], 100_000))
    # 0.04 log2(U / (U - 100k)) < 0.01 from U = 100k / (1 - 2^-0.25) = 629k (score lag aside)
    assert 600_000 <= u[first] <= 660_000


# ----------------------------------------------------------------------------- validation and test halves
@pytest.mark.parametrize("n", [1, 2, 7, 28, 29])
def test_the_halves_alternate_are_disjoint_deterministic_and_cover_every_block_once(n):
    val, test = ev.split_halves(n)
    assert np.intersect1d(val, test).size == 0
    assert sorted(np.concatenate([val, test]).tolist()) == list(range(n))  # every block in exactly one half
    assert np.all(val % 2 == 0) and np.all(test % 2 == 1)  # alternate blocks: both spread over the corpus
    v2, t2 = ev.split_halves(n)
    assert np.array_equal(val, v2) and np.array_equal(test, t2)


class _ScoredRun:
    def __init__(self, params, hprev, val_losses):
        self.params, self.hprev = params, hprev
        self.val_updates, self.val_losses = list(range(len(val_losses))), list(val_losses)


def test_a_runs_half_scores_are_a_function_of_its_final_parameters_only(corpus):
    """Two runs with the same final parameters and end state but different histories of evaluations
    score the same; the scores are those of the final parameters on the even and odd blocks."""
    _, held = corpus.split(0.2)
    params = rc.init_params(corpus.vocab.K, 8, np.random.default_rng(0), 0.5)
    h = np.tanh(np.random.default_rng(1).standard_normal(8))
    a = ev.half_scores(_ScoredRun(params, h, [3.0, 2.0, 1.0]), held)
    b = ev.half_scores(_ScoredRun({k: v.copy() for k, v in params.items()}, h.copy(), [9.0, 0.1]), held)
    assert a == b
    per_block = -heldout.block_log_probs(params, held, h).mean(axis=1) * ev.BITS
    val, test = ev.split_halves(len(held))
    assert a["validation"] == pytest.approx(per_block[val].mean(), rel=1e-12)
    assert a["test"] == pytest.approx(per_block[test].mean(), rel=1e-12)
    moved = {k: v.copy() for k, v in params.items()}
    moved["c"][0] += 1.0  # other final parameters: other scores
    assert ev.half_scores(_ScoredRun(moved, h, [3.0, 2.0, 1.0]), held) != a


# ----------------------------------------------------------------------------- mixture
def test_mixture_endpoints_are_the_two_models():
    rng = np.random.default_rng(0)
    a, b = np.log(rng.uniform(0.05, 1, (6, 50))), np.log(rng.uniform(0.05, 1, (6, 50)))
    assert ev.mixture_bits(1.0, a, b) == pytest.approx(-a.mean() / math.log(2), rel=1e-12)
    assert ev.mixture_bits(0.0, a, b) == pytest.approx(-b.mean() / math.log(2), rel=1e-12)
    # near the ends the formula with logaddexp meets the end values (continuity, to 1e-6 bits)
    assert ev.mixture_bits(1 - 1e-9, a, b) == pytest.approx(ev.mixture_bits(1.0, a, b), abs=1e-6)


def test_mixture_fit_prefers_the_better_model_and_never_loses_on_its_fitting_half():
    rng = np.random.default_rng(1)
    good = np.log(rng.uniform(0.5, 1.0, (10, 40)))
    bad = np.log(rng.uniform(0.01, 0.2, (10, 40)))
    rep = ev.mixture_report(good, bad)
    assert rep["lam"] > 0.5  # the weight goes to the better model
    fit, _ = ev.split_halves(10)
    lam = ev.fit_mixture(good[fit], bad[fit])
    # lam = 1 is on the grid, so the fitted mixture is at most the better model's loss on the fit half
    assert ev.mixture_bits(lam, good[fit], bad[fit]) <= ev.mixture_bits(1.0, good[fit], bad[fit]) + 1e-12
    assert rep["fit_blocks"] + rep["test_blocks"] == 10


@pytest.mark.parametrize("seed", range(6))
def test_mixture_fit_finds_the_best_point_of_the_whole_grid(seed):
    """Scoring every 10th grid point and then the neighbourhood of the best gives the point a search of
    all 1001 points gives (the loss is convex in lam), wherever the optimum is, ends included."""
    rng = np.random.default_rng(seed)
    shift = [0.0, 0.5, 3.0, -3.0, 0.1, -0.2][seed]  # moves the optimum across [0, 1], to either end
    a = np.log(rng.uniform(0.01, 1, (8, 60)))
    b = np.log(rng.uniform(0.01, 1, (8, 60))) + shift
    b = np.minimum(b, 0.0)  # log-probabilities
    grid = np.linspace(0.0, 1.0, 1001)
    full = grid[int(np.argmin([ev.mixture_bits(g, a, b) for g in grid]))]
    assert ev.fit_mixture(a, b) == full


def test_stretch_losses_line_up_the_same_text_in_every_epoch():
    class R:
        updates_per_epoch, update = 10, 30
        losses = np.tile(np.arange(10.0), 3) + np.repeat([0.0, -1.0, -2.0], 10)  # same profile, lower each epoch
        smooth_losses = losses
    S = ev.stretch_losses(R, 5)
    assert S.shape == (3, 2) and np.allclose(S[:, 1] - S[:, 0], 5.0)
    assert ev.lowest_smooth_offsets(R).tolist() == [0, 0, 0]


# ----------------------------------------------------------------------------- the study's runs
def test_tune_picks_the_lowest_score_and_trains_the_other_seeds_at_that_rate(corpus, tmp_path):
    from charrnn.study import experiments as study

    ref = training.Config(m=6, seq_length=10, holdout=0.2, epochs=10**6, sample_every=0, seed=3)
    settings = study.settings_for(ref, updates=60, seeds=2)
    assert list(settings) == list(study.SETTINGS)
    b8 = settings["B = 8"]["configs"][0]
    assert b8.batch_size == 8 and b8.max_updates == 60 // 8  # same characters as the batch-1 runs
    res = study.results(corpus, {k: settings[k] for k in ("reference", "m = 50")}, tmp_path, progress=False)
    r = res["reference"]
    assert r["eta"] == min(r["sweep"], key=r["sweep"].get)
    assert [x.config.seed for x in r["runs"]] == [3, 4] and all(x.config.eta == r["eta"] for x in r["runs"])
    assert r["scores"][0] == r["sweep"][r["eta"]]  # the first seed's run is the sweep's run
    _, held = corpus.split(0.2)
    assert r["test"][1] == ev.half_scores(r["runs"][1], held)["test"]  # scores of the final parameters
    assert study.budget(res)["runs"] == sum(len(v["sweep"]) + 1 for v in res.values())  # the sweeps + seed 4
    run, stopped = study.converge(corpus, r["config"], tmp_path)
    assert run.update > r["config"].max_updates and run.val_updates[0] == 0
    # converging continues the first seed's run: its first evaluations are that run's
    assert run.val_losses[:len(r["runs"][0].val_losses)] == r["runs"][0].val_losses


class _Configured:
    def __init__(self, config):
        self.config = config


@pytest.mark.parametrize("best, tried, edge", [
    (0.05, [0.025, 0.05, 0.1], False),           # inside the grid: no extension
    (0.02, [0.0125, 0.025, 0.05, 0.1], False),   # at the low end: one rate below it, which loses
    (0.0005, [0.00625, 0.0125, 0.025, 0.05, 0.1], True),  # keeps winning at the low end: EXTEND rates, then "edge"
    (0.25, [0.025, 0.05, 0.1, 0.2, 0.4], False),  # the high end: twice the rate, until one loses
])
def test_tune_extends_the_grid_beyond_a_winner_at_its_end(monkeypatch, tmp_path, best, tried, edge):
    """Scores are |log(eta / best)|: lowest at `best`; the sweep must grow towards it, one rate at a time."""
    from charrnn.study import experiments as study

    monkeypatch.setattr(study, "_run_or_none", lambda corpus, c, runs_dir, progress=False: _Configured(c))
    monkeypatch.setattr(study, "_score", lambda corpus, run, runs_dir, half="validation": abs(np.log(run.config.eta / best)))
    ref = training.Config(m=6, seq_length=10, holdout=0.2, epochs=10**6, sample_every=0, seed=3)
    setting = study.settings_for(ref, updates=60, seeds=2)["reference"]
    r = study.tune(None, setting, tmp_path)
    assert list(r["sweep"]) == pytest.approx(tried)
    assert r["edge"] is edge
    assert r["eta"] == pytest.approx(min(tried, key=lambda e: abs(np.log(e / best))))
    assert [x.config.eta for x in r["runs"]] == [r["eta"]] * 2 and [x.config.seed for x in r["runs"]] == [3, 4]


def test_start_state_rows_count_the_blocks_worse_than_a_uniform_guess(corpus):
    """A network whose output bias bets on a character the text lacks scores worse than a uniform
    guess on every block, from either state; one whose bias is the characters' log frequencies
    scores better on every block."""
    _, held = corpus.split(0.2)
    K, m = corpus.vocab.K, 6

    class R:
        pass

    def run_with_bias(c):
        r = R()
        r.params = rc.init_params(K, m, np.random.default_rng(0), 1e-3)
        r.params["c"] = c
        r.hprev = np.zeros(m)
        r.config = training.Config(m=m, seq_length=10)
        return r

    counts = np.bincount(corpus.data, minlength=K) + 1.0
    bad = np.zeros(K)
    bad[int(np.argmin(counts))] = 30.0  # nearly all probability on the rarest character
    rows = ev.start_state_rows({"bad": run_with_bias(bad), "unigram": run_with_bias(np.log(counts))}, held)
    n = str(held.shape[0])
    assert rows[0][0] == "bad" and rows[0][3:] == [n, n]
    assert rows[1][3:] == ["0", "0"]
