"""The fused training kernel: forward, BPTT, clipping and the AdaGrad or Adam update for a whole
stretch of updates in one compiled (numba) function, batch 1, in sequential order or following an
epoch's plan (random locations, shuffled chunks), with exactly the loop semantics of `train.train`.

It computes the same quantities as the vectorised numpy form of `model.py`; only the order of the
floating-point sums differs. Every inner loop is written as an axpy over a contiguous row
(y[:] += a * x[:]) rather than as a dot-product reduction, so LLVM vectorises it without being
allowed to reassociate sums (no fastmath): results are deterministic run to run.

Exactness: for the same parameters and sequence the kernel's loss equals the numpy form's to about
1e-15 relative and its gradients to about 1e-15 in norm. Over training the two drift apart all the
same: AdaGrad's first steps divide by sqrt(G) with G tiny, which amplifies last-digit differences,
and the trajectory is chaotic, so after tens of updates the parameters differ in the 1e-6 range
and later by much more. Both are correct; the tests compare what is well defined (one gradient,
and the first few updates).

If numba is missing or fails to compile, `available()` is False and training falls back to numpy.

Compilation is cached on disk (`cache=True`, in __pycache__): about 11 s the first time, well under
a second after. numba keys that cache on the source, not on the decorator options: after changing
only the options in `_JIT`, delete charrnn/__pycache__/kernel.* so that the kernel is rebuilt.
"""
from __future__ import annotations

import os

import numpy as np

_ERROR = None
try:  # numba is optional at import time: the numpy forms do not need it
    if os.environ.get("RNN_DISABLE_NUMBA", "").lower() in ("1", "true", "yes"):
        raise ImportError("disabled by RNN_DISABLE_NUMBA")
    import numba
    from numba import njit
except Exception as exc:  # noqa: BLE001 - any failure means: no kernel
    numba = None
    _ERROR = f"numba not importable ({exc})"

    def njit(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]

# status codes returned by `run_updates`
OK, NONFINITE = 0, 1

_JIT = dict(cache=True, error_model="numpy", boundscheck=False, nogil=True)


@njit(inline="always", **_JIT)
def _acc_rows(y, rows, x):
    """y[:] += sum_j x[j] * rows[j, :]: a transposed matrix-vector product as axpys over the
    contiguous rows, four rows per pass so that y is loaded and stored a quarter as often."""
    n, J = y.shape[0], x.shape[0]
    j = 0
    while j + 4 <= J:
        x0, x1, x2, x3 = x[j], x[j + 1], x[j + 2], x[j + 3]
        r0, r1, r2, r3 = rows[j], rows[j + 1], rows[j + 2], rows[j + 3]
        for i in range(n):
            y[i] += r0[i] * x0 + r1[i] * x1 + r2[i] * x2 + r3[i] * x3
        j += 4
    while j < J:
        xj, r = x[j], rows[j]
        for i in range(n):
            y[i] += r[i] * xj
        j += 1


@njit(**_JIT)
def forward_backward(U, W, V, b, c, inputs, targets, hprev, H, P, GA, dU, dW, dV, db, dc, touched):
    """Loss of one sequence and its gradients, written into dU..dc (and H, P, GA as workspaces).

    U (m,K) W (m,m) V (K,m) b (m,) c (K,); inputs, targets int (T,); hprev (m,);
    H (T+1,m) hidden states (H[0] = hprev); P (T,K) probabilities, then g_o = p - onehot(y);
    GA (T,m) g_a; touched (K,) bool, set for the columns of dU that are not zero.
    Every product is an `_acc_rows` over contiguous rows: W h uses the rows of W^T, V h those of
    V^T, V^T g_o those of V, W^T g_a those of W, dV = G_o^T H and dW = G_a^T H those of H.
    """
    T = inputs.shape[0]
    m = W.shape[0]
    K = V.shape[0]
    WT = np.ascontiguousarray(W.T)  # (m,m)
    VT = np.ascontiguousarray(V.T)  # (m,K)
    H[0, :] = hprev
    for t in range(T):
        x = inputs[t]
        a = H[t + 1]
        for i in range(m):
            a[i] = b[i] + U[i, x]
        _acc_rows(a, WT, H[t])
        for i in range(m):
            a[i] = np.tanh(a[i])
    loss = 0.0
    for t in range(T):
        o = P[t]
        o[:] = c
        _acc_rows(o, VT, H[t + 1])
        mx = o.max()
        s = 0.0
        for k in range(K):
            o[k] = np.exp(o[k] - mx)
            s += o[k]
        for k in range(K):
            o[k] /= s
        loss -= np.log(o[targets[t]])
        o[targets[t]] -= 1.0  # P[t] now holds g_o_t
    PT = np.ascontiguousarray(P.T)  # (K,T)
    for k in range(K):
        dV[k, :] = 0.0
        _acc_rows(dV[k], H[1:], PT[k])
        dc[k] = PT[k].sum()
    g_next = np.zeros(m)  # (m,) g_a_{t+1}
    for t in range(T - 1, -1, -1):
        gh = GA[t]
        gh[:] = 0.0
        _acc_rows(gh, V, P[t])  # V^T g_o_t
        _acc_rows(gh, W, g_next)  # + W^T g_a_{t+1}
        for i in range(m):
            gh[i] *= 1.0 - H[t + 1, i] * H[t + 1, i]
        g_next = gh
    GAT = np.ascontiguousarray(GA.T)  # (m,T)
    for i in range(m):
        dW[i, :] = 0.0
        _acc_rows(dW[i], H[:T], GAT[i])
        db[i] = GAT[i].sum()
    for x in range(K):  # only the columns of the previous sequence can be non-zero
        if touched[x]:
            for i in range(m):
                dU[i, x] = 0.0
    touched[:] = False
    for t in range(T):
        x = inputs[t]
        touched[x] = True
        for i in range(m):
            dU[i, x] += GA[t, i]
    return loss


