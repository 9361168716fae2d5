"""The assignment's code: a character-level vanilla RNN, its gradients by backpropagation through time
(BPTT), gradient checking, AdaGrad and Adam, and text synthesis. numpy only; read it top to bottom.

Dimension letters, used in every docstring and shape comment of the project:
    T  steps in a sequence (seq_length)        K  characters in the vocabulary
    m  hidden units                            B  sequences in a mini-batch

The model, for one sequence (x_t and y_t are character indices, one-hot in the maths only):
    a_t = W h_{t-1} + U x_t + b     h_t = tanh(a_t)
    o_t = V h_t + c                 p_t = softmax(o_t)       loss = sum_t -log p_t[y_t]
Parameters and gradients are dicts with the same keys: U (m,K), W (m,m), V (K,m), b (m,), c (K,).

BPTT, from the last step back to the first (g_a_{T+1} = 0):
    g_o_t = p_t - onehot(y_t)
    g_h_t = V^T g_o_t + W^T g_a_{t+1}          g_a_t = g_h_t * (1 - h_t^2)
    dV = sum_t g_o_t h_t^T   dc = sum_t g_o_t   dW = sum_t g_a_t h_{t-1}^T   dU = sum_t g_a_t x_t^T   db = sum_t g_a_t

Each pass comes twice: one step at a time with one-hot vectors, exactly as the equations read
(`step_forward`/`step_backward`), and vectorised over the steps, where only the recurrence loops
(`rnn_forward`/`rnn_backward`). The training loop, the checkpoints and the compiled kernels that
train the report's runs are in the `charrnn` package, which imports this module for its maths.
"""
from __future__ import annotations

import itertools

import numpy as np

PARAM_NAMES = ("U", "W", "V", "b", "c")

# A run has diverged when a sequence's loss is not finite or above this many nats per character:
# below e^-700 (about 1e-304) float64's softmax underflows to an infinite loss.
DIVERGED_NATS_PER_CHAR = 700.0

# Sampling temperatures outside this range make o / temperature overflow or vanish for sane logits.
TEMPERATURE_RANGE = (1e-3, 1e3)


class RNNError(Exception):
    """An error the user can fix (bad input, bad settings, a mismatched checkpoint): one line, no traceback."""


class SamplingError(RNNError, ValueError):
    """Sampling settings out of range, or a network whose outputs are not finite."""


# ----------------------------------------------------------------------------- parameters
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


