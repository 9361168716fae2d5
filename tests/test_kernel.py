"""The fused numba kernel against the numpy reference, and the fallback when numba is unavailable."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from charrnn import kernel
from conftest import random_params

pytestmark = pytest.mark.skipif(not kernel.available(), reason=f"kernel unavailable: {kernel.unavailable_reason()}")


# sig up to 0.1 at m = 100 (spectral radius of W about 1). Far beyond, the recurrence itself is
# chaotic and amplifies the last-digit differences of any two summation orders along the sequence.
@pytest.mark.parametrize("m, T, sig", [(5, 25, 0.1), (100, 25, 0.01), (100, 25, 0.1), (37, 7, 0.5)])
def test_kernel_matches_reference_for_one_sequence(corpus, m, T, sig):
    params = random_params(corpus.vocab.K, m, seed=m + T, sig=sig)
    hprev = np.random.default_rng(1).standard_normal(m) * 0.5
    X, Y = corpus.data[10:10 + T], corpus.data[11:11 + T]
    loss_r, g_r, h_r = rc.loss_and_grads(params, X, Y, hprev)
    loss_k, g_k, h_k = kernel.kernel_loss_and_grads(params, X, Y, hprev)
    assert abs(loss_k - loss_r) <= 1e-12 * abs(loss_r)
    assert np.linalg.norm(h_k - h_r) <= 1e-12 * np.linalg.norm(h_r)
    for k in rc.PARAM_NAMES:
        # in norm: single entries where sums cancel can differ more (see kernel.py)
        assert np.linalg.norm(g_k[k] - g_r[k]) <= 1e-12 * np.linalg.norm(g_r[k]), k


def test_kernel_gradients_pass_the_numerical_check(corpus):
    params = random_params(corpus.vocab.K, 5, seed=0, sig=0.1)
    X, Y = corpus.data[:25], corpus.data[1:26]
    table = rc.gradcheck(params, X, Y, grad_fn=lambda p: kernel.kernel_loss_and_grads(p, X, Y, np.zeros(5))[:2])
    assert max(row["max_rel"] for row in table.values()) < 1e-6


def test_first_updates_match_the_reference_loop(corpus):
    """After 5 updates (m = 100, the assignment's settings) the parameters agree to 1e-9.

    Not later: AdaGrad's first steps amplify rounding, so correct implementations drift apart."""
    cfg = rc.Config(max_updates=5, sample_every=0, seq_length=25)
    ref = rc.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = rc.train(corpus, cfg.replace(backend="numba"), progress=False)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    for k in rc.PARAM_NAMES:
        assert np.abs(fused.params[k] - ref.params[k]).max() <= 1e-9, k
        assert np.abs(fused.best_params[k] - ref.best_params[k]).max() <= 1e-9, k
    assert (fused.update, fused.pos, fused.best_update) == (ref.update, ref.pos, ref.best_update)


def test_kernel_is_the_default_and_deterministic(corpus):
    cfg = rc.Config(m=20, seq_length=10, max_updates=300, sample_every=100, sample_length=20)
    a = rc.train(corpus, cfg, progress=False)
    b = rc.train(corpus, cfg, progress=False)
    assert a.config.backend == "numba"
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.params["W"], b.params["W"])
    assert a.samples == b.samples and [s["update"] for s in a.samples] == [0, 100, 200]


def test_fallback_without_numba(tmp_path, corpus_file):
    env = dict(os.environ, RNN_DISABLE_NUMBA="1", RNN_PROGRESS="0")
    out = tmp_path / "f.npz"
    proc = subprocess.run([sys.executable, "-m", "rnn_core", "train", "--data", str(corpus_file), "--out", str(out),
                           "--m", "8", "--seq-length", "10", "--max-updates", "50", "--backend", "numba"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "numpy form instead" in notices[0]
    assert "lowest smooth loss" in proc.stdout
    code = "import rnn_core as rc; print(rc.resolve_backend('auto'))"
    auto = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, env=env)
    assert auto.stdout.strip() == "numpy"


def test_adam_in_the_kernel_matches_the_reference_loop(corpus):
    cfg = rc.Config(max_updates=5, sample_every=0, optimizer="adam", eta=0.002)
    ref = rc.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = rc.train(corpus, cfg.replace(backend="numba"), progress=False)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    assert fused.opt_state["t"] == ref.opt_state["t"] == 5
    for k in rc.PARAM_NAMES:
        assert np.abs(fused.params[k] - ref.params[k]).max() <= 1e-9, k
        assert np.abs(fused.opt_state["v"][k] - ref.opt_state["v"][k]).max() <= 1e-12, k


@pytest.mark.parametrize("order", ["random", "chunks"])
def test_orders_in_the_kernel_follow_the_same_plan(corpus, order):
    """Across two epochs (two plans): the same positions, resets and, up to rounding, losses."""
    cfg = rc.Config(m=12, seq_length=10, epochs=2, sample_every=0, order=order, chunk_sequences=9)
    ref = rc.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = rc.train(corpus, cfg.replace(backend="numba"), progress=False)
    assert (fused.update, fused.epoch, fused.pos) == (ref.update, ref.epoch, ref.pos)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-8)  # small net: drift stays tiny
    assert np.linalg.norm(fused.params["W"] - ref.params["W"]) <= 1e-7 * np.linalg.norm(ref.params["W"])


@pytest.mark.parametrize("changes", [dict(order="random"), dict(order="chunks", chunk_sequences=7),
                                     dict(optimizer="adam", eta=0.005)])
def test_kernel_runs_resume_bit_for_bit(corpus, tmp_path, changes):
    from test_train import assert_runs_equal

    cfg = rc.Config(m=12, seq_length=10, epochs=2, sample_every=30, sample_length=20, backend="numba", **changes)
    full = rc.train(corpus, cfg, progress=False)
    ck = tmp_path / "k.npz"
    rc.train(corpus, cfg.replace(max_updates=51), checkpoint=ck, progress=False)
    assert_runs_equal(full, rc.train(corpus, cfg, run=rc.load_checkpoint(ck), progress=False))
