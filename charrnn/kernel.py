"""The fused batch-1 training kernel: forward, BPTT, clipping and the AdaGrad or Adam update for a
whole stretch of updates in one compiled (numba) function, in sequential order or following an
epoch's plan (random locations, shuffled chunks), with exactly the loop semantics of `train.train`.

Letters: T steps per sequence, K characters, m hidden units. Parameters U (m,K), W (m,m), V (K,m),
b (m,), c (K,) travel as the tuple (U, W, V, b, c), and so do the gradients, the optimiser's arrays
and the best parameters.

How it is fast (m = 100, T = 25; `make bench` has the numbers):
- Only the recurrent products W h_{t-1} (forward, `_matvec`) and W^T g_a (backward, `_axpy_rows`)
  go step by step. The output layer H V^T (`_gemm_nt`), dV = G_o^T H and dW = G_a^T H_{0..T-1}
  (`_gemm_tn`) and the rows V^T g_o (`_gemm`) are matrix products over all T steps, register
  blocked (4 x 4 or 2 x 4), and need no transposed copies. No BLAS: the products are small, a
  library call per product would cost about what it saves, and its rounding would depend on the
  BLAS build and its threads.
- tanh and exp are computed by vectorisable code (`_tanh`, `_exp`: reduction by ln 2, a Taylor
  polynomial of e^r - 1, the power of two built in the exponent bits), within 3 ulp of libm.
- The AdaGrad step takes 1/sqrt(G + eps) from a float32 estimate refined by two Newton steps in
  float64 (`_rsqrt`), half the cost of a float64 square root and division, within 2 ulp of it.
- Deterministic: the code is compiled with fastmath limited to fusing a*b + c into one FMA
  ("contract"), plus reassociation inside the dot products of `_gemm_nt` and `_matvec` only, where
  LLVM sums in vector lanes. Either way the order of every sum is fixed when the kernel is
  compiled, so runs repeat bit for bit; another machine (vector width, FMA) or another LLVM may
  round the last bits differently.

Precision (measured, m = 100, sig 0.1, tests/test_kernel.py): for the same parameters and sequence
the kernel's loss, last hidden state and gradients equal the numpy form's (`model.loss_and_grads`)
to about 1e-15 relative in norm; the tests hold them to 1e-12. Over training the two drift apart:
AdaGrad's first steps divide by sqrt(G) with G tiny, which amplifies last-digit differences, and
the trajectory is chaotic; the tests compare what is well defined (one gradient, the first updates).

The kernel's state lives in two small arrays whose slots are named here, and only here: istate
(I_UPDATE, I_EPOCH, I_POS, I_BEST_UPDATE, I_STATUS, I_ADAM_T) and fstate (F_SMOOTH, F_BEST_SMOOTH);
hyperparameters go in hyper (H_ETA, H_EPS, H_CLIP, H_DECAY, H_BETA1, H_BETA2). `advance` moves a
`Run` forward and is the only caller in the package.

If numba is missing or fails to compile, `available()` is False and training falls back to numpy.
Compilation is cached on disk (`cache=True`, in __pycache__): about 15 s the first time, well under
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

# The slots of the state arrays, defined once. istate int64 (N_ISTATE,), fstate float64 (N_FSTATE,),
# hyper float64 (N_HYPER,).
I_UPDATE, I_EPOCH, I_POS, I_BEST_UPDATE, I_STATUS, I_ADAM_T, N_ISTATE = range(7)
F_SMOOTH, F_BEST_SMOOTH, N_FSTATE = range(3)
H_ETA, H_EPS, H_CLIP, H_DECAY, H_BETA1, H_BETA2, N_HYPER = range(7)
# values of istate[I_STATUS]
OK, NONFINITE = 0, 1

_JIT = dict(cache=True, error_model="numpy", boundscheck=False, nogil=True, fastmath={"contract"})
_JIT_DOT = dict(_JIT, fastmath={"contract", "reassoc"})  # dot products only: see `_gemm_nt`

# exp and tanh: x = k ln2 + r, |r| <= ln2/2, ln2 split in two so that k*LN2_HI is exact
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


# ----------------------------------------------------------------------------- elementwise
@njit(inline="always", **_JIT)
def _expm1_reduced(r):
    """e^r - 1 for |r| <= ln2/2: Taylor series to r^13 (the rest is below 2e-17 relative)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r


