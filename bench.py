"""`make bench`: training speed and quality at equal wall time, measured side by side in one run.

Speed: each form trains for a fixed number of updates on the default corpus (m = 100, T = 25,
float64 but for the float32 row, one BLAS thread everywhere; the mini-batch kernel with the numba
threads its row names, 1 unless said). The float32 row's % of peak is taken against the float32
matrix-product peak, measured beside the float64 one. The forms take turns for several rounds and the median of
each is reported, so a noisy neighbour on the machine affects them all alike. PyTorch rows appear
when torch is installed in the environment (`.venv/bin/pip install torch`); it is not a dependency.

Quality: with 5% of the corpus held out (every 20th block of 2,000 characters, the report's split),
each mode trains for the same wall-clock budget and is scored on the held-out text in nats and bits
per character, every block read from the hidden state training ends with (as the report scores its
runs: a network trained in sequential order never starts from a zero state, and from one it can
score worse than a uniform guess). The float32 kernel is kept only if it is at least 1.5 times as
fast as the float64 kernel and no worse at equal time (its mean no higher than float64's by more than the seed range);
the bench prints that verdict.

Results also go to runs/bench.json.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # batch 1 is latency-bound: a second BLAS thread only adds overhead

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import rnn_core as rc  # noqa: E402
from charrnn import training  # noqa: E402
from charrnn.study.cache import run_path, serves  # noqa: E402
from charrnn.training.heldout import heldout_loss  # noqa: E402
from charrnn.training.validate import read_meta  # noqa: E402

M, T = 100, 25
MAIN_EPOCHS, LONG_EPOCHS = 10, 50  # the report's main and long runs (its RNN_EPOCHS, RNN_LONG_EPOCHS)
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
_CLOCK = ["wall"]


def clock() -> float:
    """Seconds by the clock chosen with --clock: wall time, or the CPU time of this thread (on a
    machine shared with other work, what one core does while it runs this form)."""
    return CLOCKS[_CLOCK[0]]()


# ----------------------------------------------------------------------------- the forms timed
def numba_threads(n):
    """Use n of numba's threads (the mini-batch kernel's tasks run on them); no-op without numba."""
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def numpy_form(threads=1, **changes):
    """A timing function for training.train with these config changes: (corpus, updates) -> seconds.
    `threads`: numba's threads for the mini-batch kernel."""
    def run(corpus, updates):
        numba_threads(threads)
        cfg = training.Config(m=M, seq_length=T, sample_every=0, max_updates=updates, epochs=10**6, **changes)
        t0 = clock()
        r = training.train(corpus, cfg, progress=False)
        dt = clock() - t0
        assert r.update == updates
        return dt
    return run


def torch_form(B):
    """The same network in PyTorch: nn.RNN (tanh) + Linear, one-hot inputs, float64, summed loss
    per sequence averaged over the batch, Adagrad (lr 0.1), gradient values clipped to [-5, 5],
    hidden state carried between updates."""
    import torch

    def run(corpus, updates):
        torch.manual_seed(0)
        torch.set_num_threads(1)
        K = corpus.vocab.K
        rnn = torch.nn.RNN(K, M, nonlinearity="tanh", batch_first=True).double()
        out = torch.nn.Linear(M, K).double()
        params = list(rnn.parameters()) + list(out.parameters())
        opt = torch.optim.Adagrad(params, lr=0.1, eps=1e-8)
        data = torch.from_numpy(corpus.data)
        R = training.stream_length(len(corpus.data), B)
        window = (torch.arange(B)[:, None] * (R - 1) + torch.arange(T))  # (B,T)
        eye = torch.eye(K, dtype=torch.float64)
        h = torch.zeros(1, B, M, dtype=torch.float64)
        e = 0
        t0 = clock()
        for _ in range(updates):
            if e + T + 1 > R:
                e, h = 0, torch.zeros(1, B, M, dtype=torch.float64)
            X, Y = data[window + e], data[window + e + 1]
            hs, h_last = rnn(eye[X], h)
            loss = torch.nn.functional.cross_entropy(out(hs).reshape(B * T, K), Y.reshape(-1), reduction="sum") / B
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, 5.0)
            opt.step()
            h, e = h_last.detach(), e + T
        return clock() - t0
    return run


