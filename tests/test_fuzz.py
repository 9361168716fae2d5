"""Checkpoint fuzzing: mutated checkpoints either fail with one clean RNNError or load, validate and resume.

Every mutated file is loaded in a worker subprocess (so that a segfault of the compiled kernel, which
runs without bounds checks, fails the test instead of killing pytest); a worker handles many files
and is started again if it dies. A file that loads is resumed for a few updates, which must stay
finite.
"""
import json
import os
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rnn_core as rc
from charrnn import training  # noqa: E402
from conftest import TEXT  # noqa: E402

BASES = {  # three kinds of run, so every optional member and every optimiser state is fuzzed
    "adagrad": dict(m=8, seq_length=10, max_updates=25, holdout=0.2, eval_every=10, sample_every=10,
                    sample_length=20, backend="numba"),
    "adam": dict(m=8, seq_length=10, max_updates=25, optimizer="adam", eta=0.01, order="chunks",
                 chunk_sequences=5, sample_every=0, backend="numba"),
    "batch": dict(m=8, seq_length=10, max_updates=12, batch_size=2, sample_every=0, backend="numpy"),
}


# ----------------------------------------------------------------------------- the worker
def worker(corpus_path: str) -> None:
    """Reads file paths from stdin; answers each with `ok`, `error <message>` or `bug <message>`."""
    corpus = training.load_corpus(corpus_path, seq_length=10)
    for line in sys.stdin:
        path = line.strip()
        try:
            run = training.load_checkpoint(path)
            for name in ("params", "best_params"):
                tree = getattr(run, name) or {}
                assert all(np.isfinite(v).all() for v in tree.values()), name
            run = training.train(corpus, run=run, config=run.config.replace(max_updates=run.update + 3), progress=False)
            assert all(np.isfinite(v).all() for v in run.params.values()), "parameters not finite after resuming"
            answer = "ok"
        except rc.RNNError as exc:
            msg = str(exc)
            answer = "error " + msg if "\n" not in msg else "bug multi-line error " + msg.replace("\n", " | ")
        except Exception as exc:  # anything else is a bug in the validation
            answer = f"bug {exc.__class__.__name__}: {exc} @ {traceback.format_exc().splitlines()[-3].strip()}"
        print(answer, flush=True)


def run_workers(paths: list, corpus_path, n_workers: int = 2) -> list:
    """Outcome of every path, from `n_workers` worker processes (a dead worker: `crash`, then a new one)."""
    chunks = [paths[i::n_workers] for i in range(n_workers)]
    results = {}

    def start(todo):
        base = Path(todo[0]).with_suffix("")
        Path(f"{base}.in").write_text("".join(p + "\n" for p in todo))
        with open(f"{base}.in") as fin, open(f"{base}.out", "w") as fout:
            proc = subprocess.Popen([sys.executable, __file__, "worker", str(corpus_path)], cwd=ROOT,
                                    stdin=fin, stdout=fout, text=True, env=dict(os.environ, RNN_PROGRESS="0"))
        return proc, todo, f"{base}.out"

    procs = [start(c) for c in chunks if c]
    while procs:
        proc, todo, out = procs.pop(0)
        proc.wait(timeout=120)  # a few hundred loads and short resumes take seconds; a hang fails here
        answers = Path(out).read_text().splitlines()
        for p, a in zip(todo, answers):
            results[p] = a
        if len(answers) < len(todo):  # the worker died on todo[len(answers)]
            results[todo[len(answers)]] = f"crash (exit {proc.returncode})"
            if todo[len(answers) + 1:]:
                procs.append(start(todo[len(answers) + 1:]))
    return [results[p] for p in paths]