@njit(**_JIT)
def _reduce(z, q, kbits):
    """For z (n,) with -708 <= z <= 0 (NaN passes through): q = e^r - 1 and kbits = the bits of
    the float 2^k, where z = k ln2 + r. Two plain loops, so that LLVM vectorises both."""
    for i in range(z.shape[0]):
        k = np.floor(z[i] * LOG2E + 0.5)
        q[i] = _expm1_reduced((z[i] - k * LN2_HI) - k * LN2_LO)
        kbits[i] = (np.int64(k) + 1023) << 52


@njit(**_JIT)
def _exp(a, q, kbits):
    """a (n,) = exp(a) in place for a <= 0 (below -708 taken as -708: exp is then < 1e-307)."""
    n = a.shape[0]
    for i in range(n):
        a[i] = -708.0 if a[i] < -708.0 else a[i]
    _reduce(a, q[:n], kbits[:n])
    s = kbits[:n].view(np.float64)  # 2^k
    for i in range(n):
        a[i] = s[i] * q[i] + s[i]


@njit(**_JIT)
def _tanh(a, z, q, kbits):
    """a (n,) = tanh(a) in place: with e = e^{-2|a|} - 1 (no cancellation near 0),
    tanh|a| = -e / (2 + e). |a| > 20 gives +-1 as in libm. z, q, kbits are workspaces."""
    n = a.shape[0]
    for i in range(n):
        w = abs(a[i])
        z[i] = -2.0 * (20.0 if w > 20.0 else w)
    _reduce(z[:n], q[:n], kbits[:n])
    s = kbits[:n].view(np.float64)
    for i in range(n):
        e = s[i] * q[i] + (s[i] - 1.0)
        t = -e / (2.0 + e)
        a[i] = t if a[i] >= 0.0 else -t


# ----------------------------------------------------------------------------- products
@njit(inline="always", **_JIT)
def _axpy_rows(y, rows, x):
    """y (n,) += rows (J,n)^T x (J,): axpys over contiguous rows, eight rows per pass so that y
    is loaded and stored an eighth as often."""
    n, J = y.shape[0], x.shape[0]
    j = 0
    while j + 8 <= J:
        x0, x1, x2, x3, x4, x5, x6, x7 = x[j], x[j + 1], x[j + 2], x[j + 3], x[j + 4], x[j + 5], x[j + 6], x[j + 7]
        r0, r1, r2, r3, r4, r5, r6, r7 = (rows[j], rows[j + 1], rows[j + 2], rows[j + 3],
                                          rows[j + 4], rows[j + 5], rows[j + 6], rows[j + 7])
        for i in range(n):
            y[i] = (y[i] + r0[i] * x0 + r1[i] * x1 + r2[i] * x2 + r3[i] * x3
                    + r4[i] * x4 + r5[i] * x5 + r6[i] * x6 + r7[i] * x7)
        j += 8
    while j < J:
        xj, r = x[j], rows[j]
        for i in range(n):
            y[i] += r[i] * xj
        j += 1


@njit(**_JIT)
def _gemm(C, A, B):
    """C (M,N) += A (M,J) B (J,N), all row-major: four rows of C against four rows of B per pass
    (16 multiply-adds per 4 loads of B and 4 loads and stores of C), each entry of C updated by a
    chain of four fused multiply-adds."""
    M, J = A.shape
    N = B.shape[1]
    r = 0
    while r + 4 <= M:
        c0, c1, c2, c3 = C[r], C[r + 1], C[r + 2], C[r + 3]
        j = 0
        while j + 4 <= J:
            b0, b1, b2, b3 = B[j], B[j + 1], B[j + 2], B[j + 3]
            a00, a01, a02, a03 = A[r, j], A[r, j + 1], A[r, j + 2], A[r, j + 3]
            a10, a11, a12, a13 = A[r + 1, j], A[r + 1, j + 1], A[r + 1, j + 2], A[r + 1, j + 3]
            a20, a21, a22, a23 = A[r + 2, j], A[r + 2, j + 1], A[r + 2, j + 2], A[r + 2, j + 3]
            a30, a31, a32, a33 = A[r + 3, j], A[r + 3, j + 1], A[r + 3, j + 2], A[r + 3, j + 3]
            for i in range(N):
                v0, v1, v2, v3 = b0[i], b1[i], b2[i], b3[i]
                c0[i] = c0[i] + a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                c1[i] = c1[i] + a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                c2[i] = c2[i] + a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                c3[i] = c3[i] + a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            j += 4
        while j < J:
            b0 = B[j]
            a0, a1, a2, a3 = A[r, j], A[r + 1, j], A[r + 2, j], A[r + 3, j]
            for i in range(N):
                c0[i] += a0 * b0[i]
                c1[i] += a1 * b0[i]
                c2[i] += a2 * b0[i]
                c3[i] += a3 * b0[i]
            j += 1
        r += 4
    while r < M:
        _axpy_rows(C[r], B, A[r])
        r += 1


