"""The compiled building blocks of the kernels (`single.py`, `batch.py`, `evaluate.py`): numba and
its settings, the kernels' cache, and the step-by-step recurrent products (tanh, exp and the
softmax are in `vecmath.py`, the optimiser steps in `optim.py`). float64, and float32 where the
kernel runs in float32 (numba compiles each for the arrays it is given).

How they are fast (m = 100, T = 25, K = 76; `make bench` has the numbers):
- The recurrent products go one step at a time and are register blocked, reading rows in the
  layout they are stored in: `_matvec` y += A x (dot products of four rows at once) and
  `_axpy_rows` y += rows^T x (eight rows per pass), each able to visit its rows last to first so
  that alternate steps find the rows read last still in the L1 cache. The sequence-wide products
  are BLAS calls (`blas.py`); `_gemm` (C += A B, 4 x 4 blocks) is the compiled stand-in used
  where numpy brings no OpenBLAS.
- Deterministic: the code is compiled with fastmath limited to fusing a*b + c into one FMA
  ("contract"), plus reassociation inside the dot products of `_matvec` only, where LLVM sums in
  vector lanes, and a reciprocal square root estimate ("arcp") in float32 AdaGrad only
  (`optim._adagrad_single`). Either way the order of every sum is fixed when the kernel is
  compiled, so runs repeat bit for bit (tests/test_golden.py pins them); another machine (vector
  width, FMA) or another LLVM may round the last bits differently. On CPUs with AVX-512 the vectors are 512 bits wide (`_allow_wide_vectors`).

numba is optional: without it (or with RNN_DISABLE_NUMBA=1) `numba` is None, `ERROR` says why,
and `njit` leaves functions as they are (nothing here is then called).

numba's on-disk cache checks only the date of a function's own file, yet a kernel's cached machine
code holds the functions it calls from other files and the constants it read from them; it ignores
the decorator options too. So `_drop_stale_cache` clears the package's numba cache whenever any
file the kernels are built from has changed (a checkout of another commit included).
"""
from __future__ import annotations

import os

import numpy as np

ERROR = None
try:  # numba is optional at import time: the numpy forms do not need it
    if os.environ.get("RNN_DISABLE_NUMBA", "").lower() in ("1", "true", "yes"):
        raise ImportError("disabled by RNN_DISABLE_NUMBA")
    import numba
    from numba import njit
