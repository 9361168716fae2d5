"""The kernels' state layout: the loop state as a named record, the hyperparameters as a named tuple,
and a Run moved in and out of them.

The loop state is a one-entry numpy structured array of dtype STATE; the kernels work on its entry
`state[0]`, a numba record whose fields they read and write by name (`st.update += 1`), in place, so
that the caller sees them after the call. Hyper is a namedtuple of floats, read only.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

# the training loop's state: where it stands, what it has seen, and how its last call ended
STATE = np.dtype([
    ("update", np.int64),       # updates made
    ("epoch", np.int64),        # epochs begun
    ("pos", np.int64),          # sequential order: character offset e; planned orders: index into the plan
    ("best_update", np.int64),  # the update whose smooth loss is the lowest so far (-1: none yet)
    ("status", np.int64),       # OK, or NONFINITE: the call stopped on a loss that is not finite
    ("adam_t", np.int64),       # Adam's step count
    ("smooth", np.float64),     # the smooth loss
    ("best_smooth", np.float64),  # its lowest value so far
])
OK, NONFINITE = 0, 1  # values of `status`

Hyper = namedtuple("Hyper", "eta eps clip decay beta1 beta2")  # decay: the smooth loss's


def float32_values(params: dict) -> dict:
    """The parameters rounded to float32, kept in float64 arrays (what a float32 run holds)."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}


def new_state(update=0, epoch=0, pos=0, best_update=-1, adam_t=0, smooth=np.nan, best_smooth=np.inf) -> np.ndarray:
    """The kernels' loop state: a (1,) array of dtype STATE with its fields filled."""
    state = np.zeros(1, dtype=STATE)
    st = state[0]
    st["update"], st["epoch"], st["pos"], st["best_update"] = update, epoch, pos, best_update
    st["status"], st["adam_t"], st["smooth"], st["best_smooth"] = OK, adam_t, smooth, best_smooth
    return state


def hyperparameters(eta, eps, clip, decay, beta1, beta2) -> Hyper:
    """The kernels' hyperparameters, every one a float (so the kernels compile for one type)."""
    return Hyper(float(eta), float(eps), float(clip), float(decay), float(beta1), float(beta2))


def _tuple(d: dict) -> tuple:
    return tuple(d[k] for k in ("U", "W", "V", "b", "c"))


def marshal(run) -> dict:
    """The kernels' arguments for a Run: parameter, state and best tuples, the loop state, the
    hyperparameters, and a copy of hprev. In float64 the tuples hold the run's own arrays, updated
    in place; in float32 they hold float32 copies (exact: a float32 run's arrays hold float32
    values), which `unmarshal` writes back."""
    c = run.config
    adam = c.optimizer == "adam"
    state = new_state(run.update, run.epoch, run.pos, run.best_update,
                      run.opt_state.get("t", 0) if adam else 0, run.smooth_loss, run.best_smooth)
    own = {"params": _tuple(run.params), "S": _tuple(run.opt_state["m" if adam else "G"]),
           "best": _tuple(run.best_params)}
    if adam:
        own["R"] = _tuple(run.opt_state["v"])
    single = c.dtype == "float32"
    arrays = {name: tuple(a.astype(np.float32) for a in t) for name, t in own.items()} if single else dict(own)
    arrays.setdefault("R", arrays["S"])  # AdaGrad has no second array: R is S, not read
    return {**arrays, "own": own if single else None, "state": state, "adam": adam,
            "hprev": np.array(run.hprev, dtype=np.float32 if single else np.float64),
            "hyper": hyperparameters(c.eta, c.eps, c.clip, c.smooth, c.beta1, c.beta2)}


def unmarshal(run, a: dict) -> bool:
    """Write the loop state and hprev of `marshal`'s arguments back into the Run (and, in float32,
    the arrays); returns False if the kernel stopped on a loss that is not finite."""
    st = a["state"][0]
    if a["own"] is not None:
        for name, arrays in a["own"].items():
            for own, copy in zip(arrays, a[name]):
                own[...] = copy
    run.update, run.epoch, run.pos = int(st["update"]), int(st["epoch"]), int(st["pos"])
    run.best_update = int(st["best_update"])
    if a["adam"]:
        run.opt_state["t"] = int(st["adam_t"])
    run.smooth_loss, run.best_smooth = float(st["smooth"]), float(st["best_smooth"])
    run.hprev = a["hprev"].astype(np.float64)
    return bool(st["status"] == OK)
