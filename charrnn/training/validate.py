"""Checkpoint validation: read a checkpoint's .npz safely and check every member and meta field before use.

Nothing unchecked may reach the compiled kernel (it runs without bounds checks), so a checkpoint is
read here, not with np.load: the file must be a regular file; the zip directory and each member's
.npy header are read first, and every member's name, dtype and shape must be the ones the stored
config and vocabulary imply (so no declared size can exceed what the config implies) before any
data is read; `meta` must be a JSON object whose every field has its type and range and agrees
with the others. Any failure is a CheckpointError naming the file and the field.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
import zipfile
import zlib

import numpy as np

from charrnn.training.config import BIG, Config
from charrnn.training.data import Vocab, open_regular
from rnn_core import RNNError, param_shapes

CHECKPOINT_FORMAT = 1
MAX_META_BYTES = 64 << 20  # the JSON of meta (samples, held-out history): far below this in any real run
FLOAT = np.dtype("<f8")


class CheckpointError(RNNError):
    """A checkpoint that cannot be used: missing, unreadable, or with a member or field out of place."""


# ----------------------------------------------------------------------------- the file and its members
class _Members:
    """The .npy members of a zip read one by one, each header checked before its data is read."""

    def __init__(self, zf: zipfile.ZipFile, path, file_size: int):
        self.zf, self.path, self.infos = zf, path, {}
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.infos:
                raise CheckpointError(f"checkpoint {path}: unexpected member {name!r}")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise CheckpointError(f"checkpoint {path}: member {name!r} is compressed or encrypted")
            if info.file_size > file_size or info.compress_size != info.file_size:
                raise CheckpointError(f"checkpoint {path}: member {name!r} declares {info.file_size} bytes "
                                      f"in a file of {file_size}")
            self.infos[name[:-4]] = info

    def names(self) -> set:
        return set(self.infos)

    def read(self, name: str, dtype, shape: tuple, max_bytes: int | None = None) -> np.ndarray:
        """Member `name`: its header must declare exactly (dtype, shape) (for a str: kind U, at most
        max_bytes); its size must match the zip directory; only then is the data read."""
        info = self.infos.get(name)
        if info is None:
            raise CheckpointError(f"checkpoint {self.path} lacks {name!r}; was it written by this program?")
        with self.zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"npy version {version}")
            got_shape, fortran, got_dtype = read_header(fh)
            is_str = dtype == "str"
            if is_str:
                ok = got_dtype.kind == "U" and got_dtype.byteorder in "<=|" and got_shape == shape
                ok = ok and got_dtype.itemsize <= max_bytes
            else:
                ok = got_dtype == np.dtype(dtype) and got_shape == shape
            if not ok or fortran:
                want = "a str" if is_str else f"{np.dtype(dtype).name} {shape}"
                raise CheckpointError(f"checkpoint {self.path}: {name!r} is {got_dtype} {got_shape}"
                                      f"{' (Fortran order)' if fortran else ''}, expected {want}")
            nbytes = got_dtype.itemsize * math.prod(got_shape)
            if fh.tell() + nbytes != info.file_size:
                raise CheckpointError(f"checkpoint {self.path}: {name!r} holds {info.file_size - fh.tell()} "
                                      f"bytes of data, its header says {nbytes}")
            buf = fh.read(nbytes)  # the CRC of the member is checked at its end
            if len(buf) != nbytes or fh.read(1):
                raise CheckpointError(f"checkpoint {self.path}: {name!r} is truncated")
        return np.frombuffer(buf, dtype=got_dtype).reshape(got_shape).copy()


# ----------------------------------------------------------------------------- meta
def updates_into_epoch(config: Config, pos: int) -> int:
    """Updates done in the current epoch at position `pos` (a character offset in sequential order,
    an index into the epoch's plan in the others)."""
    return pos // config.seq_length if config.order == "sequential" else pos


def _field_error(path, field: str, problem: str, value) -> CheckpointError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CheckpointError(f"checkpoint {path}: meta field {field!r} {problem}, got {shown}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _int(meta, path, field, low, high=BIG):
    v = meta.get(field)
    if not (_is_int(v) and low <= v <= high):
        raise _field_error(path, field, f"must be a whole number in [{low}, {high}]", v)
    return v


def _num(meta, path, field, finite=False, default=None):
    v = meta.get(field, default)
    if not _is_num(v) or (finite and not math.isfinite(v)):
        raise _field_error(path, field, "must be a finite number" if finite else "must be a number", v)
    return float(v)


def _num_list(meta, path, field, n=None, kind=_is_num):
    v = meta.get(field, [])
    if not isinstance(v, list) or not all(kind(x) for x in v) or (n is not None and len(v) != n):
        need = "a list of numbers" + (f" of length {n}" if n is not None else "")
        raise _field_error(path, field, f"must be {need}", v)
    return v


def check_meta(meta, path) -> dict:
    """The fields of a checkpoint's meta, each checked for type and range and against the others.
    Returns the values a Run is built from (config, vocab and generators constructed)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: meta is not a JSON object but a {type(meta).__name__}")
    if not (_is_int(meta.get("format")) and meta["format"] == CHECKPOINT_FORMAT):
        raise _field_error(path, "format", f"must be {CHECKPOINT_FORMAT}", meta.get("format"))
    if not isinstance(meta.get("config"), dict):
        raise _field_error(path, "config", "must be a JSON object", meta.get("config"))
    try:
        config = Config.from_json(json.dumps(meta["config"]))
    except RNNError as exc:
        raise CheckpointError(f"checkpoint {path}: meta field 'config': {exc}") from None
    chars = meta.get("vocab")
    try:
        vocab = Vocab(chars) if isinstance(chars, str) and len(chars) >= 2 else None
    except ValueError:
        vocab = None
    if vocab is None:
        raise _field_error(path, "vocab", "must be at least 2 distinct characters, sorted", chars)
    sha = meta.get("corpus_sha256")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise _field_error(path, "corpus_sha256", "must be 64 hex digits", sha)
    upe = _int(meta, path, "updates_per_epoch", 1)
    update, epoch, pos = _int(meta, path, "update", 0), _int(meta, path, "epoch", 0), _int(meta, path, "pos", 0)
    T = config.seq_length
    if config.order == "sequential" and pos % T:
        raise _field_error(path, "pos", f"must be a multiple of seq_length {T}", pos)
    steps = updates_into_epoch(config, pos)
    if steps >= upe:
        raise _field_error(path, "pos", f"must be before the end of an epoch of {upe} updates", pos)
    if update != epoch * upe + steps:
        raise _field_error(path, "update", f"must equal epoch * updates_per_epoch + updates into the epoch "
                                           f"= {epoch * upe + steps}", update)
    smooth = _num(meta, path, "smooth_loss", finite=update > 0)
    best_update = _int(meta, path, "best_update", 0 if update else -1, update - 1 if update else -1)
    best_smooth = _num(meta, path, "best_smooth", finite=update > 0)
    samples = meta.get("samples")
    if not (isinstance(samples, list) and all(
            isinstance(s, dict) and _is_int(s.get("update")) and 0 <= s["update"] <= update
            and isinstance(s.get("text"), str) and (s.get("smooth_loss") is None or _is_num(s["smooth_loss"]))
            for s in samples)):
        raise _field_error(path, "samples", "must be a list of {update, smooth_loss, text}", samples)
    val_updates = _num_list(meta, path, "val_updates", kind=lambda x: _is_int(x) and 0 <= x <= update)
    val_losses = _num_list(meta, path, "val_losses", len(val_updates))
    val_seconds = _num_list(meta, path, "val_seconds", len(val_updates))
    best_val_update = _int(meta, path, "best_val_update", -1, update) if "best_val_update" in meta else -1
    if best_val_update >= 0 and best_val_update not in val_updates:
        raise _field_error(path, "best_val_update", "must be one of val_updates", best_val_update)
    best_val = _num(meta, path, "best_val", default=math.inf)
    seconds = _num(meta, path, "seconds", finite=True, default=0.0)
    if seconds < 0:
        raise _field_error(path, "seconds", "must be >= 0", seconds)
    states = meta.get("rng_states")
    if not (isinstance(states, dict) and set(states) == {"init", "sample"}):
        raise _field_error(path, "rng_states", "must hold the states of the init and sample generators", states)
    rngs = {}
    for name, state in states.items():
        g = np.random.default_rng()
        try:
            if not (isinstance(state, dict) and state.get("bit_generator") == type(g.bit_generator).__name__):
                raise ValueError("another generator")
            g.bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError):
            raise _field_error(path, f"rng_states/{name}", "is not a generator state", state) from None
        rngs[name] = g
    return dict(config=config, vocab=vocab, corpus_sha256=sha, updates_per_epoch=upe, update=update,
                epoch=epoch, pos=pos, smooth_loss=smooth, best_update=best_update, best_smooth=best_smooth,
                samples=samples, val_updates=val_updates, val_losses=val_losses, val_seconds=val_seconds,
                best_val_update=best_val_update, best_val=best_val, seconds=seconds, rngs=rngs)


# ----------------------------------------------------------------------------- members implied by meta
def expected_members(fields: dict, names: set) -> dict:
    """{member: (dtype, shape)} that the checked meta implies. `best/` may be absent before the first
    update; `bestval/` is there exactly when a best held-out model was recorded."""
    c, K = fields["config"], fields["vocab"].K
    m, B = c.m, c.batch_size
    shapes = param_shapes(K, m)
    groups = ["params", "opt/m", "opt/v"] if c.optimizer == "adam" else ["params", "opt/G"]
    if fields["update"] > 0 or any(n.startswith("best/") for n in names):
        groups.append("best")
    if fields["best_val_update"] >= 0:
        groups.append("bestval")
    out = {f"{g}/{k}": (FLOAT, s) for g in groups for k, s in shapes.items()}
    out["hprev"] = (FLOAT, (m,) if B == 1 else (B, m))
    out["loss"] = out["smooth_loss"] = (FLOAT, (fields["update"],))
    if c.optimizer == "adam":
        out["opt/t"] = (np.dtype("<i8"), ())
    return out


def check_arrays(arrays: dict, fields: dict, path) -> None:
    """Values the shapes do not show: everything finite, AdaGrad's and Adam's second moments >= 0,
    |hprev| <= 1 (a tanh output), Adam's step count equal to the update count."""
    for name, a in arrays.items():
        if a.dtype == FLOAT and not np.isfinite(a).all():
            raise CheckpointError(f"checkpoint {path}: {name!r} holds non-finite values")
        if name.startswith(("opt/G/", "opt/v/", "loss", "smooth_loss")) and (a < 0).any():
            raise CheckpointError(f"checkpoint {path}: {name!r} holds negative values")
    if (np.abs(arrays["hprev"]) > 1).any():
        raise CheckpointError(f"checkpoint {path}: 'hprev' holds values outside [-1, 1]")
    if "opt/t" in arrays and int(arrays["opt/t"]) != fields["update"]:
        raise CheckpointError(f"checkpoint {path}: 'opt/t' is {int(arrays['opt/t'])}, not the update "
                              f"count {fields['update']}")


# What a damaged zip or .npy member can raise while it is read
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError, OverflowError, UnicodeDecodeError, KeyError)


def _read(path, with_arrays: bool):
    """(meta as stored, its checked fields, {member: array} or None): the zip directory and headers
    first, then meta, then (with_arrays) every member meta implies. CheckpointError for anything wrong."""
    with open_regular(path, "checkpoint", CheckpointError) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                members = _Members(zf, path, os.fstat(fh.fileno()).st_size)
                raw = members.read("meta", "str", (), MAX_META_BYTES)
                try:
                    meta = json.loads(str(raw))
                except ValueError as exc:
                    raise CheckpointError(f"checkpoint {path}: meta is not JSON ({exc.__class__.__name__})") from None
                fields = check_meta(meta, path)
                if not with_arrays:
                    return meta, fields, None
                want = expected_members(fields, members.names())
                extra = members.names() - set(want) - {"meta"}
                if extra:
                    raise CheckpointError(f"checkpoint {path}: unexpected member {sorted(extra)[0]!r}")
                arrays = {name: members.read(name, dtype, shape) for name, (dtype, shape) in want.items()}
        except CheckpointError:
            raise
        except _READ_ERRORS as exc:
            raise CheckpointError(f"not a readable checkpoint: {path} ({exc.__class__.__name__})") from None
    return meta, fields, arrays


def read_checkpoint(path) -> tuple[dict, dict]:
    """(checked meta fields, {member: array}) of a checkpoint; CheckpointError for anything wrong."""
    _, fields, arrays = _read(path, with_arrays=True)
    check_arrays(arrays, fields, path)
    return fields, arrays


def read_meta(path) -> dict | None:
    """A checkpoint's meta (the JSON object as stored), read without its arrays and returned only if
    every field checks (`check_meta`); None otherwise."""
    try:
        return _read(path, with_arrays=False)[0]
    except RNNError:
        return None


def check_run(run) -> None:
    """A Run in memory, as the compiled kernel will use it (a notebook may have changed it): every
    parameter, best and optimiser array float64, C-contiguous, writeable, of its config's shape,
    and in a float32 run holding float32 values (the kernel would round them silently);
    hprev of shape (m,) or (B, m); the position inside an epoch. RNNError otherwise."""
    c, K = run.config, run.vocab.K
    shapes = param_shapes(K, c.m)
    groups = {"params": run.params, "best": run.best_params}
    groups.update({f"opt/{k}": v for k, v in run.opt_state.items() if isinstance(v, dict)})
    arrays = {f"{g}/{k}": (tree or {}).get(k) for g, tree in groups.items() if tree is not None for k in shapes}
    want = {name: shapes[name.rsplit("/", 1)[1]] for name in arrays}
    arrays["hprev"], want["hprev"] = run.hprev, (c.m,) if c.batch_size == 1 else (c.batch_size, c.m)
    for name, a in arrays.items():
        if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == want[name]
                and a.flags.c_contiguous and a.flags.writeable):
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise RNNError(f"run {name} is {got}, expected a writeable C-ordered float64 array {want[name]}")
        with np.errstate(over="ignore"):  # a value beyond float32's range rounds to inf: not equal
            single = c.dtype == "float32" and np.array_equal(a.astype(np.float32).astype(np.float64), a)
        if c.dtype == "float32" and not single:
            raise RNNError(f"run {name} holds values that float32 cannot hold exactly, in a float32 run")
    if not (_is_int(run.pos) and 0 <= run.pos and updates_into_epoch(c, run.pos) < run.updates_per_epoch):
        raise RNNError(f"run position {run.pos} is outside an epoch of {run.updates_per_epoch} updates")