except Exception as exc:  # noqa: BLE001 - any failure means: no kernel
    numba = None
    ERROR = f"numba not importable ({exc})"

    def njit(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


def _allow_wide_vectors():
    """On a CPU with AVX-512, let LLVM use 512-bit vectors (its default there is 256: the
    "prefer-256-bit" tuning). The kernels' products then run 8 float64 lanes wide (`make bench`
    times the kernels; RNN_VECTOR_BITS=256 runs them 4 wide to compare). Effective only if nothing in
    this process has compiled with numba yet and the user has not set NUMBA_CPU_FEATURES or
    NUMBA_CPU_NAME; RNN_VECTOR_BITS=256 keeps LLVM's default. It applies to every numba function
    of the process (only the vector width changes)."""
    if numba is None or os.environ.get("RNN_VECTOR_BITS", "") == "256":
        return
    if numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None:
        return
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - no features known: keep numba's defaults
        return
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_allow_wide_vectors()

# every file whose code or constants the compiled kernels are made of
KERNEL_SOURCES = ("single.py", "batch.py", "evaluate.py", "vecmath.py", "ops.py", "optim.py", "state.py", "blas.py",
                  os.path.join("..", "..", "rnn_core.py"))


def _drop_stale_cache(here=os.path.dirname(os.path.abspath(__file__))):
    """Delete <here>/__pycache__/*.nbi and *.nbc (here: the kernels' folder) unless they were written for
    the current contents of KERNEL_SOURCES (a digest kept beside them), so that no kernel runs
    machine code compiled from older sources. Quietly does nothing where the folder cannot be written."""
    if numba is None:
        return
    import glob
    import hashlib

    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        with open(os.path.join(here, name), "rb") as fh:
            digest.update(name.encode() + b"\0" + fh.read())
    cache = os.path.join(here, "__pycache__")
    stamp = os.path.join(cache, "kernels.sha256")
    try:
        with open(stamp) as fh:
            if fh.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for path in glob.glob(os.path.join(cache, "*.nbi")) + glob.glob(os.path.join(cache, "*.nbc")):
            os.remove(path)
        os.makedirs(cache, exist_ok=True)
        with open(f"{stamp}.{os.getpid()}.tmp", "w") as fh:
            fh.write(digest.hexdigest())
        os.replace(f"{stamp}.{os.getpid()}.tmp", stamp)
    except OSError:
        pass


_drop_stale_cache()


def vector_bits() -> int:
    """The widest float64 vectors the kernels are compiled for (512 or 256; 0 without numba).
    The lanes of the dot products' sums follow it, so it names the machine class whose numbers
    tests/golden.json pins."""
    if numba is None:
        return 0
    from numba.core.registry import cpu_target

    features = cpu_target.target_context.codegen().magic_tuple()[2].split(",")
    return 512 if "+avx512f" in features and "-prefer-256-bit" in features else 256

_JIT = dict(cache=True, error_model="numpy", boundscheck=False, nogil=True, fastmath={"contract"})
_JIT_DOT = dict(_JIT, fastmath={"contract", "reassoc"})  # dot products only: see `_matvec`

_COMPILED: dict = {}  # kernel name -> None (it compiles and runs) or why it does not


def compile_status(name: str, warm_up) -> str | None:
    """None if numba is here and `warm_up()` (a small call with the argument types training uses:
    it compiles the kernel, or loads it from numba's cache) runs; else why not. Tried once per process."""
    if numba is None:
        return ERROR
    if name not in _COMPILED:
        try:
            warm_up()
            _COMPILED[name] = None
        except Exception as exc:  # noqa: BLE001 - any failure means: this kernel does not run
            _COMPILED[name] = f"numba failed to compile the {name} ({exc.__class__.__name__}: {exc})"
    return _COMPILED[name]


# ----------------------------------------------------------------------------- products
@njit(inline="always", **_JIT)
def _axpy_rows(y, rows, x, reverse=False):
    """y (n,) += rows (J,n)^T x (J,): axpys over contiguous rows, eight rows per pass so that y
    is loaded and stored an eighth as often. `reverse` visits the passes last to first (as in
    `_matvec`: called with it alternately, rows read last are still in the L1 cache); the order of
    the sum into y then differs, fixed by the flag."""
    n, J = y.shape[0], x.shape[0]
    npass = J // 8
    for p in range(npass):
        j = 8 * (npass - 1 - p if reverse else p)
        x0, x1, x2, x3, x4, x5, x6, x7 = x[j], x[j + 1], x[j + 2], x[j + 3], x[j + 4], x[j + 5], x[j + 6], x[j + 7]
        r0, r1, r2, r3, r4, r5, r6, r7 = (rows[j], rows[j + 1], rows[j + 2], rows[j + 3],
                                          rows[j + 4], rows[j + 5], rows[j + 6], rows[j + 7])
        for i in range(n):
            y[i] = (y[i] + r0[i] * x0 + r1[i] * x1 + r2[i] * x2 + r3[i] * x3
                    + r4[i] * x4 + r5[i] * x5 + r6[i] * x6 + r7[i] * x7)
    for j in range(8 * npass, J):
        xj, r = x[j], rows[j]
        for i in range(n):
            y[i] += r[i] * xj


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


@njit(**_JIT_DOT)
def _matvec(y, A, x, reverse):
    """y (M,) += A (M,J) x (J,): dot products of contiguous rows, four rows per pass, each summed in
    the vector lanes LLVM chooses (reassociation allowed here only: a fixed order for a given
    machine and build). `reverse` visits the blocks of rows last to first: called with
    it alternately, a matrix larger than the L1 cache finds the rows it read last still there. Each
    row's sum is the same either way (one loop body)."""
    M, J = A.shape
    zero = y.dtype.type(0.0)  # sums in the arrays' precision (float32 in float32 runs)
    nblocks = M // 4
    for bb in range(nblocks):
        r = 4 * (nblocks - 1 - bb if reverse else bb)
        w0, w1, w2, w3 = A[r], A[r + 1], A[r + 2], A[r + 3]
        s0 = s1 = s2 = s3 = zero
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
    for r in range(4 * nblocks, M):
        s = zero
        for j in range(J):
            s += A[r, j] * x[j]
        y[r] += s


@njit(**_JIT)
def _transpose(dst, src):
    """dst (N,M) = src (M,N)^T, one row of dst at a time: contiguous stores, strided loads that
    LLVM gathers (rather than loops that store across the rows of dst)."""
    M, N = src.shape
    for j in range(N):
        d = dst[j]
        for i in range(M):
            d[i] = src[i, j]


@njit(inline="always", **_JIT)
def _column_sums(y, A):
    """y (N,) = the sum of the rows of A (M,N), row after row."""
    y[:] = 0.0
    for r in range(A.shape[0]):
        a = A[r]
        for i in range(y.shape[0]):
            y[i] += a[i]
