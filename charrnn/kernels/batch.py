"""The fused mini-batch training kernel: B evenly spaced streams per update, loss and gradients
averaged over the B, with exactly the semantics of `rnn_core.loss_and_grads_batch` and of the numpy
training loop (`charrnn.training.loop.train`; sequential order; every stream carries its own
hidden state).

Letters: T steps per sequence, K characters, m hidden units, B streams; parameters are the tuple
(U (m,K), W (m,m), V (K,m), b (m,), c (K,)), as in `single.py`, whose bookkeeping (`record`, the
transposed U) and optimiser steps (`optim.py`) it reuses, with tanh, exp and the softmax of
`vecmath.py`. Each step's recurrent product is a matrix product over the streams (H_{t-1} W^T,
G_{t+1} W); the output layer and the weight gradients are products over all T x B rows. All are
BLAS calls (`blas.gemm`, one BLAS thread). The rows of a group's (T*nb, .) arrays are ordered by
step, then stream: row t*nb + s is step t of stream s.

Threads: the streams are cut into groups of GROUP consecutive streams, a number fixed by B alone.
Each group's forward and backward pass is one task (the tasks run on numba's threads, `prange`),
writing its own partial gradients; the partial gradients are then summed group after group, in a
fixed order, by one thread. So the results do not depend on the number of threads (tests/test_kernel.py
runs 1 and 2), and they repeat bit for bit. They equal the numpy form's to about 1e-15 relative (the
order of the sums differs; tests/test_kernel_batch.py holds them to 1e-12).

Named structures: a `BatchWorkspace` holds every group's arrays (row g: group g), `group_work`
gives one group's as a `GroupWork`; the loop state and hyperparameters are those of `state.py`.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from charrnn.kernels import single
from charrnn.kernels.single import grad_buffers, record, transposed_U, write_back_U
from charrnn.kernels.optim import _step
from charrnn.kernels.state import NONFINITE, OK, hyperparameters, marshal, new_state, unmarshal
from charrnn.kernels import ops
from rnn_core import DIVERGED_NATS_PER_CHAR
from charrnn.kernels.blas import gemm, gemm_set, one_thread
from charrnn.kernels.vecmath import _softmax_loss, _tanh
from charrnn.kernels.ops import _JIT, _column_sums, _transpose, njit

prange = ops.numba.prange if ops.numba is not None else range  # RNN_DISABLE_NUMBA: no numba

GROUP = 8  # streams per task: the unit of work of one thread, and of the fixed order of the sums

_JIT_PAR = dict(_JIT, parallel=True)

# One group's arrays, flat (room for GROUP streams; `_group_forward_backward` views the first nb):
#   H (T+1)*GROUP*m hidden states, P T*GROUP*K probabilities then G_o, GA T*GROUP*m g_a,
#   GH T*GROUP*m V^T g_o, z, q (n,) and kbits int64 (n,) for exp and tanh, n = T*GROUP*K + GROUP*m,
#   targets int64 (T*GROUP,).
GroupWork = namedtuple("GroupWork", "H P GA GH z q kbits targets")
# Every group's GroupWork arrays and partial results, row g for group g (NG groups): the fields of
# GroupWork (NG, .), the partial gradients dUT (NG,K,m), dW (NG,m,m), dV (NG,K,m), db (NG,m),
# dc (NG,K) and losses (NG,); and the transposed copies WT (m,m) = W^T, VT (m,K) = V^T.
BatchWorkspace = namedtuple("BatchWorkspace", "H P GA GH z q kbits targets dUT dW dV db dc losses WT VT")


@njit(**_JIT)
def n_groups(B):
    """The number of groups of B streams: ceil(B / GROUP)."""
    return (B + GROUP - 1) // GROUP


@njit(**_JIT)
def group_streams(g, B):
    """(first, end) of the streams of group g: streams first .. end - 1 of B."""
    return g * GROUP, min(B, (g + 1) * GROUP)


@njit(**_JIT)
def group_work(work, g):
    """Group g's arrays of the `BatchWorkspace` work, as a `GroupWork`."""
    return GroupWork(work.H[g], work.P[g], work.GA[g], work.GH[g], work.z[g], work.q[g], work.kbits[g],
                     work.targets[g])


