"""The journal of planned runs, <runs>/.plan.jsonl: which runs are queued or trained, for the watcher of `make report`.

`scheduler.prefetch` notes the runs it queues and `cache.load_or_train` a run it trains;
`charrnn.report.watch` reads the journal to show on the terminal which runs train, how many there
are and how far they are. Nothing else reads it: a run's data never depends on it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from charrnn.training.config import Config, result_fields

JOURNAL = ".plan.jsonl"
_UNLABELLED = ("backend", "sample_every", "sample_until", "eval_every")  # fields that do not tell runs apart


def note_planned(runs_dir, items) -> None:
    """Append runs to the journal: items [(checkpoint path, target updates, Config)], labelled by
    the settings in which they differ from the assignment's."""
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    default = result_fields(Config())
    now = time.time()
    with open(Path(runs_dir) / JOURNAL, "a") as fh:
        for path, target, config in items:
            label = " ".join(f"{k}={v}" for k, v in result_fields(config).items()
                             if v != default[k] and k not in _UNLABELLED)
            fh.write(json.dumps({"time": now, "path": str(Path(path).resolve()), "target": target,
                                 "label": label or "assignment settings"}) + "\n")


def planned_since(runs_dir, since: float) -> dict:
    """{checkpoint path: (target updates, label)} of the runs noted since `since` (epoch seconds)."""
    out = {}
    try:
        lines = (Path(runs_dir) / JOURNAL).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("time", 0) >= since:
            out[str(Path(item["path"]).resolve())] = (int(item["target"]), item.get("label", ""))
    return out
