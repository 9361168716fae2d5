"""Checkpoints: a whole run in one .npz (no pickle), written atomically by one writer, read back checked."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
from pathlib import Path

import numpy as np

from charrnn.training.run import Run
from charrnn.training.validate import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint


def _flatten(prefix: str, tree, out: dict) -> None:
    for k, v in tree.items():
        if isinstance(v, dict):
            _flatten(f"{prefix}{k}/", v, out)
        else:
            out[f"{prefix}{k}"] = np.asarray(v)


def _unflatten(prefix: str, arrays) -> dict:
    tree: dict = {}
    for key in arrays:
        if key.startswith(prefix):
            *path, leaf = key[len(prefix):].split("/")
            node = tree
            for p in path:
                node = node.setdefault(p, {})
            value = arrays[key]
            node[leaf] = value.item() if value.ndim == 0 else value
    return tree


# ----------------------------------------------------------------------------- one writer per checkpoint
_HELD: dict = {}  # resolved checkpoint path -> open lock file of this process


class CheckpointBusy(CheckpointError):
    """Another process holds the checkpoint's lock: it is training that very run."""


def held_elsewhere(path) -> bool:
    """Whether another process holds the lock of checkpoint `path` now."""
    if lock_held(path):
        return False
    try:
        fh = open(lock_path(path), "rb")
    except OSError:
        return False  # no lock file: nobody writes it
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        return False


def lock_held(path) -> bool:
    """Whether this process holds the lock of checkpoint `path`."""
    return str(Path(path).resolve()) in _HELD


def lock_path(path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def checkpoint_lock(path):
    """Hold the lock of checkpoint `path` (fcntl.flock on a lock file beside it, removed on release):
    a second writer, in this process or another, is refused with a CheckpointError at once. The
    kernel releases a flock when its process dies, so a killed run never leaves it stuck.
    Re-entrant within one process."""
    key = str(Path(path).resolve())
    if key in _HELD:
        yield
        return
    lock = lock_path(path)
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)  # where the checkpoint will be saved
            fh = open(lock, "a+b")
        except OSError as exc:
            raise CheckpointError(f"cannot create the lock file {lock}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise CheckpointBusy(f"{path} is being written by another process "
                                  f"(lock {lock}); wait for it or choose another --out") from None
        try:  # the holder before us may have removed the file after we opened it: lock the one there now
            same = os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    _HELD[key] = fh
    try:
        yield
    finally:
        del _HELD[key]
        try:
            lock.unlink()
        except OSError:
            pass
        fh.close()


def check_not_corpus(path, corpus_path) -> None:
    """Refuse a checkpoint path that is the corpus file itself (saving would replace the text by a zip)."""
    if corpus_path is None:
        return
    try:
        same = os.path.realpath(path) == os.path.realpath(corpus_path) or (
            os.path.exists(path) and os.path.exists(corpus_path) and os.path.samefile(path, corpus_path))
    except OSError:
        return  # nothing readable at one of them: it cannot be the corpus that was read
    if same:
        raise CheckpointError(f"checkpoint {path} is the corpus {corpus_path}: choose another file")


def _remove_stale_tmp(path: Path) -> None:
    """Remove temp files of this checkpoint left by a writer that died mid-write (its pid is gone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2: -4]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (OSError, OverflowError):
            pass


def save_checkpoint(run: Run, path) -> Path:
    """Write the whole run to one .npz (no pickled objects), atomically: temp file, fsync, rename."""
    path = Path(path)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": json.loads(run.config.to_json()),
        "vocab": run.vocab.chars,
        "corpus_sha256": run.corpus_sha256,
        "updates_per_epoch": run.updates_per_epoch,
        "update": run.update, "epoch": run.epoch, "pos": run.pos,
        "smooth_loss": run.smooth_loss,
        "best_update": run.best_update, "best_smooth": run.best_smooth,
        "samples": run.samples,
        "val_updates": run.val_updates, "val_losses": run.val_losses, "val_seconds": run.val_seconds,
        "best_val_update": run.best_val_update, "best_val": run.best_val,
        "rng_states": {k: g.bit_generator.state for k, g in run.rngs.items()},
        "seconds": run.seconds,
    }
    arrays = {"meta": np.array(json.dumps(meta)), "hprev": run.hprev,
              "loss": run.losses, "smooth_loss": run.smooth_losses}
    _flatten("params/", run.params, arrays)
    _flatten("opt/", run.opt_state, arrays)
    if run.best_params is not None:
        _flatten("best/", run.best_params, arrays)
    if run.best_val_params is not None:
        _flatten("bestval/", run.best_val_params, arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(path)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path) -> Run:
    """Read a checkpoint written by `save_checkpoint`. Every member and meta field is checked first
    (`validate.read_checkpoint`); anything wrong is a CheckpointError naming the file and the field."""
    f, arrays = read_checkpoint(Path(path))
    return Run(config=f["config"], vocab=f["vocab"], corpus_sha256=f["corpus_sha256"],
               updates_per_epoch=f["updates_per_epoch"], params=_unflatten("params/", arrays),
               opt_state=_unflatten("opt/", arrays), rngs=f["rngs"], hprev=arrays["hprev"],
               update=f["update"], epoch=f["epoch"], pos=f["pos"], smooth_loss=f["smooth_loss"],
               loss=arrays["loss"], smooth_history=arrays["smooth_loss"],
               best_params=_unflatten("best/", arrays) or None, best_update=f["best_update"],
               best_smooth=f["best_smooth"], samples=f["samples"], seconds=f["seconds"],
               val_updates=f["val_updates"], val_losses=f["val_losses"], val_seconds=f["val_seconds"],
               best_val_params=_unflatten("bestval/", arrays) or None,
               best_val_update=f["best_val_update"], best_val=f["best_val"])