@njit(**_JIT)
def _gemm_tn(C, A, B):
    """C (M,N) += A (J,M)^T B (J,N): as `_gemm`, the coefficients read down the columns of A (no
    transposed copy)."""
    J, M = A.shape
    N = B.shape[1]
    r = 0
    while r + 4 <= M:
        c0, c1, c2, c3 = C[r], C[r + 1], C[r + 2], C[r + 3]
        j = 0
        while j + 4 <= J:
            b0, b1, b2, b3 = B[j], B[j + 1], B[j + 2], B[j + 3]
            a00, a01, a02, a03 = A[j, r], A[j + 1, r], A[j + 2, r], A[j + 3, r]
            a10, a11, a12, a13 = A[j, r + 1], A[j + 1, r + 1], A[j + 2, r + 1], A[j + 3, r + 1]
            a20, a21, a22, a23 = A[j, r + 2], A[j + 1, r + 2], A[j + 2, r + 2], A[j + 3, r + 2]
            a30, a31, a32, a33 = A[j, r + 3], A[j + 1, r + 3], A[j + 2, r + 3], A[j + 3, r + 3]
            for i in range(N):
                v0, v1, v2, v3 = b0[i], b1[i], b2[i], b3[i]
                c0[i] = c0[i] + a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                c1[i] = c1[i] + a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                c2[i] = c2[i] + a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                c3[i] = c3[i] + a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            j += 4
        while j < J:
            b0 = B[j]
            a0, a1, a2, a3 = A[j, r], A[j, r + 1], A[j, r + 2], A[j, r + 3]
            for i in range(N):
                c0[i] += a0 * b0[i]
                c1[i] += a1 * b0[i]
                c2[i] += a2 * b0[i]
                c3[i] += a3 * b0[i]
            j += 1
        r += 4
    while r < M:
        c = C[r]
        for j in range(J):
            a, bj = A[j, r], B[j]
            for i in range(N):
                c[i] += a * bj[i]
        r += 1


