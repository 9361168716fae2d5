"""Optimisers with explicit state, and gradient clipping.

The state is a plain dict of arrays (saved in checkpoints as is); nothing is hidden in closures.
Clipping belongs to the training step, never to the loss function.
"""
from __future__ import annotations

import numpy as np


def clip_grads(grads: dict, clip: float) -> dict:
    """Each gradient entry clipped to [-clip, clip] (a new dict; the input is left alone)."""
    return {k: np.clip(g, -clip, clip) for k, g in grads.items()}


def adagrad_init(params: dict) -> dict:
    """AdaGrad state: the running sum of squared gradients G, one array per parameter."""
    return {"G": {k: np.zeros_like(v) for k, v in params.items()}}


def adagrad_step(params: dict, grads: dict, state: dict, eta: float, eps: float = 1e-8) -> None:
    """In place: G += g*g; theta -= eta * g / sqrt(G + eps)."""
    for k, g in grads.items():
        G = state["G"][k]
        G += g * g
        params[k] -= eta * g / np.sqrt(G + eps)


def adam_init(params: dict) -> dict:
    """Adam state: first and second moment estimates per parameter, and the step count t."""
    return {"m": {k: np.zeros_like(v) for k, v in params.items()},
            "v": {k: np.zeros_like(v) for k, v in params.items()}, "t": 0}


def adam_step(params: dict, grads: dict, state: dict, eta: float, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8) -> None:
    """In place: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; theta -= eta m_hat / (sqrt(v_hat) + eps),
    with the bias corrections m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)."""
    state["t"] += 1
    t = state["t"]
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    for k, g in grads.items():
        m, v = state["m"][k], state["v"][k]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        params[k] -= eta * (m / c1) / (np.sqrt(v / c2) + eps)


OPTIMIZERS = {"adagrad": (adagrad_init, adagrad_step), "adam": (adam_init, adam_step)}
