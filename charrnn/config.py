"""The run configuration: the `Config` dataclass, its checks, and which changes a resumed run accepts."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from .data import RNNError
from .optim import OPTIMIZERS

ORDERS = ("sequential", "random", "chunks")
BACKENDS = ("auto", "numba", "numpy", "steps")

# Fields that only say how long to run or how often to save: a run may be resumed with other values,
# and they are not part of a cached run's key.
RUN_LENGTH_FIELDS = ("epochs", "max_updates", "checkpoint_seconds")


@dataclass
class Config:
    """Everything that defines a training run. Saved in every checkpoint."""

    m: int = 100  # hidden units
    eta: float = 0.1  # learning rate (of AdaGrad or Adam)
    seq_length: int = 25  # T: characters per training sequence (BPTT length)
    batch_size: int = 1  # B: sequences per update, from B evenly spaced streams (1: the exact algorithm)
    optimizer: str = "adagrad"  # "adagrad" (the assignment) or "adam"
    beta1: float = 0.9  # Adam's decay of the first moment
    beta2: float = 0.999  # Adam's decay of the second moment
    order: str = "sequential"  # "sequential" passes; "random" locations (hprev = 0 each); "chunks" shuffled
    chunk_sequences: int = 40  # with order="chunks": sequences per chunk (hprev reset at each chunk start)
    holdout: float = 0.0  # fraction of the corpus, at its end, held out from training (0: none)
    eval_every: int = 0  # updates between evaluations on the held-out text (0: none)
    sig: float = 0.01  # standard deviation of the initial U, W, V
    epochs: int = 2  # passes through the corpus
    max_updates: int | None = None  # stop once this many updates are done in all (None: no limit)
    clip: float = 5.0  # each gradient entry is clipped to [-clip, clip] before the update
    eps: float = 1e-8  # the optimiser's epsilon (AdaGrad: inside the square root; Adam: added to sqrt(v))
    seed: int = 1  # the one seed every random stream derives from
    smooth: float = 0.999  # smooth_loss = smooth * smooth_loss + (1 - smooth) * loss
    sample_every: int = 10_000  # updates between training samples (0: no samples)
    sample_until: int = 100_000  # no training samples after this update
    sample_length: int = 200  # characters per training sample
    backend: str = "auto"  # "numba": fused kernel; "numpy": vectorised form; "steps": textbook form; "auto": numba if it runs
    checkpoint_seconds: float = 60.0  # seconds between checkpoints while training (when a path is given)

    def __post_init__(self):
        for name in ("m", "seq_length", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise RNNError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_updates is not None and self.max_updates < 0:
            raise RNNError(f"max_updates must be >= 0, got {self.max_updates}")
        for name in ("eta", "sig", "clip", "eps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise RNNError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not 0 <= self.smooth < 1:
            raise RNNError(f"smooth must be in [0, 1), got {self.smooth}")
        if self.backend not in BACKENDS:
            raise RNNError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.optimizer not in OPTIMIZERS:
            raise RNNError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.order not in ORDERS:
            raise RNNError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.order != "sequential" and self.batch_size != 1:
            raise RNNError("random and chunked orders take batch_size 1")
        if not 0 <= self.holdout < 1:
            raise RNNError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.eval_every and not self.holdout:
            raise RNNError("eval_every needs a holdout fraction to evaluate on")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def resolve_backend(backend: str, batch_size: int = 1) -> str:
    """"auto" becomes "numba" where the kernel compiles, else "numpy"; other names stay.
    Mini-batches (B > 1) always use the numpy batch form, whose matrix products go to BLAS."""
    if batch_size > 1:
        return "numpy"
    if backend != "auto":
        return backend
    from . import kernel

    return "numba" if kernel.available() else "numpy"


def result_fields(config: Config) -> dict:
    """The fields that decide a run's numbers (all but RUN_LENGTH_FIELDS), the backend resolved."""
    config = config.replace(backend=resolve_backend(config.backend, config.batch_size))
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_LENGTH_FIELDS}


def check_resume_config(old: Config, new: Config) -> Config:
    if new.backend == "auto":
        new = new.replace(backend=old.backend)
    differ = [f.name for f in dataclasses.fields(Config)
              if f.name not in RUN_LENGTH_FIELDS and getattr(old, f.name) != getattr(new, f.name)]
    if differ:
        pairs = ", ".join(f"{n}={getattr(old, n)!r} (asked {getattr(new, n)!r})" for n in differ)
        raise RNNError(f"cannot resume: the checkpoint was trained with {pairs}")
    return new
