"""The gradient check: BPTT's gradients against centred finite differences, entry by entry."""
from __future__ import annotations

import numpy as np

from .data import RNNError
from .model import float32_values, init_params, loss_and_grads, rnn_forward


def numerical_grads(loss_fn, params: dict, h: float = 1e-4, entries: dict | None = None) -> dict:
    """Centred differences (f(theta+h) - f(theta-h)) / 2h of `loss_fn(params)`.

    `entries` maps a name to flat indices to check (default: every entry); the others stay NaN.
    `params` is perturbed in place and restored exactly.
    """
    num = {}
    for name, theta in params.items():
        g = np.full(theta.shape, np.nan)  # same shape as the parameter
        flat, gflat = theta.reshape(-1), g.reshape(-1)
        idx = range(flat.size) if entries is None else entries[name]
        for i in idx:
            old = flat[i]
            flat[i] = old + h
            f_plus = loss_fn(params)
            flat[i] = old - h
            f_minus = loss_fn(params)
            flat[i] = old
            gflat[i] = (f_plus - f_minus) / (2 * h)
        num[name] = g
    return num


def loss_of(params: dict, inputs, targets, hprev) -> float:
    """The loss of one sequence (the forward pass of `loss_and_grads`, the same number)."""
    return float(rnn_forward(params, np.asarray(inputs), np.asarray(targets), hprev)[0])


def relative_error(ga: np.ndarray, gn: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """|ga - gn| / max(floor, |ga| + |gn|) entry by entry."""
    return np.abs(ga - gn) / np.maximum(floor, np.abs(ga) + np.abs(gn))


# An entry fails when its relative error exceeds the tolerance and its absolute error exceeds what
# rounding can explain: the loss L is rounded to about eps |L|, and the centred difference divides two
# such losses by 2h; a margin of 1000 covers the sums behind L. About 2.4e-7 at L = 108, h = 1e-4:
# at sig = 0.01 dW's entries are about 1e-5, so rounding alone takes their relative error to 5e-6
# (absolute 2e-10), while a wrong gradient is off by about the size of its entries.
ROUNDING_MARGIN = 1000.0


def gradcheck(params: dict, inputs, targets, hprev=None, h: float = 1e-4, floor: float = 1e-6,
              n_spot: int | None = None, rng: np.random.Generator | None = None,
              grad_fn=None, loss_fn=None, rel_tol: float = 1e-6, scale_tol: float = 0.0) -> dict:
    """Compare analytic gradients with centred differences.

    Checks every entry, or `n_spot` entries per parameter drawn from `rng`. `grad_fn(params)` returns
    (loss, grads); by default the vectorised `loss_and_grads` on (inputs, targets, hprev); the
    differences are of `loss_fn(params)` (default: grad_fn's loss). Returns {name: {"max_rel",
    "max_abs", "checked", "failed", "rounding", "largest"}}: "failed" counts the entries whose
    relative error exceeds rel_tol and whose absolute error exceeds both "rounding",
    ROUNDING_MARGIN * eps * |L| / h, and scale_tol times "largest", the largest analytic entry of
    that gradient (for gradients computed in a lower precision, which rounds each entry's sum to
    about its largest terms)."""
    m = params["W"].shape[0]
    hprev = np.zeros(m) if hprev is None else hprev
    if grad_fn is None:
        def grad_fn(p):
            return loss_and_grads(p, inputs, targets, hprev)[:2]

        if loss_fn is None:  # the differences need the loss only: no backward pass per evaluation
            def loss_fn(p):
                return loss_of(p, inputs, targets, hprev)
    if loss_fn is None:
        loss_fn = lambda p: grad_fn(p)[0]  # noqa: E731
    loss, analytic = grad_fn(params)
    noise = ROUNDING_MARGIN * np.finfo(np.float64).eps * abs(loss) / h
    entries = None
    if n_spot is not None:
        rng = rng if rng is not None else np.random.default_rng(0)
        entries = {k: rng.choice(v.size, size=min(n_spot, v.size), replace=False)
                   for k, v in params.items()}
    numeric = numerical_grads(loss_fn, params, h=h, entries=entries)
    table = {}
    for name in params:
        mask = ~np.isnan(numeric[name])
        ga, gn = analytic[name][mask], numeric[name][mask]
        rel, err = relative_error(ga, gn, floor), np.abs(ga - gn)
        largest = float(np.abs(analytic[name]).max())
        table[name] = {
            "max_rel": float(rel.max()),
            "max_abs": float(err.max()),
            "checked": int(mask.sum()),
            "failed": int(np.sum((rel > rel_tol) & (err > max(noise, scale_tol * largest)))),
            "rounding": float(noise),
            "largest": largest,
        }
    return table


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
        from .kernel import kernel_loss_and_grads, unavailable_reason

        if unavailable_reason("float32") is not None:
            raise RNNError(f"a float32 gradient check needs the numba kernel, which does not run here: "
                           f"{unavailable_reason('float32')}")
        params = float32_values(params)

        def loss_fn(p):  # the differences of the float64 loss, without computing float32 gradients
            return loss_of(p, X, Y, h0)

        def grad_fn(p):
            return loss_fn(p), kernel_loss_and_grads(p, X, Y, h0, dtype=np.float32)[1]
    return gradcheck(params, X, Y, h0, h=h, floor=floor, n_spot=n_spot, rng=rng, grad_fn=grad_fn,
                     loss_fn=loss_fn, rel_tol=GRADCHECK_TOL[dtype], scale_tol=GRADCHECK_SCALE_TOL[dtype])
