"""Hostile input and faults: every case a real `python -m charrnn` process that must refuse in one line.

Each case of the table runs in its own directory (a small corpus and a valid checkpoint, plus what
the case sets up), in a thread pool so that the processes overlap. A refusal must: exit with the
code given, print exactly one stderr line holding the fragment and no traceback, leave every file
of its directory as it was, and come within REFUSE_SECONDS. Then: SIGTERM/SIGHUP on a training
process (and a second writer refused meanwhile), resumed bit for bit; streaming samples; the run
cache healing.
"""
import concurrent.futures as cf
import fcntl
import hashlib
import json
import re
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from charrnn import study, training
from conftest import TEXT
from test_fuzz import arrays_of, with_meta, write_npz

ROOT = Path(__file__).resolve().parent.parent
# A refusal comes before any training: python's start and the CLI's imports take about 0.3 s here
# (the slowest case about 1-2 s with 3 at a time on 2 busy cores); 8 s leaves room for a loaded
# machine and is far below the LONG training the path cases ask for (~40 s with the numpy form),
# so a case that trained first would fail.
REFUSE_SECONDS = 8.0
TINY = ["--m", "8", "--seq-length", "10", "--no-progress"]
LONG = ["--max-updates", "100000", "--epochs", "1000000", "--backend", "numpy"]  # ~40 s if it ever ran


def env(**extra):
    return dict(os.environ, RNN_PROGRESS="0", PYTHONPATH=str(ROOT), **extra)


# ----------------------------------------------------------------------------- setups of the cases
def mutate(change):
    """A setup that rewrites ck.npz with change(arrays) -> arrays."""
    def setup(d):
        write_npz(d / "ck.npz", change(arrays_of(d / "ck.npz")))
    return setup


def meta_set(**fields):
    return mutate(lambda a: with_meta(a, lambda m: m.update(fields)))


def replace(key, value):
    return mutate(lambda a: {**a, key: value(a[key]) if callable(value) else value})


def drop(key):
    return mutate(lambda a: {k: v for k, v in a.items() if k != key})


def header_lies(d):
    """ck.npz whose params/U header claims 10**11 floats, the file staying a few KB."""
    src = d / "ck.npz"
    shape = str(arrays_of(src)["params/U"].shape).encode()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(d / "lie.npz", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data.replace(shape, b"(100000, 1000000)", 1) if info.filename == "params/U.npy" else data)
    src.unlink()


def fifo(name):
    return lambda d: os.mkfifo(d / name)


def symlink(name, target):
    return lambda d: os.symlink(target, d / name)


def write(name, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def loop(d):
    os.symlink(d / "loop2", d / "loop1")
    os.symlink(d / "loop1", d / "loop2")


_HELD_LOCKS = []


def hold_lock(d):
    """Another process's lock on ck.npz, as `train` takes it (flock on .ck.npz.lock)."""
    fh = open(d / ".ck.npz.lock", "a+b")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD_LOCKS.append(fh)


def dead_tmp(d):
    """A temp file left by a writer killed mid-write: its pid is gone."""
    pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                         text=True).stdout.strip()
    (d / f".ck.npz.{pid}.tmp").write_bytes(b"half a checkpoint")


UTF16 = ("hello world, this is text\n" * 5).encode("utf-16")
RESUME = ["train", "--data", "corpus.txt", "--out", "ck.npz", "--resume", "--max-updates", "40", *TINY]
TRAIN = ["train", "--data", "corpus.txt", *TINY]