@njit(**_JIT_DOT)
def _gemm_nt(C, A, B):
    """C (M,N) += A (M,J) B (N,J)^T: dot products of contiguous rows, 2 rows of A against 4 of B
    per pass. Each dot product is summed in the vector lanes LLVM chooses (reassociation allowed
    here only), a fixed order for a given machine and build."""
    M, J = A.shape
    N = B.shape[0]
    for r in range(0, M - M % 2, 2):
        a0, a1 = A[r], A[r + 1]
        n = 0
        while n + 4 <= N:
            b0, b1, b2, b3 = B[n], B[n + 1], B[n + 2], B[n + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            for j in range(J):
                x0, x1 = a0[j], a1[j]
                s00 += x0 * b0[j]
                s01 += x0 * b1[j]
                s02 += x0 * b2[j]
                s03 += x0 * b3[j]
                s10 += x1 * b0[j]
                s11 += x1 * b1[j]
                s12 += x1 * b2[j]
                s13 += x1 * b3[j]
            C[r, n] += s00
            C[r, n + 1] += s01
            C[r, n + 2] += s02
            C[r, n + 3] += s03
            C[r + 1, n] += s10
            C[r + 1, n + 1] += s11
            C[r + 1, n + 2] += s12
            C[r + 1, n + 3] += s13
            n += 4
        while n < N:
            s0 = s1 = 0.0
            for j in range(J):
                s0 += a0[j] * B[n, j]
                s1 += a1[j] * B[n, j]
            C[r, n] += s0
            C[r + 1, n] += s1
            n += 1
    if M % 2:
        _matvec(C[M - 1], B, A[M - 1])


@njit(**_JIT_DOT)
def _matvec(y, A, x):
    """y (M,) += A (M,J) x (J,): dot products of contiguous rows, four rows per pass (summed in
    vector lanes, as in `_gemm_nt`)."""
    M, J = A.shape
    r = 0
    while r + 4 <= M:
        w0, w1, w2, w3 = A[r], A[r + 1], A[r + 2], A[r + 3]
        s0 = s1 = s2 = s3 = 0.0
        for j in range(J):
            xj = x[j]
            s0 += w0[j] * xj
            s1 += w1[j] * xj
            s2 += w2[j] * xj
            s3 += w3[j] * xj
        y[r] += s0
        y[r + 1] += s1
        y[r + 2] += s2
        y[r + 3] += s3
        r += 4
    while r < M:
        s = 0.0
        for j in range(J):
            s += A[r, j] * x[j]
        y[r] += s
        r += 1


@njit(inline="always", **_JIT)
def _column_sums(y, A):
    """y (N,) = the sum of the rows of A (M,N), row after row."""
    y[:] = 0.0
    for r in range(A.shape[0]):
        a = A[r]
        for i in range(y.shape[0]):
            y[i] += a[i]


# ----------------------------------------------------------------------------- one sequence
@njit(**_JIT)
def _softmax_loss(P, targets, q, kbits):
    """Rows of logits P (n,K) in place to softmax(row) - onehot(target) (g_o); returns the summed
    loss sum_t -log p_t[y_t], each term as log(sum exp) - (o_y - max). targets int (n,)."""
    n, K = P.shape
    loss = 0.0
    for t in range(n):  # shift each row by its maximum
        o = P[t]
        m0 = m1 = m2 = m3 = o[0]
        k = 0
        while k + 4 <= K:
            m0, m1 = max(m0, o[k]), max(m1, o[k + 1])
            m2, m3 = max(m2, o[k + 2]), max(m3, o[k + 3])
            k += 4
        while k < K:
            m0 = max(m0, o[k])
            k += 1
        mx = max(max(m0, m1), max(m2, m3))
        for k in range(K):
            o[k] -= mx
        loss -= o[targets[t]]
    _exp(P.reshape(n * K), q, kbits)
    for t in range(n):
        o = P[t]
        s0 = s1 = s2 = s3 = 0.0
        k = 0
        while k + 4 <= K:
            s0, s1, s2, s3 = s0 + o[k], s1 + o[k + 1], s2 + o[k + 2], s3 + o[k + 3]
            k += 4
        while k < K:
            s0 += o[k]
            k += 1
        s = (s0 + s1) + (s2 + s3)
        loss += np.log(s)
        r = 1.0 / s
        for k in range(K):
            o[k] *= r
        o[targets[t]] -= 1.0
    return loss


@njit(**_JIT)
def workspace(m, K, T):
    """The arrays `forward_backward` writes, allocated once per call of `run_updates`:
    H (T+1,m) hidden states, H[0] = hprev; P (T,K) probabilities, then G_o = P - onehot(Y);
    GA (T,m) g_a; GH (T,m) V^T g_o; z, q (n,) float and kbits (n,) int64 for exp and tanh,
    n = max(T*K, m); touched (K,) bool, the columns of dU that are not zero."""
    n = max(T * K, m)
    return (np.empty((T + 1, m)), np.empty((T, K)), np.empty((T, m)), np.empty((T, m)),
            np.empty(n), np.empty(n), np.empty(n, dtype=np.int64), np.zeros(K, dtype=np.bool_))


@njit(**_JIT)
def forward_backward(params, inputs, targets, hprev, grads, work):
    """Loss of one sequence; its gradients written into grads = (dU, dW, dV, db, dc).

    params (U, W, V, b, c); inputs, targets int (T,); hprev (m,); work from `workspace`. dU is
    zeroed only in the columns the previous call touched (the others are zero already).
    """
    U, W, V, b, c = params
    dU, dW, dV, db, dc = grads
    H, P, GA, GH, z, q, kbits, touched = work
    T, m, K = inputs.shape[0], W.shape[0], V.shape[0]
    H[0, :] = hprev
    for t in range(T):  # the recurrence: a_t = b + U x_t + W h_{t-1}, h_t = tanh(a_t)
        a = H[t + 1]
        x = inputs[t]
        for i in range(m):
            a[i] = b[i] + U[i, x]
        _matvec(a, W, H[t])
        _tanh(a, z, q, kbits)
    for t in range(T):  # O = H_{1..T} V^T + c, all steps at once
        P[t, :] = c
    _gemm_nt(P, H[1:], V)
    loss = _softmax_loss(P, targets, q, kbits)  # P is now G_o
    dV[:, :] = 0.0
    _gemm_tn(dV, P, H[1:])  # dV = G_o^T H_{1..T}
    _column_sums(dc, P)
    GH[:, :] = 0.0
    _gemm(GH, P, V)  # row t: V^T g_o_t
    for t in range(T - 1, -1, -1):  # g_a_t = (V^T g_o_t + W^T g_a_{t+1}) * (1 - h_t^2)
        g = GA[t]
        g[:] = GH[t]
        if t + 1 < T:
            _axpy_rows(g, W, GA[t + 1])
        h = H[t + 1]
        for i in range(m):
            g[i] *= 1.0 - h[i] * h[i]
    dW[:, :] = 0.0
    _gemm_tn(dW, GA, H[:T])  # dW = G_a^T H_{0..T-1}
    _column_sums(db, GA)
    for x in range(K):
        if touched[x]:
            for i in range(m):
                dU[i, x] = 0.0
    touched[:] = False
    for t in range(T):  # column x_t of dU accumulates g_a_t
        x = inputs[t]
        touched[x] = True
        for i in range(m):
            dU[i, x] += GA[t, i]
    return loss


# ----------------------------------------------------------------------------- optimisers
@njit(inline="always", **_JIT)
def _rsqrt(x):
    """1/sqrt(x) for 1e-30 <= x <= 1e30: a float32 estimate (relative error below 1e-7) refined
    by two Newton steps in float64 (each squares the error: below 1e-16), within 2 ulp of
    1/sqrt(x) in float64 and half the cost of its square root and division."""
    y = np.float64(np.float32(1.0) / np.sqrt(np.float32(x)))
    h = 0.5 * x
    y = y * (1.5 - h * y * y)
    return y * (1.5 - h * y * y)


@njit(inline="always", **_JIT)
def _fast_rsqrt_ok(eps, clip):
    """G + eps stays in `_rsqrt`'s range: eps >= 1e-30, and G (at most clip^2 more per update)
    below 1e30 for any run of fewer than 1e14 updates."""
    return eps >= 1e-30 and clip <= 1e8


@njit(**_JIT)
def _adagrad(theta, grad, G, eta, eps, clip):
    """Clip to [-clip, clip], then G += g*g; theta -= eta * g / sqrt(G + eps), entry by entry
    (1/sqrt by `_rsqrt` where it is valid, else a float64 square root and division)."""
    th, gr, gg = theta.ravel(), grad.ravel(), G.ravel()
    if _fast_rsqrt_ok(eps, clip):
        for i in range(th.shape[0]):
            g = min(max(gr[i], -clip), clip)
            gg[i] += g * g
            th[i] -= eta * g * _rsqrt(gg[i] + eps)
    else:
        for i in range(th.shape[0]):
            g = min(max(gr[i], -clip), clip)
            gg[i] += g * g
            th[i] -= eta * g / np.sqrt(gg[i] + eps)


@njit(**_JIT)
def _adagrad_columns(U, dU, G, eta, eps, clip, touched):
    """`_adagrad` for U, visiting only the columns of dU that are not zero (the others leave U
    and G unchanged)."""
    m, K = U.shape
    fast = _fast_rsqrt_ok(eps, clip)
    for x in range(K):
        if touched[x]:
            for i in range(m):
                g = min(max(dU[i, x], -clip), clip)
                G[i, x] += g * g
                if fast:
                    U[i, x] -= eta * g * _rsqrt(G[i, x] + eps)
                else:
                    U[i, x] -= eta * g / np.sqrt(G[i, x] + eps)


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
def _step(params, grads, S, R, istate, hyper, adam, touched):
    """The optimiser step on every parameter: AdaGrad (state S = G) or Adam (S, R the moments)."""
    eta, eps, clip = hyper[H_ETA], hyper[H_EPS], hyper[H_CLIP]
    if adam:
        beta1, beta2 = hyper[H_BETA1], hyper[H_BETA2]
        t = istate[I_ADAM_T] + 1
        istate[I_ADAM_T] = t
        c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
        # every entry, also where g = 0: the moments decay
        _adam(params[0], grads[0], S[0], R[0], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[1], grads[1], S[1], R[1], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[2], grads[2], S[2], R[2], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[3], grads[3], S[3], R[3], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[4], grads[4], S[4], R[4], eta, beta1, beta2, eps, clip, c1, c2)
        return
    _adagrad_columns(params[0], grads[0], S[0], eta, eps, clip, touched)
    _adagrad(params[1], grads[1], S[1], eta, eps, clip)
    _adagrad(params[2], grads[2], S[2], eta, eps, clip)
    _adagrad(params[3], grads[3], S[3], eta, eps, clip)
    _adagrad(params[4], grads[4], S[4], eta, eps, clip)


# ----------------------------------------------------------------------------- the training loop
@njit(**_JIT)
def run_updates(params, S, R, best, data, hprev, loss_out, smooth_out, istate, fstate, hyper,
                n_updates, T, adam, starts, resets):
    """Up to `n_updates` training updates in place, with the semantics of `train.train`.

    params, best: (U, W, V, b, c); S: the optimiser's first state (AdaGrad's G, or Adam's first
    moment), R: Adam's second moment (not read by AdaGrad), both tuples shaped like params; best
    receives a copy of the parameters whenever the smooth loss reaches a new low. data int64 (N,);
    hprev (m,); loss_out, smooth_out (>= updates,) indexed by update. istate, fstate, hyper: the
    named slots above. Order: with `starts` empty, sequential (I_POS is the character offset e);
    otherwise I_POS indexes the epoch's plan starts int64 / resets bool (n_plan,) and the call
    returns at the end of the epoch. Stops early with I_STATUS = NONFINITE (the update not
    applied) if a loss is NaN or infinite.
    """
    U, W, V, b, c = params
    m, K, N = W.shape[0], V.shape[0], data.shape[0]
    planned = starts.shape[0] > 0
    decay = hyper[H_DECAY]
    work = workspace(m, K, T)
    touched = work[7]
    grads = (np.zeros((m, K)), np.empty((m, m)), np.empty((K, m)), np.empty(m), np.empty(K))
    istate[I_STATUS] = OK
    for _ in range(n_updates):
        u, pos = istate[I_UPDATE], istate[I_POS]
        e = pos
        if planned:
            e = starts[pos]
            if resets[pos]:
                hprev[:] = 0.0
        loss = forward_backward(params, data[e:e + T], data[e + 1:e + T + 1], hprev, grads, work)
        if not np.isfinite(loss):
            istate[I_STATUS] = NONFINITE
            return
        smooth = loss if u == 0 else decay * fstate[F_SMOOTH] + (1.0 - decay) * loss
        fstate[F_SMOOTH] = smooth
        loss_out[u] = loss
        smooth_out[u] = smooth
        if smooth < fstate[F_BEST_SMOOTH]:
            fstate[F_BEST_SMOOTH] = smooth
            istate[I_BEST_UPDATE] = u
            best[0][:, :] = U
            best[1][:, :] = W
            best[2][:, :] = V
            best[3][:] = b
            best[4][:] = c
        _step(params, grads, S, R, istate, hyper, adam, touched)
        hprev[:] = work[0][T]
        istate[I_UPDATE] = u + 1
        if planned:
            pos += 1
            if pos == starts.shape[0]:  # the plan is done: next epoch, with a new plan
                istate[I_EPOCH] += 1
                istate[I_POS] = 0
                hprev[:] = 0.0
                return
        else:
            pos += T
            if pos + T + 1 > N:  # fewer than T+1 characters left: next epoch
                istate[I_EPOCH] += 1
                pos = 0
                hprev[:] = 0.0
        istate[I_POS] = pos


# ----------------------------------------------------------------------------- from Python
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
    p = tuple(rng.standard_normal(s) * 0.1 for s in ((m, K), (m, m), (K, m), (m,), (K,)))
    S, R, B = (tuple(np.zeros_like(a) for a in p) for _ in range(3))
    data = np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.int64)
    for adam in (False, True):
        istate, fstate = new_state()
        run_updates(p, S, R, B, data, np.zeros(m), np.zeros(4), np.zeros(4), istate, fstate,
                    hyperparameters(0.1, 1e-8, 5.0, 0.999, 0.9, 0.999), 2, T, adam,
                    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_))