def softmax(o: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum for stability."""
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- one step at a time
def step_forward(x: np.ndarray, h_prev: np.ndarray, params: dict):
    """One step. x: one-hot (K,), h_prev: (m,). Returns h (m,), p (K,), and the cache of `step_backward`."""
    a = params["W"] @ h_prev + params["U"] @ x + params["b"]  # (m,)
    h = np.tanh(a)  # (m,)
    p = softmax(params["V"] @ h + params["c"])  # (K,)
    return h, p, (x, h_prev, h, p)


def step_backward(y: int, g_a_next: np.ndarray, cache, params: dict, grads: dict) -> np.ndarray:
    """Backward through one step, adding into `grads`; takes g_a_{t+1}, returns g_a_t (m,)."""
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
    """Forward over T steps, one `step_forward` each. Returns (loss, cache)."""
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
    """BPTT as a reversed loop of `step_backward` over the cache of `rnn_forward_steps`."""
    caches, targets = cache
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    g_a = np.zeros(params["W"].shape[0])  # (m,) g_a_{T+1} = 0
    for t in reversed(range(len(caches))):
        g_a = step_backward(targets[t], g_a, caches[t], params, grads)
    return grads


def loss_and_grads_steps(params: dict, inputs, targets, hprev: np.ndarray):
    """`loss_and_grads` one step at a time: same arguments, same results up to rounding."""
    loss, cache = rnn_forward_steps(params, inputs, targets, hprev)
    h_last = cache[0][-1][2]
    return loss, rnn_backward_steps(params, cache), h_last.copy()


# ----------------------------------------------------------------------------- vectorised over the steps
def rnn_forward(params: dict, inputs: np.ndarray, targets: np.ndarray, hprev: np.ndarray):
    """inputs, targets: int (T,), hprev: (m,). Returns (loss, cache)."""
    U, W, V = params["U"], params["W"], params["V"]
    T, m = len(inputs), W.shape[0]
    A_in = U[:, inputs].T + params["b"]  # (T,m) U x_t + b: column x_t of U
    H = np.empty((T + 1, m))  # (T+1,m) H[0] = h_0 = hprev, H[t] = h_t
    H[0] = hprev
    for t in range(T):  # the recurrence is the only loop
        H[t + 1] = np.tanh(A_in[t] + W @ H[t])
    P = softmax(H[1:] @ V.T + params["c"])  # (T,K)
    loss = -np.log(P[np.arange(T), targets]).sum()
    return loss, (inputs, targets, H, P)


def rnn_backward(params: dict, cache) -> dict:
    """BPTT for the cache of `rnn_forward`. Returns grads with the keys of params."""
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
    return {"U": dU, "W": G_a.T @ H[:-1], "V": G_o.T @ H[1:], "b": G_a.sum(axis=0), "c": G_o.sum(axis=0)}


def loss_and_grads(params: dict, inputs, targets, hprev: np.ndarray):
    """Loss, unclipped gradients and the last hidden state for one sequence.

    inputs, targets: int (T,); hprev: (m,). Returns (loss: float, grads: dict, h_last: (m,)).
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    loss, cache = rnn_forward(params, inputs, targets, hprev)
    return float(loss), rnn_backward(params, cache), cache[2][-1].copy()


def loss_of(params: dict, inputs, targets, hprev) -> float:
    """The loss of one sequence alone (the forward pass of `loss_and_grads`: the same number)."""
    return float(rnn_forward(params, np.asarray(inputs), np.asarray(targets), hprev)[0])


# ----------------------------------------------------------------------------- mini-batches
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
    return {"U": dU, "W": Ga2.T @ H[:-1].reshape(T * B, m), "V": Go2.T @ H[1:].reshape(T * B, m),
            "b": Ga2.sum(axis=0), "c": Go2.sum(axis=0)}


def loss_and_grads_batch(params: dict, inputs, targets, hprev: np.ndarray):
    """Mini-batch loss and gradients, *averaged* over the B sequences (B = 1: `loss_and_grads`).

    inputs, targets: int (B,T); hprev: (B,m). Returns (mean loss per sequence, mean grads, h_last
    (B,m)). The mean keeps the loss on one sequence's scale and the clipping threshold meaning the same.
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    B = inputs.shape[0]
    loss, cache = rnn_forward_batch(params, inputs, targets, hprev)
    grads = rnn_backward_batch(params, cache)
    for g in grads.values():
        g /= B
    return float(loss) / B, grads, cache[2][-1].copy()


# ----------------------------------------------------------------------------- reading text
def hidden_states(params: dict, h0: np.ndarray, indices) -> np.ndarray:
    """Run the recurrence over `indices` from h0; returns every hidden state, shape (len+1, m)."""
    U, W, b = params["U"], params["W"], params["b"]
    H = np.empty((len(indices) + 1, W.shape[0]))  # (n+1,m)
    H[0] = h0
    for t, x in enumerate(indices):
        H[t + 1] = np.tanh(W @ H[t] + U[:, x] + b)
    return H


def evaluate_loss(params: dict, data: np.ndarray, chunk: int = 4096) -> float:
    """Mean loss in nats per character of predicting data[1:] from data[:-1] (int (N,)): one pass
    from h = 0, the state carried throughout; the outputs are computed `chunk` steps at a time."""
    H = hidden_states(params, np.zeros(params["W"].shape[0]), data[:-1])[1:]  # (N-1,m)
    total = 0.0
    for s in range(0, len(H), chunk):
        o = H[s:s + chunk] @ params["V"].T + params["c"]  # (chunk,K)
        o -= o.max(axis=1, keepdims=True)
        logz = np.log(np.exp(o).sum(axis=1))
        total += (logz - o[np.arange(len(o)), data[1 + s:1 + s + len(o)]]).sum()
    return total / (len(data) - 1)


# ----------------------------------------------------------------------------- optimisers
def clip_grads(grads: dict, clip: float) -> dict:
    """Each gradient entry clipped to [-clip, clip] (a new dict). Clipping is the training step's
    business, never the loss function's."""
    return {k: np.clip(g, -clip, clip) for k, g in grads.items()}


def adagrad_init(params: dict) -> dict:
    """AdaGrad state: the running sum of squared gradients G, one array per parameter."""
    return {"G": {k: np.zeros_like(v) for k, v in params.items()}}


def adagrad_step(params: dict, grads: dict, state: dict, eta: float, eps: float = 1e-8) -> None:
    """In place: G += g*g; theta -= eta * g / sqrt(G + eps)."""
    for k, g in grads.items():
        G = state["G"][k]
        G += g * g
        params[k] -= eta * g / np.sqrt(G + eps)


def adam_init(params: dict) -> dict:
    """Adam state: first and second moment estimates per parameter, and the step count t."""
    return {"m": {k: np.zeros_like(v) for k, v in params.items()},
            "v": {k: np.zeros_like(v) for k, v in params.items()}, "t": 0}


def adam_step(params: dict, grads: dict, state: dict, eta: float, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8) -> None:
    """In place: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; theta -= eta m_hat / (sqrt(v_hat) + eps),
    with the bias corrections m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)."""
    state["t"] += 1
    t = state["t"]
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    for k, g in grads.items():
        m, v = state["m"][k], state["v"][k]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        params[k] -= eta * (m / c1) / (np.sqrt(v / c2) + eps)


OPTIMIZERS = {"adagrad": (adagrad_init, adagrad_step), "adam": (adam_init, adam_step)}


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
        for i in (range(flat.size) if entries is None else entries[name]):
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


# An entry fails when its relative error exceeds the tolerance and its absolute error exceeds what
# rounding explains: the loss L is rounded to about eps |L|, and the centred difference divides two
# such losses by 2h; the margin of 1000 covers the sums behind L.
ROUNDING_MARGIN = 1000.0


def gradcheck(params: dict, inputs, targets, hprev=None, h: float = 1e-4, floor: float = 1e-6,
              n_spot: int | None = None, rng: np.random.Generator | None = None,
              grad_fn=None, loss_fn=None, rel_tol: float = 1e-6, scale_tol: float = 0.0) -> dict:
    """Analytic gradients against centred differences, on every entry or `n_spot` entries per parameter
    drawn from `rng`.

    grad_fn(params) -> (loss, grads), by default `loss_and_grads` on (inputs, targets, hprev); the
    differences are of loss_fn(params), by default `loss_of`. Returns {name: {"max_rel", "max_abs",
    "checked", "failed", "rounding", "largest"}}: "failed" counts the entries whose relative error
    exceeds rel_tol and whose absolute error exceeds both "rounding" (ROUNDING_MARGIN eps |L| / h)
    and scale_tol times "largest", the gradient's largest entry (for gradients computed in a lower
    precision, whose sums round to about their largest terms).
    """
    hprev = np.zeros(params["W"].shape[0]) if hprev is None else hprev
    if grad_fn is None:
        grad_fn = lambda p: loss_and_grads(p, inputs, targets, hprev)[:2]  # noqa: E731
        loss_fn = loss_fn or (lambda p: loss_of(p, inputs, targets, hprev))  # no backward pass per difference
    loss_fn = loss_fn or (lambda p: grad_fn(p)[0])
    loss, analytic = grad_fn(params)
    noise = ROUNDING_MARGIN * np.finfo(np.float64).eps * abs(loss) / h
    entries = None
    if n_spot is not None:
        rng = rng if rng is not None else np.random.default_rng(0)
        entries = {k: rng.choice(v.size, size=min(n_spot, v.size), replace=False) for k, v in params.items()}
    numeric = numerical_grads(loss_fn, params, h=h, entries=entries)
    table = {}
    for name in params:
        mask = ~np.isnan(numeric[name])
        ga, gn = analytic[name][mask], numeric[name][mask]
        rel, err = relative_error(ga, gn, floor), np.abs(ga - gn)
        largest = float(np.abs(analytic[name]).max())
        table[name] = {"max_rel": float(rel.max()), "max_abs": float(err.max()), "checked": int(mask.sum()),
                       "failed": int(np.sum((rel > rel_tol) & (err > max(noise, scale_tol * largest)))),
                       "rounding": float(noise), "largest": largest}
    return table


# ----------------------------------------------------------------------------- synthesis
def sampling_probs(o: np.ndarray, temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """Next-character distribution from logits o (K,): softmax(o / temperature), then the nucleus.

    The nucleus is the smallest set of most probable characters whose total reaches top_p; the
    others get probability zero and the rest is renormalised. temperature=1, top_p=1: plain softmax.
    """
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SamplingError(f"{name} must be a number, got {value!r}")
    if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise SamplingError(f"temperature must be in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}], "
                            f"got {temperature}")
    if not 0 < top_p <= 1:
        raise SamplingError(f"top_p must be in (0, 1], got {top_p}")
    with np.errstate(over="ignore", invalid="ignore"):
        z = o / temperature  # (K,)
    if not np.isfinite(z).all():
        raise SamplingError("the network's outputs are not finite: its parameters are too large or not finite")
    p = softmax(z)
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1  # the first position whose total reaches top_p
        q = np.zeros_like(p)
        q[order[:keep]] = p[order[:keep]]
        p = q / q.sum()
    return p


def generate(params: dict, h0: np.ndarray, x0: int, rng: np.random.Generator,
             temperature: float = 1.0, top_p: float = 1.0):
    """Character indices one at a time, without end, from hidden state h0 and input x0 (not itself
    yielded). Each step draws one uniform number u from rng and takes the first index whose
    cumulative probability exceeds u (inverse-CDF sampling)."""
    U, W, V, b, c = (params[k] for k in PARAM_NAMES)
    if isinstance(x0, (bool, np.bool_)) or not isinstance(x0, (int, np.integer)) or not 0 <= x0 < U.shape[1]:
        raise SamplingError(f"x0 must be a character index in [0, {U.shape[1]}), got {x0!r}")
    sampling_probs(np.zeros(1), temperature, top_p)  # the settings checked now, not at the first draw
    h, x = np.array(h0, dtype=float), int(x0)
    while True:
        h = np.tanh(W @ h + U[:, x] + b)
        cdf = np.cumsum(sampling_probs(V @ h + c, temperature, top_p))
        x = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))  # never a p = 0 entry
        yield x


