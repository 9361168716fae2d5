"""Checkpoints: a whole run in one .npz (no pickle), written atomically, read back and checked."""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .config import Config
from .data import RNNError, Vocab
from .model import PARAM_NAMES
from .run import Run

CHECKPOINT_FORMAT = 1


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_npz(path: Path) -> dict:
    if not path.exists():
        raise RNNError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise RNNError(f"checkpoint path is a directory: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RNNError(f"not a readable checkpoint: {path} ({exc.__class__.__name__})") from None


def load_checkpoint(path) -> Run:
    """Read a checkpoint written by `save_checkpoint` (np.load with allow_pickle=False)."""
    path = Path(path)
    arrays = _read_npz(path)
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise RNNError(f"checkpoint format {meta.get('format')} is not {CHECKPOINT_FORMAT}: {path}")
        config = Config.from_json(json.dumps(meta["config"]))
        rngs = {}
        for name, state in meta["rng_states"].items():
            g = np.random.default_rng()
            g.bit_generator.state = state
            rngs[name] = g
        params = _unflatten("params/", arrays)
        run = Run(config=config, vocab=Vocab(meta["vocab"]), corpus_sha256=meta["corpus_sha256"],
                  updates_per_epoch=meta["updates_per_epoch"], params=params,
                  opt_state=_unflatten("opt/", arrays), rngs=rngs, hprev=arrays["hprev"],
                  update=meta["update"], epoch=meta["epoch"], pos=meta["pos"],
                  smooth_loss=meta["smooth_loss"], loss=arrays["loss"],
                  smooth_history=arrays["smooth_loss"], best_params=_unflatten("best/", arrays) or None,
                  best_update=meta["best_update"], best_smooth=meta["best_smooth"],
                  samples=meta["samples"], seconds=meta.get("seconds", 0.0),
                  val_updates=meta.get("val_updates", []), val_losses=meta.get("val_losses", []),
                  val_seconds=meta.get("val_seconds", []),
                  best_val_params=_unflatten("bestval/", arrays) or None,
                  best_val_update=meta.get("best_val_update", -1), best_val=meta.get("best_val", math.inf))
    except KeyError as exc:
        raise RNNError(f"checkpoint {path} lacks {exc.args[0]!r}; was it written by this program?") from None
    if set(params) != set(PARAM_NAMES):
        raise RNNError(f"checkpoint {path} holds parameters {sorted(params)}, expected {list(PARAM_NAMES)}")
    return run
