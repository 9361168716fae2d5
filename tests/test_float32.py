"""The float32 mode of the batch-1 kernel (`Config(dtype="float32")`, `train --dtype float32`): its
gradients against the float64 numpy form, its own gradient check, its runs (deterministic,
resumable bit for bit, holding float32 values), and where it is refused.

Tolerances: float32's unit roundoff is 6e-8 (machine epsilon 1.2e-7). A loss or gradient of one
sequence is a chain of T = 25 steps of sums of about 100 rounded products, so its error in norm is
some tens of epsilons (measured: 4e-8 to 6e-7 relative, 1.1e-6 to 2.8e-6 for the deliberately
chaotic case, m = 37 with weights of sig 0.5);
100 epsilons, 1.2e-5, leaves room, and a wrong gradient is off by order 1.
"""
import subprocess
import sys

import numpy as np
import pytest

import rnn_core as rc
from charrnn import kernels, training
from charrnn.kernels import single as kernel
from charrnn.kernels import vecmath as kernel_math
from conftest import random_params
from test_kernel import ROOT, rel_norm
from test_train import assert_runs_equal

needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"kernel unavailable: {kernel.unavailable_reason()}")
EPS32 = float(np.finfo(np.float32).eps)


@needs_kernel
@pytest.mark.parametrize("m, T, sig", [(5, 25, 0.1), (100, 25, 0.01), (100, 25, 0.1), (37, 7, 0.5)])
def test_float32_kernel_matches_the_float64_form_for_one_sequence(corpus, m, T, sig):
    """The same (float32-valued) weights and sequence: the float32 kernel against the exact numpy form."""
    params = kernels.float32_values(random_params(corpus.vocab.K, m, seed=m + T, sig=sig))
    hprev = (np.random.default_rng(1).standard_normal(m) * 0.5).astype(np.float32).astype(np.float64)
    X, Y = corpus.data[10:10 + T], corpus.data[11:11 + T]
    loss_r, g_r, h_r = rc.loss_and_grads(params, X, Y, hprev)
    loss_k, g_k, h_k = kernel.kernel_loss_and_grads(params, X, Y, hprev, dtype=np.float32)
    assert abs(loss_k - loss_r) <= 100 * EPS32 * abs(loss_r)  # measured <= 4e-8
    assert rel_norm(h_k, h_r) <= 100 * EPS32  # measured <= 1.1e-6
    for k in rc.PARAM_NAMES:
        assert rel_norm(g_k[k], g_r[k]) <= 100 * EPS32, k  # measured <= 2.8e-6
        assert g_k[k].dtype == np.float64 and np.array_equal(g_k[k].astype(np.float32), g_k[k]), k


@needs_kernel
@pytest.mark.parametrize("m, sig, spot", [(5, 0.1, None), (100, 0.01, 20)])
def test_float32_gradients_pass_their_own_check(corpus, m, sig, spot):
    """Centred differences of the float64 loss (good to about 1e-8 here) against the float32
    kernel's analytic gradients, entry by entry: measured at most 1.5e-6 (m = 5) and 4e-6 (m = 100;
    at sig 0.01 dW's entries are small and the float64 form itself reaches 5e-6 to 9e-6 there,
    README) relative. 1e-4 is the
    float32 threshold; a wrong gradient is off by order 1."""
    table = training.gradcheck_on_text(corpus.data, corpus.vocab.K, m, 25, sig, n_spot=spot, dtype="float32")
    assert max(row["max_rel"] for row in table.values()) < 1e-4


@needs_kernel
@pytest.mark.parametrize("sig, seed", [(1.0, 1), (2.0, 0), (5.0, 0)])
def test_float32_adds_no_failure_of_its_own_at_large_weights(corpus, sig, seed):
    """At large weights float32 rounds some gradient entries by about 1e-5 of the largest one, which
    the check allows (GRADCHECK_SCALE_TOL): wherever the float64 check fails no entry of a gradient,
    the float32 check fails none either. (At sig 2 here both fail some: the centred differences
    themselves are off by up to 7e-4 in float64, the curvature is so large.)"""
    double = training.gradcheck_on_text(corpus.data, corpus.vocab.K, 5, 25, sig, seed=seed)
    single = training.gradcheck_on_text(corpus.data, corpus.vocab.K, 5, 25, sig, seed=seed, dtype="float32")
    assert all(single[k]["failed"] == 0 for k in single if double[k]["failed"] == 0), (single, double)