@njit(**_JIT)
def group_grads(work, g):
    """Group g's partial gradients (dUT, dW, dV, db, dc) in the `BatchWorkspace` work."""
    return work.dUT[g], work.dW[g], work.dV[g], work.db[g], work.dc[g]


@njit(**_JIT)
def group_states(work, g, T, nb, m):
    """Group g's hidden states as (T+1, nb, m): H[t, s] is stream s after step t (t = 0: hprev)."""
    return work.H[g][:(T + 1) * nb * m].reshape((T + 1, nb, m))


@njit(**_JIT)
def _group_forward_backward(params, WT, VT, data, starts, T, hprev, grads, gw):
    """Summed loss of the nb streams of one group, and their summed gradients.

    params (U^T (K,m), W, V, b, c); WT (m,m), VT (m,K): transposed copies of W, V. Stream s reads
    data[starts[s] : starts[s] + T + 1]; hprev (nb,m). grads = (dUT (K,m) - dU transposed -,
    dW, dV, db, dc), overwritten. gw: the group's `GroupWork`, flat, viewed here as H (T+1,nb,m),
    P (T*nb,K), GA (T*nb,m), GH (T*nb,m), rows t*nb + s.
    """
    UT, W, V, b, c = params
    dUT, dW, dV, db, dc = grads
    z, q, kbits, targets = gw.z, gw.q, gw.kbits, gw.targets
    nb, m, K = starts.shape[0], W.shape[0], V.shape[0]
    H = gw.H[:(T + 1) * nb * m].reshape((T + 1, nb, m))
    P = gw.P[:T * nb * K].reshape((T * nb, K))
    GA = gw.GA[:T * nb * m].reshape((T * nb, m))
    GH = gw.GH[:T * nb * m].reshape((T * nb, m))
    H[0] = hprev
    for t in range(T):  # A_t = b + U x_t + H_{t-1} W^T, H_t = tanh(A_t), nb streams at once
        A = H[t + 1]
        for s in range(nb):
            u = UT[data[starts[s] + t]]
            for i in range(m):
                A[s, i] = b[i] + u[i]
        gemm(A, H[t], WT, False, False)
        _tanh(A.reshape(nb * m), z, q, kbits)
    H1 = H[1:].reshape((T * nb, m))  # rows t*nb + s
    for t in range(T):
        for s in range(nb):
            r = t * nb + s
            P[r, :] = c
            targets[r] = data[starts[s] + t + 1]
    gemm(P, H1, VT, False, False)
    loss = _softmax_loss(P, targets[:T * nb], q, kbits)  # P is now G_o
    gemm_set(dV, P, H1, True, False)
    _column_sums(dc, P)
    gemm_set(GH, P, V, False, False)  # rows V^T g_o
    for t in range(T - 1, -1, -1):  # G_a_t = (G_o_t V + G_a_{t+1} W) * (1 - H_t^2)
        G = GA[t * nb:(t + 1) * nb]
        G[:, :] = GH[t * nb:(t + 1) * nb]
        if t + 1 < T:
            gemm(G, GA[(t + 1) * nb:(t + 2) * nb], W, False, False)
        Ht = H[t + 1]
        for s in range(nb):
            for i in range(m):
                G[s, i] *= 1.0 - Ht[s, i] * Ht[s, i]
    gemm_set(dW, GA, H[:T].reshape((T * nb, m)), True, False)
    _column_sums(db, GA)
    dUT[:, :] = 0.0
    for t in range(T):  # row x_t of dU^T accumulates g_a_t, stream after stream
        for s in range(nb):
            d, g = dUT[data[starts[s] + t]], GA[t * nb + s]
            for i in range(m):
                d[i] += g[i]
    return loss


@njit(**_JIT)
def batch_workspace(m, K, T, B):
    """The `BatchWorkspace` of B streams of T steps (float64)."""
    NG = n_groups(B)
    n = T * GROUP * K + GROUP * m
    return BatchWorkspace(
        H=np.empty((NG, (T + 1) * GROUP * m)), P=np.empty((NG, T * GROUP * K)), GA=np.empty((NG, T * GROUP * m)),
        GH=np.empty((NG, T * GROUP * m)), z=np.empty((NG, n)), q=np.empty((NG, n)),
        kbits=np.empty((NG, n), dtype=np.int64), targets=np.empty((NG, T * GROUP), dtype=np.int64),
        dUT=np.empty((NG, K, m)), dW=np.empty((NG, m, m)), dV=np.empty((NG, K, m)), db=np.empty((NG, m)),
        dc=np.empty((NG, K)), losses=np.empty(NG), WT=np.empty((m, m)), VT=np.empty((m, K)))


