"""The training loop: the semantics of docs/algorithm.md, AdaGrad and clipping, determinism, resume, run cache."""
import math

import numpy as np
import pytest

import rnn_core as rc
from charrnn import study, training
from conftest import TEXT


BACKENDS = ["numpy", "numba"]  # the reference loop and the fused kernel: same semantics


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def small_config(**kw):
    base = dict(m=16, seq_length=10, epochs=2, sample_every=40, sample_length=30, seed=3, backend="numpy")
    base.update(kw)
    return training.Config(**base)


def assert_runs_equal(a, b):
    """Equal runs, whatever the optimiser: every array of the optimiser state compared."""
    assert a.update == b.update and a.epoch == b.epoch and a.pos == b.pos
    assert np.array_equal(a.losses, b.losses)
    assert np.array_equal(a.smooth_losses, b.smooth_losses)
    for k in rc.PARAM_NAMES:
        assert np.array_equal(a.params[k], b.params[k]), k
        assert np.array_equal(a.best_params[k], b.best_params[k]), k
    for name, state in a.opt_state.items():
        if isinstance(state, dict):
            for k in rc.PARAM_NAMES:
                assert np.array_equal(state[k], b.opt_state[name][k]), (name, k)
        else:
            assert state == b.opt_state[name]
    assert np.array_equal(a.hprev, b.hprev)
    assert a.best_update == b.best_update and a.best_smooth == b.best_smooth
    assert a.samples == b.samples


# ----------------------------------------------------------------------------- optimiser
def test_adagrad_step_on_hand_made_numbers():
    params = {"w": np.array([1.0, -2.0, 0.0])}
    grads = {"w": np.array([0.5, -3.0, 0.0])}
    state = rc.adagrad_init(params)
    rc.adagrad_step(params, grads, state, eta=0.1, eps=1e-8)
    np.testing.assert_array_equal(state["G"]["w"], [0.25, 9.0, 0.0])
    # 1 - 0.1 * 0.5 / sqrt(0.25 + 1e-8), -2 + 0.1 * 3 / sqrt(9 + 1e-8), 0 - 0
    np.testing.assert_allclose(params["w"], [0.9000000020, -1.9000000000555556, 0.0], rtol=0, atol=1e-12)
    rc.adagrad_step(params, grads, state, eta=0.1, eps=1e-8)
    np.testing.assert_array_equal(state["G"]["w"], [0.5, 18.0, 0.0])
    np.testing.assert_allclose(params["w"], [0.9 - 0.1 / (2 * math.sqrt(0.5)), -1.9 + 0.1 * 3 / math.sqrt(18), 0.0],
                               rtol=0, atol=1e-8)


def test_clipping_is_elementwise_and_leaves_the_input_alone():
    g = {"a": np.array([-7.0, -5.0, 0.3, 5.0, 9.0])}
    clipped = rc.clip_grads(g, 5.0)
    np.testing.assert_array_equal(clipped["a"], [-5.0, -5.0, 0.3, 5.0, 5.0])
    np.testing.assert_array_equal(g["a"], [-7.0, -5.0, 0.3, 5.0, 9.0])


def test_loss_function_does_not_clip(corpus):
    """Large weights give gradients beyond 5; loss_and_grads must return them unclipped."""
    rng = np.random.default_rng(0)
    params = rc.init_params(corpus.vocab.K, 10, rng, sig=3.0)
    _, g, _ = rc.loss_and_grads(params, corpus.data[:25], corpus.data[1:26], np.zeros(10))
    assert max(np.abs(v).max() for v in g.values()) > 5.0


def test_training_step_clips(corpus, backend):
    """With sig=3 the raw gradients exceed the clip; the first AdaGrad step must use clipped ones."""
    cfg = small_config(sig=3.0, max_updates=1, clip=0.5, sample_every=0, backend=backend)
    run0 = training.new_run(corpus, cfg)
    X, Y = corpus.data[:10], corpus.data[1:11]
    _, g, _ = rc.loss_and_grads(run0.params, X, Y, np.zeros(16))
    assert max(np.abs(v).max() for v in g.values()) > 0.5
    run = training.train(corpus, cfg, progress=False)
    for k in rc.PARAM_NAMES:
        want = np.abs(np.clip(g[k], -0.5, 0.5))
        got = np.sqrt(run.opt_state["G"][k])  # G = g_clipped^2 after one step
        assert np.linalg.norm(got - want) <= 1e-12 * np.linalg.norm(want), k  # in norm: see kernel.py
        assert got.max() <= 0.5


