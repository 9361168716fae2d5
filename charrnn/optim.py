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