# (id, argv, setup, exit code, fragment of the one stderr line)
CASES = [
    # checkpoints, resumed or sampled
    ("opt/G/W (2, 2)", RESUME, replace("opt/G/W", np.ones((2, 2))), 1, "'opt/G/W' is float64 (2, 2)"),
    ("pos 10**9", RESUME, meta_set(pos=10**9), 1, "'pos'"),
    ("params/U shape", RESUME, replace("params/U", lambda a: np.zeros((a.shape[0], a.shape[1] + 1))), 1, "'params/U'"),
    ("params/W shape", RESUME, replace("params/W", np.zeros((3, 3))), 1, "'params/W'"),
    ("hprev shape", RESUME, replace("hprev", np.zeros(9)), 1, "'hprev'"),
    ("opt/G/U missing", RESUME, drop("opt/G/U"), 1, "lacks 'opt/G/U'"),
    ("best/U missing", RESUME, drop("best/U"), 1, "lacks 'best/U'"),
    ("meta not JSON", RESUME, replace("meta", np.array("{oops")), 1, "meta is not JSON"),
    ("meta a JSON list", RESUME, replace("meta", np.array("[1, 2]")), 1, "not a JSON object"),
    ("meta a JSON number", RESUME, replace("meta", np.array("7")), 1, "not a JSON object"),
    ("bad rng_states", RESUME, meta_set(rng_states={"init": 1, "sample": "x"}), 1, "rng_states"),
    ("unsorted vocabulary", RESUME, mutate(lambda a: with_meta(a, lambda m: m.update(vocab=m["vocab"][::-1]))),
     1, "'vocab'"),
    ("params float32", RESUME, replace("params/U", lambda a: a.astype(np.float32)), 1, "'params/U' is float32"),
    ("params int64", RESUME, replace("params/U", lambda a: a.astype(np.int64)), 1, "'params/U' is int64"),
    ("updates_per_epoch 0", RESUME, meta_set(updates_per_epoch=0), 1, "'updates_per_epoch'"),
    ("updates_per_epoch of another corpus", RESUME, meta_set(updates_per_epoch=10**9), 1, "updates per epoch"),
    ("update != len(loss)", RESUME, meta_set(update=21, pos=210), 1, "'loss'"),
    ("NaN parameters resumed", RESUME, replace("params/V", lambda a: a * np.nan), 1, "non-finite"),
    ("negative AdaGrad state", RESUME, replace("opt/G/b", lambda a: a * 0 - 1), 1, "negative"),
    ("header claims 10**11 floats", ["sample", "--checkpoint", "lie.npz"], header_lies, 1, "'params/U'"),
    ("sample NaN parameters", ["sample", "--checkpoint", "ck.npz"], replace("best/W", lambda a: a * np.nan), 1,
     "non-finite"),
    ("sample a FIFO", ["sample", "--checkpoint", "pipe.npz"], fifo("pipe.npz"), 1, "not a regular file"),
    ("sample a directory", ["sample", "--checkpoint", "."], None, 1, "directory"),
    ("sample a text file", ["sample", "--checkpoint", "corpus.txt"], None, 1, "not a readable checkpoint"),
    ("sample a truncated file", ["sample", "--checkpoint", "ck.npz"],
     lambda d: (d / "ck.npz").write_bytes((d / "ck.npz").read_bytes()[:3000]), 1, "not a readable checkpoint"),
    # where the result goes: refused before training (LONG would take far over REFUSE_SECONDS)
    ("--out a directory, --force", [*TRAIN, *LONG, "--out", "sub", "--force"], lambda d: (d / "sub").mkdir(), 1,
     "is a directory"),
    ("--out parent a file", [*TRAIN, *LONG, "--out", "corpus.txt/x.npz"], None, 1, "is not a directory"),
    ("--out the corpus, --force", [*TRAIN, *LONG, "--out", "corpus.txt", "--force"], None, 1, "is the corpus"),
    ("--out a hard link of the corpus", [*TRAIN, *LONG, "--out", "link.txt", "--force"],
     lambda d: os.link(d / "corpus.txt", d / "link.txt"), 1, "is the corpus"),
    ("--out written by another process", [*TRAIN, *LONG, "--out", "ck.npz", "--resume"], hold_lock, 1,
     "being written by another process"),
    ("--out exists", [*TRAIN, *LONG, "--out", "ck.npz"], None, 1, "--resume"),
    ("--out a FIFO", [*TRAIN, *LONG, "--out", "p.npz", "--force"], fifo("p.npz"), 1, "not a regular file"),
    ("--out name too long", [*TRAIN, *LONG, "--out", "x" * 250 + ".npz"], None, 1, "too long"),
    # corpora
    ("--data a FIFO", ["train", "--data", "pipe.txt", "--out", "new.npz", *TINY], fifo("pipe.txt"), 1,
     "not a regular file"),
    ("--data -> /dev/zero", ["train", "--data", "zero.txt", "--out", "new.npz", *TINY],
     symlink("zero.txt", "/dev/zero"), 1, "not a regular file"),
    ("--data a symlink loop", ["train", "--data", "loop1", "--out", "new.npz", *TINY], loop, 1,
     "symbolic links"),
    ("--data a 300-character name", ["train", "--data", "y" * 300, "--out", "new.npz", *TINY], None, 1,
     "too long"),
    ("--data a directory", ["train", "--data", ".", "--out", "new.npz", *TINY], None, 1, "directory"),
    ("--data UTF-16", ["train", "--data", "u16.txt", "--out", "new.npz", *TINY], write("u16.txt", UTF16), 1,
     "UTF-16"),
    ("--data UTF-16 without BOM", ["train", "--data", "u16.txt", "--out", "new.npz", *TINY],
     write("u16.txt", UTF16[2:]), 1, "UTF-16"),
    ("--data UTF-32", ["train", "--data", "u32.txt", "--out", "new.npz", *TINY],
     write("u32.txt", "some text here\n".encode("utf-32") * 3), 1, "UTF-32"),
    ("gradcheck --data a FIFO", ["gradcheck", "--data", "pipe.txt"], fifo("pipe.txt"), 1, "not a regular file"),
    ("corpus --out under a file", ["corpus", "--out", "corpus.txt/x.txt"], None, 1, "Not a directory"),
    # flags out of range
    ("--holdout 1e-9", [*TRAIN, "--out", "new.npz", "--holdout", "1e-9"], None, 1, "hold"),
    ("--holdout 1.6667e-5", [*TRAIN, "--out", "new.npz", "--holdout", "1.6667e-5"], None, 1, "hold"),
    ("--holdout 0.01 (a few characters)", [*TRAIN, "--out", "new.npz", "--holdout", "0.01"], None, 1, "hold"),
    ("--holdout nan", [*TRAIN, "--out", "new.npz", "--holdout", "nan"], None, 2, "--holdout"),
    ("--holdout 1", [*TRAIN, "--out", "new.npz", "--holdout", "1"], None, 2, "--holdout"),
    ("--eval-every -5", [*TRAIN, "--out", "new.npz", "--eval-every", "-5", "--holdout", "0.1"], None, 2,
     "--eval-every"),
    ("--eval-every without --holdout", [*TRAIN, "--out", "new.npz", "--eval-every", "5"], None, 1, "holdout"),
    ("train --seed -1", [*TRAIN, "--out", "new.npz", "--seed", "-1"], None, 2, "--seed"),
    ("train --seed 2**64", [*TRAIN, "--out", "new.npz", "--seed", str(2**64)], None, 2, "--seed"),
    ("sample --seed -1", ["sample", "--checkpoint", "ck.npz", "--seed", "-1"], None, 2, "--seed"),
    ("gradcheck --seed -1", ["gradcheck", "--data", "corpus.txt", "--seed", "-1"], None, 2, "--seed"),
    ("--m 100000", [*TRAIN, "--out", "new.npz", "--m", "100000"], None, 1, "GiB"),
    ("--seq-length 10**7", ["train", "--data", "corpus.txt", "--out", "new.npz", "--seq-length", "10000000"],
     None, 1, "seq_length"),
    ("--batch-size 10**7", [*TRAIN, "--out", "new.npz", "--batch-size", "10000000"], None, 1, "batch_size"),
    ("--eta inf", [*TRAIN, "--out", "new.npz", "--eta", "inf"], None, 2, "--eta"),
    ("sample --temperature 1e-308", ["sample", "--checkpoint", "ck.npz", "--temperature", "1e-308"], None, 2,
     "--temperature"),
    ("sample --temperature 1e308", ["sample", "--checkpoint", "ck.npz", "--temperature", "1e308"], None, 2,
     "--temperature"),
    ("sample --top-p 0", ["sample", "--checkpoint", "ck.npz", "--top-p", "0"], None, 2, "--top-p"),
    ("sample a prime outside the vocabulary", ["sample", "--checkpoint", "ck.npz", "--prime", "\u00e9"], None, 1,
     "not in the vocabulary"),
    ("gradcheck --sig 1e308", ["gradcheck", "--data", "corpus.txt", "--sig", "1e308"], None, 2, "--sig"),
    ("gradcheck --step 1e300", ["gradcheck", "--data", "corpus.txt", "--step", "1e300"], None, 2, "--step"),
    ("gradcheck --m 2000", ["gradcheck", "--data", "corpus.txt", "--m", "2000"], None, 1, "too long"),
    # a step so large that the differences are inexact: the check cannot confirm the gradients, and says so
    ("gradcheck --step 0.1", ["gradcheck", "--data", "corpus.txt", "--step", "0.1"], None, 1,
     "gradient check failed"),
    # a step so small that rounding swamps the differences: nothing can fail, so no "pass" either
    ("gradcheck --step 1e-10", ["gradcheck", "--data", "corpus.txt", "--step", "1e-10"], None, 1, "inconclusive"),
    # divergence: its one line, no RuntimeWarning lines (the numpy forms overflow; the kernel is its own)
    ("divergence, numpy", [*TRAIN, "--out", "new.npz", "--eta", "1e6", "--backend", "numpy"], None, 1,
     "loss became"),
    ("divergence, per-step", [*TRAIN, "--out", "new.npz", "--eta", "1e6", "--backend", "steps"], None, 1,
     "loss became"),
    ("divergence, kernel", [*TRAIN, "--out", "new.npz", "--eta", "1e6", "--backend", "numba"], None, 1,
     "loss became"),
    ("divergence, float32 kernel", [*TRAIN, "--out", "new.npz", "--eta", "1e6", "--dtype", "float32"], None, 1,
     "loss became"),
    ("--holdout 1e-308", [*TRAIN, "--out", "new.npz", "--holdout", "1e-308"], None, 1, "too short"),
    ("--dtype float16", [*TRAIN, "--out", "new.npz", "--dtype", "float16"], None, 2, "--dtype"),
    ("--dtype float32 with a mini-batch", [*TRAIN, "--out", "new.npz", "--dtype", "float32", "--batch-size", "4"],
     None, 1, "batch_size 1"),
    ("--dtype float32 with numpy", [*TRAIN, "--out", "new.npz", "--dtype", "float32", "--backend", "numpy"],
     None, 1, "backend numba"),
]
# the divergence cases write no checkpoint: a run that diverges is not saved (the error is the result)

