"""The compiled optimiser steps of the training kernels (`single.py`, `batch.py`): clipping,
then AdaGrad or Adam, entry by entry, in the arrays' precision (float64, or float32 in float32 runs).

AdaGrad's 1/sqrt(G + eps) in float64 is a float32 estimate refined by two Newton steps in float64
(`_rsqrt`), within 2 ulp of a float64 square root and division, and off the divider that those two
share: the steps are bound by the divider, not by memory.
"""
from __future__ import annotations

import numpy as np

from charrnn.kernels.ops import _JIT, njit


@njit(inline="always", **_JIT)
def _rsqrt(x):
    """1/sqrt(x) for 1e-30 <= x <= 1e30: a float32 estimate (relative error below 1e-7) refined
    by two Newton steps in float64 (each squares the error: below 1e-16), within 2 ulp of
    1/sqrt(x) in float64, without its square root and division."""
    y = np.float64(np.float32(1.0) / np.sqrt(np.float32(x)))
    h = 0.5 * x
    y = y * (1.5 - h * y * y)
    return y * (1.5 - h * y * y)


@njit(inline="always", **_JIT)
def _fast_rsqrt_ok(eps, clip):
    """G + eps stays in `_rsqrt`'s range: eps >= 1e-30, and G (at most clip^2 more per update)
    below 1e30 for any run of fewer than 1e14 updates."""
    return eps >= 1e-30 and clip <= 1e8


@njit(inline="always", **_JIT)
def _adagrad_loop(th, gr, gg, eta, eps, clip):
    """Clip, G += g*g, theta -= eta * g / sqrt(G + eps) over flat arrays, as written (inlined: the
    caller's fastmath flags apply)."""
    for i in range(th.shape[0]):
        g = min(max(gr[i], -clip), clip)
        gg[i] += g * g
        th[i] -= eta * g / np.sqrt(gg[i] + eps)


@njit(**_JIT)
def _adagrad_exact(th, gr, gg, eta, eps, clip):
    """`_adagrad_loop` with a square root and a division."""
    _adagrad_loop(th, gr, gg, eta, eps, clip)


# float32 only: "arcp" lets LLVM take g / sqrt(x) as g times a reciprocal square root estimate with
# a Newton step (vrsqrt14ps on AVX-512), within about 1 float32 ulp, off the divider that the square
# root and the division share (`make bench` times the float32 kernel). (Its own function: numba's
# cache keys a function by its code, not by its flags.)
@njit(**dict(_JIT, fastmath={"contract", "arcp"}))
def _adagrad_single(th, gr, gg, eta, eps, clip):
    """`_adagrad_loop` for float32 arrays, with a reciprocal square root estimate."""
    _adagrad_loop(th, gr, gg, eta, eps, clip)


@njit(**_JIT)
def _adagrad(theta, grad, G, eta, eps, clip):
    """Clip to [-clip, clip], then G += g*g; theta -= eta * g / sqrt(G + eps), entry by entry, in
    the arrays' precision: in float64 1/sqrt by `_rsqrt` where it is valid, else a square root and
    division; in float32 by `_adagrad_single`."""
    th, gr, gg = theta.ravel(), grad.ravel(), G.ravel()
    f = th.dtype.type
    eta, eps, clip = f(eta), f(eps), f(clip)
    if th.itemsize == 4:
        _adagrad_single(th, gr, gg, eta, eps, clip)
    elif _fast_rsqrt_ok(eps, clip):
        for i in range(th.shape[0]):
            g = min(max(gr[i], -clip), clip)
            gg[i] += g * g
            th[i] -= eta * g * _rsqrt(gg[i] + eps)
    else:
        _adagrad_exact(th, gr, gg, eta, eps, clip)


@njit(**_JIT)
def _adagrad_rows(UT, dUT, GT, eta, eps, clip, touched):
    """`_adagrad` for U^T (K,m), row by row, visiting only the rows of dU^T that are not zero (the
    others leave U and G unchanged)."""
    for x in range(UT.shape[0]):
        if touched[x]:
            _adagrad(UT[x], dUT[x], GT[x], eta, eps, clip)


@njit(**_JIT)
def _adam(theta, grad, M, Vm, eta, beta1, beta2, eps, clip, c1, c2):
    """Clip, then Adam: M = b1 M + (1-b1) g; V = b2 V + (1-b2) g^2; theta -= eta (M/c1) / (sqrt(V/c2) + eps),
    in the arrays' precision."""
    th, gr, mm, vv = theta.ravel(), grad.ravel(), M.ravel(), Vm.ravel()
    f = th.dtype.type
    eta, beta1, beta2, eps, clip, c1, c2 = f(eta), f(beta1), f(beta2), f(eps), f(clip), f(c1), f(c2)
    a1, a2 = f(1.0 - beta1), f(1.0 - beta2)
    for i in range(th.shape[0]):
        g = min(max(gr[i], -clip), clip)
        mm[i] = beta1 * mm[i] + a1 * g
        vv[i] = beta2 * vv[i] + a2 * g * g
        th[i] -= eta * (mm[i] / c1) / (np.sqrt(vv[i] / c2) + eps)


@njit(**_JIT)
def _step(params, grads, S, R, st, hyper, adam, touched):
    """The optimiser step on every parameter: AdaGrad (state S = G) or Adam (S, R the moments;
    st.adam_t counts its steps). params, grads, S, R hold U, dU and their states transposed, (K,m),
    as `single.forward_backward` does; st: the loop state's record (`state.STATE`); hyper: a
    `state.Hyper`; touched (K,) marks the rows of dU^T that are not zero."""
    eta, eps, clip = hyper.eta, hyper.eps, hyper.clip
    if adam:
        beta1, beta2 = hyper.beta1, hyper.beta2
        t = st.adam_t + 1
        st.adam_t = t
        c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
        # every entry, also where g = 0: the moments decay
        _adam(params[0], grads[0], S[0], R[0], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[1], grads[1], S[1], R[1], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[2], grads[2], S[2], R[2], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[3], grads[3], S[3], R[3], eta, beta1, beta2, eps, clip, c1, c2)
        _adam(params[4], grads[4], S[4], R[4], eta, beta1, beta2, eps, clip, c1, c2)
        return
    _adagrad_rows(params[0], grads[0], S[0], eta, eps, clip, touched)
    _adagrad(params[1], grads[1], S[1], eta, eps, clip)
    _adagrad(params[2], grads[2], S[2], eta, eps, clip)
    _adagrad(params[3], grads[3], S[3], eta, eps, clip)
    _adagrad(params[4], grads[4], S[4], eta, eps, clip)
