"""The kernels' matrix product (`charrnn/kernels/blas.py`): OpenBLAS bound by symbol, or the compiled stand-in,
each against numpy's own product; the stand-in is called through its C entry point, as the kernels
would call it where no OpenBLAS is found.

Tolerance: both sides sum J <= 100 products of numbers of size about 1 in float64, each in its own
order, so they may differ by a few ulp of the sums (about 1e-14 absolute here); 1e-12 leaves room and
still catches any wrong transposition, stride or offset (those give differences of order 1).
"""
import ctypes

import numpy as np
import pytest

from charrnn.kernels import blas
from charrnn.kernels import ops as kernel_ops

needs_numba = pytest.mark.skipif(kernel_ops.numba is None, reason=f"no numba: {kernel_ops.ERROR}")

if kernel_ops.numba is not None:
    from numba import njit

    @njit
    def _call(C, A, B, ta, tb):
        blas.gemm(C, A, B, ta, tb)

    @njit
    def _call_set(C, A, B, ta, tb):
        blas.gemm_set(C, A, B, ta, tb)


def _operands(rng, M, N, J, ta, tb):
    A = rng.standard_normal((J, M) if ta else (M, J))
    B = rng.standard_normal((N, J) if tb else (J, N))
    return A, B, (A.T if ta else A) @ (B.T if tb else B)


@needs_numba
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_gemm_adds_the_product_for_every_transposition(ta, tb):
    rng = np.random.default_rng(int(ta) * 2 + int(tb))
    A, B, want = _operands(rng, 25, 76, 100, ta, tb)
    C0 = rng.standard_normal((25, 76))
    C = C0.copy()
    _call(C, A, B, ta, tb)
    assert np.max(np.abs(C - C0 - want)) < 1e-12


@needs_numba
def test_gemm_set_overwrites_and_gives_the_bits_of_adding_to_zeros():
    rng = np.random.default_rng(3)
    A, B, want = _operands(rng, 25, 100, 100, True, False)
    C = np.full((25, 100), np.nan)  # whatever C held is not read
    _call_set(C, A, B, True, False)
    Z = np.zeros((25, 100))
    _call(Z, A, B, True, False)
    assert np.array_equal(C, Z) and np.max(np.abs(C - want)) < 1e-12


@needs_numba
def test_gemm_takes_row_views_with_their_stride():
    """H[1:] and a column block C[:, 3:9]: rows contiguous, the leading dimension is the parent's."""
    rng = np.random.default_rng(5)
    H = rng.standard_normal((26, 100))
    V = rng.standard_normal((76, 100))
    big = np.zeros((25, 20))
    _call(big[:, 3:9], H[1:], V[:6], False, True)
    assert np.max(np.abs(big[:, 3:9] - H[1:] @ V[:6].T)) < 1e-12
    assert not big[:, :3].any() and not big[:, 9:].any()  # nothing written outside the view


# float32: sums of up to 100 products of size about 1, each rounded to float32 (unit roundoff 6e-8):
# errors of about 1e-6 absolute; 1e-4 leaves room and still catches a wrong transposition or stride.
F32_TOL = 1e-4


@needs_numba
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_of_float32_arrays_is_sgemm(ta, tb):
    rng = np.random.default_rng(13 + int(ta) * 2 + int(tb))
    A, B, _ = _operands(rng, 25, 76, 100, ta, tb)
    A, B = A.astype(np.float32), B.astype(np.float32)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    C0 = rng.standard_normal((25, 76)).astype(np.float32)
    C = C0.copy()
    _call(C, A, B, ta, tb)
    assert C.dtype == np.float32
    assert np.max(np.abs(C - C0 - want)) < F32_TOL
    _call_set(C, A, B, ta, tb)
    assert np.max(np.abs(C - want)) < F32_TOL


@needs_numba
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_stand_in_computes_the_same_product_through_its_c_entry(ta, tb, dtype):
    rng = np.random.default_rng(7)
    M, N, J = 9, 13, 11
    A, B, want = _operands(rng, M, N, J, ta, tb)
    A, B = A.astype(dtype), B.astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    single = dtype == np.float32
    ptr = ctypes.POINTER(ctypes.c_float if single else ctypes.c_double)
    standin, tol = (blas._standin32, F32_TOL) if single else (blas._standin, 1e-12)
    for beta, base in ((1.0, C0), (0.0, 0.0)):  # C += op(A) op(B), and C = op(A) op(B)
        C = C0.copy()
        standin.ctypes(blas.ROW_MAJOR, blas.TRANS if ta else blas.NO_TRANS, blas.TRANS if tb else blas.NO_TRANS,
                       M, N, J, 1.0, A.ctypes.data_as(ptr), A.shape[1], B.ctypes.data_as(ptr), B.shape[1],
                       beta, C.ctypes.data_as(ptr), N)
        assert np.max(np.abs(C - base - want)) < tol


@needs_numba
@pytest.mark.skipif(blas._THREADS is None, reason=f"BLAS is {blas.BACKEND}: no OpenBLAS thread count to vary")
def test_openblas_gives_the_same_bits_on_one_and_two_threads():
    """A product large enough for OpenBLAS to split between threads (800 x 100 x 100: the mini-batch
    kernel's at B = 32) has the same bits either way: threads take blocks of C, never parts of a sum."""
    get, set_ = blas._THREADS
    before = get()
    rng = np.random.default_rng(11)
    A, B, _ = _operands(rng, 800, 100, 100, False, False)
    out = []
    try:
        for n in (1, 2):
            set_(n)
            C = np.zeros((800, 100))
            _call(C, A, B, False, False)
            out.append(C)
    finally:
        set_(before)
    assert np.array_equal(out[0], out[1])


@needs_numba
def test_one_thread_restores_the_thread_count():
    if blas._THREADS is None:
        pytest.skip(f"BLAS is {blas.BACKEND}")
    get, set_ = blas._THREADS
    before = get()
    with blas.one_thread():
        assert get() == 1
    assert get() == before