@njit(**_JIT)
def _adagrad(theta, grad, G, eta, eps, clip):
    """Clip to [-clip, clip], then G += g*g; theta -= eta * g / sqrt(G + eps), entry by entry."""
    th, gr, gg = theta.ravel(), grad.ravel(), G.ravel()
    for i in range(th.shape[0]):
        g = min(max(gr[i], -clip), clip)
        gg[i] += g * g
        th[i] -= eta * g / np.sqrt(gg[i] + eps)


@njit(**_JIT)
def _adam(theta, grad, M, Vm, eta, beta1, beta2, eps, clip, c1, c2):
    """Clip, then Adam: M = b1 M + (1-b1) g; V = b2 V + (1-b2) g^2; theta -= eta (M/c1) / (sqrt(V/c2) + eps)."""
    th, gr, mm, vv = theta.ravel(), grad.ravel(), M.ravel(), Vm.ravel()
    for i in range(th.shape[0]):
        g = min(max(gr[i], -clip), clip)
        mm[i] = beta1 * mm[i] + (1.0 - beta1) * g
        vv[i] = beta2 * vv[i] + (1.0 - beta2) * g * g
        th[i] -= eta * (mm[i] / c1) / (np.sqrt(vv[i] / c2) + eps)


@njit(**_JIT)
def run_updates(U, W, V, b, c, SU, SW, SV, Sb, Sc, RU, RW, RV, Rb, Rc, BU, BW, BV, Bb, Bc, data, hprev,
                loss_out, smooth_out, istate, fstate, n_updates, T, eta, eps, clip, decay,
                adam, beta1, beta2, starts, resets):
    """Up to `n_updates` training updates in place, with the semantics of `train.train`.

    istate int64: [update, epoch, pos, best_update, status, adam step t]; fstate float64:
    [smooth, best_smooth]. S* is the optimiser's first state (AdaGrad's G, or Adam's first moment),
    R* Adam's second moment (ignored by AdaGrad). B* receive a copy of the parameters whenever the
    smooth loss reaches a new low. Order: with `starts` empty, sequential (pos is the character
    offset e); otherwise pos indexes the epoch's plan `starts`/`resets` and the call returns at the
    end of the epoch. Stops early with status NONFINITE (the update not applied) if a loss is NaN
    or infinite.
    """
    m, K, N = W.shape[0], V.shape[0], data.shape[0]
    planned = starts.shape[0] > 0
    H = np.empty((T + 1, m))
    P = np.empty((T, K))
    GA = np.empty((T, m))
    dU, dW, dV = np.zeros((m, K)), np.empty((m, m)), np.empty((K, m))
    db, dc = np.empty(m), np.empty(K)
    touched = np.zeros(K, dtype=np.bool_)
    for _ in range(n_updates):
        u, pos = istate[0], istate[2]
        e = pos
        if planned:
            e = starts[pos]
            if resets[pos]:
                hprev[:] = 0.0
        loss = forward_backward(U, W, V, b, c, data[e:e + T], data[e + 1:e + T + 1], hprev,
                                H, P, GA, dU, dW, dV, db, dc, touched)
        if not np.isfinite(loss):
            istate[4] = NONFINITE
            return
        smooth = loss if u == 0 else decay * fstate[0] + (1.0 - decay) * loss
        fstate[0] = smooth
        loss_out[u] = loss
        smooth_out[u] = smooth
        if smooth < fstate[1]:
            fstate[1] = smooth
            istate[3] = u
            BU[:, :] = U
            BW[:, :] = W
            BV[:, :] = V
            Bb[:] = b
            Bc[:] = c
        if adam:
            t = istate[5] + 1
            istate[5] = t
            c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
            _adam(U, dU, SU, RU, eta, beta1, beta2, eps, clip, c1, c2)  # moments move even where g = 0
            _adam(W, dW, SW, RW, eta, beta1, beta2, eps, clip, c1, c2)
            _adam(V, dV, SV, RV, eta, beta1, beta2, eps, clip, c1, c2)
            _adam(b, db, Sb, Rb, eta, beta1, beta2, eps, clip, c1, c2)
            _adam(c, dc, Sc, Rc, eta, beta1, beta2, eps, clip, c1, c2)
        else:
            for x in range(K):  # columns of dU that are zero leave U and G unchanged: skip them
                if touched[x]:
                    for i in range(m):
                        g = min(max(dU[i, x], -clip), clip)
                        SU[i, x] += g * g
                        U[i, x] -= eta * g / np.sqrt(SU[i, x] + eps)
            _adagrad(W, dW, SW, eta, eps, clip)
            _adagrad(V, dV, SV, eta, eps, clip)
            _adagrad(b, db, Sb, eta, eps, clip)
            _adagrad(c, dc, Sc, eta, eps, clip)
        hprev[:] = H[T]
        istate[0] = u + 1
        if planned:
            pos += 1
            if pos == starts.shape[0]:  # the plan is done: next epoch, with a new plan
                istate[1] += 1
                istate[2] = 0
                hprev[:] = 0.0
                break
        else:
            pos += T
            if pos + T + 1 > N:  # fewer than T+1 characters left: next epoch
                istate[1] += 1
                pos = 0
                hprev[:] = 0.0
        istate[2] = pos
    istate[4] = OK


