"""Forward/backward correctness: gradient checks, the two forms agree, known answers, sampling."""
import math

import numpy as np
import pytest

import rnn_core as rc
from conftest import random_params

T = 25
# Gradient check settings. Step h = 1e-4 (centred differences: truncation error O(h^2) ~ 1e-8 of
# the third derivative, rounding ~ 1e-16 * loss / h ~ 1e-10). Test weights N(0, 0.1^2) so that the
# entries of dW are not lost in that rounding noise; relative errors use a floor of 1e-6 in the
# denominator for entries whose true gradient is (close to) zero.
H, SIG, FLOOR, TOL = 1e-4, 0.1, 1e-6, 1e-6


def first_sequence(corpus):
    return corpus.data[:T], corpus.data[1:T + 1]


def test_full_gradient_check_m5(corpus):
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 5, seed=1, sig=SIG)
    hprev = np.random.default_rng(2).standard_normal(5) * 0.5  # a carried hidden state, not just zeros
    table = rc.gradcheck(params, X, Y, hprev, h=H, floor=FLOOR)
    for name, row in table.items():
        assert row["checked"] == params[name].size
        assert row["max_rel"] < TOL, (name, row)


def test_spot_gradient_check_m100(corpus):
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 100, seed=3, sig=SIG)
    table = rc.gradcheck(params, X, Y, h=H, floor=FLOOR, n_spot=20, rng=np.random.default_rng(4))
    for name, row in table.items():
        assert row["checked"] == 20
        assert row["max_rel"] < TOL, (name, row)


def test_gradient_check_catches_a_wrong_gradient(corpus):
    """The check must be able to fail: drop the tanh derivative from BPTT and it does."""
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 5, seed=1, sig=0.5)

    def wrong(p):
        loss, cache = rc.rnn_forward(p, X, Y, np.zeros(5))
        inputs, targets, Hs, P = cache
        broken = (inputs, targets, np.zeros_like(Hs), P)  # tanh' = 1 - 0^2 = 1: wrong
        g = rc.rnn_backward(p, broken)
        g["V"], g["W"] = rc.rnn_backward(p, cache)["V"], g["W"]
        return loss, g

    table = rc.gradcheck(params, X, Y, h=H, grad_fn=wrong)
    assert table["U"]["max_rel"] > 1e-2 and table["b"]["max_rel"] > 1e-2
    assert table["U"]["failed"] > 0 and table["b"]["failed"] > 0  # the verdict the command line exits on


@pytest.mark.parametrize("sig", [0.001, 0.01, 0.1, 1.0])
def test_rounding_alone_fails_no_entry(corpus, sig):
    """The verdict's rule: an entry fails only if its relative error passes the tolerance and its
    absolute error passes what rounding of the loss explains. At sig 0.01 and below, dW's entries are
    tiny and rounding alone takes their relative error past 1e-6 (README): none may fail for that."""
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 5, seed=1, sig=sig)
    table = rc.gradcheck(params, X, Y, h=H, floor=FLOOR)
    assert all(row["failed"] == 0 for row in table.values()), table


def test_a_gradient_off_by_one_percent_fails_at_the_assignment_sig(corpus):
    """At sig 0.01 (where relative errors from rounding reach 5e-6) a gradient 1% off still fails."""
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 5, seed=1, sig=0.01)

    def off(p):
        loss, g, _ = rc.loss_and_grads(p, X, Y, np.zeros(5))
        return loss, {k: v * 1.01 if k == "W" else v for k, v in g.items()}

    table = rc.gradcheck(params, X, Y, h=H, grad_fn=off)
    assert table["W"]["failed"] > 0 and table["V"]["failed"] == 0


def test_textbook_and_vectorised_forms_agree(corpus):
    X, Y = first_sequence(corpus)
    params = random_params(corpus.vocab.K, 30, seed=5, sig=0.1)
    hprev = np.random.default_rng(6).standard_normal(30) * 0.3
    loss_v, g_v, h_v = rc.loss_and_grads(params, X, Y, hprev)
    loss_s, g_s, h_s = rc.loss_and_grads_steps(params, X, Y, hprev)
    assert set(g_v) == set(g_s) == set(rc.PARAM_NAMES)
    assert abs(loss_v - loss_s) <= 1e-12 * abs(loss_s)
    assert np.linalg.norm(h_v - h_s) <= 1e-12
    for k in rc.PARAM_NAMES:
        assert g_v[k].shape == params[k].shape
        assert np.linalg.norm(g_v[k] - g_s[k]) <= 1e-10 * max(1.0, np.linalg.norm(g_s[k])), k


def test_initial_loss_is_close_to_T_log_K(corpus):
    X, Y = first_sequence(corpus)
    params = rc.init_params(corpus.vocab.K, 100, np.random.default_rng(0), sig=0.01)
    loss, _, _ = rc.loss_and_grads(params, X, Y, np.zeros(100))
    expected = T * math.log(corpus.vocab.K)
    assert abs(loss - expected) / expected < 0.02


