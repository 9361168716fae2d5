"""tanh, exp and the softmax with its loss for the kernels (`single.py`, `batch.py`, `evaluate.py`),
in float64 and, where the kernel runs in float32, in float32 (numba compiles each
for the arrays it is given; `ops.py` has the products and the compilation settings).

tanh and exp are vectorisable code (`_tanh`, `_exp`): x = k ln2 + r with |r| <= ln2/2, a Taylor
polynomial of e^r - 1 (to r^13 in float64, r^7 in float32), and 2^k built in the exponent bits;
within 3 ulp of libm in float64, 2.4 ulp (tanh) and 1 ulp (exp) in float32 (tests/test_kernel.py,
tests/test_float32.py). Which precision's pieces run is chosen when numba compiles (`overload`);
with numba off (NUMBA_DISABLE_JIT=1, a debugging switch) the same choice is made in Python.
"""
from __future__ import annotations

import numpy as np

from charrnn.kernels.ops import _JIT, njit, numba

# exp and tanh: x = k ln2 + r, |r| <= ln2/2, ln2 split in two so that k*LN2_HI is exact
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
# the float32 split (9 bits in the high part: k * LN2_HI_SINGLE is exact in float32 for |k| < 2^15)
LN2_HI_SINGLE, LN2_LO_SINGLE = 0.693359375, -2.12194440e-4


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


@njit(inline="always", **_JIT)
def _expm1_reduced_single(r):
    """float32 e^r - 1 for |r| <= ln2/2: Taylor series to r^7 (the rest is below 1.5e-8 relative,
    a quarter of float32's unit roundoff)."""
    f = np.float32
    p = f(1.0 / 5040.0)
    p = p * r + f(1.0 / 720.0)
    p = p * r + f(1.0 / 120.0)
    p = p * r + f(1.0 / 24.0)
    p = p * r + f(1.0 / 6.0)
    p = p * r + f(0.5)
    p = p * r + f(1.0)
    return p * r


@njit(**_JIT)
def _reduce_single(z, q, kbits):
    """`_reduce` in float32, for -87 <= z <= 0: kbits int32, the bits of the float32 2^k."""
    f = np.float32
    for i in range(z.shape[0]):
        k = np.floor(z[i] * f(LOG2E) + f(0.5))
        q[i] = _expm1_reduced_single((z[i] - k * f(LN2_HI_SINGLE)) - k * f(LN2_LO_SINGLE))
        kbits[i] = np.int32((k + f(127.0)) * f(8388608.0))  # (k + 127) << 23, kept in 32 bits (numba widens int32 sums)


def _reduce_any(z, q, kbits):
    """`_reduce` or, for float32 workspaces, `_reduce_single` (chosen when numba compiles)."""
    (_reduce_single if z.dtype == np.float32 else _reduce)(z, q, kbits)


def _powers(kbits):
    """kbits (n,) as the floats 2^k whose bits they hold: float64 for int64, float32 for int32."""
    return kbits.view(np.float32 if kbits.dtype == np.int32 else np.float64)


def int_workspace(like, n):
    """An empty (n,) integer array as wide as the floats of the array `like` (kbits for them)."""
    return np.empty(n, np.int32 if like.dtype == np.float32 else np.int64)


if numba is not None:
    from numba.extending import overload

    @overload(_reduce_any, jit_options=_JIT)
    def _reduce_any_typed(z, q, kbits):
        return (lambda z, q, kbits: _reduce_single(z, q, kbits)) if z.dtype.bitwidth == 32 else \
            (lambda z, q, kbits: _reduce(z, q, kbits))

    @overload(int_workspace, jit_options=_JIT)
    def _int_workspace_typed(like, n):
        return (lambda like, n: np.empty(n, np.int32)) if like.dtype.bitwidth == 32 else \
            (lambda like, n: np.empty(n, np.int64))

    @overload(_powers, jit_options=_JIT)
    def _powers_typed(kbits):
        return (lambda kbits: kbits.view(np.float32)) if kbits.dtype.bitwidth == 32 else \
            (lambda kbits: kbits.view(np.float64))


@njit(**_JIT)
def _exp(a, q, kbits):
    """a (n,) = exp(a) in place for a <= 0 (below -708 taken as -708: exp is then < 1e-307; in
    float32, below -87 as -87: exp is then < 2e-38). q, kbits: workspaces of a's precision (q of
    a's type, kbits int64 or int32)."""
    n = a.shape[0]
    low = a.dtype.type(-708.0 if a.itemsize == 8 else -87.0)
    for i in range(n):
        a[i] = low if a[i] < low else a[i]
    _reduce_any(a, q[:n], kbits[:n])
    s = _powers(kbits[:n])  # 2^k
    for i in range(n):
        a[i] = s[i] * q[i] + s[i]


@njit(**_JIT)
def _tanh(a, z, q, kbits):
    """a (n,) = tanh(a) in place: with e = e^{-2|a|} - 1 (no cancellation near 0),
    tanh|a| = -e / (2 + e). |a| > 20 gives +-1 as in libm. z, q, kbits are workspaces of a's
    precision (z, q of a's type, kbits int64 or int32); where they have room, n is padded with zeros
    to a multiple of 8 (float64) or 16 (float32), so that the polynomial runs in whole vectors
    rather than ending in a scalar tail (each entry's result is the same either way)."""
    n = a.shape[0]
    f = a.dtype.type
    one, two, top = f(1.0), f(2.0), f(20.0)
    for i in range(n):
        w = abs(a[i])
        z[i] = -two * (top if w > top else w)
    lanes = 64 // a.itemsize  # one 512-bit vector: 8 float64 or 16 float32
    n8 = min((n + lanes - 1) // lanes * lanes, z.shape[0], q.shape[0], kbits.shape[0])
    for i in range(n, n8):
        z[i] = 0.0
    _reduce_any(z[:n8], q[:n8], kbits[:n8])
    s = _powers(kbits[:n])
    for i in range(n):
        e = s[i] * q[i] + (s[i] - one)
        t = -e / (two + e)
        a[i] = t if a[i] >= 0.0 else -t


# ----------------------------------------------------------------------------- softmax
@njit(inline="always", **_JIT)
def _shift_by_max(o):
    """o (K,) -= max(o), in place (the maximum taken in four lanes: exact in any order)."""
    K = o.shape[0]
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


@njit(**_JIT)
def _softmax_loss(P, targets, q, kbits):
    """Rows of logits P (n,K) in place to softmax(row) - onehot(target) (g_o); returns the summed
    loss sum_t -log p_t[y_t], each term as log(sum exp) - (o_y - max). targets int (n,)."""
    n, K = P.shape
    loss = 0.0
    for t in range(n):
        _shift_by_max(P[t])
        loss -= P[t, targets[t]]
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
        r = P.dtype.type(1.0 / s)  # the sum in float64, the scaling in the arrays' precision
        for k in range(K):
            o[k] *= r
        o[targets[t]] -= 1.0
    return loss
