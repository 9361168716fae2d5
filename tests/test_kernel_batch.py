"""The fused mini-batch kernel against the numpy mini-batch form and loop: gradients for several B,
the numerical check, the first updates, epochs and streams, dispatch, resuming bit for bit.
(Thread-count independence: tests/test_kernel.py, which runs both kernels with 1 and 2 threads.)

Tolerances as in tests/test_kernel.py: measured agreement about 1e-15 relative in norm, held to
1e-12, three orders of magnitude of margin for other machines' rounding.
"""
import numpy as np
import pytest

import rnn_core as rc
from charrnn import training
from charrnn.kernels import batch as kernel_batch
from conftest import TEXT, random_params

pytestmark = pytest.mark.skipif(not kernel_batch.available(),
                                reason=f"mini-batch kernel unavailable: {kernel_batch.unavailable_reason()}")


def windows(corpus, B, T, gap=97):
    """B windows of the text, gap characters apart: inputs (B,T) and targets shifted by one."""
    X = np.stack([corpus.data[b * gap: b * gap + T] for b in range(B)])
    Y = np.stack([corpus.data[b * gap + 1: b * gap + T + 1] for b in range(B)])
    return X, Y


def rel_norm(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


# B = 1, less than a group, exactly one group (8), a group and a part (13), four groups (32)
@pytest.mark.parametrize("B, m, T", [(1, 30, 25), (3, 7, 5), (8, 100, 25), (13, 30, 10), (32, 100, 25)])
def test_batch_kernel_matches_the_numpy_batch_form(corpus, B, m, T):
    gap = (len(corpus.data) - T - 1) // B
    X, Y = windows(corpus, B, T, gap)
    params = random_params(corpus.vocab.K, m, seed=B + m, sig=0.1)
    h0 = np.random.default_rng(B).standard_normal((B, m)) * 0.3
    loss_r, g_r, h_r = rc.loss_and_grads_batch(params, X, Y, h0)
    loss_k, g_k, h_k = kernel_batch.kernel_loss_and_grads_batch(params, X, Y, h0)
    assert abs(loss_k - loss_r) <= 1e-12 * abs(loss_r)  # measured <= 3e-16
    assert rel_norm(h_k, h_r) <= 1e-12  # measured <= 8e-16
    for k in rc.PARAM_NAMES:
        assert rel_norm(g_k[k], g_r[k]) <= 1e-12, k  # mean gradients; measured <= 1.1e-15


def test_batch_kernel_gradients_pass_the_numerical_check(corpus):
    B, T, m = 10, 12, 6  # two groups of streams: the sum over groups is checked too
    X, Y = windows(corpus, B, T)
    params = random_params(corpus.vocab.K, m, seed=2, sig=0.1)
    h0 = np.random.default_rng(3).standard_normal((B, m)) * 0.3
    # The centred differences (h = 1e-4) carry their own rounding, about 5e-10 absolute here for the
    # numpy form and the kernel alike (a loss of ~50 known to 1e-16 relative, divided by 2h): for
    # entries below 1e-3 that alone exceeds 1e-6 relative. Hence a floor of 1e-3 in the denominator
    # (`relative_error`), and the numpy forms' threshold 1e-6; a wrong gradient is off by O(1).
    table = rc.gradcheck(params, X, Y, floor=1e-3,
                         grad_fn=lambda p: kernel_batch.kernel_loss_and_grads_batch(p, X, Y, h0)[:2])
    for name, row in table.items():
        assert row["max_rel"] < 1e-6, (name, row)


@pytest.mark.parametrize("B, changes", [(4, dict()), (32, dict()), (12, dict(optimizer="adam", eta=0.002))])
def test_first_updates_match_the_numpy_loop(B, changes):
    """5 updates at m = 100, T = 25: losses to 1e-12 relative, parameters to 1e-9 (measured 2e-14
    and 5e-12: AdaGrad's first steps amplify rounding, see tests/test_kernel.py)."""
    corpus = training.corpus_from_text(TEXT * 30, seq_length=25)
    cfg = training.Config(m=100, seq_length=25, max_updates=5, sample_every=0, batch_size=B, **{"eta": 0.05, **changes})
    ref = training.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = training.train(corpus, cfg.replace(backend="numba"), progress=False)
    assert fused.config.backend == "numba" and ref.config.backend == "numpy"
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    for k in rc.PARAM_NAMES:
        assert np.abs(fused.params[k] - ref.params[k]).max() <= 1e-9, k
    assert np.abs(fused.hprev - ref.hprev).max() <= 1e-9
    assert (fused.update, fused.pos, fused.best_update) == (ref.update, ref.pos, ref.best_update)


@pytest.mark.parametrize("B", [2, 4, 8])
def test_epochs_and_streams_follow_the_numpy_loop(corpus, B):
    """Two epochs of a small network (not chaotic: measured, losses within 8e-16 relative and W
    within 3e-15 after all updates): the same epoch ends, positions and losses."""
    cfg = training.Config(m=12, seq_length=10, epochs=2, sample_every=0, batch_size=B, eta=0.05)
    ref = training.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = training.train(corpus, cfg.replace(backend="numba"), progress=False)
    assert (fused.update, fused.epoch, fused.pos) == (ref.update, ref.epoch, ref.pos) and fused.epoch == 2
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    assert rel_norm(fused.params["W"], ref.params["W"]) <= 1e-12
    assert np.array_equal(fused.hprev, np.zeros_like(fused.hprev))  # reset at the end of the epoch


def test_mini_batches_train_with_the_kernel_by_default(corpus, monkeypatch):
    import charrnn.training.loop as tr

    def no_numpy(*a, **k):
        raise AssertionError("trained with the numpy loop, not the kernel")

    monkeypatch.setattr(tr, "_numpy_updates", no_numpy)
    run = training.train(corpus, training.Config(m=8, seq_length=10, max_updates=20, batch_size=4, sample_every=0), progress=False)
    assert run.config.backend == "numba" and run.update == 20


def test_batch_kernel_is_deterministic_and_resumes_bit_for_bit(corpus, tmp_path):
    from test_train import assert_runs_equal

    for changes in (dict(), dict(optimizer="adam", eta=0.005)):
        cfg = training.Config(m=12, seq_length=10, epochs=2, batch_size=5, sample_every=30, sample_length=20,
                        backend="numba", **changes)
        full = training.train(corpus, cfg, progress=False)
        assert_runs_equal(full, training.train(corpus, cfg, progress=False))
        ck = tmp_path / "b.npz"
        training.train(corpus, cfg.replace(max_updates=17), checkpoint=ck, progress=False)
        assert_runs_equal(full, training.train(corpus, cfg, run=training.load_checkpoint(ck), progress=False))