def test_known_answer_one_unit_one_step():
    """m = 1, K = 2, T = 1, worked by hand: h = tanh(0.5 + 0.3*0.2 + 0.1), o = [2h, -h + 0.5]."""
    p = {"U": np.array([[0.5, -0.5]]), "W": np.array([[0.3]]), "V": np.array([[2.0], [-1.0]]),
         "b": np.array([0.1]), "c": np.array([0.0, 0.5])}
    h = math.tanh(0.5 + 0.3 * 0.2 + 0.1)
    o0, o1 = 2 * h, -h + 0.5
    p1 = math.exp(o1) / (math.exp(o0) + math.exp(o1))
    p0 = 1 - p1
    loss, g, h_last = rc.loss_and_grads(p, [0], [1], np.array([0.2]))
    assert loss == pytest.approx(-math.log(p1), rel=1e-14)
    assert h_last[0] == pytest.approx(h, rel=1e-14)
    go = np.array([p0, p1 - 1.0])  # p - onehot(y)
    ga = (go @ np.array([2.0, -1.0])) * (1 - h * h)
    np.testing.assert_allclose(g["V"][:, 0], go * h, rtol=1e-13)
    np.testing.assert_allclose(g["c"], go, rtol=1e-13)
    np.testing.assert_allclose(g["U"], [[ga, 0.0]], rtol=1e-13)
    np.testing.assert_allclose(g["W"], [[ga * 0.2]], rtol=1e-13)
    np.testing.assert_allclose(g["b"], [ga], rtol=1e-13)


def test_softmax_is_stable_for_large_logits():
    p = rc.softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0])


# ----------------------------------------------------------------------------- sampling
LOGITS = np.array([2.0, 1.5, 1.0, 0.0, -1.0, -3.0])


def constant_net(logits):
    """A network whose output ignores the input and the state: o_t = c."""
    K, m = len(logits), 3
    return {"U": np.zeros((m, K)), "W": np.zeros((m, m)), "V": np.zeros((K, m)),
            "b": np.zeros(m), "c": np.array(logits)}


def test_plain_sampling_follows_the_softmax():
    n = 20000
    out = rc.synthesize(constant_net(LOGITS), np.zeros(3), 0, n, np.random.default_rng(0))
    freq = np.bincount(out, minlength=len(LOGITS)) / n
    np.testing.assert_allclose(freq, rc.softmax(LOGITS), atol=0.015)  # ~4 standard errors


def test_top_p_never_leaves_the_nucleus():
    p = rc.softmax(LOGITS)
    for top_p in (0.3, 0.5, 0.8, 0.95):
        nucleus = {0}
        while p[sorted(nucleus)].sum() < top_p:
            nucleus.add(len(nucleus))  # LOGITS are sorted, so the nucleus is a prefix
        q = rc.sampling_probs(LOGITS, top_p=top_p)
        assert set(np.flatnonzero(q)) == nucleus
        assert q.sum() == pytest.approx(1.0)
        out = rc.synthesize(constant_net(LOGITS), np.zeros(3), 0, 3000, np.random.default_rng(1), top_p=top_p)
        assert set(out.tolist()) <= nucleus
        assert set(out.tolist()) == nucleus  # and every member of it does come up


def test_low_temperature_approaches_argmax_and_high_flattens():
    cold = rc.sampling_probs(LOGITS, temperature=0.02)  # p(second) = e^-25
    assert cold[0] > 1 - 1e-10
    out = rc.synthesize(constant_net(LOGITS), np.zeros(3), 0, 500, np.random.default_rng(2), temperature=0.02)
    assert (out == 0).all()
    hot = rc.sampling_probs(LOGITS, temperature=100.0)
    assert hot.max() - hot.min() < 0.02
    with pytest.raises(ValueError):
        rc.sampling_probs(LOGITS, temperature=0.0)
    with pytest.raises(ValueError):
        rc.sampling_probs(LOGITS, top_p=1.5)


def test_sampling_is_reproducible_from_the_generator():
    net = constant_net(LOGITS)
    a = rc.synthesize(net, np.zeros(3), 0, 100, np.random.default_rng(7))
    b = rc.synthesize(net, np.zeros(3), 0, 100, np.random.default_rng(7))
    c = rc.synthesize(net, np.zeros(3), 0, 100, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_priming_warms_the_hidden_state_then_continues(corpus):
    """sample_text(prime) = synthesize from the state after all of prime but its last character,
    with that last character as the first input; another prime gives another continuation."""
    params = random_params(corpus.vocab.K, 20, seed=0, sig=0.3)
    v = corpus.vocab
    Hs = rc.hidden_states(params, np.zeros(20), v.encode("When i"))
    assert Hs.shape == (7, 20) and np.linalg.norm(Hs[-1]) > 0.1
    text = rc.sample_text(params, v, 40, np.random.default_rng(5), prime="When in")
    by_hand = v.decode(rc.synthesize(params, Hs[-1], v.index["n"], 40, np.random.default_rng(5)))
    assert len(text) == 40 and text == by_hand
    cold = v.decode(rc.synthesize(params, np.zeros(20), v.index["n"], 40, np.random.default_rng(5)))
    assert text != cold  # the prime's history changed what follows "n"
    assert text != rc.sample_text(params, v, 40, np.random.default_rng(5), prime="the Coun")
