"""`make bench`: training speed of the implementations, measured side by side in one run.

Each form trains for the same number of updates on the default corpus (m = 100, T = 25, batch 1,
float64, one BLAS thread). The forms take turns, several rounds, and the median of each is
reported, so a noisy neighbour on the machine affects them all alike. Results go to
runs/bench.json as well.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # batch 1 is latency-bound: a second BLAS thread only adds overhead

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import rnn_core as rc  # noqa: E402

FORMS = {  # name: (description, config changes)
    "steps": ("per-step textbook numpy", dict(backend="steps")),
    "numpy": ("vectorised numpy", dict(backend="numpy")),
    "numba": ("fused numba kernel", dict(backend="numba")),
}


def time_form(corpus, changes, updates):
    cfg = rc.Config(m=100, seq_length=25, sample_every=0, max_updates=updates, epochs=1, **changes)
    t0 = time.perf_counter()
    run = rc.train(corpus, cfg, progress=False)
    dt = time.perf_counter() - t0
    assert run.update == updates
    return updates / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=2000, help="updates per timing (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of taking turns (default: %(default)s)")
    ap.add_argument("--data", default=str(rc.DEFAULT_CORPUS), help="corpus (default: the Shakespeare corpus)")
    ap.add_argument("--out", default="runs/bench.json", help="JSON results (default: %(default)s)")
    a = ap.parse_args()
    if a.data == str(rc.DEFAULT_CORPUS):
        rc.build_default_corpus()
    corpus = rc.load_corpus(a.data)
    T = 25
    speeds = {name: [] for name in FORMS}
    for name, (_, changes) in FORMS.items():  # warm-up, not timed
        time_form(corpus, changes, 50)
    for _ in range(a.rounds):
        for name, (_, changes) in FORMS.items():
            speeds[name].append(time_form(corpus, changes, a.updates))
    base = statistics.median(speeds["steps"])
    print(f"corpus {corpus.path}: {len(corpus.data):,} characters, K = {corpus.vocab.K}; "
          f"m = 100, T = {T}, batch 1, float64, 1 BLAS thread; {a.updates} updates x {a.rounds} rounds, median")
    print(f"{'form':<28}{'updates/s':>12}{'chars/s':>12}{'vs per-step':>13}")
    rows = []
    for name, (desc, _) in FORMS.items():
        med = statistics.median(speeds[name])
        rows.append({"form": name, "description": desc, "updates_per_s": med, "chars_per_s": med * T,
                     "ratio_vs_steps": med / base, "all_runs": speeds[name]})
        print(f"{desc:<28}{med:>12,.0f}{med * T:>12,.0f}{med / base:>12.2f}x")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                               "numpy": np.__version__, "cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
