"""The fused batch-1 training kernel: forward, BPTT, clipping and the AdaGrad or Adam update for a
whole stretch of updates in one compiled (numba) function, in sequential order or following an
epoch's plan (random locations, shuffled chunks), with exactly the loop semantics of the numpy
training loop (`charrnn.training.loop.train`).

Letters: T steps per sequence, K characters, m hidden units. Parameters U (m,K), W (m,m), V (K,m),
b (m,), c (K,) travel as the tuple (U, W, V, b, c), and so do the gradients, the optimiser's arrays
and the best parameters; between entry and exit of `run_updates`, U, dU and U's optimiser arrays
are held transposed, (K,m), so that a character's column is a contiguous row.

Only the recurrent products W h_{t-1} (`ops._matvec`) and W^T g_a (`ops._axpy_rows`) go step by
step; the output layer H V^T, dV = G_o^T H, dW = G_a^T H_{0..T-1} and the rows V^T g_o are matrix
products over all T steps, made by BLAS (`blas.gemm`); `ops.py` says how the rest is made fast and
deterministic, `vecmath.py` makes tanh, exp and the softmax, `optim.py` the optimiser steps.

Precision (m = 5 to 100, weights up to sig 0.1): for the same parameters and sequence the kernel's
loss, last hidden state and gradients equal the numpy form's (`rnn_core.loss_and_grads`) to about
1e-15 relative in norm; tests/test_kernel.py holds them to 1e-12. Over training the two drift
apart: AdaGrad's first steps divide by sqrt(G) with G tiny, which amplifies last-digit differences
(tests/test_kernel.py holds the parameters after 5 updates at m = 100 to 1e-9), and the trajectory
is chaotic; the tests compare what is well defined (one gradient, the first updates).

Named structures: the arrays one call works in are a `Workspace` (namedtuple, made by `workspace`);
the loop's state is a record of dtype `state.STATE` (st.update, st.epoch, st.pos, st.best_update,
st.status, st.adam_t, st.smooth, st.best_smooth) and the hyperparameters a `state.Hyper`.
`advance` moves a `Run` forward and is the only caller of `run_updates` in the package.

float32 (`Config.dtype`): the same functions compiled for float32 arrays (numba specialises on
the arrays' type): products in float32 (OpenBLAS sgemm), W h as axpys over the rows of W^T (at
float32, W fits the L1 cache, where axpys beat dot products), AdaGrad's square root and division
in float32 (a reciprocal square root estimate), tanh and exp by float32 polynomials, the loss
summed in float64. `advance` hands the kernel float32 copies of the run's arrays and writes them
back (exact both ways: a float32 run's float64 arrays hold float32 values), so checkpoints keep
their float64 format and a float32 run resumes bit for bit.

If numba is missing or fails to compile, `available()` is False and training falls back to numpy
(a float32 run is refused instead: see `charrnn.training.config.check_dtype_runs`). Compilation is
cached on disk (`cache=True`, in __pycache__; `ops.py` says when that cache is cleared).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from charrnn.kernels import ops
from charrnn.kernels.blas import gemm, gemm_set, one_thread
from rnn_core import DIVERGED_NATS_PER_CHAR
from charrnn.kernels.vecmath import _softmax_loss, _tanh, int_workspace
from charrnn.kernels.ops import _JIT, _axpy_rows, _column_sums, _matvec, _transpose, njit
from charrnn.kernels.optim import _step
from charrnn.kernels.state import NONFINITE, OK, hyperparameters, marshal, new_state, unmarshal

# The arrays `forward_backward` writes (m = W's size, in W's precision):
#   H (T+1,m) hidden states, H[0] = hprev; P (T,K) probabilities, then G_o = P - onehot(Y);
#   GA (T,m) g_a; GH (T,m) V^T g_o; z, q (n,) float and kbits (n,) int64 (int32 in float32) for exp
#   and tanh, n = max(T*K, m + 15) (room for `_tanh` to pad m); touched (K,) bool, the rows of
#   dU^T that are not zero; VT (m,K) = V^T; WT (m,m) = W^T (float32 only, else (0,0)).
Workspace = namedtuple("Workspace", "H P GA GH z q kbits touched VT WT")


@njit(**_JIT)
def grad_buffers(W, K):
    """The gradients' arrays (dU^T (K,m) zeroed, dW (m,m), dV (K,m), db (m,), dc (K,)) in W's
    precision, allocated once per call: forward_backward overwrites the last four and the touched
    rows of dU^T."""
    m, f = W.shape[0], W.dtype
    return np.zeros((K, m), f), np.empty((m, m), f), np.empty((K, m), f), np.empty(m, f), np.empty(K, f)


@njit(**_JIT)
def workspace(W, K, T):
    """The `Workspace` of `forward_backward` for T steps, allocated once per call of `run_updates`,
    in W's precision."""
    m, f = W.shape[0], W.dtype
    n = max(T * K, m + 15)
    return Workspace(H=np.empty((T + 1, m), f), P=np.empty((T, K), f), GA=np.empty((T, m), f),
                     GH=np.empty((T, m), f), z=np.empty(n, f), q=np.empty(n, f), kbits=int_workspace(W, n),
                     touched=np.zeros(K, dtype=np.bool_), VT=np.empty((m, K), f),
                     WT=np.empty((m, m) if W.itemsize == 4 else (0, 0), f))


