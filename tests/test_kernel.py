"""The fused batch-1 numba kernel against the numpy reference; determinism, threads, resuming; and
the fallback when numba is unavailable (that test runs everywhere, numba or not).

Tolerances, from measurements on the project's machine (charrnn/kernels/single.py, "Precision"):
one loss or gradient agrees with the numpy form to about 1e-15 relative in norm at sig <= 0.1, so
1e-12 leaves three orders of magnitude for other machines' rounding, except where the network itself
amplifies rounding (each case says so).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from charrnn import training
from charrnn.kernels import single as kernel
from charrnn.kernels import vecmath as kernel_math
from charrnn.kernels import ops as kernel_ops
from conftest import random_params

ROOT = Path(__file__).resolve().parent.parent
needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"kernel unavailable: {kernel.unavailable_reason()}")


def rel_norm(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


# (37, 7, 0.5): weights N(0, 0.5^2) give W a gain of about 3 per step (spectral radius
# 0.5 sqrt(37)), so the recurrence multiplies any rounding difference along the sequence, in the
# numpy form as much as in the kernel. Measured: 7e-15 at T = 7, 3e-13 at T = 25 and 2e-10 at m = 100,
# T = 25 - hence T = 7 for this case. The other cases measure 1e-16 to 1e-15.
@needs_kernel
@pytest.mark.parametrize("m, T, sig", [(5, 25, 0.1), (100, 25, 0.01), (100, 25, 0.1), (37, 7, 0.5)])
def test_kernel_matches_reference_for_one_sequence(corpus, m, T, sig):
    params = random_params(corpus.vocab.K, m, seed=m + T, sig=sig)
    hprev = np.random.default_rng(1).standard_normal(m) * 0.5
    X, Y = corpus.data[10:10 + T], corpus.data[11:11 + T]
    loss_r, g_r, h_r = rc.loss_and_grads(params, X, Y, hprev)
    loss_k, g_k, h_k = kernel.kernel_loss_and_grads(params, X, Y, hprev)
    assert abs(loss_k - loss_r) <= 1e-12 * abs(loss_r)  # measured <= 4e-16
    assert rel_norm(h_k, h_r) <= 1e-12  # measured <= 2e-15
    for k in rc.PARAM_NAMES:
        # in norm: single entries where sums cancel can differ more, relative to themselves
        assert rel_norm(g_k[k], g_r[k]) <= 1e-12, k  # measured <= 7e-15


@needs_kernel
def test_tanh_and_exp_of_the_kernel_are_accurate():
    """The vectorised tanh and exp against libm (numpy), over their whole range and near 0."""
    z = np.concatenate([np.linspace(-30, 30, 20001), np.logspace(-300, 1, 2000), -np.logspace(-300, 1, 2000)])
    n = len(z)
    t = z.copy()
    kernel_math._tanh(t, np.empty(n), np.empty(n), np.empty(n, dtype=np.int64))
    ref = np.tanh(z)
    # 3 ulp (3 x 2.2e-16), relative to the value itself, also for tiny arguments: measured 2.2 ulp
    assert np.all(np.abs(t - ref) <= 3 * 2.2e-16 * np.abs(ref))
    x = np.linspace(-708, 0, 20001)
    e = x.copy()
    kernel_math._exp(e, np.empty(len(x)), np.empty(len(x), dtype=np.int64))
    assert np.all(np.abs(e - np.exp(x)) <= 2 * 2.2e-16 * np.exp(x))  # measured 1 ulp


@needs_kernel
def test_kernel_gradients_pass_the_numerical_check(corpus):
    params = random_params(corpus.vocab.K, 5, seed=0, sig=0.1)
    X, Y = corpus.data[:25], corpus.data[1:26]
    table = rc.gradcheck(params, X, Y, grad_fn=lambda p: kernel.kernel_loss_and_grads(p, X, Y, np.zeros(5))[:2])
    # the threshold of the numpy form's check (README, "How it is checked"): centred differences
    # with h = 1e-4 are good to about 1e-8 relative here; a wrong gradient is off by O(1)
    assert max(row["max_rel"] for row in table.values()) < 1e-6


@needs_kernel
@pytest.mark.parametrize("changes", [dict(), dict(optimizer="adam", eta=0.002)])
def test_first_updates_match_the_reference_loop(corpus, changes):
    """After 5 updates at the assignment's settings (m = 100, T = 25) the parameters agree to 1e-9.

    Measured: 4e-12 to 1e-11 with AdaGrad (depending on the kernel's order of sums), 3e-16 with
    Adam. AdaGrad's first steps amplify rounding: for an entry with a tiny gradient g, the step
    eta g / sqrt(g^2 + eps) changes by up to eta/sqrt(eps) = 1000 times a change of g. Later, the
    chaotic trajectory takes correct implementations apart."""
    cfg = training.Config(max_updates=5, sample_every=0, seq_length=25, **changes)
    ref = training.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = training.train(corpus, cfg.replace(backend="numba"), progress=False)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)  # measured 3e-14 to 1.3e-13
    for k in rc.PARAM_NAMES:
        assert np.abs(fused.params[k] - ref.params[k]).max() <= 1e-9, k
        assert np.abs(fused.best_params[k] - ref.best_params[k]).max() <= 1e-9, k
    assert (fused.update, fused.pos, fused.best_update) == (ref.update, ref.pos, ref.best_update)
    assert fused.opt_state.get("t") == ref.opt_state.get("t")


@needs_kernel
def test_kernel_is_the_default_and_deterministic(corpus):
    cfg = training.Config(m=20, seq_length=10, max_updates=300, sample_every=100, sample_length=20)
    a = training.train(corpus, cfg, progress=False)
    b = training.train(corpus, cfg, progress=False)
    assert a.config.backend == "numba"
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.params["W"], b.params["W"])
    assert a.samples == b.samples and [s["update"] for s in a.samples] == [0, 100, 200]


@needs_kernel
@pytest.mark.parametrize("order", ["sequential", "random", "chunks"])
def test_orders_in_the_kernel_follow_the_same_plan(corpus, order):
    """Across two epochs (two plans, 244 updates): the same positions and, up to rounding, losses.

    A small network (m = 12, sig = 0.01) is not chaotic: measured, the losses differ by at most
    2.5e-15 relative and W by 1.2e-14 in norm after the 244 updates; 1e-12 leaves a margin of 400."""
    cfg = training.Config(m=12, seq_length=10, epochs=2, sample_every=0, order=order, chunk_sequences=9)
    ref = training.train(corpus, cfg.replace(backend="numpy"), progress=False)
    fused = training.train(corpus, cfg.replace(backend="numba"), progress=False)
    assert (fused.update, fused.epoch, fused.pos) == (ref.update, ref.epoch, ref.pos)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    assert rel_norm(fused.params["W"], ref.params["W"]) <= 1e-12


@needs_kernel
@pytest.mark.parametrize("changes", [dict(), dict(order="random"), dict(order="chunks", chunk_sequences=7),
                                     dict(optimizer="adam", eta=0.005)])
def test_kernel_runs_resume_bit_for_bit(corpus, tmp_path, changes):
    from test_train import assert_runs_equal

    cfg = training.Config(m=12, seq_length=10, epochs=2, sample_every=30, sample_length=20, backend="numba", **changes)
    full = training.train(corpus, cfg, progress=False)
    ck = tmp_path / "k.npz"
    training.train(corpus, cfg.replace(max_updates=51), checkpoint=ck, progress=False)
    assert_runs_equal(full, training.train(corpus, cfg, run=training.load_checkpoint(ck), progress=False))


_FINGERPRINT = """
import sys, numpy as np
from charrnn import training
sys.path.insert(0, "tests")
from conftest import TEXT
corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
for B in (1, 5, 12):
    run = training.train(corpus, training.Config(m=16, seq_length=10, max_updates=40, sample_every=0, batch_size=B,
                                     backend="numba", eta=0.05), progress=False)
    print(B, run.config.backend, repr(float(run.losses.sum())), run.params["W"].tobytes().hex()[:64],
          repr(float(np.sum(run.params["V"] * np.cos(np.arange(run.params["V"].size)).reshape(run.params["V"].shape)))))
"""


@needs_kernel
def test_results_do_not_depend_on_the_number_of_threads():
    """The same runs (batch 1 and the mini-batch kernel with one and two groups of streams) in
    processes with 1 and with 2 numba and BLAS threads: equal to the last bit."""
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-c", _FINGERPRINT], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    assert [line.split()[1] for line in outs[0].splitlines()] == ["numba"] * 3  # the kernels ran


def test_fallback_without_numba(tmp_path, corpus_file):
    """Runs with or without numba installed: RNN_DISABLE_NUMBA makes the kernel unavailable."""
    env = dict(os.environ, RNN_DISABLE_NUMBA="1", RNN_PROGRESS="0")
    for batch in ("1", "4"):
        out = tmp_path / f"f{batch}.npz"
        proc = subprocess.run([sys.executable, "-m", "charrnn", "train", "--data", str(corpus_file), "--out", str(out),
                               "--m", "8", "--seq-length", "10", "--max-updates", "50", "--backend", "numba",
                               "--batch-size", batch], cwd=ROOT, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        notices = [line for line in proc.stderr.splitlines() if line.startswith("notice:")]
        assert len(notices) == 1 and "numpy form instead" in notices[0]
        assert "lowest smooth loss" in proc.stdout
    code = "from charrnn import training; print(training.resolve_backend('auto'), training.resolve_backend('auto', 8))"
    auto = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert auto.stdout.split() == ["numpy", "numpy"]


def test_the_kernels_compile_wherever_numba_is_installed():
    """The kernel tests skip where the kernel cannot run; this one makes sure that is only where
    numba is missing (or switched off), never because a kernel stopped compiling."""
    import importlib.util

    from charrnn.kernels import batch as kernel_batch

    if importlib.util.find_spec("numba") is None or os.environ.get("RNN_DISABLE_NUMBA"):
        pytest.skip("numba is not installed here (or RNN_DISABLE_NUMBA is set)")
    assert kernel.available(), kernel.unavailable_reason()
    assert kernel_batch.available(), kernel_batch.unavailable_reason()


@pytest.mark.skipif(kernel_ops.numba is None, reason="no numba: no numba cache")
def test_the_numba_cache_is_dropped_when_any_kernel_source_changes(tmp_path):
    """numba would keep serving a kernel whose callee in another file changed: the package clears
    its cache when the digest of the kernel sources differs from the one stored beside it."""
    import shutil

    here = tmp_path / "charrnn" / "kernels"  # the sources at their places relative to the kernels' folder
    for name in kernel_ops.KERNEL_SOURCES:
        (here / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "charrnn" / "kernels" / name, here / name)
    cache = here / "__pycache__"
    cache.mkdir()
    old = cache / "single.run_updates-1.py311.nbi"
    old.write_text("stale")
    kernel_ops._drop_stale_cache(str(here))  # no digest yet: cleared
    assert not old.exists() and (cache / "kernels.sha256").exists()
    kept = cache / "single.run_updates-2.py311.nbc"
    kept.write_text("fresh")
    kernel_ops._drop_stale_cache(str(here))  # same sources: kept
    assert kept.exists()
    with open(here / "ops.py", "a") as fh:  # a callee's file changes
        fh.write("\n# changed\n")
    kernel_ops._drop_stale_cache(str(here))
    assert not kept.exists()
