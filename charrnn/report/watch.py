"""Progress of the runs that the report is training, on the terminal of `make report`.

The notebook's own output goes into the notebook, not to the terminal, while nbconvert executes it;
so `make report` starts this watcher beside nbconvert. It reads only the run cache: a run is being
trained while its checkpoint's lock file (`.<name>.npz.lock`) exists, its progress is the update
count in the checkpoint's meta (workers save every 15 s), and the journal of planned runs
(`charrnn.study.journal`) lists the runs queued or trained. Every `--every` seconds, while
something trains, it prints one line: the runs training with their progress, how many are
finished of how many known, and an estimate of the time left. When nothing is trained (a cached re-render) it prints nothing.

    python -m charrnn.report.watch --runs runs --every 15 --parent PID
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from charrnn.study.journal import planned_since
from charrnn.training.schedule import target_updates
from charrnn.training.validate import read_meta


def _target(meta: dict) -> int:
    cfg = meta["config"]
    return target_updates(cfg["epochs"], cfg.get("max_updates"), meta["updates_per_epoch"])


def snapshot(runs: Path, since: float, known: dict) -> dict:
    """The state of the run cache: {path: (updates done, target, training now, label)} for every run
    planned or seen training since `since`; `known` (path -> (target, label)) keeps runs seen before."""
    known.update(planned_since(runs, since))
    training = set()
    for lock in runs.glob(".*.npz.lock"):
        path = str((runs / lock.name[1:-len(".lock")]).resolve())
        training.add(path)
        known.setdefault(path, (None, Path(path).stem))
    state = {}
    for path, (target, label) in known.items():
        meta = read_meta(path) if os.path.exists(path) else None
        done = meta["update"] if meta else 0
        if meta and target is None:
            target = _target(meta)
            known[path] = (target, label)
        state[path] = (done, target, path in training, label)
    return state


def status_line(state: dict, elapsed: float, done0: dict, watched: float) -> str | None:
    """One line for the terminal, or None when nothing is being trained. `done0`: updates of each
    run when first seen, `watched` seconds since then (for the rate of progress)."""
    now = [s for s in state.values() if s[2]]
    if not now:
        return None
    finished = sum(1 for d, t, tr, _ in state.values() if t and d >= t and not tr)
    parts = [f"[{label}] {100 * d / t:.0f}% of {t:,} updates" if t else f"[{label}]" for d, t, _, label in now]
    line = f"report: {finished} of {len(state)} runs trained; training {', '.join(parts)}"
    # time left: the updates still to do at the rate of updates done since the watcher first looked
    todo = sum(max(0, t - d) for d, t, _, _ in state.values() if t)
    gained = sum(s[0] - done0.get(p, 0) for p, s in state.items())
    if gained > 0 and watched > 20:
        left = todo * watched / gained
        line += (f"; the runs known so far need about {left / 60:.0f} min more" if left >= 90
                 else f"; the runs known so far need about {left:.0f} s more")
    return line + f" ({elapsed / 60:.1f} min so far)"


def alive(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs", help="the run cache folder")
    ap.add_argument("--every", type=float, default=15.0, help="seconds between two lines")
    ap.add_argument("--parent", type=int, default=None, help="stop when this process is gone")
    args = ap.parse_args(argv)
    # `make report` says how nbconvert ended: SIGUSR1 executed, SIGUSR2 failed; SIGTERM or SIGHUP (to make's
    # whole process group, e.g. from `timeout`) stopped. Ctrl-C is left to `make report`, which then says.
    outcome = ["stopped"]  # the parent gone without a word
    for signum, word in ((signal.SIGUSR1, "executed"), (signal.SIGUSR2, "failed"), (signal.SIGTERM, "stopped"),
                         (signal.SIGHUP, "stopped")):
        signal.signal(signum, lambda *_, word=word: (outcome.__setitem__(0, word), sys.exit(0)))
    if args.parent:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    start, printed = time.time(), []
    try:
        _watch(Path(args.runs), start, args, printed)
    finally:
        if printed:  # something was trained: say when the notebook is done
            print(f"report: notebook {outcome[0]} after {(time.time() - start) / 60:.1f} min", file=sys.stderr,
                  flush=True)
    return 0


def _watch(runs: Path, start: float, args, printed: list) -> None:
    """Print a status line every args.every seconds while runs train, until the parent is gone."""
    known, done0, first, last = {}, {}, None, time.time()
    while alive(args.parent):
        time.sleep(1.0)
        if time.time() - last < args.every or not runs.is_dir():
            continue
        last = time.time()
        state = snapshot(runs, start, known)
        for p, s in state.items():
            done0.setdefault(p, s[0])
        first = first or last
        line = status_line(state, last - start, done0, last - first)
        if line:
            print(line, file=sys.stderr, flush=True)
            printed.append(line)


if __name__ == "__main__":
    sys.exit(main())
