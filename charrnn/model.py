"""The vanilla RNN: parameters, and its forward pass and backpropagation through time in three forms.

Dimension letters, used in every docstring and shape comment of the package:
    T  steps in a sequence (seq_length)        K  characters in the vocabulary
    m  hidden units                            B  sequences in a mini-batch

Model (one sequence, x_t and y_t are character indices, one-hot in the maths only):
    a_t = W h_{t-1} + U x_t + b     h_t = tanh(a_t)
    o_t = V h_t + c                 p_t = softmax(o_t)       loss = sum_t -log p_t[y_t]
Parameters and gradients are dicts with the same keys: U (m,K), W (m,m), V (K,m), b (m,), c (K,).

The gradient check is in gradcheck.py, the sampler in sampling.py.

Three implementations of the same forward/backward pair are kept (the fused kernel is a fourth):
- the *textbook* form (`step_forward`/`step_backward`, `loss_and_grads_steps`) takes one step at a
  time with one-hot vectors and outer products, exactly as the equations read;
- the *vectorised* form (`rnn_forward`/`rnn_backward`, `loss_and_grads`) loops over time only for
  the recurrence; the input term is a column lookup and the output layer, softmax, loss, dV, dc
  and the V^T g_o products are single matrix operations over all T steps.
"""
from __future__ import annotations

import numpy as np


PARAM_NAMES = ("U", "W", "V", "b", "c")


# A run has diverged when a sequence's loss is not finite or above this many nats per character:
# a probability below e^-700 (about 1e-304) is where the numpy forms' float64 softmax underflows to
# an infinite loss, while the kernels' log-softmax stays finite; one limit makes every backend stop.
DIVERGED_NATS_PER_CHAR = 700.0


def param_shapes(K: int, m: int) -> dict:
    """The shape of each parameter: U (m,K), W (m,m), V (K,m), b (m,), c (K,)."""
    return {"U": (m, K), "W": (m, m), "V": (K, m), "b": (m,), "c": (K,)}


def init_params(K: int, m: int, rng: np.random.Generator, sig: float = 0.01) -> dict:
    """b = c = 0; U, W, V drawn N(0, sig^2) from `rng` (in the order U, W, V)."""
    return {
        "U": rng.standard_normal((m, K)) * sig,  # (m,K)
        "W": rng.standard_normal((m, m)) * sig,  # (m,m)
        "V": rng.standard_normal((K, m)) * sig,  # (K,m)
        "b": np.zeros(m),  # (m,)
        "c": np.zeros(K),  # (K,)
    }


def float32_values(params: dict) -> dict:
    """The parameters rounded to float32, kept in float64 arrays (what a float32 run holds)."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}


def softmax(o: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum for stability."""
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- textbook form
def step_forward(x: np.ndarray, h_prev: np.ndarray, params: dict):
    """One step. x: one-hot (K,), h_prev: (m,). Returns h (m,), p (K,), cache."""
    a = params["W"] @ h_prev + params["U"] @ x + params["b"]  # (m,)
    h = np.tanh(a)  # (m,)
    p = softmax(params["V"] @ h + params["c"])  # (K,)
    return h, p, (x, h_prev, h, p)


def step_backward(y: int, g_a_next: np.ndarray, cache, params: dict, grads: dict) -> np.ndarray:
    """Backward through one step, accumulating into `grads`; returns g_a_t (m,) for step t-1."""
    x, h_prev, h, p = cache
    g_o = p.copy()  # (K,)
    g_o[y] -= 1.0
    grads["V"] += np.outer(g_o, h)
    grads["c"] += g_o
    g_h = params["V"].T @ g_o + params["W"].T @ g_a_next  # (m,)
    g_a = g_h * (1.0 - h * h)  # (m,)
    grads["W"] += np.outer(g_a, h_prev)
    grads["U"] += np.outer(g_a, x)
    grads["b"] += g_a
    return g_a


def rnn_forward_steps(params: dict, inputs, targets, hprev: np.ndarray):
    """Textbook forward over T steps. Returns (loss, cache)."""
    K = params["V"].shape[0]
    h, loss, caches = hprev, 0.0, []
    for x_t, y_t in zip(inputs, targets):
        x = np.zeros(K)  # (K,) one-hot
        x[x_t] = 1.0
        h, p, cache = step_forward(x, h, params)
        loss -= np.log(p[y_t])
        caches.append(cache)
    return loss, (caches, list(targets))


