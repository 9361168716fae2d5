"""The vanilla RNN: parameters, forward pass and backpropagation through time, gradient check, sampler.

Dimension letters, used in every docstring and shape comment of the package:
    T  steps in a sequence (seq_length)        K  characters in the vocabulary
    m  hidden units                            B  sequences in a mini-batch

Model (one sequence, x_t and y_t are character indices, one-hot in the maths only):
    a_t = W h_{t-1} + U x_t + b     h_t = tanh(a_t)
    o_t = V h_t + c                 p_t = softmax(o_t)       loss = sum_t -log p_t[y_t]
Parameters and gradients are dicts with the same keys: U (m,K), W (m,m), V (K,m), b (m,), c (K,).

Two implementations of the same forward/backward pair are kept:
- the *textbook* form (`step_forward`/`step_backward`, `loss_and_grads_steps`) takes one step at a
  time with one-hot vectors and outer products, exactly as the equations read;
- the *vectorised* form (`rnn_forward`/`rnn_backward`, `loss_and_grads`) loops over time only for
  the recurrence; the input term is a column lookup and the output layer, softmax, loss, dV, dc
  and the V^T g_o products are single matrix operations over all T steps.
"""
from __future__ import annotations

import itertools

import numpy as np

from .data import RNNError

PARAM_NAMES = ("U", "W", "V", "b", "c")


def init_params(K: int, m: int, rng: np.random.Generator, sig: float = 0.01) -> dict:
    """b = c = 0; U, W, V drawn N(0, sig^2) from `rng` (in the order U, W, V)."""
    return {
        "U": rng.standard_normal((m, K)) * sig,  # (m,K)
        "W": rng.standard_normal((m, m)) * sig,  # (m,m)
        "V": rng.standard_normal((K, m)) * sig,  # (K,m)
        "b": np.zeros(m),  # (m,)
        "c": np.zeros(K),  # (K,)
    }


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


def evaluate_loss(params: dict, data: np.ndarray, chunk: int = 4096) -> float:
    """Mean loss in nats per character of predicting data[1:] from data[:-1], one pass with the
    hidden state carried from h = 0 (no truncation). Forward only; the outputs go in chunks.
    Held-out blocks (n, L) from `Corpus.split` are scored each from h = 0 (`heldout.block_log_probs`)."""
    if np.ndim(data) == 2:
        from .heldout import block_log_probs

        return float(-block_log_probs(params, data).mean())
    H = hidden_states(params, np.zeros(params["W"].shape[0]), data[:-1])[1:]  # (N-1,m)
    total = 0.0
    for s in range(0, len(H), chunk):
        o = H[s:s + chunk] @ params["V"].T + params["c"]  # (chunk,K)
        o -= o.max(axis=1, keepdims=True)
        logz = np.log(np.exp(o).sum(axis=1))
        total += (logz - o[np.arange(len(o)), data[1 + s:1 + s + len(o)]]).sum()
    return total / (len(data) - 1)


# ----------------------------------------------------------------------------- gradient check
def numerical_grads(loss_fn, params: dict, h: float = 1e-4, entries: dict | None = None) -> dict:
    """Centred differences (f(theta+h) - f(theta-h)) / 2h of `loss_fn(params)`.

    `entries` maps a name to flat indices to check (default: every entry); the others stay NaN.
    `params` is perturbed in place and restored exactly.
    """
    num = {}
    for name, theta in params.items():
        g = np.full(theta.shape, np.nan)  # same shape as the parameter
        flat, gflat = theta.reshape(-1), g.reshape(-1)
        idx = range(flat.size) if entries is None else entries[name]
        for i in idx:
            old = flat[i]
            flat[i] = old + h
            f_plus = loss_fn(params)
            flat[i] = old - h
            f_minus = loss_fn(params)
            flat[i] = old
            gflat[i] = (f_plus - f_minus) / (2 * h)
        num[name] = g
    return num