@njit(**_JIT_PAR)
def batch_loss_and_grads(params, data, starts, T, hprev, grads, touched, work):
    """Mean loss of the B sequences data[starts[s] : starts[s] + T] (targets one character on),
    from hprev (B,m); their mean gradients into grads = (dUT, dW, dV, db, dc); touched (K,) set
    for the rows of dUT that are not zero. params (UT, W, V, b, c), U and dU transposed (K,m) as
    in `single.forward_backward`; work a `BatchWorkspace`. The groups run in parallel; their partial
    sums are added in group order. The last hidden states are in the work, read by `_last_hidden`."""
    UT, W, V, b, c = params
    B = starts.shape[0]
    # named before the parallel loop: in a prange body numba drops stores into a namedtuple's array
    # field (`work.losses[g] = ...` left the losses unset; numba issue 7135), while stores through a
    # name, or in a function called from the body (group_work, group_grads), are kept
    WT, VT, losses = work.WT, work.VT, work.losses
    _transpose(WT, W)
    _transpose(VT, V)
    for g in prange(n_groups(B)):
        first, end = group_streams(g, B)
        losses[g] = _group_forward_backward(params, WT, VT, data, starts[first:end], T, hprev[first:end],
                                            group_grads(work, g), group_work(work, g))
    dUT_mean, dW, dV, db, dc = grads
    loss = 0.0
    for g in range(n_groups(B)):
        loss += losses[g]
    _sum_groups(dW, work.dW, B)
    _sum_groups(dV, work.dV, B)
    _sum_groups(db, work.db, B)
    _sum_groups(dc, work.dc, B)
    _sum_groups(dUT_mean, work.dUT, B)
    touched[:] = False
    for s in range(B):
        for t in range(T):
            touched[data[starts[s] + t]] = True
    return loss / B


@njit(**_JIT)
def _sum_groups(out, parts, B):
    """out = (parts[0] + parts[1] + ...) / B, the groups added in order."""
    o = out.ravel()
    o[:] = 0.0
    for g in range(parts.shape[0]):
        p = parts[g].ravel()
        for i in range(o.shape[0]):
            o[i] += p[i]
    for i in range(o.shape[0]):
        o[i] /= B


@njit(**_JIT)
def _last_hidden(hprev, work, T, m):
    """hprev (B,m) = the last hidden state of every stream, from the groups' H."""
    B = hprev.shape[0]
    for g in range(n_groups(B)):
        first, end = group_streams(g, B)
        hprev[first:end] = group_states(work, g, T, end - first, m)[T]


@njit(**_JIT)
def run_batch_updates(params, S, R, best, data, hprev, loss_out, smooth_out, state, hyper,
                      n_updates, T, adam, R_stream):
    """Up to `n_updates` mini-batch updates in place (sequential order), with the semantics of the
    numpy training loop at batch_size B = hprev.shape[0]: stream s reads data[s (R_stream - 1) + e ...];
    an epoch ends when e + T + 1 > R_stream. Arguments as `single.run_updates`; hprev (B,m).
    U and its states are worked on transposed, (K,m), as in `single.run_updates`."""
    pT, ST, RT = transposed_U(params, S, R, adam)
    _batch_loop(pT, ST, RT, best, data, hprev, loss_out, smooth_out, state[0], hyper, n_updates, T, adam,
                R_stream)
    write_back_U(params, S, R, pT, ST, RT, adam)