def rnn_backward_steps(params: dict, cache) -> dict:
    """Textbook BPTT: a reversed loop over the steps of `rnn_forward_steps`."""
    caches, targets = cache
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    g_a = np.zeros(params["W"].shape[0])  # (m,) g_a_{T+1} = 0
    for t in reversed(range(len(caches))):
        g_a = step_backward(targets[t], g_a, caches[t], params, grads)
    return grads


def loss_and_grads_steps(params: dict, inputs, targets, hprev: np.ndarray):
    """Textbook form of `loss_and_grads`: same arguments, same results up to rounding."""
    loss, cache = rnn_forward_steps(params, inputs, targets, hprev)
    h_last = cache[0][-1][2]
    return loss, rnn_backward_steps(params, cache), h_last.copy()


# ----------------------------------------------------------------------------- vectorised form
def rnn_forward(params: dict, inputs: np.ndarray, targets: np.ndarray, hprev: np.ndarray):
    """Vectorised forward. inputs, targets: int (T,), hprev: (m,). Returns (loss, cache)."""
    U, W, V = params["U"], params["W"], params["V"]
    T, m = len(inputs), W.shape[0]
    A_in = U[:, inputs].T + params["b"]  # (T,m) U x_t + b, a column lookup
    H = np.empty((T + 1, m))  # (T+1,m) H[0] = h_0 = hprev, H[t] = h_t
    H[0] = hprev
    for t in range(T):  # the recurrence is the only loop
        H[t + 1] = np.tanh(A_in[t] + W @ H[t])
    P = softmax(H[1:] @ V.T + params["c"])  # (T,K)
    rows = np.arange(T)
    loss = -np.log(P[rows, targets]).sum()
    return loss, (inputs, targets, H, P)


def rnn_backward(params: dict, cache) -> dict:
    """Vectorised BPTT for the cache of `rnn_forward`. Returns grads with the keys of params."""
    inputs, targets, H, P = cache
    W, V = params["W"], params["V"]
    T = len(inputs)
    G_o = P.copy()  # (T,K) g_o_t = p_t - onehot(y_t)
    G_o[np.arange(T), targets] -= 1.0
    G_h_out = G_o @ V  # (T,m) V^T g_o_t for all t at once
    G_a = np.empty_like(G_h_out)  # (T,m)
    D = 1.0 - H[1:] * H[1:]  # (T,m) tanh'
    g_a = np.zeros(W.shape[0])  # (m,) g_a_{T+1} = 0
    for t in reversed(range(T)):
        g_a = (G_h_out[t] + W.T @ g_a) * D[t]
        G_a[t] = g_a
    dU = np.zeros_like(params["U"])  # (m,K)
    np.add.at(dU.T, inputs, G_a)  # column x_t of dU accumulates g_a_t
    return {
        "U": dU,
        "W": G_a.T @ H[:-1],
        "V": G_o.T @ H[1:],
        "b": G_a.sum(axis=0),
        "c": G_o.sum(axis=0),
    }