def available() -> bool:
    """True if the kernel can run (numba imported and the kernel compiles)."""
    global _ERROR
    if numba is None:
        return False
    if _ERROR is None and not getattr(available, "_checked", False):
        try:
            _warm_up()
        except Exception as exc:  # noqa: BLE001
            _ERROR = f"numba failed to compile the kernel ({exc.__class__.__name__}: {exc})"
        available._checked = True
    return _ERROR is None


def unavailable_reason() -> str | None:
    available()
    return _ERROR


def _warm_up():
    """Compile (or load from numba's cache) with the argument types training uses."""
    m, K, T = 2, 3, 2
    rng = np.random.default_rng(0)
    p = [rng.standard_normal(s) * 0.1 for s in ((m, K), (m, m), (K, m), (m,), (K,))]
    S, R, B = ([np.zeros_like(a) for a in p] for _ in range(3))
    data = np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.int64)
    run_updates(*p, *S, *R, *B, data, np.zeros(m), np.zeros(4), np.zeros(4),
                np.zeros(6, dtype=np.int64), np.array([0.0, np.inf]), 2, T, 0.1, 1e-8, 5.0, 0.999,
                False, 0.9, 0.999, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_))


def kernel_loss_and_grads(params: dict, inputs, targets, hprev):
    """The kernel's loss and gradients for one sequence, in the shape of `model.loss_and_grads`."""
    U, W, V, b, c = (np.ascontiguousarray(params[k], dtype=np.float64) for k in ("U", "W", "V", "b", "c"))
    m, K = W.shape[0], V.shape[0]
    inputs = np.ascontiguousarray(inputs, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    T = len(inputs)
    H, P, GA = np.empty((T + 1, m)), np.empty((T, K)), np.empty((T, m))
    g = {"U": np.zeros((m, K)), "W": np.empty((m, m)), "V": np.empty((K, m)), "b": np.empty(m), "c": np.empty(K)}
    loss = forward_backward(U, W, V, b, c, inputs, targets, np.asarray(hprev, dtype=np.float64),
                            H, P, GA, g["U"], g["W"], g["V"], g["b"], g["c"], np.zeros(K, dtype=np.bool_))
    return float(loss), g, H[T].copy()