def forms(with_torch):
    rows = [  # name, batch size, timing function, updates per timing (relative to --updates)
        ("per-step textbook numpy", 1, numpy_form(backend="steps"), 1.0),
        ("vectorised numpy", 1, numpy_form(backend="numpy"), 2.0),
        ("fused numba kernel", 1, numpy_form(backend="numba"), 8.0),
        ("fused numba kernel, float32", 1, numpy_form(backend="numba", dtype="float32"), 12.0),
        ("mini-batch numpy, B = 8", 8, numpy_form(batch_size=8, backend="numpy"), 1.0),
        ("mini-batch numpy, B = 32", 32, numpy_form(batch_size=32, backend="numpy"), 0.5),
        ("mini-batch numpy, B = 128", 128, numpy_form(batch_size=128, backend="numpy"), 0.2),
        ("mini-batch kernel, B = 8", 8, numpy_form(batch_size=8, backend="numba"), 2.0),
        ("mini-batch kernel, B = 32", 32, numpy_form(batch_size=32, backend="numba"), 1.0),
        ("mini-batch kernel, B = 32, 2 thr", 32, numpy_form(2, batch_size=32, backend="numba"), 1.0),
        ("mini-batch kernel, B = 128, 2 thr", 128, numpy_form(2, batch_size=128, backend="numba"), 0.3),
    ]
    if with_torch:
        rows += [("PyTorch nn.RNN, B = 1", 1, torch_form(1), 1.0),
                 ("PyTorch nn.RNN, B = 32", 32, torch_form(32), 0.5)]
    return rows


# ----------------------------------------------------------------------------- arithmetic
def flops_per_char(m, K, B):
    """Floating-point operations per character of forward + backward, plus the AdaGrad update
    (about 6 per parameter: square, add, add eps, sqrt, divide, multiply-subtract) spread over the
    T*B characters of one update. Multiply-adds count 2."""
    forward = 2 * m * m + 2 * K * m + 2 * m + 4 * m + 2 * K + 4 * K  # W h, V h, biases, tanh, softmax
    backward = 2 * K * m * 2 + 2 * m * m * 2 + 4 * m + 2 * K + m  # V^T g_o, dV, W^T g_a, dW, tanh', dc, db, dU
    params = m * K + m * m + K * m + m + K
    return forward + backward + 6 * params / (T * B)


def matmul_gflops(n=1500, repeats=3, dtype=np.float64):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        a @ b
        best = min(best, clock() - t0)
    return 2 * n ** 3 / best / 1e9


def long_run_seconds(corpus, runs_dir):
    """Training seconds stored in the report's cached long run (its settings as the notebook's
    defaults give them), or None if it is not in `runs_dir` finished."""
    long_cfg = training.Config(m=M, eta=0.1, seq_length=T, seed=1, epochs=LONG_EPOCHS)
    meta = read_meta(run_path(corpus, long_cfg, runs_dir))
    return float(meta["seconds"]) if serves(meta, long_cfg) else None


# ----------------------------------------------------------------------------- quality
def quality(corpus, budget, seeds):
    numba_threads(1)
    train, held = corpus.split(0.05)
    modes = [  # label, config changes, seeds
        ("per-step textbook numpy, B = 1, eta 0.1", dict(backend="steps"), seeds[:1]),
        ("fused numba kernel, B = 1, eta 0.1", dict(backend="numba"), seeds),
        ("fused numba kernel, float32, B = 1, eta 0.1", dict(backend="numba", dtype="float32"), seeds),
        ("mini-batch kernel, B = 32, eta 0.05", dict(batch_size=32, eta=0.05, backend="numba"), seeds),
    ]
    rows = []
    for label, changes, mode_seeds in modes:
        for seed in mode_seeds:
            cfg = training.Config(m=M, seq_length=T, sample_every=0, epochs=10**6, seed=seed, **changes)
            run = training.train(train, cfg, progress=False, time_limit=budget)
            val = heldout_loss(run.params, held, training.first_stream_state(run))
            rows.append({"mode": label, "seed": seed, "updates": run.update,
                         "characters": run.update * T * cfg.batch_size, "seconds": run.seconds,
                         "val_nats": val, "val_bits": val / math.log(2)})
            print(f"  {label:<42} seed {seed}: {run.update:>9,} updates {rows[-1]['characters']:>12,} chars "
                  f"{val:.3f} nats/char ({val / math.log(2):.3f} bits)", flush=True)
    return rows