# Cases that succeed, with what they must say or leave: (id, argv, setup, env, check(d, proc))
GOOD = [
    ("numba-trained checkpoint resumed with numba disabled", RESUME,
     mutate(lambda a: with_meta(a, lambda m: m["config"].update(backend="numba"))), {"RNN_DISABLE_NUMBA": "1"},
     lambda d, p: "numpy backend" in p.stderr and "numba backend" not in p.stderr),
    ("a killed writer's temp file is removed on the next save", RESUME, dead_tmp, {},
     lambda d, p: not list(d.glob(".ck.npz.*.tmp")) and not list(d.glob(".ck.npz.lock"))),
    # a file name in bytes that are not UTF-8 (Python holds them as surrogates): a traceback until this round
    ("an --out name that is not UTF-8 trains and saves",
     [*TRAIN, "--out", "bad\udcff.npz", "--max-updates", "5", "--backend", "numpy"], None, {},
     lambda d, p: (d / "bad\udcff.npz").is_file() and training.load_checkpoint(d / "bad\udcff.npz").update == 5),
]


def snapshot(d: Path) -> dict:
    """Every entry under d: its type, and for a regular file its content hash (FIFOs are not opened)."""
    out = {}
    for dirpath, dirs, files in os.walk(d):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(d))] = (st.st_mode >> 12, digest)
    return out


