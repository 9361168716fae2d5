"""The report's gradient check on a corpus: its settings, bounds and tolerances, in float64 or float32
(the check itself, `rnn_core.gradcheck`, compares BPTT's gradients with centred differences)."""
from __future__ import annotations

import numpy as np

from charrnn import kernels
from rnn_core import RNNError, gradcheck, init_params, loss_of


# The relative error an entry may have: float64's centred differences are good to about 1e-8 at
# sig = 0.1 (README); float32's analytic gradients to about 1e-6 (tests/test_float32.py).
GRADCHECK_TOL = {"float64": 1e-6, "float32": 1e-4}
# and the absolute error allowed relative to the gradient's largest entry: float32 sums round to
# about 100 float32 epsilons of their largest terms (measured: 2e-5 against entries of 5 at sig 2)
GRADCHECK_SCALE_TOL = {"float64": 0.0, "float32": 1e-5}
# the check says nothing when rounding alone is this large against the largest gradient entry
INCONCLUSIVE = 1e-4

# Bounds of the gradient check: weights whose tanh does not saturate everywhere, a step whose
# centred difference is neither rounding nor curvature, and at most ~1e11 multiply-adds of forward
# passes (about a minute), so that a large m asks for --spot instead of running for hours.
GRADCHECK_SIG_MAX, GRADCHECK_STEP_RANGE, GRADCHECK_WORK = 10.0, (1e-10, 0.1), 1e11


def check_gradcheck(K: int, m: int, T: int, sig: float, h: float, n_spot: int | None, seed: int) -> None:
    """Refuse gradient-check settings out of range, before anything is allocated."""
    if not (isinstance(seed, int) and 0 <= seed) or m < 1 or T < 1 or (n_spot is not None and n_spot < 1):
        raise RNNError(f"m, T and n_spot must be >= 1 and seed >= 0, got m={m}, T={T}, n_spot={n_spot}, seed={seed}")
    if not 0 < sig <= GRADCHECK_SIG_MAX:
        raise RNNError(f"sig must be in (0, {GRADCHECK_SIG_MAX:g}], got {sig}")
    if not GRADCHECK_STEP_RANGE[0] <= h <= GRADCHECK_STEP_RANGE[1]:
        raise RNNError(f"the step h must be in [{GRADCHECK_STEP_RANGE[0]:g}, {GRADCHECK_STEP_RANGE[1]:g}], got {h}")
    sizes = (m * K, m * m, K * m, m, K)
    checked = sum(sizes) if n_spot is None else sum(min(n_spot, s) for s in sizes)
    if 2 * checked * T * (m * m + 2 * m * K) > GRADCHECK_WORK:
        raise RNNError(f"checking {checked:,} entries at m={m}, T={T} would take too long: check fewer "
                       f"(--spot) or a smaller m")


def gradcheck_on_text(data: np.ndarray, K: int, m: int, T: int = 25, sig: float = 0.01, h: float = 1e-4,
                      floor: float = 1e-6, n_spot: int | None = None, seed: int = 0, dtype: str = "float64") -> dict:
    """The report's gradient check: X = data[:T], Y = data[1:T+1], h0 = 0.

    U, W, V and (unlike at initialisation) b and c are drawn N(0, sig^2) from `seed`, so that every
    gradient entry is exercised. Returns the table of `gradcheck`. dtype "float32" checks the
    float32 kernel's analytic gradients (the weights rounded to float32) against centred differences
    of the float64 loss: differences taken in float32 itself would be rounding noise at any h.
    """
    check_gradcheck(K, m, T, sig, h, n_spot, seed)
    rng = np.random.default_rng(seed)
    params = init_params(K, m, rng, sig)
    params["b"] = rng.standard_normal(m) * sig
    params["c"] = rng.standard_normal(K) * sig
    X, Y, h0 = data[:T], data[1:T + 1], np.zeros(m)
    grad_fn = loss_fn = None
    if dtype == "float32":
        reason = kernels.unavailable_reason(1, "float32")
        if reason is not None:
            raise RNNError(f"a float32 gradient check needs the numba kernel, which does not run here: {reason}")
        params = kernels.float32_values(params)

        def loss_fn(p):  # the differences of the float64 loss, without computing float32 gradients
            return loss_of(p, X, Y, h0)

        def grad_fn(p):
            return loss_fn(p), kernels.loss_and_grads(p, X, Y, h0, dtype="float32")[1]
    return gradcheck(params, X, Y, h0, h=h, floor=floor, n_spot=n_spot, rng=rng, grad_fn=grad_fn,
                     loss_fn=loss_fn, rel_tol=GRADCHECK_TOL[dtype], scale_tol=GRADCHECK_SCALE_TOL[dtype])
