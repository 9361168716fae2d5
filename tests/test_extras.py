"""Beyond the assignment: Adam, training orders, validation, the n-gram baseline, the look inside,
background training."""
import math

import numpy as np
import pytest

import rnn_core as rc
from charrnn import report, study, training
from charrnn.training import heldout
from conftest import TEXT
from test_train import assert_runs_equal


def cfg(**kw):
    base = dict(m=12, seq_length=10, epochs=2, sample_every=0, seed=3, backend="numpy")
    base.update(kw)
    return training.Config(**base)


# ----------------------------------------------------------------------------- Adam
def test_adam_step_on_hand_made_numbers():
    params = {"w": np.array([1.0, -1.0])}
    g = {"w": np.array([0.5, -2.0])}
    state = rc.adam_init(params)
    rc.adam_step(params, g, state, eta=0.01)
    # t = 1: m = 0.1 g, v = 0.001 g^2; m_hat = g, v_hat = g^2: the step is eta * sign(g)
    np.testing.assert_allclose(state["m"]["w"], [0.05, -0.2], rtol=1e-15)
    np.testing.assert_allclose(state["v"]["w"], [0.00025, 0.004], rtol=1e-12)
    np.testing.assert_allclose(params["w"], [0.99, -0.99], rtol=0, atol=1e-9)
    rc.adam_step(params, g, state, eta=0.01)  # same gradient again: m_hat = g, v_hat = g^2 again
    assert state["t"] == 2
    np.testing.assert_allclose(params["w"], [0.98, -0.98], rtol=0, atol=1e-9)


def test_adam_training_resumes_exactly(corpus, tmp_path):
    c = cfg(optimizer="adam", eta=0.005, epochs=2)
    full = training.train(corpus, c, progress=False)
    ck = tmp_path / "a.npz"
    training.train(corpus, c.replace(max_updates=70), checkpoint=ck, progress=False)
    back = training.load_checkpoint(ck)
    assert back.opt_state["t"] == 70
    assert_runs_equal(full, training.train(corpus, c, run=back, progress=False))
    assert full.losses[-20:].mean() < full.losses[:20].mean()


# ----------------------------------------------------------------------------- orders
def test_random_order_plan_is_valid_and_resets_every_time(corpus):
    c = cfg(order="random")
    N, T = len(corpus.data), c.seq_length
    starts, resets = training.epoch_plan(c, N, 0)
    assert len(starts) == (N - 1) // T and resets.all()
    assert starts.min() >= 0 and (starts + T + 1 <= N).all()
    assert not np.array_equal(starts, training.epoch_plan(c, N, 1)[0])  # a new draw each epoch
    assert np.array_equal(starts, training.epoch_plan(c, N, 0)[0])  # and the same draw again on resume