def run_case(d: Path, argv, extra_env=None):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "charrnn", *argv], cwd=d, capture_output=True, text=True,
                          errors="backslashreplace",  # output may name a file whose name is not UTF-8
                          env=env(**(extra_env or {})), timeout=120)  # a hang fails here
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A corpus and a checkpoint of 20 updates with the CLI's settings for TINY (so --resume accepts it)."""
    d = tmp_path_factory.mktemp("base")
    (d / "corpus.txt").write_text(TEXT * 3, encoding="utf-8")
    corpus = training.load_corpus(d / "corpus.txt", seq_length=10)
    # the numpy form: no process of the table then compiles the kernel (seconds each while kernel.py changes)
    training.train(corpus, training.Config(m=8, seq_length=10, max_updates=20, backend="numpy"), checkpoint=d / "ck.npz",
             progress=False)
    return d


@pytest.fixture(scope="module")
def results(base, tmp_path_factory):
    """Every case of CASES and GOOD run in its own copy of `base`, 3 processes at a time."""
    jobs = {}
    for case_id, argv, setup, extra_env in [c[:3] + (None,) for c in CASES] + [c[:4] for c in GOOD]:
        d = tmp_path_factory.mktemp("case")
        for f in ("corpus.txt", "ck.npz"):
            shutil.copy(base / f, d / f)
        if setup is not None:
            setup(d)
        jobs[case_id] = (d, argv, extra_env, snapshot(d))
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(3) as pool:
        futures = {cid: pool.submit(run_case, d, argv, e) for cid, (d, argv, e, _) in jobs.items()}
        out = {cid: (jobs[cid][0], *f.result(), jobs[cid][3]) for cid, f in futures.items()}
    for fh in _HELD_LOCKS:
        fh.close()
    slowest = max((r[2], cid) for cid, r in out.items())
    print(f"\n{len(CASES)} hostile cases and {len(GOOD)} fault cases in {time.perf_counter() - t0:.1f} s; "
          f"slowest {slowest[1]!r} {slowest[0]:.1f} s")
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_in_one_line(results, case):
    case_id, argv, setup, code, fragment = case
    d, proc, seconds, before = results[case_id]
    lines = proc.stderr.strip().splitlines()
    if case_id.startswith("divergence"):  # training started: its "corpus ..." line comes first
        assert lines[0].startswith("corpus "), proc.stderr
        lines = lines[1:]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]
    assert snapshot(d) == before, "a file was created or changed"
    assert seconds < REFUSE_SECONDS, f"took {seconds:.1f} s"


@pytest.mark.parametrize("case", GOOD, ids=[c[0] for c in GOOD])
def test_faults_that_succeed(results, case):
    d, proc, seconds, before = results[case[0]]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert case[4](d, proc), proc.stderr


# ----------------------------------------------------------------------------- signals and a second writer
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_saves_refuses_a_second_writer_and_resumes_bit_for_bit(base, tmp_path, signum):
    args = ["train", "--data", str(base / "corpus.txt"), "--max-updates", "30000", "--epochs", "1000000",
            "--backend", "numpy", *TINY]
    ref = tmp_path / "ref.npz"
    assert subprocess.run([sys.executable, "-m", "charrnn", *args, "--out", str(ref)], env=env(),
                          capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "run.npz"
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *args, "--out", str(out)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stderr.readline()  # "corpus ...": the lock is held and training starts
    second, seconds = run_case(tmp_path, [*args, "--out", str(out), "--force"])
    assert second.returncode == 1 and "being written by another process" in second.stderr, second.stderr
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived (machine too fast)")
    assert proc.returncode == 128 + signum and signal.Signals(signum).name in err and "--resume" in err, err
    assert len(err.strip().splitlines()) == 1, err  # the "interrupted" line only ("corpus" was read above)
    assert not list(tmp_path.glob(".run.npz*"))  # no temp file, no lock file left
    done = subprocess.run([sys.executable, "-m", "charrnn", *args, "--out", str(out), "--resume"], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = arrays_of(ref), arrays_of(out)
    for key in a:
        if key != "meta":
            assert np.array_equal(a[key], b[key]), key
    ma, mb = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
    for key in ("update", "epoch", "pos", "smooth_loss", "best_update", "best_smooth", "rng_states", "samples"):
        assert ma[key] == mb[key], key


def test_two_trains_started_at_once_on_one_new_out_one_is_refused(base, tmp_path):
    """Both start together: one trains and writes the file, the other is refused in one line (by the
    lock while the first trains, or because the file exists if the first is already done)."""
    argv = [sys.executable, "-m", "charrnn", *TRAIN, "--out", "new.npz", "--max-updates", "3000", "--epochs", "100",
            "--backend", "numpy"]
    shutil.copy(base / "corpus.txt", tmp_path / "corpus.txt")
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    err = next(e for p, (_, e) in zip(procs, outs) if p.returncode == 1).strip().splitlines()
    assert len(err) == 1 and ("being written by another process" in err[0] or "exists" in err[0]), err
    assert training.load_checkpoint(tmp_path / "new.npz").update == 3000


def test_a_killed_writer_leaves_no_stuck_lock(base, tmp_path):
    """kill -9 while holding the lock: the system drops the flock, so the next `train` goes ahead."""
    shutil.copy(base / "corpus.txt", tmp_path / "corpus.txt")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from charrnn.training.checkpoint import "
                               "checkpoint_lock\nwith checkpoint_lock(sys.argv[1]):\n print('held', flush=True); "
                               "time.sleep(300)", str(tmp_path / "ck.npz")], env=env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    refused, _ = run_case(tmp_path, [*TRAIN, "--out", "ck.npz", "--max-updates", "5", "--backend", "numpy"])
    assert refused.returncode == 1 and "being written by another process" in refused.stderr, refused.stderr
    holder.kill()
    holder.wait(timeout=30)
    assert (tmp_path / ".ck.npz.lock").exists()  # the file stays behind; its lock does not
    done, _ = run_case(tmp_path, [*TRAIN, "--out", "ck.npz", "--max-updates", "5", "--backend", "numpy"])
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".ck.npz.lock").exists()


