"""The one matrix product the compiled kernels call, `gemm`: numpy's own OpenBLAS dgemm (sgemm for
float32 arrays), bound for numba by its symbol name, or a compiled stand-in where numpy has no such
library.

Why BLAS here: the kernels' sequence-wide products (the output layer, dV, dW, V^T g_o over all T
steps) are small (about 25 x 100 x 100), yet OpenBLAS's packed, register-tiled kernels run them
faster than the register-blocked loops of `ops.py` (`ops._gemm`, the stand-in below; `make bench`
times the kernels). Called from compiled code there is no Python in between.

How: numpy's pip wheels ship OpenBLAS built for 64-bit integers with the symbols renamed
(`scipy_cblas_dgemm64_`, `scipy_cblas_sgemm64_`). Their addresses are registered with LLVM under
the names `charrnn_dgemm` and `charrnn_sgemm`, which the kernels call as external C functions.
Where they are not found (another numpy build), the same names are bound to `_standin` and
`_standin32`, compiled C-callable products made of `ops._gemm`, so compiled kernels cached
on disk are right either way. `BACKEND` says which one is in use.

Rounding: a BLAS sums each entry of a product in an order fixed by its build and the CPU's kernel
(OpenBLAS picks one per CPU family); it splits work between threads by blocks of rows and columns,
never along the sum, so the numbers do not depend on its thread count (tests run 1 and 2).
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os

import numpy as np

from charrnn.kernels import ops
from charrnn.kernels.ops import _JIT, _gemm, njit

SYMBOLS = ("charrnn_dgemm", "charrnn_sgemm")  # float64, float32
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enumerations
BACKEND = "none"  # "openblas (<core>)", "stand-in", or "none" (no numba)
_THREADS = None  # (get, set) of OpenBLAS's thread count, when found


def _openblas():
    """(dgemm address, sgemm address, core name) of the OpenBLAS inside numpy's wheel, or None;
    finds its thread count's getter and setter too."""
    global _THREADS
    here = os.path.dirname(np.__file__)
    for path in sorted(glob.glob(os.path.join(here + ".libs", "libscipy_openblas64_*")) +
                       glob.glob(os.path.join(os.path.dirname(here), "numpy.libs", "libscipy_openblas64_*"))):
        try:
            lib = ctypes.CDLL(path)
            addresses = [ctypes.cast(f, ctypes.c_void_p).value for f in (lib.scipy_cblas_dgemm64_,
                                                                         lib.scipy_cblas_sgemm64_)]
            corename = lib.scipy_openblas_get_corename64_
            corename.restype = ctypes.c_char_p
            get, set_ = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
            get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
            _THREADS = (get, set_)
            return addresses[0], addresses[1], corename().decode("ascii", "replace").lower()
        except (OSError, AttributeError):
            continue
    return None


if ops.numba is not None:
    import llvmlite.binding as llvm
    from numba import carray, cfunc, types

    _i32, _i64, _f8, _f4 = types.int32, types.int64, types.float64, types.float32

    def _signature(f, pointers=True):
        """The C signature of ?gemm for floats f, with pointers typed or (pointers=False) as int64."""
        p = types.CPointer(f) if pointers else _i64
        return types.void(_i32, _i32, _i32, _i64, _i64, _i64, f, p, _i64, p, _i64, f, p, _i64)

    def _standin_body(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        """C = beta C + alpha op(A) op(B), row-major, for the calls `gemm` and `gemm_set` make
        (alpha = 1, beta = 1 or 0)."""
        a = carray(A, (K if ta == TRANS else M, lda))[:, :M if ta == TRANS else K]
        b = carray(B, (N if tb == TRANS else K, ldb))[:, :K if tb == TRANS else N]
        c = carray(C, (M, ldc))[:, :N]
        if beta == 0.0:
            c[:, :] = 0.0
        _gemm(c, a.T if ta == TRANS else a, b.T if tb == TRANS else b)

    _standin = cfunc(_signature(_f8), cache=True)(_standin_body)
    _standin32 = cfunc(_signature(_f4), cache=True)(_standin_body)
    _found = _openblas()
    if _found is not None:
        llvm.add_symbol(SYMBOLS[0], _found[0])
        llvm.add_symbol(SYMBOLS[1], _found[1])
        BACKEND = f"openblas ({_found[2]})"
    else:
        llvm.add_symbol(SYMBOLS[0], _standin.address)
        llvm.add_symbol(SYMBOLS[1], _standin32.address)
        BACKEND = "stand-in"
    # pointers travel as 64-bit integers (the same registers as a pointer on x86-64 and arm64)
    _dgemm = types.ExternalFunction(SYMBOLS[0], _signature(_f8, pointers=False))
    _sgemm = types.ExternalFunction(SYMBOLS[1], _signature(_f4, pointers=False))
else:
    _dgemm = _sgemm = None


@contextlib.contextmanager
def one_thread():
    """OpenBLAS on one thread while the kernels run (their products are small, and the mini-batch
    kernel's own threads take the streams); its thread count is restored after."""
    if _THREADS is None:
        yield
        return
    get, set_ = _THREADS
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


@njit(**_JIT)
def _product(C, A, B, ta, tb, beta):
    M, N = C.shape
    J = A.shape[0] if ta else A.shape[1]
    order, opa, opb = np.int32(ROW_MAJOR), np.int32(TRANS if ta else NO_TRANS), np.int32(TRANS if tb else NO_TRANS)
    size = C.itemsize  # A, B and C share one precision
    if size == 4:
        _sgemm(order, opa, opb, M, N, J, np.float32(1.0), A.ctypes.data, A.strides[0] // 4, B.ctypes.data,
               B.strides[0] // 4, np.float32(beta), C.ctypes.data, C.strides[0] // 4)
    else:
        _dgemm(order, opa, opb, M, N, J, 1.0, A.ctypes.data, A.strides[0] // size, B.ctypes.data,
               B.strides[0] // size, beta, C.ctypes.data, C.strides[0] // size)


@njit(**_JIT)
def gemm(C, A, B, ta, tb):
    """C (M,N) += op(A) op(B), op(X) = X^T where the flag is True: A (M,J) or (J,M), B (J,N) or
    (N,J). Each array's rows must be contiguous (row views such as H[1:] are)."""
    _product(C, A, B, ta, tb, 1.0)


@njit(**_JIT)
def gemm_set(C, A, B, ta, tb):
    """C (M,N) = op(A) op(B), as `gemm` without reading C (the same bits as zeroing C first)."""
    _product(C, A, B, ta, tb, 0.0)
