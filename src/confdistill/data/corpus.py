"""An unlabeled text corpus, streamed: the input of general distillation (TinyBERT's first stage).

A corpus is one or more files, each either

* **plain text** (any suffix but the three below): one text per line; blank lines are skipped;
* **CSV / TSV / JSONL** (``.csv``, ``.tsv``, ``.jsonl``): one text per row, from ``text_column``
  (a header name, or a JSON key); rows whose text is empty are skipped.

Why streamed: a general-distillation corpus (Wikipedia in TinyBERT) does not fit in memory, and
need not. :func:`scan_corpus` reads every file once, checking what would otherwise fail hours into
a run (bytes that are not UTF-8, named by file and line; a missing column; no text at all) and
counting the texts (for the number of steps, the progress bar's ETA and the schedule) while it
hashes each file (``run.json`` records the SHA-256s). The epochs then re-read the files.

Order: per epoch the files are taken in a seeded order and their texts pass through a bounded
shuffle buffer (:func:`buffered_shuffle`, ``buffer_size`` texts in memory): each text comes out
exactly once per epoch, and the order depends only on ``(seed, epoch)`` — so a resumed run
re-creates the epoch and skips the texts it had already trained on. A buffer as large as the
corpus is a uniform shuffle; a smaller one mixes texts within about ``buffer_size`` lines.

Texts are tokenised on the fly, per batch (:class:`TextCollator`); a text longer than
``max_length`` tokens is **truncated** (one line is one example: the counts, the skip on resume
and the batch boundaries stay independent of the tokenizer).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confdistill.errors import InputError

__all__ = ["Corpus", "CorpusFile", "TextCollator", "buffered_shuffle", "scan_corpus"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: where, its bytes' SHA-256 (recorded in run.json) and its number of texts."""

    path: Path
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "rows": self.rows}


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "jsonl" if suffix == JSONL_SUFFIX else "table" if suffix in TABLE_SUFFIXES else "text"


def _lines(path: Path, digest: Any | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) of a file read as bytes; non-UTF-8 bytes name the line."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if digest is not None:
                digest.update(raw)
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"line {number} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                 f"{exc.start + 1}); convert the file to UTF-8", path=path) from None


def _texts(path: Path, text_column: str | None, digest: Any | None = None) -> Iterator[str]:
    """The texts of one file in file order (see the module docstring)."""
    kind = _kind(path)
    if kind == "text":
        if text_column is not None:
            raise InputError(f"--text-column {text_column!r} applies to .csv/.tsv/.jsonl files; this one is read "
                             "as plain text (one text per line)", path=path)
        for _, line in _lines(path, digest):
            text = line.rstrip("\r\n")
            if text.strip():
                yield text
        return
    if text_column is None:
        raise InputError(f"a {path.suffix} corpus file needs --text-column (the column holding the text)", path=path)
    lines = _lines(path, digest)
    if kind == "jsonl":
        for number, line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"line {number} is not JSON ({exc.msg})", path=path) from None
            if not isinstance(row, dict) or text_column not in row:
                keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise InputError(f"line {number} has no key {text_column!r} (--text-column); it has {keys}",
                                 path=path)
            text = row[text_column]
            if text is not None and str(text).strip():
                yield str(text)
        return
    csv.field_size_limit(2**31 - 1)  # a document may be one long field (TinyBERT: sys.maxsize)
    reader = csv.reader((line for _, line in lines), delimiter=TABLE_SUFFIXES[path.suffix.lower()])
    header = next(reader, None)
    if header is None:
        return
    if text_column not in header:
        raise InputError(f"no column {text_column!r} (--text-column) in the header {header}", path=path)
    index = header.index(text_column)
    for row in reader:
        if len(row) > index and row[index].strip():
            yield row[index]


def scan_corpus(paths: Sequence[str | Path], text_column: str | None = None) -> Corpus:
    """Check, count and hash the corpus files in one streaming pass; an :class:`InputError` for bad input.

    Refused: a missing file, bytes that are not UTF-8 (file and line named), a table or JSONL file
    without ``text_column`` or lacking it, a plain-text file given one, and a corpus without a text.
    """
    if not paths:
        raise InputError("--corpus needs at least one file")
    files = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError("corpus file does not exist", path=path)
        digest = hashlib.sha256()
        rows = sum(1 for _ in _texts(path, text_column, digest))
        files.append(CorpusFile(path, digest.hexdigest(), rows))
    corpus = Corpus(files, text_column)
    if corpus.rows == 0:
        raise InputError(f"the corpus holds no text ({', '.join(str(f.path) for f in files)}: empty or blank)")
    return corpus


def buffered_shuffle(items: Iterable[Any], buffer_size: int, rng: random.Random) -> Iterator[Any]:
    """Every item once, in an order drawn by ``rng`` with at most ``buffer_size`` items held.

    The buffer fills first; then each new item replaces a uniformly drawn one, which is yielded;
    at the end the rest of the buffer comes out shuffled.
    """
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = rng.randrange(buffer_size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


@dataclass(frozen=True)
class Corpus:
    """A scanned corpus (:func:`scan_corpus`): its files, and the epochs' streams of texts and batches."""

    files: list[CorpusFile]
    text_column: str | None = None

    @property
    def rows(self) -> int:
        """Texts per epoch."""
        return sum(f.rows for f in self.files)

    def texts(self) -> Iterator[str]:
        """All texts, file after file, in file order."""
        for f in self.files:
            yield from _texts(f.path, self.text_column)

    def epoch(self, *, seed: int, epoch: int, buffer_size: int) -> Iterator[str]:
        """The texts of one epoch in its shuffled order (a function of ``(seed, epoch)`` only)."""
        rng = random.Random(f"confdistill-corpus:{seed}:{epoch}")  # str seeds are hashed: stable everywhere
        order = list(range(len(self.files)))
        rng.shuffle(order)

        def stream() -> Iterator[str]:
            for i in order:
                yield from _texts(self.files[i].path, self.text_column)

        return buffered_shuffle(stream(), buffer_size, rng)

    def batches(self, *, seed: int, epoch: int, batch_size: int, buffer_size: int,
                skip: int = 0) -> Iterator[list[str]]:
        """The epoch's batches of ``batch_size`` texts (the last may be smaller), the first ``skip`` left out."""
        batch: list[str] = []
        done = 0
        for text in self.epoch(seed=seed, epoch=epoch, buffer_size=buffer_size):
            batch.append(text)
            if len(batch) == batch_size:
                if done >= skip:
                    yield batch
                done += 1
                batch = []
        if batch and done >= skip:
            yield batch

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.rows // batch_size)

    def to_dict(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.files]


class TextCollator:
    """Tokenise a list of texts into one padded batch (``input_ids``, ``attention_mask``, ``token_type_ids``).

    Padding to the batch's longest text (``pad_to_max_length`` False) or to ``max_length``; texts
    longer than ``max_length`` tokens are truncated. Used as the loop's ``collate``: the global
    batch is tokenised whole, so every process slices rows of the same padded width.
    """

    def __init__(self, tokenizer: Any, max_length: int, *, pad_to_max_length: bool = False) -> None:
        self.tokenizer, self.max_length, self.pad_to_max_length = tokenizer, max_length, pad_to_max_length

    def __call__(self, texts: Sequence[str]) -> dict[str, Any]:
        out = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                             padding="max_length" if self.pad_to_max_length else "longest",
                             return_attention_mask=True, return_token_type_ids=True, return_tensors="pt")
        return {k: out[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