@njit(**_JIT)
def forward_backward(params, inputs, targets, hprev, grads, work):
    """Loss of one sequence; its gradients written into grads = (dUT, dW, dV, db, dc).

    params (UT, W, V, b, c), with UT (K,m) = U^T: row x of UT, column x of U, is contiguous, and
    so is row x of dUT (K,m) = dU^T. inputs, targets int (T,); hprev (m,); work a `Workspace`.
    dUT is zeroed only in the rows the previous call touched (the others are zero already).
    """
    UT, W, V, b, c = params
    dUT, dW, dV, db, dc = grads
    H, P, GA, GH, VT, WT = work.H, work.P, work.GA, work.GH, work.VT, work.WT
    z, q, kbits, touched = work.z, work.q, work.kbits, work.touched
    T, m, K = inputs.shape[0], W.shape[0], V.shape[0]
    one = W.dtype.type(1.0)  # the arrays' precision
    single = W.itemsize == 4
    if single:  # float32: W (40 KB at m = 100) stays in L1, where axpys beat dot products
        _transpose(WT, W)
    H[0, :] = hprev
    for t in range(T):  # the recurrence: a_t = b + U x_t + W h_{t-1}, h_t = tanh(a_t)
        a = H[t + 1]
        x = inputs[t]
        u = UT[x]
        for i in range(m):
            a[i] = b[i] + u[i]
        if single:
            _axpy_rows(a, WT, H[t], t % 2 == 1)  # W h as the rows of W^T weighted by h
        else:
            _matvec(a, W, H[t], t % 2 == 1)  # W read forwards and backwards in turn
        _tanh(a, z, q, kbits)
    for t in range(T):  # O = H_{1..T} V^T + c, all steps at once
        P[t, :] = c
    _transpose(VT, V)  # BLAS multiplies by a contiguous V^T faster than by V transposed
    gemm(P, H[1:], VT, False, False)
    loss = _softmax_loss(P, targets, q, kbits)  # P is now G_o
    gemm_set(dV, P, H[1:], True, False)  # dV = G_o^T H_{1..T}
    _column_sums(dc, P)
    gemm_set(GH, P, V, False, False)  # row t: V^T g_o_t
    for t in range(T - 1, -1, -1):  # g_a_t = (V^T g_o_t + W^T g_a_{t+1}) * (1 - h_t^2)
        g = GA[t]
        g[:] = GH[t]
        if t + 1 < T:
            _axpy_rows(g, W, GA[t + 1], t % 2 == 1)  # W read forwards and backwards in turn
        h = H[t + 1]
        for i in range(m):
            g[i] *= one - h[i] * h[i]
    gemm_set(dW, GA, H[:T], True, False)  # dW = G_a^T H_{0..T-1}
    _column_sums(db, GA)
    for x in range(K):
        if touched[x]:
            dUT[x, :] = 0.0
    touched[:] = False
    for t in range(T):  # row x_t of dU^T accumulates g_a_t
        x = inputs[t]
        touched[x] = True
        d, g = dUT[x], GA[t]
        for i in range(m):
            d[i] += g[i]
    return loss


