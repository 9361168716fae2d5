"""The watcher of `make report`: it reads the run cache (plan, lock files, checkpoints) and prints a
line only while runs train."""
import json
import time

import rnn_core as rc
from charrnn import study, training
from charrnn.report import watch
from charrnn.study import journal


def test_status_of_the_runs_being_trained(corpus, tmp_path):
    start = time.time()
    cfg = training.Config(m=8, epochs=1, max_updates=30, sample_every=0, backend="numpy")
    finished = study.cached_run(corpus, cfg, runs_dir=tmp_path)  # notes itself in the plan, then trains
    assert finished.update == 30
    # a second run, planned and now training: its lock file is there, no checkpoint yet
    busy = tmp_path / "0123456789abcdef-e1u60.npz"
    with open(tmp_path / journal.JOURNAL, "a") as fh:
        fh.write(json.dumps({"time": time.time(), "path": str(busy), "target": 60, "label": "m=8 seed=2"}) + "\n")
    lock = tmp_path / f".{busy.name}.lock"
    lock.write_text("")
    known = {}
    state = watch.snapshot(tmp_path, start, known)
    assert len(state) == 2
    line = watch.status_line(state, 40.0, {p: 0 for p in state}, 40.0)
    assert "1 of 2 runs trained" in line and "[m=8 seed=2] 0% of 60 updates" in line
    assert "need about" in line  # 60 updates to go at 30 per 40 s
    lock.unlink()  # nothing trains: nothing to say
    assert watch.status_line(watch.snapshot(tmp_path, start, known), 50.0, {}, 50.0) is None
    # runs planned before the watcher started are not its business
    assert watch.snapshot(tmp_path, time.time() + 1, {}) == {}