def synthesize(params: dict, h0: np.ndarray, x0: int, n: int, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """n character indices (int64, (n,)) sampled by `generate`."""
    _check_count(n)
    return np.fromiter(generate(params, h0, x0, rng, temperature, top_p), dtype=np.int64, count=n)


def _check_count(n) -> None:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise SamplingError(f"n must be a whole number >= 0, got {n!r}")


def default_prime(vocab) -> str:
    """The prime when none is given: a newline if the vocabulary has one, else its first character."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def sample_chars(params: dict, vocab, rng: np.random.Generator, prime: str | None = None,
                 temperature: float = 1.0, top_p: float = 1.0):
    """Characters that continue `prime`, one at a time: the hidden state reads all of prime but its
    last character from h = 0, and that character is the first input. vocab: .encode and .chars.
    No prime (None or ""): default_prime(vocab)."""
    if prime is not None and not isinstance(prime, str):
        raise SamplingError(f"prime must be a string, got {prime!r}")
    idx = vocab.encode(prime or default_prime(vocab))
    h = hidden_states(params, np.zeros(params["W"].shape[0]), idx[:-1])[-1]
    return (vocab.chars[x] for x in generate(params, h, idx[-1], rng, temperature, top_p))


def sample_text(params: dict, vocab, n: int, rng: np.random.Generator, prime: str | None = None,
                temperature: float = 1.0, top_p: float = 1.0) -> str:
    """n characters of `sample_chars` as one string."""
    _check_count(n)
    return "".join(itertools.islice(sample_chars(params, vocab, rng, prime, temperature, top_p), n))