@njit(**_JIT)
def _batch_loop(params, S, R, best, data, hprev, loss_out, smooth_out, st, hyper,
                n_updates, T, adam, R_stream):
    """The loop of `run_batch_updates`, on params (U^T, W, V, b, c) and states shaped alike; st: the
    loop state's record."""
    UT, W, V, b, c = params
    B, m, K = hprev.shape[0], W.shape[0], V.shape[0]
    work = batch_workspace(m, K, T, B)
    grads = grad_buffers(W, K)
    touched = np.zeros(K, dtype=np.bool_)
    starts = np.empty(B, dtype=np.int64)
    st.status = OK
    for _ in range(n_updates):
        u, pos = st.update, st.pos
        for s in range(B):
            starts[s] = s * (R_stream - 1) + pos
        loss = batch_loss_and_grads(params, data, starts, T, hprev, grads, touched, work)
        if not loss <= DIVERGED_NATS_PER_CHAR * T:  # NaN, infinite, or diverged (rnn_core)
            st.status = NONFINITE
            return
        record(u, loss, params, best, loss_out, smooth_out, st, hyper.decay)
        _step(params, grads, S, R, st, hyper, adam, touched)
        _last_hidden(hprev, work, T, m)
        st.update = u + 1
        pos += T
        if pos + T + 1 > R_stream:  # fewer than T+1 characters left in each stream: next epoch
            st.epoch += 1
            pos = 0
            hprev[:, :] = 0.0
        st.pos = pos


def available() -> bool:
    """True if the mini-batch kernel runs here (the batch-1 kernel does, and this one compiles, or
    loads from numba's disk cache)."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """None if the mini-batch kernel runs here, else why not."""
    return single.unavailable_reason() or ops.compile_status("mini-batch kernel", _warm_up)


def _warm_up():
    """Compile (or load from numba's cache) with the argument types training uses."""
    m, K, T, B = 2, 3, 2, 3
    rng = np.random.default_rng(0)
    p = tuple(rng.standard_normal(s) * 0.1 for s in ((m, K), (m, m), (K, m), (m,), (K,)))
    S, R, best = (tuple(np.zeros_like(a) for a in p) for _ in range(3))
    data = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], dtype=np.int64)
    for adam in (False, True):
        run_batch_updates(p, S, R, best, data, np.zeros((B, m)), np.zeros(4), np.zeros(4), new_state(),
                          hyperparameters(0.1, 1e-8, 5.0, 0.999, 0.9, 0.999), 2, T, adam, 4)


def advance(run, data: np.ndarray, n: int, R_stream: int) -> bool:
    """n mini-batch updates of `run` (batch_size B > 1, sequential order) with the kernel, in
    place; False if a loss became NaN or infinite (the run then stands before that update).
    R_stream: the length of each of the B streams (`charrnn.training.schedule.stream_length`)."""
    c = run.config
    a = marshal(run)  # hprev (B,m)
    with one_thread():
        run_batch_updates(a["params"], a["S"], a["R"], a["best"], data, a["hprev"], run.loss, run.smooth_history,
                          a["state"], a["hyper"], n, c.seq_length, a["adam"], R_stream)
    return unmarshal(run, a)


def kernel_loss_and_grads_batch(params: dict, inputs, targets, hprev):
    """The kernel's mini-batch loss and gradients, in the shape of `rnn_core.loss_and_grads_batch`:
    inputs, targets int (B,T) with targets[s] = inputs[s] shifted by one (each row is read as one
    window of a text); hprev (B,m). Returns (mean loss, mean grads, h_last (B,m))."""
    names = ("U", "W", "V", "b", "c")
    p = tuple(np.ascontiguousarray(params[k], dtype=np.float64) for k in names)
    inputs, targets = np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if not np.array_equal(inputs[:, 1:], targets[:, :-1]):
        raise ValueError("each row of targets must be its row of inputs shifted by one")
    B, T = inputs.shape
    m, K = p[1].shape[0], p[2].shape[0]
    data = np.concatenate([inputs, targets[:, -1:]], axis=1).reshape(-1)  # B windows of T + 1
    starts = np.arange(B, dtype=np.int64) * (T + 1)
    grads = grad_buffers(p[1], K)
    work = batch_workspace(m, K, T, B)
    h = np.ascontiguousarray(hprev, dtype=np.float64)
    with one_thread():
        loss = batch_loss_and_grads((np.ascontiguousarray(p[0].T),) + p[1:], data, starts, T, h, grads,
                                    np.zeros(K, dtype=np.bool_), work)
    h_last = np.empty((B, m))
    _last_hidden(h_last, work, T, m)
    g = dict(zip(names, grads))
    g["U"] = np.ascontiguousarray(g["U"].T)  # dU (m,K)
    return float(loss), g, h_last