@needs_kernel
def test_tanh_and_exp_in_float32_are_within_a_few_ulp():
    """The float32 polynomials (exp to r^7 after reduction by ln 2) against libm's float64 values,
    in float32 ulp: measured at most 2.4 ulp for tanh (its division and subtraction round too) and
    0.94 for exp; held to 3 and 2."""
    z = np.linspace(-12, 12, 4001).astype(np.float32)
    t = z.copy()
    n = len(z) + 8
    kernel_math._tanh(t, np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.int32))
    ref = np.tanh(z.astype(np.float64))
    assert t.dtype == np.float32
    assert np.all(np.abs(t - ref) <= 3 * np.spacing(np.abs(ref).astype(np.float32)))
    e = np.linspace(-80, 0, 4001).astype(np.float32)
    want = np.exp(e.astype(np.float64))
    kernel_math._exp(e, np.empty(len(e), np.float32), np.empty(len(e), np.int32))
    assert np.all(np.abs(e - want) <= 2 * np.spacing(want.astype(np.float32)))


@needs_kernel
def test_a_float32_run_is_deterministic_and_holds_float32_values(corpus):
    cfg = training.Config(m=20, seq_length=10, max_updates=300, sample_every=100, sample_length=20, dtype="float32")
    a = training.train(corpus, cfg, progress=False)
    b = training.train(corpus, cfg, progress=False)
    assert_runs_equal(a, b)
    assert a.samples == b.samples
    arrays = list(a.params.values()) + list(a.best_params.values()) + list(a.opt_state["G"].values()) + [a.hprev]
    assert all(v.dtype == np.float64 and np.array_equal(v.astype(np.float32), v) for v in arrays)


@needs_kernel
def test_a_float32_run_follows_the_float64_run(corpus):
    """A small network (m = 12, not chaotic) over two epochs, 244 updates: the float32 losses stay
    within 1e-4 of the float64 ones, relative (measured 1.2e-6); the first loss, before any
    update, within 100 epsilons (measured 2e-10). At m = 100 the two part like any two roundings:
    AdaGrad's first steps amplify them (test_kernel.py)."""
    cfg = training.Config(m=12, seq_length=10, epochs=2, sample_every=0)
    exact = training.train(corpus, cfg.replace(backend="numba"), progress=False)
    single = training.train(corpus, cfg.replace(dtype="float32"), progress=False)
    assert (single.update, single.epoch, single.pos) == (exact.update, exact.epoch, exact.pos)
    assert abs(single.losses[0] - exact.losses[0]) <= 100 * EPS32 * exact.losses[0]
    assert np.max(np.abs(single.losses - exact.losses) / exact.losses) < 1e-4


@needs_kernel
@pytest.mark.parametrize("changes", [dict(), dict(order="random"), dict(optimizer="adam", eta=0.005)])
def test_float32_runs_resume_bit_for_bit(corpus, tmp_path, changes):
    cfg = training.Config(m=12, seq_length=10, epochs=2, sample_every=30, sample_length=20, dtype="float32", **changes)
    full = training.train(corpus, cfg, progress=False)
    ck = tmp_path / "k.npz"
    training.train(corpus, cfg.replace(max_updates=51), checkpoint=ck, progress=False)
    resumed = training.train(corpus, cfg, run=training.load_checkpoint(ck), progress=False)
    assert resumed.config.dtype == "float32"
    assert_runs_equal(full, resumed)


@needs_kernel
def test_a_float32_run_holding_a_value_float32_cannot_hold_is_refused(corpus):
    """The kernel would round it silently (1e39 to inf): a resumed float32 run is checked first."""
    cfg = training.Config(m=8, seq_length=10, max_updates=5, sample_every=0, dtype="float32")
    run = training.train(corpus, cfg, progress=False)
    run.params["b"][0] = 1e39
    with pytest.raises(rc.RNNError, match="float32 cannot hold"):
        training.train(corpus, cfg.replace(max_updates=10), run=run, progress=False)
    run.params["b"][0] = 0.1  # not a float32 value either
    with pytest.raises(rc.RNNError, match="float32 cannot hold"):
        training.train(corpus, cfg.replace(max_updates=10), run=run, progress=False)


def test_float32_is_refused_outside_the_batch_1_kernel():
    for changes in (dict(batch_size=4), dict(backend="numpy"), dict(backend="steps"), dict(dtype="float16")):
        with pytest.raises(rc.RNNError):
            training.Config(**{"dtype": "float32", **changes})


def test_a_float32_run_without_numba_stops_with_one_line(tmp_path, corpus_file):
    """Not a silent float64 run: where the kernel cannot run, a float32 run is refused."""
    env = {"RNN_DISABLE_NUMBA": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "charrnn", "train", "--data", str(corpus_file), "--dtype",
                          "float32", "--max-updates", "3", "--out", str(tmp_path / "r.npz"), "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "float32 needs the numba kernel" in out.stderr, out.stderr
    assert not (tmp_path / "r.npz").exists()