# ----------------------------------------------------------------------------- loop semantics
def test_loop_positions_epochs_and_samples(corpus, backend):
    cfg = small_config(backend=backend, epochs=2, sample_every=7, sample_until=30)
    N, T = len(corpus.data), cfg.seq_length
    seen = []
    training.train(corpus, cfg, progress=False, callback=lambda r: seen.append((r.update, r.epoch, r.pos)) and False)
    per_epoch = (N - 1) // T
    assert len(seen) == 2 * per_epoch
    positions = [p for (_, _, p) in seen]
    # within an epoch e goes 0, T, 2T, ...; the last sequence ends at most at N-1
    assert positions[: per_epoch - 1] == [T * (i + 1) for i in range(per_epoch - 1)]
    assert positions[per_epoch - 1] == 0 and seen[per_epoch - 1][1] == 1  # new epoch: e = 0
    last = positions[per_epoch - 2]  # start of the epoch's last sequence, as the loop reached it
    assert last + T + 1 <= N  # it fit: its targets end at data[N - 1] at the latest
    assert last + T + T + 1 > N  # and one more would not have: fewer than T + 1 characters were left
    run = training.train(corpus, cfg, progress=False)
    assert [s["update"] for s in run.samples] == [0, 7, 14, 21, 28]
    assert all(len(s["text"]) == 30 for s in run.samples)
    assert run.samples[0]["smooth_loss"] == run.losses[0]


def test_hprev_is_carried_and_reset_at_each_epoch(corpus, backend):
    cfg = small_config(backend=backend, epochs=2, sample_every=0)
    hs = []
    training.train(corpus, cfg, progress=False, callback=lambda r: hs.append(r.hprev.copy()) and False)
    per_epoch = (len(corpus.data) - 1) // cfg.seq_length
    assert np.abs(hs[0]).sum() > 0
    assert np.array_equal(hs[per_epoch - 1], np.zeros(16))


def test_smooth_loss_and_best_model(corpus, backend):
    cfg = small_config(backend=backend, epochs=3, sample_every=0, smooth=0.9)
    run = training.train(corpus, cfg, progress=False)
    L, S = run.losses, run.smooth_losses
    assert S[0] == L[0]
    np.testing.assert_allclose(S[1:], 0.9 * S[:-1] + 0.1 * L[1:], rtol=1e-15)
    assert run.best_update == int(np.argmin(S)) and run.best_smooth == S.min()
    # the best parameters are those that produced the loss of the best update
    upto = training.train(corpus, cfg.replace(max_updates=run.best_update), progress=False)
    for k in rc.PARAM_NAMES:
        assert np.array_equal(upto.params[k], run.best_params[k])


def test_initial_smooth_loss_is_T_log_K(corpus):
    run = training.train(corpus, training.Config(max_updates=1, sample_every=0), progress=False)
    assert run.smooth_losses[0] == pytest.approx(25 * math.log(corpus.vocab.K), rel=0.02)


def test_learns_a_periodic_text_and_samples_it_back(backend):
    period = "the quick brown fox jumps. "
    corpus = training.corpus_from_text(period * 100, seq_length=10)
    run = training.train(corpus, training.Config(m=32, seq_length=10, epochs=10, sample_every=0, seed=0, backend=backend), progress=False)
    assert run.losses[-20:].mean() / 10 < 0.01  # nats per character: near zero
    h = rc.hidden_states(run.params, np.zeros(32), corpus.vocab.encode("the quick brow"))[-1]
    out = corpus.vocab.decode(rc.synthesize(run.params, h, corpus.vocab.index["n"], 2 * len(period),
                                            np.random.default_rng(0)))
    assert out == (period * 3)[len("the quick brown"):][: 2 * len(period)]