def loss_and_grads(params: dict, inputs, targets, hprev: np.ndarray):
    """Loss, unclipped gradients and the last hidden state for one sequence.

    inputs, targets: int (T,); hprev: (m,). Returns (loss: float, grads: dict, h_last: (m,)).
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    loss, cache = rnn_forward(params, inputs, targets, hprev)
    return float(loss), rnn_backward(params, cache), cache[2][-1].copy()


# ----------------------------------------------------------------------------- mini-batch form
def rnn_forward_batch(params: dict, inputs: np.ndarray, targets: np.ndarray, hprev: np.ndarray):
    """B sequences at once. inputs, targets: int (B,T); hprev: (B,m). Returns (summed loss, cache)."""
    U, W, V = params["U"], params["W"], params["V"]
    B, T = inputs.shape
    A_in = U.T[inputs.T] + params["b"]  # (T,B,m) row x of U^T is column x of U
    H = np.empty((T + 1, B, W.shape[0]))  # (T+1,B,m)
    H[0] = hprev
    for t in range(T):
        H[t + 1] = np.tanh(A_in[t] + H[t] @ W.T)
    P = softmax(H[1:] @ V.T + params["c"])  # (T,B,K)
    tt, bb = np.meshgrid(np.arange(T), np.arange(B), indexing="ij")  # (T,B) each
    loss = -np.log(P[tt, bb, targets.T]).sum()
    return loss, (inputs, targets, H, P, tt, bb)


def rnn_backward_batch(params: dict, cache) -> dict:
    """BPTT for `rnn_forward_batch`: gradients of the loss summed over the B sequences."""
    inputs, targets, H, P, tt, bb = cache
    W, V = params["W"], params["V"]
    T, B, m = H.shape[0] - 1, H.shape[1], W.shape[0]
    K = V.shape[0]
    G_o = P.copy()  # (T,B,K)
    G_o[tt, bb, targets.T] -= 1.0
    G_h_out = G_o @ V  # (T,B,m)
    D = 1.0 - H[1:] * H[1:]  # (T,B,m)
    G_a = np.empty_like(G_h_out)  # (T,B,m)
    g_a = np.zeros((B, m))  # (B,m)
    for t in reversed(range(T)):
        g_a = (G_h_out[t] + g_a @ W) * D[t]
        G_a[t] = g_a
    Ga2, Go2 = G_a.reshape(T * B, m), G_o.reshape(T * B, K)  # (TB,m), (TB,K)
    dU = np.zeros_like(params["U"])  # (m,K)
    np.add.at(dU.T, inputs.T.reshape(-1), Ga2)
    return {
        "U": dU,
        "W": Ga2.T @ H[:-1].reshape(T * B, m),
        "V": Go2.T @ H[1:].reshape(T * B, m),
        "b": Ga2.sum(axis=0),
        "c": Go2.sum(axis=0),
    }


def loss_and_grads_batch(params: dict, inputs, targets, hprev: np.ndarray):
    """Mini-batch loss and gradients, *averaged* over the B sequences (B = 1: `loss_and_grads`).

    inputs, targets: int (B,T); hprev: (B,m). Returns (mean loss per sequence, mean grads,
    h_last (B,m)). Averaging keeps the loss on the scale of one sequence (so smooth losses compare
    with batch 1) and the clipping threshold meaning the same thing.
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    B = inputs.shape[0]
    loss, cache = rnn_forward_batch(params, inputs, targets, hprev)
    grads = rnn_backward_batch(params, cache)
    for g in grads.values():
        g /= B
    return float(loss) / B, grads, cache[2][-1].copy()


def hidden_states(params: dict, h0: np.ndarray, indices) -> np.ndarray:
    """Run the recurrence over `indices` from h0; returns every hidden state, shape (len+1, m)."""
    U, W, b = params["U"], params["W"], params["b"]
    H = np.empty((len(indices) + 1, W.shape[0]))  # (n+1,m)
    H[0] = h0
    for t, x in enumerate(indices):
        H[t + 1] = np.tanh(W @ H[t] + U[:, x] + b)
    return H


def evaluate_loss(params: dict, data: np.ndarray, chunk: int = 4096, h0=None) -> float:
    """Mean loss in nats per character of predicting data[1:] from data[:-1], one pass with the
    hidden state carried from h = 0 (no truncation). Forward only; the outputs go in chunks.
    Held-out blocks (n, L) from `Corpus.split` are scored each from the state h0 (m,) (default 0;
    training passes the state it carries: `heldout.block_log_probs`)."""
    if np.ndim(data) == 2:
        from .heldout import block_log_probs

        return float(-block_log_probs(params, data, h0).mean())
    H = hidden_states(params, np.zeros(params["W"].shape[0]), data[:-1])[1:]  # (N-1,m)
    total = 0.0
    for s in range(0, len(H), chunk):
        o = H[s:s + chunk] @ params["V"].T + params["c"]  # (chunk,K)
        o -= o.max(axis=1, keepdims=True)
        logz = np.log(np.exp(o).sum(axis=1))
        total += (logz - o[np.arange(len(o)), data[1 + s:1 + s + len(o)]]).sum()
    return total / (len(data) - 1)
