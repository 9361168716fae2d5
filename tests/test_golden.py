"""Golden numbers: a fixed short run of each backend must reproduce the stored numbers exactly.

Cached runs in runs/ are keyed by NUMERICS_VERSION (charrnn/study/cache.py): a change that alters the
numbers a run produces (the order of a sum, a fused operation, an optimiser detail) must bump it,
or runs trained by older code are served as if the new code had made them. This test ties the two:
it fails whenever the numbers move while NUMERICS_VERSION stays. After a deliberate change:

    bump NUMERICS_VERSION in charrnn/study/cache.py, then
    .venv/bin/python tests/test_golden.py --renew      (rewrites tests/golden.json)

Exact comparison (to the last bit of a float64 printed with repr): runs are deterministic on one
machine, and a change that moves only the last bits still changes what a cached run holds. The last
bits also depend on the machine's class: the width of the vectors the kernels are compiled for
(their dot products sum in that many lanes) and the BLAS kernel OpenBLAS picks for the CPU. So the
numbers are kept per class (`machine_class()`); on a class with none recorded the test is skipped
and says how to record them (`--renew` writes the class it runs on).
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import rnn_core as rc
from charrnn import study, training  # noqa: E402
from conftest import TEXT  # noqa: E402

GOLDEN = HERE / "golden.json"
BASE = dict(m=16, seq_length=10, epochs=1000, max_updates=300, sample_every=0, seed=3)
# The runs pinned: each backend, and the optimiser / order / batch paths that have their own code.
CASES = {
    "numpy adagrad": dict(backend="numpy"),
    "numba adagrad": dict(backend="numba"),
    "numba adam chunks": dict(backend="numba", optimizer="adam", eta=0.01, order="chunks", chunk_sequences=4),
    "numpy adam random": dict(backend="numpy", optimizer="adam", eta=0.01, order="random"),
    "numpy batch 4": dict(backend="numpy", batch_size=4, eta=0.05),
    "numba batch 5": dict(backend="numba", batch_size=5, eta=0.05),  # the mini-batch kernel
}


def fingerprint(run) -> dict:
    """Numbers that move when any arithmetic of the run moves: losses and a parameter checksum."""
    weights = {k: np.cos(np.arange(v.size)).reshape(v.shape) for k, v in run.params.items()}
    return {
        "final_loss": float(run.losses[-1]),
        "final_smooth_loss": float(run.smooth_loss),
        "loss_sum": float(np.sum(run.losses)),
        "param_checksum": float(sum(np.sum(run.params[k] * weights[k]) for k in rc.PARAM_NAMES)),
        "best_update": int(run.best_update),
    }


def run_case(name: str, **override) -> dict:
    corpus = training.corpus_from_text(TEXT * 3, seq_length=10)
    cfg = training.Config(**{**BASE, **CASES[name], **override})
    return fingerprint(training.train(corpus, cfg, progress=False))


def differences(name: str, got: dict, want: dict) -> list:
    return [f"{name}: {k} = {got[k]!r}, golden {want[k]!r}" for k in want if got[k] != want[k]]


def _kernel_runs() -> bool:
    from charrnn.kernels import single as kernel

    return kernel.available()


def machine_class() -> str:
    """What fixes the last bits of a run besides the code: the kernels' vector width and the BLAS."""
    from charrnn.kernels import blas
    from charrnn.kernels import ops as kernel_ops

    return f"{kernel_ops.vector_bits()}-bit vectors, {blas.BACKEND}"


@pytest.fixture(scope="module")
def golden():
    data = json.loads(GOLDEN.read_text())
    if data["numerics_version"] != study.NUMERICS_VERSION:
        pytest.fail(f"tests/golden.json holds numbers of numerics version {data['numerics_version']}, the code "
                    f"says {study.NUMERICS_VERSION}: renew them with `.venv/bin/python tests/test_golden.py --renew`")
    runs = data["machines"].get(machine_class())
    if runs is None:
        pytest.skip(f"no golden numbers for this machine class ({machine_class()}; recorded: "
                    f"{', '.join(data['machines'])}): record them with `.venv/bin/python tests/test_golden.py --renew`")
    return runs


@pytest.mark.parametrize("name", list(CASES))
def test_a_fixed_run_reproduces_its_golden_numbers(golden, name):
    if CASES[name].get("backend") == "numba" and not _kernel_runs():
        pytest.skip("the numba kernel does not run here")
    diff = differences(name, run_case(name), golden[name])
    assert not diff, ("the numbers of a fixed run changed: " + "; ".join(diff) + ". If the change is meant, "
                      "bump NUMERICS_VERSION in charrnn/study/cache.py (cached runs of the old numbers must not be "
                      "served) and renew the golden values: `.venv/bin/python tests/test_golden.py --renew`")


def test_the_golden_check_sees_a_change_of_summation_order(golden):
    """The same maths summed in another order (the textbook per-step form instead of the vectorised
    one) moves the numbers, and the comparison catches it: the check above can fail."""
    got = run_case("numpy adagrad", backend="steps")
    assert differences("steps", got, golden["numpy adagrad"])
    # ...while agreeing to many digits: it is the same algorithm
    assert got["loss_sum"] == pytest.approx(golden["numpy adagrad"]["loss_sum"], rel=1e-9)


if __name__ == "__main__":
    if sys.argv[1:] != ["--renew"]:
        sys.exit("usage: python tests/test_golden.py --renew   (after bumping NUMERICS_VERSION)")
    if not _kernel_runs():
        sys.exit("the numba kernel does not run here: cannot renew its golden numbers")
    old = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    machines = old.get("machines", {}) if old.get("numerics_version") == study.NUMERICS_VERSION else {}
    machines[machine_class()] = {name: run_case(name) for name in CASES}
    GOLDEN.write_text(json.dumps({"numerics_version": study.NUMERICS_VERSION, "machines": machines}, indent=1) + "\n")
    print(f"wrote {GOLDEN} for numerics version {study.NUMERICS_VERSION}, machine class {machine_class()}")