def test_nan_loss_stops_with_the_update_named(corpus, backend):
    run = training.new_run(corpus, small_config(backend=backend, sample_every=0))
    training.train(corpus, run=run, progress=False, config=run.config.replace(max_updates=5))
    run.params["V"][0, 0] = np.nan
    with pytest.raises(training.TrainingDiverged, match="at update 5"):
        training.train(corpus, run=run, config=run.config.replace(max_updates=10), progress=False)


# ----------------------------------------------------------------------------- determinism, resume
def test_same_seed_same_run_other_seed_other_run(corpus, backend):
    a = training.train(corpus, small_config(backend=backend), progress=False)
    b = training.train(corpus, small_config(backend=backend), progress=False)
    assert_runs_equal(a, b)
    c = training.train(corpus, small_config(backend=backend, seed=4), progress=False)
    assert not np.array_equal(a.losses, c.losses)


def test_interrupt_and_resume_equals_the_uninterrupted_run(corpus, tmp_path, backend):
    cfg = small_config(backend=backend, epochs=3)
    full = training.train(corpus, cfg, progress=False)
    ck = tmp_path / "run.npz"
    part = training.train(corpus, cfg.replace(max_updates=57), checkpoint=ck, progress=False)
    assert part.update == 57 and part.finished  # finished as far as max_updates asked
    del part
    resumed = training.train(corpus, cfg, run=training.load_checkpoint(ck), checkpoint=ck, progress=False)
    assert_runs_equal(full, resumed)
    assert_runs_equal(full, training.load_checkpoint(ck))


def test_stop_from_callback_then_resume(corpus, tmp_path, backend):
    cfg = small_config(backend=backend, epochs=2)
    full = training.train(corpus, cfg, progress=False)
    ck = tmp_path / "cb.npz"
    part = training.train(corpus, cfg, checkpoint=ck, progress=False, callback=lambda r: r.update == 33)
    assert part.update == 33
    assert_runs_equal(full, training.train(corpus, cfg, run=training.load_checkpoint(ck), progress=False))


def test_checkpoint_is_plain_npz_with_histories(corpus, tmp_path):
    ck = tmp_path / "c.npz"
    run = training.train(corpus, small_config(), checkpoint=ck, progress=False)
    with np.load(ck, allow_pickle=False) as z:
        assert np.array_equal(z["loss"], run.losses) and np.array_equal(z["smooth_loss"], run.smooth_losses)
        assert z["params/U"].shape == (16, corpus.vocab.K)
    assert not list(tmp_path.glob("*.tmp"))
    back = training.load_checkpoint(ck)
    assert back.vocab.chars == corpus.vocab.chars and back.config == run.config