def relative_error(ga: np.ndarray, gn: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """|ga - gn| / max(floor, |ga| + |gn|) entry by entry."""
    return np.abs(ga - gn) / np.maximum(floor, np.abs(ga) + np.abs(gn))


def gradcheck(params: dict, inputs, targets, hprev=None, h: float = 1e-4, floor: float = 1e-6,
              n_spot: int | None = None, rng: np.random.Generator | None = None,
              grad_fn=None) -> dict:
    """Compare analytic gradients with centred differences.

    Checks every entry, or `n_spot` entries per parameter drawn from `rng`. `grad_fn(params)` returns
    (loss, grads); by default the vectorised `loss_and_grads` on (inputs, targets, hprev).
    Returns {name: {"max_rel": float, "max_abs": float, "checked": int}}.
    """
    m = params["W"].shape[0]
    hprev = np.zeros(m) if hprev is None else hprev
    if grad_fn is None:
        def grad_fn(p):
            return loss_and_grads(p, inputs, targets, hprev)[:2]
    loss_fn = lambda p: grad_fn(p)[0]  # noqa: E731
    _, analytic = grad_fn(params)
    entries = None
    if n_spot is not None:
        rng = rng if rng is not None else np.random.default_rng(0)
        entries = {k: rng.choice(v.size, size=min(n_spot, v.size), replace=False)
                   for k, v in params.items()}
    numeric = numerical_grads(loss_fn, params, h=h, entries=entries)
    table = {}
    for name in params:
        mask = ~np.isnan(numeric[name])
        ga, gn = analytic[name][mask], numeric[name][mask]
        table[name] = {
            "max_rel": float(relative_error(ga, gn, floor).max()),
            "max_abs": float(np.abs(ga - gn).max()),
            "checked": int(mask.sum()),
        }
    return table


# Bounds of the gradient check: weights whose tanh does not saturate everywhere, a step whose
# centred difference is neither rounding nor curvature, and at most ~1e11 multiply-adds of forward
# passes (about a minute), so that a large m asks for --spot instead of running for hours.
GRADCHECK_SIG_MAX, GRADCHECK_STEP_RANGE, GRADCHECK_WORK = 10.0, (1e-10, 0.1), 1e11


def check_gradcheck(K: int, m: int, T: int, sig: float, h: float, n_spot: int | None, seed: int) -> None:
    """Refuse gradient-check settings out of range, before anything is allocated."""
    if not (isinstance(seed, int) and 0 <= seed) or m < 1 or T < 1 or (n_spot is not None and n_spot < 1):
        raise RNNError(f"m, T and n_spot must be >= 1 and seed >= 0, got m={m}, T={T}, n_spot={n_spot}, seed={seed}")
    if not 0 < sig <= GRADCHECK_SIG_MAX:
        raise RNNError(f"sig must be in (0, {GRADCHECK_SIG_MAX:g}], got {sig}")
    if not GRADCHECK_STEP_RANGE[0] <= h <= GRADCHECK_STEP_RANGE[1]:
        raise RNNError(f"the step h must be in [{GRADCHECK_STEP_RANGE[0]:g}, {GRADCHECK_STEP_RANGE[1]:g}], got {h}")
    sizes = (m * K, m * m, K * m, m, K)
    checked = sum(sizes) if n_spot is None else sum(min(n_spot, s) for s in sizes)
    if 2 * checked * T * (m * m + 2 * m * K) > GRADCHECK_WORK:
        raise RNNError(f"checking {checked:,} entries at m={m}, T={T} would take too long: check fewer "
                       f"(--spot) or a smaller m")


def gradcheck_on_text(data: np.ndarray, K: int, m: int, T: int = 25, sig: float = 0.01, h: float = 1e-4,
                      floor: float = 1e-6, n_spot: int | None = None, seed: int = 0) -> dict:
    """The report's gradient check: X = data[:T], Y = data[1:T+1], h0 = 0, float64.

    U, W, V and (unlike at initialisation) b and c are drawn N(0, sig^2) from `seed`, so that every
    gradient entry is exercised. Returns the table of `gradcheck`.
    """
    check_gradcheck(K, m, T, sig, h, n_spot, seed)
    rng = np.random.default_rng(seed)
    params = init_params(K, m, rng, sig)
    params["b"] = rng.standard_normal(m) * sig
    params["c"] = rng.standard_normal(K) * sig
    return gradcheck(params, data[:T], data[1:T + 1], np.zeros(m), h=h, floor=floor, n_spot=n_spot, rng=rng)


# ----------------------------------------------------------------------------- sampling
def hidden_states(params: dict, h0: np.ndarray, indices) -> np.ndarray:
    """Run the recurrence over `indices` from h0; returns every hidden state, shape (len+1, m)."""
    U, W, b = params["U"], params["W"], params["b"]
    H = np.empty((len(indices) + 1, W.shape[0]))  # (n+1,m)
    H[0] = h0
    for t, x in enumerate(indices):
        H[t + 1] = np.tanh(W @ H[t] + U[:, x] + b)
    return H


# Bounds that keep sampling finite: o / temperature stays far from overflow for any sane logits.
TEMPERATURE_RANGE = (1e-3, 1e3)


class SamplingError(RNNError, ValueError):
    """Sampling settings out of range, or a network whose outputs are not finite."""


def sampling_probs(o: np.ndarray, temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """Next-character distribution from logits o (K,): softmax(o / temperature), then the nucleus.

    The nucleus is the smallest set of most probable characters whose total reaches top_p; the
    others get probability zero and the rest is renormalised. temperature=1, top_p=1: plain softmax.
    """
    if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise SamplingError(f"temperature must be in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}], "
                            f"got {temperature}")
    if not 0 < top_p <= 1:
        raise SamplingError(f"top_p must be in (0, 1], got {top_p}")
    with np.errstate(over="ignore", invalid="ignore"):
        z = o / temperature  # (K,)
    if not np.isfinite(z).all():
        raise SamplingError("the network's outputs are not finite: its parameters are too large or not finite")
    p = softmax(z)  # finite logits: the shift by the maximum keeps every term in [0, 1]
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = int(np.searchsorted(cum, top_p)) + 1  # first position where the total reaches top_p
        q = np.zeros_like(p)
        q[order[:keep]] = p[order[:keep]]
        p = q / q.sum()
    return p


def sample_text(params: dict, vocab, n: int, rng: np.random.Generator, prime: str = "\n",
                temperature: float = 1.0, top_p: float = 1.0) -> str:
    """n characters that continue `prime`: the hidden state is warmed on all of prime but its last
    character (from h = 0), which is then the first input. Returns the sampled characters only."""
    return "".join(itertools.islice(sample_chars(params, vocab, rng, prime, temperature, top_p), n))


def sample_chars(params: dict, vocab, rng: np.random.Generator, prime: str = "\n",
                 temperature: float = 1.0, top_p: float = 1.0):
    """The characters of `sample_text`, one at a time and without end (for streaming output)."""
    idx = vocab.encode(prime or "\n")
    h = hidden_states(params, np.zeros(params["W"].shape[0]), idx[:-1])[-1]
    return (vocab.chars[x] for x in generate(params, h, idx[-1], rng, temperature, top_p))


def synthesize(params: dict, h0: np.ndarray, x0: int, n: int, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """Sample n character indices (int64, (n,)), starting from hidden state h0 and input x0.

    Each step draws one uniform number u from rng and takes the first index whose cumulative
    probability exceeds u (inverse-CDF sampling). x0 itself is not part of the output.
    """
    return np.fromiter(generate(params, h0, x0, rng, temperature, top_p), dtype=np.int64, count=n)  # (n,)


def generate(params: dict, h0: np.ndarray, x0: int, rng: np.random.Generator,
             temperature: float = 1.0, top_p: float = 1.0):
    """The indices of `synthesize`, one at a time and without end, in bounded memory."""
    U, W, V, b, c = (params[k] for k in PARAM_NAMES)
    h, x = np.array(h0, dtype=float), int(x0)
    while True:
        h = np.tanh(W @ h + U[:, x] + b)
        p = sampling_probs(V @ h + c, temperature, top_p)
        cdf = np.cumsum(p)
        x = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))  # never a p = 0 entry
        yield x
