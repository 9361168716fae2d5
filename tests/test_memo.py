"""The derived-number cache (study.memo): the same numbers as computing them, read back from disk
by a new process, never trusted when the file is of other inputs, damaged or not plain float arrays."""
import numpy as np
import pytest

import rnn_core as rc
from charrnn import study
from charrnn.study import evidence as ev
from charrnn.study import findings, memo


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a new process would: nothing kept in memory."""
    monkeypatch.setattr(memo, "_IN_MEMORY", {})


def forget():
    memo._IN_MEMORY.clear()


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value
    return compute, calls


def test_a_value_is_computed_once_and_read_back_by_the_next_process(tmp_path):
    x = np.arange(5.0)
    compute, calls = counting({"a": x * 2, "s": 1.5})
    first = memo.remembered(tmp_path, "thing", 1, [x, "text"], compute)
    forget()
    again = memo.remembered(tmp_path, "thing", 1, [x, "text"], compute)
    assert len(calls) == 1
    assert np.array_equal(again["a"], x * 2) and float(again["s"]) == 1.5
    assert first.keys() == again.keys()


@pytest.mark.parametrize("change", ["input", "version", "name"])
def test_other_inputs_a_new_version_or_another_name_are_computed_again(tmp_path, change):
    x = np.arange(5.0)
    compute, calls = counting({"a": x})
    memo.remembered(tmp_path, "thing", 1, [x], compute)
    forget()
    args = {"input": ("thing", 1, [x + 1e-12]), "version": ("thing", 2, [x]), "name": ("other", 1, [x])}[change]
    memo.remembered(tmp_path, args[0], args[1], args[2], compute)
    assert len(calls) == 2


def test_the_dtype_and_shape_of_an_input_are_part_of_its_key():
    x = np.arange(6.0)
    assert memo.digest(x) != memo.digest(x.reshape(2, 3))
    assert memo.digest(x) != memo.digest(x.astype(np.float32))
    assert memo.digest([1, 2]) != memo.digest([12])  # parts are separated


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other key", "object array"])
def test_a_damaged_or_foreign_file_is_computed_again_and_replaced(tmp_path, damage):
    x = np.arange(3.0)
    compute, calls = counting({"a": x})
    memo.remembered(tmp_path, "thing", 1, [x], compute)
    (path,) = (tmp_path / "derived").glob("thing-*.npz")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "other key":
        np.savez(path, __key__=np.array("0" * 32), a=np.zeros(3))
    else:  # a pickled object array must not be loaded (allow_pickle=False), only recomputed
        np.savez(path, __key__=np.array(path.stem.split("-")[1]), a=np.array([{"x": 1}], dtype=object))
    forget()
    value = memo.remembered(tmp_path, "thing", 1, [x], compute)
    assert len(calls) == 2 and np.array_equal(value["a"], x)
    forget()
    memo.remembered(tmp_path, "thing", 1, [x], compute)
    assert len(calls) == 2  # the file was replaced by a good one
    assert not list((tmp_path / "derived").glob(".*.tmp"))  # no temporary file left


def test_a_folder_that_cannot_be_written_costs_only_the_time(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder would be")
    compute, calls = counting({"a": np.ones(2)})
    assert np.array_equal(memo.remembered(blocker, "thing", 1, [1], compute)["a"], np.ones(2))
    assert len(calls) == 1


def test_half_scores_kept_on_disk_are_those_computed(corpus, tmp_path):
    _, held = corpus.split(0.2)

    class Run:  # final parameters and the state carried at the end: all a half score reads
        params = rc.init_params(corpus.vocab.K, 8, np.random.default_rng(0), 0.5)
        hprev = np.tanh(np.random.default_rng(1).standard_normal(8))
    direct = ev.half_scores(Run, held)
    forget()
    kept = ev.half_scores(Run, held, tmp_path)
    forget()
    assert ev.half_scores(Run, held, tmp_path) == kept == direct  # bit for bit: float64 stored as it is
    assert len(list((tmp_path / "derived").glob("half_scores-*.npz"))) == 1
    share = findings.run_saturation(Run, held, tmp_path)
    forget()
    assert findings.run_saturation(Run, held, tmp_path) == share == findings.hidden_saturation(
        Run.params, held, Run.hprev)


def test_kneser_ney_scores_kept_on_disk_are_those_of_the_model(corpus, tmp_path):
    train, _ = corpus.split(0.2)
    blocks = [corpus.text[:60], corpus.text[100:160]]
    log2p, counts = study.kneser_ney_scores(train.text, corpus.vocab.chars, blocks, 3, tmp_path)
    forget()
    again, counts_again = study.kneser_ney_scores(train.text, corpus.vocab.chars, blocks, 3, tmp_path)
    kn = study.KneserNey(train.text, corpus.vocab.chars, 3)
    for n in (1, 2, 3):
        assert np.array_equal(log2p[n], kn.block_log2_probs(blocks, n)) and np.array_equal(again[n], log2p[n])
        assert counts[n] == counts_again[n] == kn.counts_stored(n)