def test_resume_refuses_another_corpus_or_other_settings(corpus, tmp_path):
    ck = tmp_path / "c.npz"
    cfg = small_config(max_updates=5)
    training.train(corpus, cfg, checkpoint=ck, progress=False)
    other = training.corpus_from_text("abc def\n" * 50, seq_length=10)
    with pytest.raises(rc.RNNError, match="vocabulary"):
        training.train(other, run=training.load_checkpoint(ck), progress=False)
    same_vocab = training.corpus_from_text(corpus.text[::-1], seq_length=10)
    with pytest.raises(rc.RNNError, match="another text"):
        training.train(same_vocab, run=training.load_checkpoint(ck), progress=False)
    with pytest.raises(rc.RNNError, match="m=16"):
        training.train(corpus, cfg.replace(m=17), run=training.load_checkpoint(ck), progress=False)


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04broken"])
def test_bad_checkpoint_files_are_refused(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(rc.RNNError):
        training.load_checkpoint(p)
    with pytest.raises(rc.RNNError, match="not found"):
        training.load_checkpoint(tmp_path / "missing.npz")


def test_config_rejects_bad_values():
    for bad in (dict(m=0), dict(eta=-1.0), dict(eta=float("nan")), dict(seq_length=0),
                dict(backend="gpu"), dict(smooth=1.0)):
        with pytest.raises(rc.RNNError):
            training.Config(**bad)


# ----------------------------------------------------------------------------- run cache
def test_run_cache_loads_and_extends(corpus, tmp_path, monkeypatch):
    cfg = small_config(epochs=2)
    first = study.cached_run(corpus, cfg, runs_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    import charrnn.study.cache as cache

    def no_training(*a, **k):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(cache, "train", no_training)
    assert_runs_equal(first, study.cached_run(corpus, cfg, runs_dir=tmp_path))
    monkeypatch.undo()
    # a longer run continues the cached one and equals a fresh one
    seen = []
    longer = study.cached_run(corpus, cfg.replace(epochs=3), runs_dir=tmp_path, progress=False)
    fresh = training.train(corpus, cfg.replace(epochs=3), progress=False, callback=lambda r: seen.append(1) and False)
    assert_runs_equal(longer, fresh)
    # other corpus, other key
    other = training.corpus_from_text(TEXT[::-1] * 3, seq_length=10)
    assert study.run_key(other, cfg) != study.run_key(corpus, cfg)
    assert study.run_key(corpus, cfg) == study.run_key(corpus, cfg.replace(epochs=9, max_updates=4))
    assert study.run_key(corpus, cfg) != study.run_key(corpus, cfg.replace(eta=0.05))


def test_run_key_covers_every_field_that_decides_the_numbers(corpus):
    """Every Config field but how long to run and how often to save changes the key, so that a
    changed default can never map new settings onto a run trained under the old ones."""
    import dataclasses

    from charrnn.training.config import RUN_LENGTH_FIELDS

    cfg = small_config()
    other = {"m": 17, "eta": 0.2, "seq_length": 11, "batch_size": 2, "optimizer": "adam", "beta1": 0.8,
             "beta2": 0.99, "order": "chunks", "chunk_sequences": 7, "holdout": 0.1, "eval_every": 5,
             "sig": 0.02, "clip": 4.0, "eps": 1e-7, "seed": 9, "smooth": 0.99, "sample_every": 3,
             "sample_until": 50, "sample_length": 20, "backend": "steps", "dtype": "float32"}
    fields = {f.name for f in dataclasses.fields(training.Config)}
    assert set(other) == fields - set(RUN_LENGTH_FIELDS)  # a new field must be added here too
    key = study.run_key(corpus, cfg)
    for name, value in other.items():
        base = cfg.replace(**{"eval_every": {"holdout": 0.1}, "dtype": {"backend": "numba"}}.get(name, {}))
        assert study.run_key(corpus, base.replace(**{name: value})) != study.run_key(corpus, base), name
    for name in RUN_LENGTH_FIELDS:
        assert study.run_key(corpus, cfg.replace(**{name: 7})) == key, name


def test_run_cache_serves_only_a_run_of_the_settings_asked_for(corpus, tmp_path, monkeypatch):
    """A file under the right name but holding another config (as a changed default would leave
    behind) is not served: the run is trained for the settings asked for."""
    import charrnn.study.cache as cache

    cfg = small_config(epochs=1)
    path = cache.run_path(corpus, cfg, tmp_path)
    stale = training.train(corpus, cfg.replace(eta=0.05), progress=False)  # "the old default"
    training.save_checkpoint(stale, path)
    served = study.cached_run(corpus, cfg, runs_dir=tmp_path, progress=False)
    assert served.config.eta == cfg.eta
    assert_runs_equal(served, training.train(corpus, cfg, progress=False))
    assert training.load_checkpoint(tmp_path / "set-aside" / path.name).config.eta == 0.05  # kept for a look


def test_train_refuses_to_checkpoint_over_its_own_corpus(corpus_file):
    """The library refuses what the CLI refuses: saving the run over the text it reads (the text
    would become a zip)."""
    corpus = training.load_corpus(corpus_file, seq_length=10)
    before = corpus_file.read_bytes()
    with pytest.raises(rc.RNNError, match="is the corpus"):
        training.train(corpus, small_config(max_updates=5), checkpoint=corpus_file, progress=False)
    assert corpus_file.read_bytes() == before