def test_chunk_order_shuffles_whole_chunks(corpus):
    c = cfg(order="chunks", chunk_sequences=7)
    N, T = len(corpus.data), c.seq_length
    starts, resets = training.epoch_plan(c, N, 0)
    seq = np.arange((N - 1) // T) * T
    assert sorted(starts.tolist()) == seq.tolist()  # every sequence once
    assert not np.array_equal(starts, seq)  # in another order
    heads = np.flatnonzero(resets)
    assert (starts[heads] % (7 * T) == 0).all()  # resets exactly at chunk starts
    for a, b in zip(heads, list(heads[1:]) + [len(starts)]):
        assert (np.diff(starts[a:b]) == T).all()  # consecutive inside a chunk


@pytest.mark.parametrize("order", ["random", "chunks"])
def test_orders_train_reset_hprev_and_resume(corpus, tmp_path, monkeypatch, order):
    c = cfg(order=order, chunk_sequences=5)
    seen = []
    import charrnn.training.loop as tr

    real = tr.loss_and_grads

    def spy(params, X, Y, hprev):
        seen.append((X.copy(), np.abs(hprev).sum()))
        return real(params, X, Y, hprev)

    monkeypatch.setattr(tr, "loss_and_grads", spy)
    full = training.train(corpus, c, progress=False)
    monkeypatch.undo()
    starts, resets = training.epoch_plan(c, len(corpus.data), 0)
    for (X, hsum), s, r in zip(seen, starts, resets):
        assert np.array_equal(X, corpus.data[s:s + 10])
        assert (hsum == 0) == bool(r)
    ck = tmp_path / "o.npz"
    training.train(corpus, c.replace(max_updates=45), checkpoint=ck, progress=False)
    assert_runs_equal(full, training.train(corpus, c, run=training.load_checkpoint(ck), progress=False))


def test_bad_order_settings_are_refused():
    with pytest.raises(rc.RNNError, match="order"):
        training.Config(order="backwards")
    with pytest.raises(rc.RNNError, match="batch_size 1"):
        training.Config(order="random", batch_size=4)
    with pytest.raises(rc.RNNError, match="holdout"):
        training.Config(eval_every=10)


# ----------------------------------------------------------------------------- validation
def test_validation_is_evaluated_on_the_held_out_part_only(corpus, tmp_path):
    c = cfg(holdout=0.2, eval_every=16, epochs=2)  # 2 epochs of 97 updates: evaluations at 0, 16, ..., 192
    run = training.train(corpus, c, progress=False)
    train_part, held = corpus.split(0.2)
    assert run.updates_per_epoch == (len(train_part.data) - 1) // 10 == 97
    assert run.val_updates == list(range(0, run.update + 1, 16))
    i = int(np.argmin(run.val_losses))
    assert run.best_val == run.val_losses[i] and run.best_val_update == run.val_updates[i]
    assert heldout.heldout_loss(run.params, held) != run.val_losses[-1]  # 194 updates, last evaluation at 192
    # each evaluation reads the held-out blocks from the hidden state the run carries at that update
    stop = training.train(corpus, c.replace(max_updates=192), progress=False)
    assert heldout.heldout_loss(stop.params, held, stop.hprev) == stop.val_losses[-1] == run.val_losses[-1]
    ck = tmp_path / "v.npz"
    training.train(corpus, c.replace(max_updates=50), checkpoint=ck, progress=False)
    assert training.load_checkpoint(ck).val_updates == [0, 16, 32, 48]
    resumed = training.train(corpus, c, run=training.load_checkpoint(ck), progress=False)
    assert resumed.val_losses == run.val_losses and resumed.val_updates == run.val_updates
    assert_runs_equal(run, resumed)


def test_validation_with_the_kernel(corpus, monkeypatch):
    """The kernel evaluates on the same grid as the numpy loop, and it is the kernel that trains."""
    from charrnn.kernels import single as kernel
    import charrnn.training.loop as tr

    if not kernel.available():
        pytest.skip(f"the kernel does not run here: {kernel.unavailable_reason()}")

    def no_numpy(*a, **k):
        raise AssertionError("trained with the numpy loop, not the kernel")

    monkeypatch.setattr(tr, "_numpy_updates", no_numpy)
    run = training.train(corpus, cfg(holdout=0.2, eval_every=15, backend="numba"), progress=False)
    monkeypatch.undo()
    ref = training.train(corpus, cfg(holdout=0.2, eval_every=15, backend="numpy"), progress=False)
    assert run.config.backend == "numba" and run.val_updates == ref.val_updates
    assert run.val_updates[:3] == [0, 15, 30]
    # the first evaluation is of the initial parameters, which the two backends share exactly
    assert run.val_losses[0] == ref.val_losses[0]


# ----------------------------------------------------------------------------- n-gram baseline
@pytest.fixture(scope="module")
def kn():
    text = TEXT * 3
    return study.KneserNey(text, "".join(sorted(set(text + "Zq"))), max_order=5)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("context", ["", "the Cour", "of hu", "zzzzqq", "\nthe"])
def test_ngram_probabilities_sum_to_one(kn, order, context):
    p = kn.distribution(context, order)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p > 0).all()  # unseen characters ("Z", "q") too


def test_ngram_higher_orders_predict_better_on_seen_text(kn):
    text = TEXT * 3
    bits = [kn.bits_per_char(text, len(text) - 300, o) for o in (1, 2, 3, 4, 5)]
    assert all(a > b for a, b in zip(bits, bits[1:]))
    assert bits[0] < math.log2(kn.K)


def test_ngram_order_one_is_a_discounted_unigram():
    kn = study.KneserNey("aab", "abc", max_order=2)
    D = kn.levels[(1, "raw")][1]  # n1 = 1 ("b"), n2 = 1 ("a"): D = 1/3
    assert D == pytest.approx(1 / 3)
    assert kn.prob("", "a", 1) == pytest.approx((2 - D) / 3 + D * 2 / 3 / 3)
    assert kn.prob("", "c", 1) == pytest.approx(D * 2 / 3 / 3)


# ----------------------------------------------------------------------------- inside the network
def test_text_features_and_unit_picking():
    text = "ROMEO.\nHello [aside] there\n"
    f = report.text_features(text)
    assert f["inside [brackets]"].tolist() == [c in "[aside]" and 13 <= i <= 19 for i, c in enumerate(text)]
    assert f["end of line"].sum() == 2 and f["speaker-name line"][:6].all() and not f["speaker-name line"][8]
    rng = np.random.default_rng(0)
    H = rng.standard_normal((len(text), 6)) * 0.1
    H[:, 4] = np.where(f["inside [brackets]"], -0.9, 0.2)  # a planted unit
    unit, r = report.pick_units(H, f)["inside [brackets]"]
    assert unit == 4 and r == pytest.approx(-1.0)


def test_top_candidates_are_the_most_probable_next_characters(corpus):
    """Checked against the sampler's own distribution, step by step (an independent path)."""
    params = rc.init_params(corpus.vocab.K, 8, np.random.default_rng(0), 0.5)
    idx = corpus.data[:30]
    top, probs = report.top_candidates(params, idx, k=4)
    assert top.shape == probs.shape == (30, 4)
    h = np.zeros(8)
    for t, x in enumerate(idx):
        h = np.tanh(params["W"] @ h + params["U"][:, x] + params["b"])
        p = rc.sampling_probs(params["V"] @ h + params["c"])  # (K,)
        assert np.allclose(probs[t], p[top[t]], rtol=1e-12, atol=0)  # same sums, summed in another order
        assert probs[t, -1] >= np.delete(p, top[t]).max()  # nothing left out beats the 4th candidate
        assert (np.diff(probs[t]) <= 0).all()