# ----------------------------------------------------------------------------- the training loop
@njit(**_JIT)
def run_updates(params, S, R, best, data, hprev, loss_out, smooth_out, state, hyper,
                n_updates, T, adam, starts, resets):
    """Up to `n_updates` training updates in place, with the semantics of the numpy training loop.

    params, best: (U, W, V, b, c); S: the optimiser's first state (AdaGrad's G, or Adam's first
    moment), R: Adam's second moment (not read by AdaGrad), both tuples shaped like params; best
    receives a copy of the parameters whenever the smooth loss reaches a new low. data int64 (N,);
    hprev (m,); loss_out, smooth_out (>= updates,) indexed by update. state: the loop state, a (1,)
    array of dtype `state.STATE`, updated in place; hyper: a `state.Hyper`. Order: with `starts`
    empty, sequential (st.pos is the character offset e); otherwise st.pos indexes the epoch's plan
    starts int64 / resets bool (n_plan,) and the call returns at the end of the epoch. Stops early
    with st.status = NONFINITE (the update not applied) if a loss is NaN or infinite (or diverged).
    U and its states are worked on transposed, (K,m), and written back at the end (the same numbers:
    only the layout differs).
    """
    pT, ST, RT = transposed_U(params, S, R, adam)
    _loop(pT, ST, RT, best, data, hprev, loss_out, smooth_out, state[0], hyper, n_updates, T, adam,
          starts, resets)
    write_back_U(params, S, R, pT, ST, RT, adam)


@njit(**_JIT)
def transposed_U(params, S, R, adam):
    """(params, S, R) with U and its states as contiguous (K,m) copies (the other arrays shared)."""
    U, W, V, b, c = params
    UT, ST = np.ascontiguousarray(U.T), np.ascontiguousarray(S[0].T)
    RT = np.ascontiguousarray(R[0].T) if adam else ST
    return (UT, W, V, b, c), (ST, S[1], S[2], S[3], S[4]), (RT, R[1], R[2], R[3], R[4])


@njit(**_JIT)
def write_back_U(params, S, R, pT, ST, RT, adam):
    """Copy the transposed U and its states of `transposed_U` back into the (m,K) arrays."""
    params[0][:, :] = pT[0].T
    S[0][:, :] = ST[0].T
    if adam:
        R[0][:, :] = RT[0].T


@njit(**_JIT)
def record(u, loss, params, best, loss_out, smooth_out, st, decay):
    """Bookkeeping of update u in the loop state's record st: its loss, the smooth loss, and a copy
    of the parameters (U^T given, stored as U) when the smooth loss reaches a new low."""
    smooth = loss if u == 0 else decay * st.smooth + (1.0 - decay) * loss
    st.smooth = smooth
    loss_out[u] = loss
    smooth_out[u] = smooth
    if smooth < st.best_smooth:
        st.best_smooth = smooth
        st.best_update = u
        best[0][:, :] = params[0].T
        best[1][:, :] = params[1]
        best[2][:, :] = params[2]
        best[3][:] = params[3]
        best[4][:] = params[4]