# ----------------------------------------------------------------------------- mutations
def arrays_of(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_npz(path, arrays: dict) -> str:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return str(path)


def with_meta(arrays: dict, change) -> dict:
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    return {**arrays, "meta": np.array(json.dumps(meta))}


BAD_VALUES = [None, -1, 0, 10**9, 10**30, "x", [], {}, 1.5, float("nan"), True]


def mutations(base: Path, out: Path, rng) -> list:
    """(description, path) of every mutated file made from `base`."""
    raw = base.read_bytes()
    arrays = arrays_of(base)
    made = []

    def add(desc, make):
        path = out / f"{base.stem}-{len(made):04d}.npz"
        make(path)
        made.append((f"{base.stem}: {desc}", str(path)))

    for n in sorted(set(np.linspace(0, len(raw) - 1, 40).astype(int))):
        add(f"truncated at {n}", lambda p, n=n: p.write_bytes(raw[:n]))
    for off in sorted(rng.choice(len(raw), size=50, replace=False)):
        flipped = bytearray(raw)
        flipped[off] ^= 0xFF
        add(f"byte {off} flipped", lambda p, f=bytes(flipped): p.write_bytes(f))
    for key in arrays:
        add(f"{key} dropped", lambda p, key=key: write_npz(p, {k: v for k, v in arrays.items() if k != key}))
    floats = [k for k in arrays if k != "meta" and arrays[k].dtype == np.float64]
    for key in floats:
        a = arrays[key]
        for how, new in [("float32", a.astype(np.float32)), ("int64", a.astype(np.int64)),
                         ("big-endian", a.astype(">f8")), ("complex", a.astype(np.complex128)),
                         ("extra axis", a[None]), ("flattened", a.reshape(-1)[:-1] if a.size > 1 else a[:0]),
                         ("shape (2, 2)", np.ones((2, 2)))]:
            add(f"{key} {how}", lambda p, key=key, new=new: write_npz(p, {**arrays, key: new}))
        if a.size:
            for how, value in [("nan", np.nan), ("inf", np.inf), ("-2", -2.0), ("1e300", 1e300)]:
                b = a.copy()
                b.flat[0] = value
                add(f"{key}[0] = {how}", lambda p, key=key, b=b: write_npz(p, {**arrays, key: b}))
    names = [k for k in floats if arrays[k].size > 1]
    for i in range(12):
        k1, k2 = rng.choice(names, size=2, replace=False)
        add(f"{k1} and {k2} swapped",
            lambda p, k1=k1, k2=k2: write_npz(p, {**arrays, k1: arrays[k2], k2: arrays[k1]}))
    meta = json.loads(str(arrays["meta"]))
    for field in meta:
        add(f"meta {field} removed", lambda p, f=field: write_npz(p, with_meta(arrays, lambda m: m.pop(f))))
        for value in BAD_VALUES:
            add(f"meta {field} = {value!r}",
                lambda p, f=field, v=value: write_npz(p, with_meta(arrays, lambda m: m.__setitem__(f, v))))
    for field in ("m", "seq_length", "batch_size", "optimizer", "order", "holdout", "eval_every", "seed"):
        for value in (0, -1, 9, 2, "adam", "random", 0.5, 10**12):
            add(f"config {field} = {value!r}",
                lambda p, f=field, v=value: write_npz(p, with_meta(arrays, lambda m: m["config"].__setitem__(f, v))))
    for how, value in [("reversed", meta["vocab"][::-1]), ("short", meta["vocab"][:-1]),
                       ("doubled", meta["vocab"] * 2), ("one char", meta["vocab"][:1])]:
        add(f"vocab {how}", lambda p, v=value: write_npz(p, with_meta(arrays, lambda m: m.__setitem__("vocab", v))))
    for how, value in [("list", [1, 2]), ("number", 7), ("string", "x")]:
        add(f"meta a JSON {how}", lambda p, v=value: write_npz(p, {**arrays, "meta": np.array(json.dumps(v))}))
    add("meta not JSON", lambda p: write_npz(p, {**arrays, "meta": np.array("{not json")}))
    add("meta a float array", lambda p: write_npz(p, {**arrays, "meta": np.zeros(3)}))
    add("rng state of another generator", lambda p: write_npz(p, with_meta(
        arrays, lambda m: m["rng_states"].__setitem__("init", {**m["rng_states"]["init"], "bit_generator": "MT19937"}))))
    add("rng state garbled", lambda p: write_npz(p, with_meta(
        arrays, lambda m: m["rng_states"]["sample"].__setitem__("state", {"state": "x", "inc": -1}))))
    add("an extra member", lambda p: write_npz(p, {**arrays, "extra": np.zeros(3)}))

    def compressed(p):
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    add("compressed", compressed)

    def header_lies(p):  # a member whose .npy header claims 10**11 floats
        with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename == "params/U.npy":
                    data = data.replace(str(arrays["params/U"].shape).encode(), b"(100000, 1000000)", 1)
                zout.writestr(info, data)
    add("header claims 10**11 floats", header_lies)
    add("unchanged", lambda p: p.write_bytes(raw))
    return made


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "small.txt"
    p.write_text(TEXT * 3, encoding="utf-8")
    return p


def test_mutated_checkpoints_fail_cleanly_or_validate_and_resume(corpus_file, tmp_path):
    t0 = time.perf_counter()
    corpus = training.load_corpus(corpus_file, seq_length=10)
    rng = np.random.default_rng(0)
    cases = []
    for name, kw in BASES.items():
        base = tmp_path / f"{name}.npz"
        training.train(corpus, training.Config(**kw), checkpoint=base, progress=False)
        cases += mutations(base, tmp_path, rng)
    outcomes = run_workers([p for _, p in cases], corpus_file)
    bad = [f"{desc}: {o}" for (desc, _), o in zip(cases, outcomes) if not (o == "ok" or o.startswith("error "))]
    assert not bad, "\n".join(bad[:20])
    by_desc = dict(zip((d for d, _ in cases), outcomes))
    for name in BASES:  # the unmutated file resumes; the table's rows are refused
        assert by_desc[f"{name}: unchanged"] == "ok"
        assert by_desc[f"{name}: opt/{'m' if name == 'adam' else 'G'}/W shape (2, 2)"].startswith("error ")
        assert by_desc[f"{name}: header claims 10**11 floats"].startswith("error ")
        assert by_desc[f"{name}: meta pos = 1000000000"].startswith("error ")
        assert by_desc[f"{name}: meta updates_per_epoch = 0"].startswith("error ")
    n_ok = sum(o == "ok" for o in outcomes)
    print(f"{len(cases)} mutated checkpoints: {n_ok} validated and resumed, {len(cases) - n_ok} refused "
          f"in one line; {time.perf_counter() - t0:.1f} s")
    # most mutations must be refused; a fuzzer whose every case loads would test nothing
    assert len(cases) > 300 and n_ok < len(cases) // 4


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(sys.argv[2])
