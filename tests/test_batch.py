"""Mini-batch training: gradients, B = 1 against the exact algorithm, streams, evaluation."""
import math

import numpy as np
import pytest

import rnn_core as rc
from charrnn import training
from conftest import random_params


def batch_of(corpus, B, T, gap=97):
    X = np.stack([corpus.data[b * gap: b * gap + T] for b in range(B)])  # (B,T)
    Y = np.stack([corpus.data[b * gap + 1: b * gap + T + 1] for b in range(B)])
    return X, Y


def test_batch_gradients_pass_the_numerical_check(corpus):
    B, T, m = 4, 12, 6
    X, Y = batch_of(corpus, B, T)
    params = random_params(corpus.vocab.K, m, seed=2, sig=0.1)
    h0 = np.random.default_rng(3).standard_normal((B, m)) * 0.3
    table = rc.gradcheck(params, X, Y, grad_fn=lambda p: rc.loss_and_grads_batch(p, X, Y, h0)[:2])
    for name, row in table.items():
        assert row["max_rel"] < 1e-6, (name, row)


def test_batch_is_the_average_of_single_sequences(corpus):
    B, T, m = 5, 25, 30
    X, Y = batch_of(corpus, B, T)
    params = random_params(corpus.vocab.K, m, seed=4, sig=0.1)
    h0 = np.random.default_rng(5).standard_normal((B, m)) * 0.3
    loss, g, h_last = rc.loss_and_grads_batch(params, X, Y, h0)
    singles = [rc.loss_and_grads(params, X[b], Y[b], h0[b]) for b in range(B)]
    assert loss == pytest.approx(sum(s[0] for s in singles) / B, rel=1e-13)
    for k in rc.PARAM_NAMES:
        ref = sum(s[1][k] for s in singles) / B
        assert np.linalg.norm(g[k] - ref) <= 1e-12 * np.linalg.norm(ref), k
    assert np.allclose(h_last, np.stack([s[2] for s in singles]), rtol=0, atol=1e-14)


def test_batch_of_one_is_the_exact_algorithm(corpus):
    """B = 1 in the batch form: the same loss and gradients (1e-12), and so the same first updates."""
    T, m = 25, 100
    params = rc.init_params(corpus.vocab.K, m, np.random.default_rng(0), 0.01)
    X, Y = corpus.data[:T], corpus.data[1:T + 1]
    l1, g1, h1 = rc.loss_and_grads(params, X, Y, np.zeros(m))
    lb, gb, hb = rc.loss_and_grads_batch(params, X[None], Y[None], np.zeros((1, m)))
    assert abs(lb - l1) <= 1e-12 * l1 and np.allclose(hb[0], h1, rtol=0, atol=1e-15)
    for k in rc.PARAM_NAMES:
        assert np.linalg.norm(gb[k] - g1[k]) <= 1e-12 * np.linalg.norm(g1[k]), k
    # and the same first updates: the exact loop with its gradients taken from the batch form
    import charrnn.training.loop as tr

    cfg = training.Config(m=16, seq_length=10, epochs=1, max_updates=10, backend="numpy", sample_every=0)
    exact = training.train(corpus, cfg, progress=False)
    real = tr.loss_and_grads_batch

    def via_batch(params, X, Y, hprev):  # one sequence as a batch of one
        loss, grads, h = real(params, X[None], Y[None], hprev[None])
        return loss, grads, h[0]

    tr.loss_and_grads, saved = via_batch, tr.loss_and_grads
    try:
        batched = training.train(corpus, cfg, progress=False)
    finally:
        tr.loss_and_grads = saved
    # The two forms sum in another order (1e-16 apart per gradient); AdaGrad's first steps divide by
    # sqrt(G) with G tiny and amplify that: measured 1e-13 relative after 10 updates, 4e-12 after 100.
    assert np.allclose(batched.losses, exact.losses, rtol=1e-11, atol=0)
    for k in rc.PARAM_NAMES:
        assert np.allclose(batched.params[k], exact.params[k], rtol=0, atol=1e-11 * np.abs(exact.params[k]).max()), k


def test_streams_are_evenly_spaced_and_reset_each_epoch(corpus, monkeypatch):
    B, T = 3, 10
    N = len(corpus.data)
    R = training.stream_length(N, B)
    seen = []
    import charrnn.training.loop as tr

    real = tr.loss_and_grads_batch

    def spy(params, X, Y, hprev):
        seen.append((X.copy(), Y.copy(), hprev.copy()))
        return real(params, X, Y, hprev)

    monkeypatch.setattr(tr, "loss_and_grads_batch", spy)
    run = training.train(corpus, training.Config(m=8, seq_length=T, epochs=2, batch_size=B, sample_every=0, backend="numpy"),
                   progress=False)  # the numpy loop, spied on (the kernel's streams: tests/test_kernel_batch.py)
    per_epoch = (R - 1) // T
    assert run.updates_per_epoch == per_epoch and len(seen) == 2 * per_epoch and run.epoch == 2
    for i, (X, Y, h) in enumerate(seen):
        e = (i % per_epoch) * T
        for b in range(B):
            start = b * (R - 1) + e
            assert np.array_equal(X[b], corpus.data[start:start + T])
            assert np.array_equal(Y[b], corpus.data[start + 1:start + T + 1])
            assert start + T + 1 <= (b + 1) * (R - 1) + 1 <= N  # inside stream b
        assert h.shape == (B, 8)
        assert (np.abs(h).sum() == 0) == (i % per_epoch == 0)  # zero exactly at each epoch start


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_minibatch_learns_a_periodic_text(backend):
    period = "abcdefghij klmnop. "
    corpus = training.corpus_from_text(period * 300, seq_length=10)
    run = training.train(corpus, training.Config(m=32, seq_length=10, epochs=30, batch_size=8, sample_every=0, seed=0,
                                     backend=backend), progress=False)
    assert run.config.backend == backend
    assert run.losses[-10:].mean() / 10 < 0.02


def test_evaluate_loss_of_a_uniform_model_is_log_K(corpus):
    K = corpus.vocab.K
    params = rc.init_params(K, 10, np.random.default_rng(0), 0.01)
    for k in params:
        params[k][...] = 0.0  # all outputs equal: p = 1/K everywhere
    assert rc.evaluate_loss(params, corpus.data) == pytest.approx(math.log(K), rel=1e-12)


def test_split_keeps_the_vocabulary(corpus):
    train, held = corpus.split(0.1)
    assert len(train.data) + held.size == len(corpus.data)  # held: (blocks, L), spread over the text
    # whole blocks are held out: the held-out size is within one block of the fraction asked for
    assert train.vocab is corpus.vocab and abs(held.size - len(corpus.data) * 0.1) <= held.shape[1]
    with pytest.raises(rc.RNNError):
        corpus.split(1.5)
