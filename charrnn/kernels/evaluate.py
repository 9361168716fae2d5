"""The compiled held-out evaluation: `charrnn.training.heldout.numpy_block_log_probs` (every held-out
block read side by side from one state, forward only) in one numba call.

Letters: n blocks of L characters, m hidden units, K characters. The recurrence is a BLAS product of
the n states per step, and the output layer, its exp and the log-probabilities go CHUNK steps at a
time through arrays that stay in the cache (the numpy form builds the whole (n(L-1), K) output
array and its exp). Rows of the chunk's arrays are ordered by step, then block: row t*n + s is
step t of block s. Same numbers as the numpy form to about 1e-15 relative (tests/test_evidence.py
holds them to 1e-12).
"""
from __future__ import annotations

import numpy as np

from charrnn.kernels import ops
from charrnn.kernels.blas import gemm, one_thread
from charrnn.kernels.vecmath import _exp, _shift_by_max, _tanh
from charrnn.kernels.ops import _JIT, _transpose, njit

CHUNK = 32  # steps whose outputs are computed together


@njit(**_JIT)
def _log_probs(UT, W, V, b, c, blocks, h0, out):
    """out (n, L-1) = log p(blocks[:, t+1] | blocks[:, :t+1]) from state h0 (m,) for every block.
    UT (K,m) = U^T, W (m,m), V (K,m), b (m,), c (K,); blocks int64 (n, L)."""
    n, L = blocks.shape
    m, K = W.shape[0], V.shape[0]
    WT, VT = np.empty((m, m)), np.empty((m, K))
    _transpose(WT, W)
    _transpose(VT, V)
    H = np.empty((CHUNK * n, m))  # rows t*n + s: the state of block s after step t of the chunk
    prev = np.empty((n, m))
    for s in range(n):
        prev[s, :] = h0
    P = np.empty((CHUNK * n, K))
    width = max(CHUNK * n * K, n * m)
    z, q, kbits = np.empty(width), np.empty(width), np.empty(width, dtype=np.int64)
    target = np.empty(CHUNK * n)  # the logit of the character to predict, then its log-probability
    for t0 in range(0, L - 1, CHUNK):
        steps = min(CHUNK, L - 1 - t0)
        for t in range(steps):  # h_t = tanh(b + U x_t + W h_{t-1}), the n blocks at once
            A = H[t * n:(t + 1) * n]
            for s in range(n):
                u = UT[blocks[s, t0 + t]]
                for i in range(m):
                    A[s, i] = b[i] + u[i]
            gemm(A, prev, WT, False, False)
            _tanh(A.reshape(n * m), z, q, kbits)
            prev[:, :] = A
        rows = steps * n
        Pc = P[:rows]
        for r in range(rows):
            Pc[r, :] = c
        gemm(Pc, H[:rows], VT, False, False)
        for t in range(steps):  # shift each row by its maximum; keep the target's shifted logit
            for s in range(n):
                r = t * n + s
                _shift_by_max(Pc[r])
                target[r] = Pc[r, blocks[s, t0 + t + 1]]
        _exp(Pc.reshape(rows * K), q, kbits)
        for t in range(steps):
            for s in range(n):
                o = Pc[t * n + s]
                total = 0.0
                for k in range(K):
                    total += o[k]
                out[s, t0 + t] = target[t * n + s] - np.log(total)


def available() -> bool:
    """True if this evaluation runs here (numba imported and the function compiles)."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """None if this evaluation runs here, else why not."""
    return ops.compile_status("held-out evaluation", _warm_up)


def _warm_up():
    """Compile (or load from numba's cache) with the argument types the evaluation uses."""
    rng = np.random.default_rng(0)
    p = {k: rng.standard_normal(s) for k, s in (("U", (2, 3)), ("W", (2, 2)), ("V", (3, 2)), ("b", (2,)), ("c", (3,)))}
    block_log_probs(p, np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int64), np.zeros(2))


def block_log_probs(params: dict, blocks: np.ndarray, h0) -> np.ndarray:
    """(n, L - 1) natural log-probabilities of blocks (n, L) read from h0 (m,), as
    `charrnn.training.heldout.numpy_block_log_probs`."""
    blocks = np.ascontiguousarray(blocks, dtype=np.int64)
    n, L = blocks.shape
    out = np.empty((n, L - 1))
    with one_thread():
        _log_probs(np.ascontiguousarray(params["U"].T, dtype=np.float64),
                   *(np.ascontiguousarray(params[k], dtype=np.float64) for k in ("W", "V", "b", "c")),
                   blocks, np.ascontiguousarray(h0, dtype=np.float64), out)
    return out
