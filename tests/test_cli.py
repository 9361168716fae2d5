"""`python -m charrnn` end to end on a small file: train, resume after Ctrl-C, sample, gradcheck, errors."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, check=None):
    env = dict(os.environ, RNN_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def assert_one_line_error(proc, code, fragment):
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and fragment in lines[0], lines[0]


SMALL = ["--m", 16, "--seq-length", 10, "--seed", 5]


def test_train_sample_gradcheck_end_to_end(corpus_file, tmp_path):
    out = tmp_path / "m.npz"
    proc = cli("train", "--data", corpus_file, "--out", out, "--epochs", 2, *SMALL, check=0)
    assert "final smooth loss" in proc.stdout and "lowest smooth loss" in proc.stdout
    with np.load(out, allow_pickle=False) as z:
        n = len(z["loss"])
        assert n == 2 * ((len(corpus_file.read_text()) - 1) // 10)  # two epochs of updates
        assert len(z["smooth_loss"]) == n
        final = float(z["smooth_loss"][-1])
    assert f"final smooth loss {final:.4f}" in proc.stdout
    s = cli("sample", "--checkpoint", out, "--length", 120, "--seed", 1, "--prime", "When", check=0)
    assert s.stdout.startswith("When") and len(s.stdout) == len("When") + 120 + 1
    again = cli("sample", "--checkpoint", out, "--length", 120, "--seed", 1, "--prime", "When", check=0)
    assert again.stdout == s.stdout
    hot = cli("sample", "--checkpoint", out, "--length", 50, "--temperature", 0.5, "--top-p", 0.9, check=0)
    assert len(hot.stdout) == 51
    v = cli("train", "--data", corpus_file, "--out", tmp_path / "v.npz", "--max-updates", 60, "--holdout", 0.2,
            "--eval-every", 20, "--optimizer", "adam", "--eta", 0.005, "--order", "chunks", *SMALL, check=0)
    assert "held-out loss" in v.stdout and "lowest" in v.stdout
    g = cli("gradcheck", "--data", corpus_file, "--m", 5, "--sig", 0.1, check=0)
    rows = [line.split() for line in g.stdout.splitlines() if line.startswith("d")]
    assert [r[0] for r in rows] == ["dU", "dW", "dV", "db", "dc"]
    assert all(float(r[2]) < 1e-6 and r[4] == "0" for r in rows)
    assert g.stdout.splitlines()[-1].startswith("verdict: pass")


@pytest.mark.parametrize("backend, updates", [("numpy", 8000), ("auto", 120_000)])
def test_ctrl_c_saves_and_resume_ends_where_the_uninterrupted_run_ends(corpus_file, tmp_path, backend, updates):
    args = ["--data", corpus_file, "--max-updates", updates, "--epochs", 10**6, "--backend", backend, *SMALL]
    ref = tmp_path / "ref.npz"
    cli("train", *args, "--out", ref, check=0)
    out = tmp_path / "int.npz"
    env = dict(os.environ, RNN_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", *map(str, args), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stderr.readline()  # "corpus ...": training starts right after this line
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the interrupt arrived (machine too fast)")
    assert proc.returncode == 130 and "continue with --resume" in err
    refused = cli("train", *args, "--out", out)
    assert_one_line_error(refused, 1, "--resume")
    cli("train", *args, "--out", out, "--resume", check=0)
    with np.load(ref, allow_pickle=False) as a, np.load(out, allow_pickle=False) as b:
        n_interrupted = len(b["loss"])
        for key in ("loss", "smooth_loss", "params/U", "params/W", "params/V", "params/b", "params/c",
                    "best/W", "opt/G/W", "hprev"):
            assert np.array_equal(a[key], b[key]), key
    assert n_interrupted == updates


def test_bad_inputs_get_one_line_and_a_nonzero_exit(corpus_file, tmp_path):
    assert_one_line_error(cli("train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "x.npz"),
                          1, "corpus not found")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert_one_line_error(cli("train", "--data", empty, "--out", tmp_path / "x.npz"), 1, "empty")
    binary = tmp_path / "bin.dat"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(cli("train", "--data", binary, "--out", tmp_path / "x.npz"), 1, "binary")
    assert_one_line_error(cli("train", "--epochs", 0), 2, "--epochs")
    assert_one_line_error(cli("train", "--eta", "fast"), 2, "--eta")
    assert_one_line_error(cli("train", "--bogus"), 2, "unrecognized")
    assert_one_line_error(cli("train", "--data", corpus_file, "--out", tmp_path / "h.npz", "--holdout", 1.5), 2, "holdout")
    assert_one_line_error(cli("train", "--order", "sideways"), 2, "--order")
    assert_one_line_error(cli("sample", "--top-p", 1.5), 2, "top-p")
    assert_one_line_error(cli("sample", "--checkpoint", corpus_file), 1, "not a readable checkpoint")
    assert_one_line_error(cli("sample", "--checkpoint", tmp_path / "none.npz"), 1, "not found")
    # a checkpoint that does not match the corpus
    ck = tmp_path / "c.npz"
    cli("train", "--data", corpus_file, "--out", ck, "--max-updates", 5, *SMALL, check=0)
    other = tmp_path / "other.txt"
    other.write_text("zzz yyy xxx qqq\n" * 20)
    assert_one_line_error(cli("train", "--data", other, "--out", ck, "--resume", *SMALL), 1, "vocabulary")
    assert_one_line_error(cli("sample", "--checkpoint", ck, "--prime", "Zebra"), 1, "not in the vocabulary")
    assert_one_line_error(cli("train", "--data", corpus_file, "--out", ck, "--resume", "--m", 17,
                              "--seq-length", 10, "--seed", 5), 1, "m=16")


def test_help_names_every_flag():
    out = cli("train", "--help", check=0).stdout
    for flag in ("--data", "--epochs", "--max-updates", "--m", "--eta", "--seq-length", "--seed", "--out", "--resume"):
        assert flag in out
    out = cli("sample", "--help", check=0).stdout
    for flag in ("--checkpoint", "--length", "--temperature", "--top-p", "--seed", "--prime"):
        assert flag in out