def float32_verdict(rows, by_mode) -> str:
    """Whether the float32 kernel earns its place: at least 1.5 times the float64 kernel's updates/s
    (speed table) and no worse on held-out text at equal time (quality table): its mean bits per
    character no higher than float64's by more than the larger seed range of the two."""
    ups = {r["form"]: r["updates_per_s"] for r in rows}
    speed = ups["fused numba kernel, float32"] / ups["fused numba kernel"]
    single = [v / math.log(2) for v in by_mode["fused numba kernel, float32, B = 1, eta 0.1"]]
    double = [v / math.log(2) for v in by_mode["fused numba kernel, B = 1, eta 0.1"]]
    diff = statistics.mean(single) - statistics.mean(double)
    spread = max(max(single) - min(single), max(double) - min(double))
    quality = ("better" if diff < -spread else "no worse (the difference is within the seed range)" if diff <= spread
               else "worse")
    keep = speed >= 1.5 and diff <= spread
    return (f"float32 kernel: {speed:.2f}x the float64 kernel's updates/s; held-out {diff:+.3f} bits/char against "
            f"float64 at equal time (seed range {spread:.3f}, {len(single)} seeds each): {quality}. Kept by the rule "
            f"(>= 1.5x and no worse): {'yes' if keep else 'NO'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=1500, help="updates of the per-step form per timing (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of taking turns (default: %(default)s)")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per run in the quality table (0: skip it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds of the quality table (default: 1 2)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall",
                    help="wall time, or the CPU time of the timing thread (for a shared machine; the "
                         "rows with 2 threads are then left out) (default: %(default)s)")
    ap.add_argument("--out", default="runs/bench.json", help="JSON results (default: %(default)s)")
    ap.add_argument("--runs", default="runs", help="the report's run cache, for the long run's measured time")
    a = ap.parse_args()
    corpus = training.open_corpus()
    K = corpus.vocab.K
    try:
        import torch  # noqa: F401
        with_torch = not a.no_torch
        torch_version = torch.__version__
    except ImportError:
        with_torch, torch_version = False, None
    _CLOCK[0] = a.clock
    table = [row for row in forms(with_torch) if a.clock == "wall" or "2 thr" not in row[0]]
    for _, _, fn, _ in table:  # warm-up (compilation, caches), not timed
        fn(corpus, 20)
    seconds = {name: [] for name, *_ in table}
    peaks, peaks32, load0 = [], [], os.getloadavg()[0]
    for _ in range(a.rounds):  # the matrix-product peaks take their turn in every round too
        peaks.append(matmul_gflops())
        peaks32.append(matmul_gflops(dtype=np.float32))
        for name, B, fn, scale in table:
            n = max(10, int(a.updates * scale))
            seconds[name].append((n, fn(corpus, n)))
    gflops, gflops32 = statistics.median(peaks), statistics.median(peaks32)
    print(f"default corpus: {len(corpus.data):,} characters, K = {K}; m = {M}, T = {T}, float64 (float32 where "
          "the row says); "
          f"1 BLAS thread{' (torch: 1 thread)' if with_torch else ''}; median of {a.rounds} rounds; "
          f"{'wall time' if a.clock == 'wall' else 'CPU time of the timing thread'}")
    print(f"numpy {np.__version__}" + (f", torch {torch_version}" if torch_version else ", torch not installed")
          + f"; matrix product (1500 x 1500, 1 thread): {gflops:.1f} GFLOP/s (rounds: "
          + ", ".join(f"{g:.1f}" for g in peaks) + f"); float32: {gflops32:.1f} GFLOP/s (rounds: "
          + ", ".join(f"{g:.1f}" for g in peaks32) + ")")
    print(f"load average (1 min) of the machine: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs; above 1 means other work shared the cores)")
    print(f"\n{'form':<36}{'updates/s':>11}{'chars/s':>12}{'vs per-step':>13}{'FLOP/char':>11}{'% of peak':>11}")
    rows, base = [], None
    for name, B, _, _ in table:
        ups = statistics.median(n / s for n, s in seconds[name])
        cps = ups * T * B
        base = base or cps
        fpc = flops_per_char(M, K, B)
        peak_cps = (gflops32 if "float32" in name else gflops) * 1e9 / fpc
        rows.append({"form": name, "batch": B, "updates_per_s": ups, "chars_per_s": cps, "ratio": cps / base,
                     "flop_per_char": fpc, "peak_chars_per_s": peak_cps})
        print(f"{name:<36}{ups:>11,.0f}{cps:>12,.0f}{cps / base:>12.2f}x{fpc / 1e3:>10.1f}k{100 * cps / peak_cps:>10.1f}%")
    print(f"\n(% of peak: characters/s against {gflops:.1f} GFLOP/s, float32 against {gflops32:.1f}, divided by "
          "the FLOP per character)")
    kernel_ups = next(r["updates_per_s"] for r in rows if r["form"] == "fused numba kernel")
    per_epoch = training.updates_per_epoch(corpus, training.Config(m=M, seq_length=T))
    long_updates, main_updates = LONG_EPOCHS * per_epoch, MAIN_EPOCHS * per_epoch
    print(f"first-render time budget (projection from the fused kernel's rate measured above, not a measured "
          f"run): the report's long run, {LONG_EPOCHS} epochs = {long_updates:,} updates, "
          f"{long_updates / kernel_ups / 60:.1f} min; the {MAIN_EPOCHS}-epoch run {main_updates / kernel_ups:.0f} s")
    measured = long_run_seconds(corpus, a.runs)
    print("first-render time budget, measured: " + (
        f"the report's long run in {a.runs}/ trained in {measured / 60:.1f} min (its checkpoint's training time, in "
        "the render that trained it: sharing the machine with Part II)" if measured is not None else
        f"no report long run cached in {a.runs}/ (`make report` trains it)"))
    result = {"clock": a.clock, "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "numpy": np.__version__, "torch": torch_version, "matmul_gflops": gflops, "matmul_rounds": peaks,
              "matmul_gflops_float32": gflops32, "matmul_rounds_float32": peaks32,
              "load_average": [load0, os.getloadavg()[0]], "speed": rows}
    if a.budget > 0:
        print(f"\nquality at equal wall time: {a.budget:.0f} s of training each, 5% of the corpus held out in blocks spread over it")
        q = quality(corpus, a.budget, a.seeds)
        result["quality"] = q
        by_mode = {}
        for r in q:
            by_mode.setdefault(r["mode"], []).append(r["val_nats"])
        ref = statistics.mean(by_mode[q[0]["mode"]])
        print(f"\n{'mode':<44}{'val nats/char':>14}{'bits/char':>11}{'vs per-step':>13}")
        for mode, vals in by_mode.items():
            mean = statistics.mean(vals)
            spread = f" (seeds: {', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else ""
            print(f"{mode:<44}{mean:>14.3f}{mean / math.log(2):>11.3f}{mean - ref:>+13.3f}{spread}")
        print("A single budgeted run per mode varies from seed to seed by about the spread shown for the modes run "
              "with several seeds.")
        verdict = float32_verdict(rows, by_mode)
        result["float32_verdict"] = verdict
        print("\n" + verdict)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
