"""The run configuration: the `Config` dataclass, its checks, and which changes a resumed run accepts."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass

from charrnn import kernels
from rnn_core import OPTIMIZERS, RNNError

ORDERS = ("sequential", "random", "chunks")
BACKENDS = ("auto", "numba", "numpy", "steps")
DTYPES = ("float64", "float32")

# Fields that only say how long to run or how often to save: a run may be resumed with other values,
# and they are not part of a cached run's key.
RUN_LENGTH_FIELDS = ("epochs", "max_updates", "checkpoint_seconds")


# Ranges of the integer fields (inclusive); 2**62 keeps every count far from int64 overflow.
BIG = 2**62
_INT_RANGES = (("m", 1, 10**6), ("seq_length", 1, 10**6), ("batch_size", 1, 10**6), ("chunk_sequences", 1, BIG),
               ("eval_every", 0, BIG), ("epochs", 1, BIG), ("max_updates", 0, BIG), ("seed", 0, 2**63 - 1),
               ("sample_every", 0, BIG), ("sample_until", 0, BIG), ("sample_length", 0, 10**6))
# A run is refused when its arrays would need more than this share of the machine's memory.
MEMORY_SHARE = 0.5


def _plain(value):
    """A numpy (or other) scalar as Python's own int, float or str, so that a config saves as JSON
    (`Config(m=np.int64(8))`, as a loop over np.arange gives); anything else is left to _check_type."""
    if value is None or isinstance(value, bool) or type(value) in (int, float, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value) if isinstance(value, str) else value


def _check_type(name: str, value, kind: str) -> None:
    ok = {"int": isinstance(value, numbers.Integral) and not isinstance(value, bool),
          "int?": value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)),
          "float": isinstance(value, numbers.Real) and not isinstance(value, bool),
          "str": isinstance(value, str)}[kind]
    if not ok:
        wanted = {"int": "a whole number", "int?": "a whole number or None", "float": "a number", "str": "a string"}
        raise RNNError(f"{name} must be {wanted[kind]}, got {value!r}")


def memory_bytes(config: "Config", K: int) -> int:
    """Rough size of a run's arrays: parameters, gradients, best copies and optimiser state (about 7
    copies at most), plus the forward/backward caches of one update (B sequences of T steps)."""
    n_params = config.m * config.m + 2 * config.m * K + config.m + K
    caches = config.batch_size * config.seq_length * (4 * config.m + 3 * K)
    return 8 * (7 * n_params + caches)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def check_memory(config: "Config", K: int) -> None:
    """Refuse, before allocating anything, a run whose arrays would not fit in memory."""
    need, have = memory_bytes(config, K), physical_memory()
    if need > MEMORY_SHARE * have:
        raise RNNError(f"m={config.m}, K={K}, batch_size={config.batch_size}, seq_length={config.seq_length} "
                       f"needs about {need / 2**30:.1f} GiB, more than half of this machine's "
                       f"{have / 2**30:.1f} GiB")


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
    holdout: float = 0.0  # fraction of the corpus held out from training, in blocks spread over it (heldout.py; 0: none)
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
    dtype: str = "float64"  # "float32": the batch-1 kernel computes in single precision (faster, not the exact algorithm)
    checkpoint_seconds: float = 60.0  # seconds between checkpoints while training (when a path is given)

    def __post_init__(self):
        for name, kind in _FIELD_KINDS.items():
            setattr(self, name, _plain(getattr(self, name)))
            _check_type(name, getattr(self, name), kind)
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise RNNError(f"{name} must be in [{low}, {high}], got {value}")
        for name in ("eta", "sig", "clip", "eps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise RNNError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("smooth", "beta1", "beta2", "holdout"):
            if not 0 <= getattr(self, name) < 1:
                raise RNNError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (math.isfinite(self.checkpoint_seconds) and self.checkpoint_seconds >= 0):
            raise RNNError(f"checkpoint_seconds must be a number >= 0, got {self.checkpoint_seconds}")
        if self.backend not in BACKENDS:
            raise RNNError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise RNNError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.dtype == "float32" and (self.batch_size != 1 or self.backend not in ("auto", "numba")):
            raise RNNError("dtype float32 is a mode of the batch-1 numba kernel: it needs batch_size 1 and "
                           f"backend numba or auto (got batch_size {self.batch_size}, backend {self.backend})")
        if self.optimizer not in OPTIMIZERS:
            raise RNNError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.order not in ORDERS:
            raise RNNError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.order != "sequential" and self.batch_size != 1:
            raise RNNError("random and chunked orders take batch_size 1")
        if self.eval_every and not self.holdout:
            raise RNNError("eval_every needs a holdout fraction to evaluate on")
        check_memory(self, K=2)  # the smallest vocabulary: a huge m is refused before any corpus is read

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            stored = json.loads(text)
        except ValueError as exc:
            raise RNNError(f"config is not JSON ({exc})") from None
        if not isinstance(stored, dict):
            raise RNNError(f"config must be a JSON object, got {type(stored).__name__}")
        return cls(**{k: v for k, v in stored.items() if k in fields})

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


# The type of every field, checked first: a config read from a checkpoint's JSON may hold anything.
_FIELD_KINDS = {f.name: ("int?" if f.name == "max_updates" else
                         "int" if f.type == "int" else "float" if f.type == "float" else "str")
                for f in dataclasses.fields(Config)}


def resolve_backend(backend: str, batch_size: int = 1) -> str:
    """"auto" becomes "numba" where numba imports, else "numpy" (compiling nothing: a run's cache key
    is named from this); other names stay, but for mini-batches (B > 1) "steps" (no batch form)
    becomes "numpy"."""
    if backend != "auto":
        return "numpy" if backend == "steps" and batch_size > 1 else backend
    return "numba" if kernels.importable() else "numpy"


def check_dtype_runs(config: Config) -> None:
    """A float32 run needs the batch-1 kernel: refuse it, in one line, where the kernel does not run
    (rather than train it in float64 with the numpy form)."""
    if config.dtype == "float32":
        reason = kernels.unavailable_reason(1, "float32")
        if reason is not None:
            raise RNNError(f"dtype float32 needs the numba kernel, which does not run here: {reason}")


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