def test_sampled_text_measures():
    assert report.distinct_word_ratio("the cat the dog") == 0.75
    assert report.known_word_fraction("the zzz", "the cat") == 0.5


# ----------------------------------------------------------------------------- background training
def test_prefetch_trains_in_the_background_and_equals_training_here(corpus, tmp_path):
    c1, c2 = cfg(epochs=1), cfg(epochs=2)
    started = study.prefetch(corpus, [[c1, c2]], runs_dir=tmp_path, workers=1)
    assert len(started) == 2
    a = study.cached_run(corpus, c2, runs_dir=tmp_path)
    assert_runs_equal(a, training.train(corpus, c2, progress=False))
    assert study.cached_run(corpus, c1, runs_dir=tmp_path).update == a.updates_per_epoch
    assert study.prefetch(corpus, [[c1, c2]], runs_dir=tmp_path) == []  # cached: nothing to do


def test_workers_get_one_numba_thread_and_the_notebook_keeps_its_numba_variables():
    """numba rereads its NUMBA_ variables at every compilation and stops it if one changed after its
    threads started: a first render failed so when the background workers' thread count was set
    through NUMBA_NUM_THREADS in the notebook's own environment. The workers set it themselves."""
    import os

    from charrnn.kernels import ops as kernel_ops
    from charrnn.study import scheduler

    def numba_vars():
        return {k: v for k, v in os.environ.items() if k.startswith("NUMBA_")}

    before = numba_vars()
    with scheduler._one_thread_each():
        assert numba_vars() == before
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"  # BLAS: still one thread per worker
    if kernel_ops.numba is not None:
        assert scheduler.submit_job(kernel_ops.numba.get_num_threads).result(timeout=120) == 1


def test_a_run_another_process_is_training_is_waited_for_not_refused(corpus, tmp_path, capsys):
    """Two workers may ask for the same run (the converged run's job reads every setting's runs
    while the last sweep still trains): the second waits for the first's lock, then loads the run
    instead of failing with "being written by another process". A notebook waiting so sees a bar."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from charrnn.study import cache

    c = cfg(epochs=1)
    path = cache.run_path(corpus, c, tmp_path)
    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from charrnn.training.checkpoint import checkpoint_lock\n"
                               f"with checkpoint_lock({str(path)!r}):\n"
                               "    print('held', flush=True); time.sleep(2.0)\n"],
                              cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        run = study.cached_run(corpus, c, runs_dir=tmp_path, progress=True)
        assert time.monotonic() - t0 > 1.0  # it waited for the holder (2 s from "held")
        assert "(trained by another process)" in capsys.readouterr().err
        assert holder.wait(10) == 0  # the holder ran its course
        assert_runs_equal(run, training.train(corpus, c, progress=False))
    finally:
        holder.kill()


def test_background_workers_exit_when_their_parent_dies(tmp_path):
    """A notebook kernel killed outright must not leave its workers training for minutes: they
    notice the parent is gone and exit, leaving their last checkpoint to be resumed."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, time; from charrnn import study, training; from charrnn.study import scheduler\n"
        "sys.path.insert(0, 'tests'); from conftest import TEXT\n"
        "corpus = training.corpus_from_text(TEXT * 40, seq_length=10)\n"
        "cfg = training.Config(m=64, seq_length=10, epochs=10**6, max_updates=10**8, sample_every=0, backend='numpy')\n"
        f"study.prefetch(corpus, [cfg], runs_dir={str(tmp_path)!r}, workers=1)\n"
        "time.sleep(3.0)\n"
        "print(*scheduler._POOL._processes, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and all(os.kill(p, 0) is None for p in workers)  # alive while the parent is
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15  # the watchdog looks once a second; 15 s allows a loaded machine
        alive = list(workers)
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in alive if _running(p)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_worker_started_after_its_parent_died_exits(tmp_path):
    """The parent dies before its spawned workers have even started (a short script, a kernel killed
    at once): the workers must not take init for their parent and live on; they exit within seconds."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    marker = f"RNN_TEST_ORPHAN_{os.getpid()}_{time.monotonic_ns()}"
    code = ("import os; from charrnn.study import scheduler\n"
            "scheduler.submit_job(len, 'x', workers=2)\n"  # starts the pool's workers
            "os._exit(0)\n")  # gone before they import anything
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ, **{marker: "1"}), timeout=120)

    def survivors():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if marker.encode() in fh.read() and _running(int(pid)):
                        found.append(int(pid))
            except OSError:
                continue
        return found

    deadline = time.monotonic() + 20  # spawned workers import the package first; 20 s allows a loaded machine
    alive = survivors()
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = survivors()
    for pid in alive:
        os.kill(pid, 9)
    assert not alive, f"workers {alive} outlived a parent that died before they started"


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an exited child not yet reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
