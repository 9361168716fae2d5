"""An independent check: the loss and gradients of BPTT equal PyTorch autograd's on the same numbers.

PyTorch is not a dependency: these tests run where it is installed (`.venv/bin/pip install
torch==2.13.0`) and are skipped, saying so, where it is not. Autograd knows nothing of our backward
pass: it differentiates the forward equations written here again in torch, one step at a time.
"""
import numpy as np
import pytest

import rnn_core as rc
from conftest import random_params

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional: pip install torch==2.13.0)")

T, M = 25, 12


def torch_loss_and_grads(params: dict, inputs, targets, hprev):
    """The model's equations in torch (float64), differentiated by autograd."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(hprev, dtype=torch.float64)
    loss = torch.zeros((), dtype=torch.float64)
    for x, y in zip(inputs, targets):
        h = torch.tanh(p["W"] @ h + p["U"][:, int(x)] + p["b"])  # a_t = W h_{t-1} + U x_t + b
        o = p["V"] @ h + p["c"]
        loss = loss - torch.log_softmax(o, dim=0)[int(y)]  # summed over the sequence
    loss.backward()
    return loss.item(), {k: t.grad.numpy() for k, t in p.items()}, h.detach().numpy()


@pytest.mark.parametrize("form", ["vectorised", "per-step", "kernel"])
def test_bptt_equals_autograd(corpus, form):
    X, Y = corpus.data[:T], corpus.data[1:T + 1]
    params = random_params(corpus.vocab.K, M, seed=11, sig=0.3)
    hprev = np.random.default_rng(12).standard_normal(M) * 0.5
    if form == "kernel":
        from charrnn.kernels import single as kernel

        if not kernel.available():
            pytest.skip(f"the kernel does not run here: {kernel.unavailable_reason()}")
        grad_fn = kernel.kernel_loss_and_grads
    else:
        grad_fn = rc.loss_and_grads if form == "vectorised" else rc.loss_and_grads_steps
    loss, grads, h = grad_fn(params, X, Y, hprev)
    loss_t, grads_t, h_t = torch_loss_and_grads(params, X, Y, hprev)
    # Two float64 evaluations of the same sums in different orders: they agree to rounding, a few
    # 1e-16 relative per operation over T = 25 steps; 1e-12 leaves room and still fails on any
    # error of the maths (a wrong term is off by 1e-3 or more at these weights).
    assert abs(loss - loss_t) <= 1e-12 * abs(loss_t)
    assert np.linalg.norm(h - h_t) <= 1e-12
    for k in rc.PARAM_NAMES:
        assert np.linalg.norm(grads[k] - grads_t[k]) <= 1e-12 * np.linalg.norm(grads_t[k]), k


def test_mini_batch_form_equals_autograd_of_the_mean(corpus):
    """The batch form averages the loss and gradients of B sequences: autograd of that mean."""
    B = 3
    params = random_params(corpus.vocab.K, M, seed=13, sig=0.3)
    starts = [0, 100, 200]
    X = np.stack([corpus.data[s:s + T] for s in starts])  # (B,T)
    Y = np.stack([corpus.data[s + 1:s + T + 1] for s in starts])
    H0 = np.random.default_rng(14).standard_normal((B, M)) * 0.5
    loss, grads, _ = rc.loss_and_grads_batch(params, X, Y, H0)
    each = [torch_loss_and_grads(params, X[i], Y[i], H0[i]) for i in range(B)]
    loss_t = sum(e[0] for e in each) / B
    assert abs(loss - loss_t) <= 1e-12 * abs(loss_t)  # same reasoning as above
    for k in rc.PARAM_NAMES:
        g_t = sum(e[1][k] for e in each) / B
        assert np.linalg.norm(grads[k] - g_t) <= 1e-12 * np.linalg.norm(g_t), k
