"""Numbers derived from finished runs and texts (held-out scores, saturation, n-gram scores), kept in <runs>/derived/.

A cached re-render of the report reads a few hundred of them; computing them again costs most of its
time. A value is a dict of float arrays (a score is a 0-d array). Its file is named by a hash of
everything that decides it: the measurement's name and version, NUMERICS_VERSION, and the bytes of
every input (parameters, hidden state, held-out blocks, texts). The file is written atomically (a
temporary file, then a rename), loaded without pickle, and used only if it holds the same key and
nothing but float arrays; any other file is computed again and replaced. A folder that cannot be
written only costs the time: the value is computed and kept in memory. Within a process every value
is also kept in memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from charrnn.study.cache import NUMERICS_VERSION

_IN_MEMORY: dict = {}  # key -> value


def digest(*parts) -> str:
    """A hash of arrays (dtype, shape and bytes) and of JSON-able values (strings, numbers, lists)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"array {a.dtype.str} {a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def remembered(folder, name: str, version: int, inputs: list, compute) -> dict:
    """compute() -> {label: float array}, computed once for these inputs and kept in `folder`/derived
    (None: in memory only). `version` is the measurement's own: bump it when its code changes."""
    key = digest(name, version, NUMERICS_VERSION, *inputs)
    if key in _IN_MEMORY:
        return _IN_MEMORY[key]
    path = Path(folder, "derived", f"{name}-{key}.npz") if folder is not None else None
    value = _read(path, key) if path is not None else None
    if value is None:
        value = {label: np.asarray(v, dtype=np.float64) for label, v in compute().items()}
        if path is not None:
            _write(path, key, value)
    _IN_MEMORY[key] = value
    return value


def _read(path: Path, key: str) -> dict | None:
    """The value stored at `path` under `key`, or None (no file, another key, not float arrays, damaged)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__key__" not in z.files or str(z["__key__"]) != key:
                return None
            value = {label: z[label] for label in z.files if label != "__key__"}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if not value or any(a.dtype != np.float64 for a in value.values()):
        return None
    return value


def _write(path: Path, key: str, value: dict) -> None:
    """Write atomically: a reader sees the old file, the new file or none, never a part of one."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __key__=np.array(key), **value)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # a read-only run cache: the value stays in memory only
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