@njit(**_JIT)
def _loop(params, S, R, best, data, hprev, loss_out, smooth_out, st, hyper,
          n_updates, T, adam, starts, resets):
    """The loop of `run_updates`, on params (U^T, W, V, b, c) and states shaped alike; st: the loop
    state's record."""
    UT, W, V, b, c = params
    m, K, N = W.shape[0], V.shape[0], data.shape[0]
    planned = starts.shape[0] > 0
    work = workspace(W, K, T)
    grads = grad_buffers(W, K)
    st.status = OK
    for _ in range(n_updates):
        u, pos = st.update, st.pos
        e = pos
        if planned:
            e = starts[pos]
            if resets[pos]:
                hprev[:] = 0.0
        loss = forward_backward(params, data[e:e + T], data[e + 1:e + T + 1], hprev, grads, work)
        if not loss <= DIVERGED_NATS_PER_CHAR * T:  # NaN, infinite, or diverged (rnn_core)
            st.status = NONFINITE
            return
        record(u, loss, params, best, loss_out, smooth_out, st, hyper.decay)
        _step(params, grads, S, R, st, hyper, adam, work.touched)
        hprev[:] = work.H[T]
        st.update = u + 1
        if planned:
            pos += 1
            if pos == starts.shape[0]:  # the plan is done: next epoch, with a new plan
                st.epoch += 1
                st.pos = 0
                hprev[:] = 0.0
                return
        else:
            pos += T
            if pos + T + 1 > N:  # fewer than T+1 characters left: next epoch
                st.epoch += 1
                pos = 0
                hprev[:] = 0.0
        st.pos = pos


# ----------------------------------------------------------------------------- from Python
def available() -> bool:
    """True if the kernel can run (numba imported and the kernel compiles)."""
    return unavailable_reason() is None


def unavailable_reason(dtype: str = "float64") -> str | None:
    """None if the kernel runs in this precision here, else why not. float32 is compiled apart,
    when first asked for (a float32 run, a float32 gradient check)."""
    if dtype == "float32":
        return ops.compile_status("float32 kernel", lambda: _warm_up(np.float32))
    return ops.compile_status("kernel", _warm_up)


def _warm_up(dtype=np.float64):
    """Compile (or load from numba's cache) with the argument types training uses."""
    m, K, T = 2, 3, 2
    rng = np.random.default_rng(0)
    p = tuple((rng.standard_normal(s) * 0.1).astype(dtype) for s in ((m, K), (m, m), (K, m), (m,), (K,)))
    S, R, B = (tuple(np.zeros_like(a) for a in p) for _ in range(3))
    data = np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.int64)
    for adam in (False, True):
        run_updates(p, S, R, B, data, np.zeros(m, dtype), np.zeros(4), np.zeros(4), new_state(),
                    hyperparameters(0.1, 1e-8, 5.0, 0.999, 0.9, 0.999), 2, T, adam,
                    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_))


def advance(run, data: np.ndarray, n: int, starts=None, resets=None) -> bool:
    """n updates of `run` (batch 1) with the kernel, in place; False if a loss became NaN or
    infinite (the run then stands before the update that produced it).

    data int64 (N,); for the random and chunked orders, the epoch's plan: starts int (n_plan,),
    resets bool (n_plan,) (None: sequential order)."""
    if starts is None:
        starts, resets = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)
    a = marshal(run)
    with one_thread():
        run_updates(a["params"], a["S"], a["R"], a["best"], data, a["hprev"], run.loss, run.smooth_history,
                    a["state"], a["hyper"], n, run.config.seq_length, a["adam"],
                    np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(resets, dtype=np.bool_))
    return unmarshal(run, a)


def kernel_loss_and_grads(params: dict, inputs, targets, hprev, dtype=np.float64):
    """The kernel's loss and gradients for one sequence, in the shape of `rnn_core.loss_and_grads`;
    dtype=np.float32 computes them in single precision (the parameters rounded to it first) and
    returns them as float64 arrays."""
    p = tuple(np.ascontiguousarray(params[k], dtype=dtype) for k in ("U", "W", "V", "b", "c"))
    K = p[2].shape[0]
    inputs = np.ascontiguousarray(inputs, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    T = len(inputs)
    grads = grad_buffers(p[1], K)
    work = workspace(p[1], K, T)
    loss = forward_backward((np.ascontiguousarray(p[0].T),) + p[1:], inputs, targets,
                            np.asarray(hprev, dtype=dtype), grads, work)
    g = {k: np.asarray(v, dtype=np.float64) for k, v in zip(("U", "W", "V", "b", "c"), grads)}
    g["U"] = np.ascontiguousarray(g["U"].T)  # dU (m,K)
    return float(loss), g, work.H[T].astype(np.float64)
