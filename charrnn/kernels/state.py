"""The kernels' state layout: the named slots of their small state arrays, and a Run moved in and out."""
from __future__ import annotations

import numpy as np

# The slots of the state arrays, defined once. istate int64 (N_ISTATE,), fstate float64 (N_FSTATE,),
# hyper float64 (N_HYPER,).
I_UPDATE, I_EPOCH, I_POS, I_BEST_UPDATE, I_STATUS, I_ADAM_T, N_ISTATE = range(7)
F_SMOOTH, F_BEST_SMOOTH, N_FSTATE = range(3)
H_ETA, H_EPS, H_CLIP, H_DECAY, H_BETA1, H_BETA2, N_HYPER = range(7)
# values of istate[I_STATUS]
OK, NONFINITE = 0, 1


def float32_values(params: dict) -> dict:
    """The parameters rounded to float32, kept in float64 arrays (what a float32 run holds)."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}


def new_state(update=0, epoch=0, pos=0, best_update=-1, adam_t=0, smooth=np.nan, best_smooth=np.inf):
    """The kernel's (istate, fstate) arrays with their named slots filled."""
    istate = np.zeros(N_ISTATE, dtype=np.int64)
    istate[I_UPDATE], istate[I_EPOCH], istate[I_POS] = update, epoch, pos
    istate[I_BEST_UPDATE], istate[I_ADAM_T], istate[I_STATUS] = best_update, adam_t, OK
    fstate = np.zeros(N_FSTATE)
    fstate[F_SMOOTH], fstate[F_BEST_SMOOTH] = smooth, best_smooth
    return istate, fstate


def hyperparameters(eta, eps, clip, decay, beta1, beta2) -> np.ndarray:
    """The kernel's hyper array (N_HYPER,) with its named slots filled."""
    hyper = np.zeros(N_HYPER)
    hyper[H_ETA], hyper[H_EPS], hyper[H_CLIP] = eta, eps, clip
    hyper[H_DECAY], hyper[H_BETA1], hyper[H_BETA2] = decay, beta1, beta2
    return hyper


def _tuple(d: dict) -> tuple:
    return tuple(d[k] for k in ("U", "W", "V", "b", "c"))


def marshal(run) -> dict:
    """The kernels' arguments for a Run: parameter, state and best tuples, the named state slots,
    the hyperparameters, and a copy of hprev. In float64 the tuples hold the run's own arrays,
    updated in place; in float32 they hold float32 copies (exact: a float32 run's arrays hold float32
    values), which `unmarshal` writes back."""
    c = run.config
    adam = c.optimizer == "adam"
    istate, fstate = new_state(run.update, run.epoch, run.pos, run.best_update,
                               run.opt_state.get("t", 0) if adam else 0, run.smooth_loss, run.best_smooth)
    own = {"params": _tuple(run.params), "S": _tuple(run.opt_state["m" if adam else "G"]),
           "best": _tuple(run.best_params)}
    if adam:
        own["R"] = _tuple(run.opt_state["v"])
    single = c.dtype == "float32"
    arrays = {name: tuple(a.astype(np.float32) for a in t) for name, t in own.items()} if single else dict(own)
    arrays.setdefault("R", arrays["S"])  # AdaGrad has no second array: R is S, not read
    return {**arrays, "own": own if single else None,
            "istate": istate, "fstate": fstate, "adam": adam,
            "hprev": np.array(run.hprev, dtype=np.float32 if single else np.float64),
            "hyper": hyperparameters(c.eta, c.eps, c.clip, c.smooth, c.beta1, c.beta2)}


def unmarshal(run, a: dict) -> bool:
    """Write the named state slots and hprev of `marshal`'s arguments back into the Run (and, in
    float32, the arrays); returns False if the kernel stopped on a loss that is not finite."""
    istate, fstate = a["istate"], a["fstate"]
    if a["own"] is not None:
        for name, arrays in a["own"].items():
            for own, copy in zip(arrays, a[name]):
                own[...] = copy
    run.update, run.epoch, run.pos = int(istate[I_UPDATE]), int(istate[I_EPOCH]), int(istate[I_POS])
    run.best_update = int(istate[I_BEST_UPDATE])
    if a["adam"]:
        run.opt_state["t"] = int(istate[I_ADAM_T])
    run.smooth_loss, run.best_smooth = float(fstate[F_SMOOTH]), float(fstate[F_BEST_SMOOTH])
    run.hprev = a["hprev"].astype(np.float64)
    return istate[I_STATUS] == OK