def new_state(update=0, epoch=0, pos=0, best_update=-1, adam_t=0, smooth=np.nan, best_smooth=np.inf):
    """The kernel's (istate, fstate) arrays with their named slots filled."""
    istate = np.zeros(N_ISTATE, dtype=np.int64)
    istate[I_UPDATE], istate[I_EPOCH], istate[I_POS] = update, epoch, pos
    istate[I_BEST_UPDATE], istate[I_ADAM_T], istate[I_STATUS] = best_update, adam_t, OK
    fstate = np.zeros(N_FSTATE)
    fstate[F_SMOOTH], fstate[F_BEST_SMOOTH] = smooth, best_smooth
    return istate, fstate


def hyperparameters(eta, eps, clip, decay, beta1, beta2) -> np.ndarray:
    """The kernel's hyper array (N_HYPER,) with its named slots filled."""
    hyper = np.zeros(N_HYPER)
    hyper[H_ETA], hyper[H_EPS], hyper[H_CLIP] = eta, eps, clip
    hyper[H_DECAY], hyper[H_BETA1], hyper[H_BETA2] = decay, beta1, beta2
    return hyper


def _tuple(d: dict) -> tuple:
    return tuple(d[k] for k in ("U", "W", "V", "b", "c"))


def advance(run, data: np.ndarray, n: int, starts=None, resets=None) -> bool:
    """n updates of `run` (batch 1) with the kernel, in place; False if a loss became NaN or
    infinite (the run then stands before the update that produced it).

    data int64 (N,); for the random and chunked orders, the epoch's plan: starts int (n_plan,),
    resets bool (n_plan,) (None: sequential order)."""
    c = run.config
    adam = c.optimizer == "adam"
    S = run.opt_state["m"] if adam else run.opt_state["G"]
    R = run.opt_state["v"] if adam else S  # AdaGrad has no second array: R is not read
    if starts is None:
        starts, resets = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)
    istate, fstate = new_state(run.update, run.epoch, run.pos, run.best_update,
                               run.opt_state.get("t", 0) if adam else 0, run.smooth_loss, run.best_smooth)
    hprev = np.array(run.hprev, dtype=np.float64)  # (m,) updated in place
    run_updates(_tuple(run.params), _tuple(S), _tuple(R), _tuple(run.best_params), data, hprev,
                run.loss, run.smooth_history, istate, fstate,
                hyperparameters(c.eta, c.eps, c.clip, c.smooth, c.beta1, c.beta2), n, c.seq_length, adam,
                np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(resets, dtype=np.bool_))
    run.update, run.epoch, run.pos = int(istate[I_UPDATE]), int(istate[I_EPOCH]), int(istate[I_POS])
    run.best_update = int(istate[I_BEST_UPDATE])
    if adam:
        run.opt_state["t"] = int(istate[I_ADAM_T])
    run.smooth_loss, run.best_smooth = float(fstate[F_SMOOTH]), float(fstate[F_BEST_SMOOTH])
    run.hprev = hprev
    return istate[I_STATUS] == OK


def kernel_loss_and_grads(params: dict, inputs, targets, hprev):
    """The kernel's loss and gradients for one sequence, in the shape of `model.loss_and_grads`."""
    p = tuple(np.ascontiguousarray(params[k], dtype=np.float64) for k in ("U", "W", "V", "b", "c"))
    m, K = p[1].shape[0], p[2].shape[0]
    inputs = np.ascontiguousarray(inputs, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    T = len(inputs)
    grads = (np.zeros((m, K)), np.empty((m, m)), np.empty((K, m)), np.empty(m), np.empty(K))
    work = workspace(m, K, T)
    loss = forward_backward(p, inputs, targets, np.asarray(hprev, dtype=np.float64), grads, work)
    return float(loss), dict(zip(("U", "W", "V", "b", "c"), grads)), work[0][T].copy()