# ----------------------------------------------------------------------------- streaming samples
def test_a_huge_sample_streams_in_bounded_memory(base):
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(base / "ck.npz"),
                             "--length", "1000000000"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.perf_counter()
        got = b""
        while len(got) < 20_000 and time.perf_counter() - t0 < 30:  # a few seconds of sampling at m = 8
            got += proc.stdout.read1(65536)
        rss_kb = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS")).split()[1])
    finally:
        proc.kill()
        proc.communicate()
    assert len(got) >= 20_000
    assert rss_kb < 400_000  # numpy, numba and the interpreter: ~150 MB; 10**9 int64 indices would be 8 GB


def test_sample_with_standard_output_closed_is_refused_in_one_line(base):
    """`sample ... >&-`: Python starts with no sys.stdout; one line on stderr, exit 1, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(base / "ck.npz"),
                           "--length", "50"], env=env(), stdout=None, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: os.close(1), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["python -m charrnn sample: error: standard output is closed"]


# ----------------------------------------------------------------------------- the run cache heals
def _zero_params_bytes(path: Path):
    """Zero the data bytes of params/U inside the zip, as a disk fault would (its CRC then fails)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        at = z.getinfo("params/U.npy").header_offset
    name_len, extra_len = struct.unpack("<HH", raw[at + 26: at + 30])  # of the local file header
    start = at + 30 + name_len + extra_len + 128  # past the .npy header (128 bytes for these arrays)
    raw[start:start + 64] = bytes(64)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    lambda p: write_npz(p, {**arrays_of(p), "params/U": arrays_of(p)["params/U"] * np.nan}),
    lambda p: write_npz(p, {**arrays_of(p), "params/W": np.zeros((3, 3))}),
    _zero_params_bytes,
    lambda p: write_npz(p, with_meta(arrays_of(p), lambda m: m.update(corpus_sha256="0" * 64))),
], ids=["zero bytes", "truncated", "NaN parameters", "wrongly shaped parameters", "zeroed bytes", "another corpus"])
def test_the_run_cache_sets_a_bad_file_aside_and_trains_again(tmp_path, capsys, damage):
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    cfg = training.Config(m=8, seq_length=10, max_updates=30, sample_every=0, backend="numpy")
    first = study.cached_run(corpus, cfg, runs_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    damage(path)
    capsys.readouterr()
    again = study.cached_run(corpus, cfg, runs_dir=tmp_path, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set aside as" in err[0] and "set-aside" in err[0], err
    assert len(list((tmp_path / "set-aside").iterdir())) == 1
    for k in rc.PARAM_NAMES:
        assert np.array_equal(again.params[k], first.params[k]), k  # trained again, to the same run
    assert training.load_checkpoint(path).update == 30  # and the healed file is served from now on


# ----------------------------------------------------------------------------- the library refuses the same
def _nan_params():
    params = rc.init_params(3, 4, np.random.default_rng(0))
    params["V"][0, 0] = np.nan
    return params


def _train_small(tmp_path, **kw):
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    return training.train(corpus, training.Config(m=8, seq_length=10, max_updates=5, sample_every=0, backend="numpy", **kw),
                    progress=False)


def _resume_altered(change):
    """train() on a run whose arrays a notebook changed in memory after it was made."""
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    run = training.new_run(corpus, training.Config(m=8, seq_length=10, max_updates=5, sample_every=0, backend="numba"))
    change(run)
    return training.train(corpus, run=run, progress=False)


LIBRARY = [
    ("Config seed -1", lambda t: training.Config(seed=-1), "seed must be in"),
    ("Config eval_every -5", lambda t: training.Config(eval_every=-5, holdout=0.1), "eval_every must be in"),
    ("Config m 100000", lambda t: training.Config(m=100_000), "GiB"),
    ("Config m True", lambda t: training.Config(m=True), "m must be a whole number"),
    ("Config eta a string", lambda t: training.Config(eta="fast"), "eta must be a number"),
    ("Config beta2 1", lambda t: training.Config(beta2=1.0), "beta2 must be in"),
    ("Config from a JSON list", lambda t: training.Config.from_json("[1, 2]"), "JSON object"),
    ("train holdout 1e-9", lambda t: _train_small(t, holdout=1e-9), "hold"),
    ("train holdout 0.01", lambda t: _train_small(t, holdout=0.01), "hold"),
    ("sampling_probs temperature 1e-308", lambda t: rc.sampling_probs(np.zeros(3), temperature=1e-308),
     "temperature"),
    ("sampling_probs infinite logits", lambda t: rc.sampling_probs(np.array([np.inf, 0.0, 1.0])), "not finite"),
    ("sample_text NaN parameters", lambda t: rc.sample_text(_nan_params(), training.Vocab("abc"), 5,
                                                            np.random.default_rng(0), "a"), "not finite"),
    ("gradcheck sig 1e308", lambda t: training.gradcheck_on_text(np.arange(30) % 3, 3, 5, 10, sig=1e308), "sig"),
    ("gradcheck h 1e300", lambda t: training.gradcheck_on_text(np.arange(30) % 3, 3, 5, 10, h=1e300), "step"),
    ("gradcheck m 2000", lambda t: training.gradcheck_on_text(np.arange(30) % 3, 3, 2000, 10), "too long"),
    ("gradcheck seed -1", lambda t: training.gradcheck_on_text(np.arange(30) % 3, 3, 5, 10, seed=-1), "seed"),
    ("load_checkpoint a FIFO", lambda t: (os.mkfifo(t / "f.npz"), training.load_checkpoint(t / "f.npz")),
     "not a regular file"),
    ("load_checkpoint /dev/zero", lambda t: training.load_checkpoint("/dev/zero"), "not a regular file"),
    ("train a run with W (2, 2)", lambda t: _resume_altered(lambda r: r.params.update(W=np.zeros((2, 2)))),
     "params/W"),
    ("train a run with float32 U", lambda t: _resume_altered(
        lambda r: r.params.update(U=r.params["U"].astype(np.float32))), "params/U"),
    ("train a run with a transposed (F-ordered) V", lambda t: _resume_altered(
        lambda r: r.params.update(V=np.asfortranarray(r.params["V"]))), "params/V"),
    ("train a run with hprev (9,)", lambda t: _resume_altered(lambda r: setattr(r, "hprev", np.zeros(9))), "hprev"),
    ("train a run with pos 10**9", lambda t: _resume_altered(lambda r: setattr(r, "pos", 10**9)), "position"),
]


@pytest.mark.parametrize("case", LIBRARY, ids=[c[0] for c in LIBRARY])
def test_the_library_refuses_the_same_inputs(tmp_path, case):
    _, call, fragment = case
    signal.alarm(60)  # a FIFO opened by mistake would block forever: fail instead
    try:
        with pytest.raises(rc.RNNError) as exc:
            call(tmp_path)
    finally:
        signal.alarm(0)
    assert fragment in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_train_with_a_checkpoint_in_a_new_directory_creates_it_and_leaves_no_lock(tmp_path):
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    ck = tmp_path / "new" / "dir" / "c.npz"
    training.train(corpus, training.Config(m=8, seq_length=10, max_updates=5, sample_every=0, backend="numpy"),
             checkpoint=ck, progress=False)
    assert sorted(p.name for p in ck.parent.iterdir()) == ["c.npz"]


# ----------------------------------------------------------------------------- issue 18: bugs and the API table
def test_config_takes_numpy_scalars_and_saves_as_json():
    """Bug 6: Config(m=np.int64(8)) (a loop over np.arange) was accepted and then not JSON-serialisable."""
    cfg = training.Config(m=np.int64(8), eta=np.float32(0.5), seq_length=np.arange(10, 11)[0])
    assert type(cfg.m) is int and type(cfg.eta) is float and type(cfg.seq_length) is int
    assert json.loads(cfg.to_json())["m"] == 8
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    run = training.train(corpus, cfg.replace(max_updates=3, sample_every=0, backend="numpy"), progress=False)
    assert json.loads(run.config.to_json())["seq_length"] == 10


def test_corpus_text_is_drawn_literally():
    """Bug 2: a `$` pair in sampled text turned on mathtext (`a $$b` raised, dollars vanished)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.text import Text
    from charrnn import report
    fig = report.plot_text_panels([("prime $x$", "a $$b\nit costs $5 and $6 today")])
    fig.canvas.draw()  # the old code raised a mathtext ParseException here
    drawn = [t for t in fig.findobj(Text) if "$" in t.get_text()]
    assert len(drawn) == 3 and all(not t._preprocess_math(t.get_text())[1] for t in drawn)
    fig = report.plot_activation_panels("a $$b $5 $6", [("unit $1$", np.zeros(11))])
    fig.canvas.draw()
    assert all(not t._preprocess_math(t.get_text())[1] for t in fig.findobj(Text))


def _tiny_checkpoint(tmp_path, text):
    corpus = training.corpus_from_text(text, seq_length=5)
    ck = tmp_path / "ck.npz"
    training.train(corpus, training.Config(m=8, seq_length=5, max_updates=3, sample_every=0, backend="numpy"),
                   checkpoint=ck, progress=False)
    return ck


def test_sample_without_prime_on_a_vocabulary_without_newline(tmp_path):
    """Bug 8: no --prime on a model with no newline blamed a prime nobody gave."""
    ck = _tiny_checkpoint(tmp_path, "abcab cabca bcabc " * 20)
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", "--checkpoint", ck, "--length", "30"],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.rstrip("\n")) == 30 and set(proc.stdout.rstrip("\n")) <= set("abc ")


def test_sample_to_an_ascii_stdout_replaces_what_it_cannot_show(tmp_path):
    """Bug 7: a latin-1/ASCII standard output gave a UnicodeEncodeError traceback and no output."""
    ck = _tiny_checkpoint(tmp_path, "\u00e9t\u00e9 \u2014 \u4e2d\u6587 caf\u00e9\n" * 20)
    for encoding in ("ascii", "latin-1"):
        proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", "--checkpoint", ck, "--length", "200",
                               "--prime", "caf"], capture_output=True, env=env(PYTHONIOENCODING=encoding), timeout=120)
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stdout.decode(encoding).rstrip("\n")) == 203


def _kn():
    return study.KneserNey("abcab" * 10, "abc", max_order=3)


API = [
    ("synthesize x0 999", lambda: rc.synthesize(_nan_params(), np.zeros(4), 999, 5, np.random.default_rng(0)),
     "x0 must be a character index in [0, 3)"),
    ("synthesize x0 -1", lambda: rc.synthesize(_nan_params(), np.zeros(4), -1, 5, np.random.default_rng(0)),
     "x0 must be a character index"),
    ("synthesize n -1", lambda: rc.synthesize(_nan_params(), np.zeros(4), 0, -1, np.random.default_rng(0)),
     "n must be a whole number >= 0"),
    ("sample_text temperature '1'", lambda: rc.sample_text(_nan_params(), training.Vocab("abc"), 5,
                                                           np.random.default_rng(0), "a", temperature="1"),
     "temperature must be a number"),
    ("sample_text n -1", lambda: rc.sample_text(_nan_params(), training.Vocab("abc"), -1, np.random.default_rng(0)),
     "n must be a whole number >= 0"),
    ("sample_text prime 5", lambda: rc.sample_text(_nan_params(), training.Vocab("abc"), 3, np.random.default_rng(0), 5),
     "prime must be a string"),
    ("KneserNey('', '')", lambda: study.KneserNey("", ""), "non-empty training text"),
    ("KneserNey max_order 0", lambda: study.KneserNey("abc", "abc", 0), "max_order must be"),
    ("KneserNey text outside the vocabulary", lambda: study.KneserNey("abcd", "abc"), "not in the vocabulary"),
    ("KneserNey order above max_order", lambda: _kn().prob("ab", "c", 4), "order must be a whole number in [1, 3]"),
    ("KneserNey empty block list", lambda: _kn().block_log2_probs([], 2), "non-empty list"),
    ("KneserNey blocks of unequal length", lambda: _kn().block_log2_probs(["abc", "ab"], 2), "one length"),
    ("KneserNey order above max_order (blocks)", lambda: _kn().block_log2_probs(["abc"], 9), "order must be"),
    ("show_figure name ../escape", lambda: _show("../escape"), "plain file name"),
    ("show_figure name absolute", lambda: _show("/tmp/escape"), "plain file name"),
    ("show_figure name .", lambda: _show("."), "plain file name"),
]


def _show(name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from charrnn import report
    report.show_figure(plt.figure(), "fig-hostile", "caption", name=name, folder="/nonexistent-folder")


@pytest.mark.parametrize("case", API, ids=[c[0] for c in API])
def test_the_api_refuses_nonsense_arguments(case):
    _, call, fragment = case
    with pytest.raises(rc.RNNError) as exc:
        call()
    assert fragment in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_kneser_ney_on_a_huge_corpus_is_refused_up_front(monkeypatch):
    """A model that would not fit is refused with the size it would need, before counting."""
    from charrnn.study import ngram
    text = "".join(np.random.default_rng(0).choice(list("abcdefghijklmnopqrstuvwxyz "), 400_000))
    monkeypatch.setattr(ngram, "physical_memory", lambda: 400 << 20)
    t0 = time.time()
    with pytest.raises(rc.RNNError, match=r"order 7 on 400,000 characters needs about [\d.]+ GiB"):
        study.KneserNey(text, "".join(sorted(set(text))), max_order=7)
    assert time.time() - t0 < 10


# ----------------------------------------------------------------------------- issue 18: `make report` and the Makefile
MAKE = os.environ.get("MAKE") or "make"  # MAKE=/path/to/gnu-make where `make` is not GNU make


def make(*args, timeout=120, **extra):
    return subprocess.run([MAKE, "-s", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **extra))


def _report_cases(d):
    (d / "bin.dat").write_bytes(b"\x00\x01\x02" * 100)
    (d / "one.txt").write_text("a" * 500)
    (d / "afile").write_text("")
    os.symlink(d / "loop1", d / "loop2")
    os.symlink(d / "loop2", d / "loop1")
    return [
        (["QUICK=yes"], {}, "QUICK='yes' must be 0 or 1"),
        (["EPOCHS=abc"], {}, "EPOCHS='abc' must be a whole number of at least 1"),
        (["OUT=x.npz"], {}, "OUT is for train and sample"),
        ([f"DATA={d}/missing.txt"], {}, "corpus not found"),
        ([f"DATA={d}/bin.dat"], {}, "binary"),
        ([f"DATA={d}/one.txt"], {}, "single character"),
        ([f"RUNS={d}/afile"], {}, "is not a directory"),
        ([f"RUNS={d}/loop1"], {}, "Too many levels of symbolic links"),
        ([], {"RNN_FIGURES": f"{d}/afile"}, "RNN_FIGURES="),
        ([], {"RNN_EPOCHS": "abc"}, "RNN_EPOCHS='abc' is not a whole number"),
        ([], {"RNN_WORKERS": "0"}, "RNN_WORKERS=0 must be at least 1"),
        ([], {"RNN_SEEDS": "0"}, "RNN_SEEDS=0 must be at least 2"),
        ([], {"RNN_SEED": "-1"}, "RNN_SEED=-1 must be at least 0"),
    ]


def test_make_report_refuses_bad_parameters_in_one_line_before_anything_runs(tmp_path):
    """Weak spots: every parameter of `make report` is checked first; one line `report: error: ...`, exit 2
    (the last line is make's own `*** [report] Error 2`), and no nbconvert, no training."""
    cases = _report_cases(tmp_path)

    def one(case):
        args, extra, fragment = case
        return case, make("report", f"RUNS={tmp_path}/runs", *args, **extra) if not any(
            a.startswith("RUNS=") for a in args) else make("report", *args, **extra)

    with cf.ThreadPoolExecutor(3) as pool:
        for (args, extra, fragment), proc in pool.map(one, cases):
            # make's own closing line: "make: ***", or "make[1]: ***" when the tests run under `make test`
            lines = [ln for ln in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", ln)]
            assert proc.returncode == 2, (args, extra, proc.stderr)
            assert len(lines) == 1 and lines[0].startswith("report: error: ") and fragment in lines[0], (
                args, extra, proc.stderr)
            assert "executing" not in proc.stdout
    assert not (tmp_path / "runs").exists()


def test_make_quotes_paths_with_spaces_and_quotes(tmp_path):
    """Bug 4: DATA, OUT and RUNS with a space or a ' reached the shell unquoted."""
    d = tmp_path / "it's a dir"
    d.mkdir()
    (d / "my corpus.txt").write_text(TEXT * 3)
    out = d / "o'ut dir" / "m 1.npz"
    proc = make("train", f"DATA={d}/my corpus.txt", f"OUT={out}", "EPOCHS=1", timeout=300)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    # the report takes DATA and RUNS whole (the first refusal after them is the one asked for)
    proc = make("report", f"DATA={d}/my corpus.txt", f"RUNS={d}/r'uns x", RNN_SEEDS="1")
    assert proc.returncode == 2 and "RNN_SEEDS=1 must be at least 2" in proc.stderr, proc.stderr


def _report_processes(marker: str) -> list:
    """Processes whose environment holds marker (the report's RNN_RUNS): make's, nbconvert's, the kernel's, the workers'."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]))
    return found


@pytest.mark.parametrize("signum,group", [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGHUP, True)],
                         ids=["SIGTERM to make", "SIGINT to its group (Ctrl-C)", "SIGHUP to its group (hang-up)"])
def test_a_signal_to_make_report_stops_every_process_of_the_report(tmp_path, signum, group):
    """Bug 1: SIGTERM to `make report` (what `timeout` or a CI cancel sends) left nbconvert, its kernel and the
    workers training with parent 1. Ctrl-C and a hang-up reach make's whole process group."""
    runs = tmp_path / "runs-sigterm"
    mk = subprocess.Popen([MAKE, "report", "QUICK=1", f"RUNS={runs}"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(20)
        assert mk.poll() is None, mk.communicate()
        assert _report_processes(f"RNN_RUNS={runs}"), "the report was not running"
        os.killpg(mk.pid, signum) if group else mk.send_signal(signum)
        out, err = mk.communicate(timeout=20)
        time.sleep(10)
        assert _report_processes(f"RNN_RUNS={runs}") == []
        assert "executed" not in err and f"{signal.Signals(signum).name} received: stopped" in err, err
    finally:
        if mk.poll() is None:
            os.killpg(mk.pid, signal.SIGKILL)


def test_the_excerpt_cell_takes_a_short_corpus_or_one_without_newlines():
    """Bug 5: the excerpt cell's text.index("\\n", 1000) raised ValueError on a short corpus."""
    nb = json.loads((ROOT / "assignment4.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"]
                  if c["cell_type"] == "code" and "psg-excerpt" in "".join(c["source"]))
    lines = [ln for ln in source.splitlines() if ln.startswith(("start", "stop"))]
    from charrnn import report
    for text in [TEXT[:200], ("no newline here " * 240)[:3800], TEXT * 10]:
        scope = {"corpus": training.corpus_from_text(text), "report": report}
        exec("\n".join(lines), scope)
        assert 0 <= scope["start"] < scope["stop"] <= len(text)
        assert "\n" not in text[scope["stop"] - 1:scope["stop"]]


def test_nbconvert_failure_is_one_line():
    from charrnn.report.parameters import last_error
    log = ("[NbConvertApp] Converting notebook assignment4.ipynb to notebook\nTraceback (most recent call last):\n"
           '  File "x", line 8\nnbclient.exceptions.CellExecutionError: An error occurred while executing the '
           "following cell:\n------------------\ncorpus = 1\n------------------\n\n\x1b[0;31m------\x1b[0m\n"
           "\x1b[0;31mRNNError\x1b[0m                                  Traceback (most recent call last)\n"
           "Cell \x1b[0;32mIn[2], line 12\x1b[0m\n\x1b[0;31mRNNError\x1b[0m: corpus too short\n\n")
    assert last_error(log) == "RNNError: corpus too short"


def test_train_out_a_symlink_writes_through_to_the_target(tmp_path, corpus_file):
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    cmd = [sys.executable, "-m", "charrnn", "train", "--data", str(corpus_file), "--out", str(link), *TINY,
           "--max-updates", "5", "--backend", "numpy"]
    os.symlink(target, link)  # dangling: the first run writes the target
    for extra in ([], ["--resume", "--max-updates", "9"]):
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, env=env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert link.is_symlink() and target.is_file()
    assert training.load_checkpoint(target).update == 9


def test_python_m_charrnn_runs_from_another_directory(tmp_path):
    """The project is installed into the venv (editable, or a .pth file): no PYTHONPATH, another cwd."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, "-m", "charrnn", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          env=clean, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout, proc.stderr
