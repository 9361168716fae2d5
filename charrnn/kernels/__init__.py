"""The compiled (numba) forms of the training loop and the held-out evaluation, behind one seam.

The rest of the package reaches the kernels through the names below only. Modules:
    single     the batch-1 training kernel: forward, BPTT, clipping and the optimiser step, fused
    batch      the mini-batch training kernel (B sequences per update)
    evaluate   the held-out evaluation: every block forward from one state, in one call
    optim      the kernels' optimiser steps (clipping, AdaGrad, Adam)
    vecmath    tanh, exp and the softmax with its loss, vectorised and deterministic
    ops        numba and its settings, the kernels' disk cache, the recurrent products
    blas       OpenBLAS's gemm bound for numba (a compiled stand-in where there is none)
    state      the loop state (a numba record), the hyperparameters (a namedtuple), a run moved in and out
numba is optional: without it `importable()` is False and training uses rnn_core's numpy forms.
"""
from __future__ import annotations

import numpy as np

from charrnn.kernels import batch, evaluate, ops, single
from charrnn.kernels.state import float32_values


def importable() -> bool:
    """True if numba imports here (checking this compiles nothing)."""
    return ops.numba is not None


def unavailable_reason(batch_size: int = 1, dtype: str = "float64") -> str | None:
    """None if the training kernel for this batch size and precision runs here (compiling it, or
    loading it from numba's disk cache, on the first call), else why not."""
    return single.unavailable_reason(dtype) if batch_size == 1 else batch.unavailable_reason()


def available(batch_size: int = 1, dtype: str = "float64") -> bool:
    """True if the training kernel for this batch size and precision runs here."""
    return unavailable_reason(batch_size, dtype) is None


def advance(run, data, n: int, starts=None, resets=None) -> bool:
    """n batch-1 updates of `run` in place (order: sequential, or the epoch plan starts/resets);
    False if a loss became NaN or infinite."""
    return single.advance(run, data, n, starts, resets)


def advance_batch(run, data, n: int, stream: int) -> bool:
    """n mini-batch updates of `run` in place, B streams of `stream` characters; False as `advance`."""
    return batch.advance(run, data, n, stream)


def loss_and_grads(params: dict, inputs, targets, hprev, dtype="float64"):
    """The batch-1 kernel's loss, gradients and last state for one sequence, as rnn_core.loss_and_grads."""
    return single.kernel_loss_and_grads(params, inputs, targets, hprev, dtype=np.dtype(dtype).type)


def loss_and_grads_batch(params: dict, inputs, targets, hprev):
    """The mini-batch kernel's loss and gradients, as rnn_core.loss_and_grads_batch."""
    return batch.kernel_loss_and_grads_batch(params, inputs, targets, hprev)


def evaluation_available() -> bool:
    """True if the compiled held-out evaluation runs here."""
    return evaluate.available()


def block_log_probs(params: dict, blocks, h0):
    """The compiled held-out evaluation: (n, L - 1) natural log-probabilities of blocks (n, L) from h0."""
    return evaluate.block_log_probs(params, blocks, h0)


def one_numba_thread() -> None:
    """Limit numba to one thread in this process (the report's workers already fill the cores)."""
    if ops.numba is not None:
        ops.numba.set_num_threads(1)


vector_bits = ops.vector_bits  # the machine class whose golden numbers tests/golden.json pins
