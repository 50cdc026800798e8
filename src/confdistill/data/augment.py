"""TinyBERT-style data augmentation, offline: N variants of every train example by word replacement.

TinyBERT (Jiao et al., 2020, §3.2 and its ``data_augmentation.py``) splits each sentence into
words and, for every word that is not a stop word, collects candidate replacements:

- a word that is a single WordPiece: the top-k predictions of a masked-LM head with the word
  masked (when the model directory has MLM weights, ``cls.predictions.*``);
- otherwise (or when there is no MLM head — the MiniLM directory shipped here has none): the k
  nearest neighbours by cosine similarity in a word-embedding space. TinyBERT used GloVe, which is
  not available offline; we use the **teacher's input word-embedding matrix** instead. A word of
  several pieces is represented by the mean of its pieces' embeddings.

Each of the N variants then replaces each candidate-bearing word, independently with probability
``p``, by one of its candidates drawn uniformly. Unlike TinyBERT we keep duplicate variants, so the
output always has exactly (1 + N) × the original rows (the originals first, verbatim, in file
order, then the N variants of example 1, of example 2, …) and the first rows of the augmented file
are the original train file. For sentence-pair tasks both sentences are augmented, each with its
own draws. Labels (and every other column) are copied unchanged.

Speed: the neighbour search runs once per *distinct* word of the split (not per occurrence), as
batched matrix products of L2-normalised embeddings; SST-2 (67k rows, ~14k distinct words) takes a
few seconds on a laptop CPU. Same inputs and seed → byte-identical output (each example draws from
its own generator seeded with (seed, row index)).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.console import quiet
from confdistill.data.augment_candidates import (
    EmbeddingCandidates,
    MaskedLMCandidates,
    is_candidate_token,
    nearest_neighbours,
    word_marker,
    word_pieces,
)
from confdistill.errors import InputError

__all__ = ["STOP_WORDS", "Augmenter", "EmbeddingCandidates", "MaskedLMCandidates", "augment_file", "augment_words",
           "distinct_replaceable_words", "has_mlm_head", "is_candidate_token", "is_replaceable", "load_augmenter",
           "nearest_neighbours", "split_words"]

# TinyBERT's StopWordsList (data_augmentation.py): these words are never replaced.
_STOP_WORDS_TEXT = """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own same
    so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn
    hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn 's 're"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def is_replaceable(word: str) -> bool:
    """A word TinyBERT would augment: alphabetic, not a stop word."""
    return word.isalpha() and word not in STOP_WORDS


def split_words(tokenizer: Any, text: str) -> list[str]:
    """BERT's basic tokenisation (normaliser + pre-tokeniser of a fast tokenizer): lower-cased
    (for uncased vocabularies) words and punctuation, as TinyBERT's ``basic_tokenizer.tokenize``.
    A byte-level or SentencePiece pre-tokeniser marks its words (``Ġword``, ``▁word``, bytes for
    accents): the words are then the text its pieces span, so the variants stay plain text that
    any tokenizer — the teacher's and a student's of another kind — reads alike."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        norm = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        if backend.pre_tokenizer is not None:
            pieces = backend.pre_tokenizer.pre_tokenize_str(norm)
            if not word_marker(tokenizer):
                return [w for w, _ in pieces]
            return [w for w in (norm[a:b].strip() for _, (a, b) in pieces) if w]
        return norm.split()
    basic = getattr(tokenizer, "basic_tokenizer", None)
    if basic is not None:
        return list(basic.tokenize(text))
    return text.split()


# --------------------------------------------------------------------------------------------
# Augmenting sentences and examples
# --------------------------------------------------------------------------------------------


def augment_words(
    words: Sequence[str], candidates: dict[int, list[str]], *, n_aug: int, p: float, rng: np.random.Generator
) -> list[str]:
    """N variants of one sentence (TinyBERT's loop): for each position with candidates, draw a
    candidate uniformly, then keep it with probability p. Returns the N variant texts (words joined
    by spaces; duplicates kept)."""
    order = sorted(i for i, c in candidates.items() if c)
    variants = []
    for _ in range(n_aug):
        new = list(words)
        for i in order:
            choice = candidates[i][int(rng.integers(len(candidates[i])))]
            if rng.random() < p:
                new[i] = choice
        variants.append(" ".join(new))
    return variants


@dataclass
class Augmenter:
    """Word-replacement augmentation with a tokenizer, an embedding-neighbour table and an optional MLM."""

    tokenizer: Any
    embedding: EmbeddingCandidates
    mlm: MaskedLMCandidates | None = None
    n_aug: int = 20
    p: float = 0.4

    def candidates(self, words: Sequence[str]) -> dict[int, list[str]]:
        """``{word position: candidate words}`` for the replaceable words of a sentence."""
        cands: dict[int, list[str]] = {}
        single: list[int] = []
        for i, w in enumerate(words):
            if not is_replaceable(w):
                continue
            if self.mlm is not None and len(word_pieces(self.tokenizer, w)) == 1:
                single.append(i)
            else:
                cands[i] = self.embedding.table.get(w, [])
        if single and self.mlm is not None:
            cands.update(self.mlm(words, single))
        return cands

    def augment_text(self, text: str, rng: np.random.Generator) -> list[str]:
        words = split_words(self.tokenizer, text)
        return augment_words(words, self.candidates(words), n_aug=self.n_aug, p=self.p, rng=rng)


def distinct_replaceable_words(tokenizer: Any, texts: Sequence[str]) -> list[str]:
    """The replaceable words of ``texts`` (sorted, distinct): the only rows the neighbour search needs."""
    seen: set[str] = set()
    for t in texts:
        seen.update(w for w in split_words(tokenizer, t) if is_replaceable(w))
    return sorted(seen)


# --------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------


def has_mlm_head(model_dir: str | Path) -> bool:
    """Whether the directory's weights include a masked-LM head (``cls.predictions.transform.*``)."""
    from confdistill.models.files import checkpoint_keys

    model_dir = Path(model_dir)
    names: list[str] = []
    # checkpoint_keys reads names only (tensors as data: weights_only) and turns a damaged file
    # into an InputError naming it
    for f in [*sorted(model_dir.glob("*.safetensors")), *sorted(model_dir.glob("pytorch_model*.bin"))]:
        names += checkpoint_keys(f)
    return any("cls.predictions.transform" in n for n in names)


def load_augmenter(model_dir: str | Path, *, n_aug: int, p: float, k: int, texts: Sequence[str],
                   use_mlm: bool | None = None, log: Callable[[str], None] | None = None) -> Augmenter:
    """Tokenizer + word embeddings (+ MLM head when the directory has one and ``use_mlm`` is not False)."""
    import torch

    log = log or (lambda _m: None)
    model_dir = Path(model_dir)
    mlm_available = has_mlm_head(model_dir)
    if use_mlm and not mlm_available:
        raise InputError(f"--mlm: {model_dir} has no masked-LM head (no cls.predictions.* weights)")
    use_mlm = mlm_available if use_mlm is None else use_mlm
    from confdistill.models import load_classifier, load_tokenizer

    if use_mlm:
        from transformers import BertForMaskedLM

        from confdistill.models.files import model_file_errors, read_config_dict, weights_file

        tokenizer = load_tokenizer(model_dir)
        with model_file_errors(read_config_dict(model_dir)[1], weights_file(model_dir)):
            model = BertForMaskedLM.from_pretrained(str(model_dir))
        log(f"candidates: masked-LM head of {model_dir} (single-piece words), embedding neighbours (others)")
    else:
        # load_classifier reads HF and TinyBERT-release directories alike; only the embeddings are used.
        model, tokenizer = load_classifier(model_dir)
        log(f"candidates: nearest neighbours in the word embeddings of {model_dir} (no masked-LM head)")
    embeddings = model.get_input_embeddings().weight.detach()
    words = distinct_replaceable_words(tokenizer, texts)
    with torch.no_grad():
        table = EmbeddingCandidates.build(words, tokenizer, embeddings, k=k)
    mlm = MaskedLMCandidates(model, tokenizer, k=k) if use_mlm else None
    return Augmenter(tokenizer, table, mlm, n_aug=n_aug, p=p)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _text_columns(rows: Sequence[list[str]], examples: Sequence[Any]) -> tuple[int, int | None]:
    """Column indices of text_a / text_b: the columns equal to them on every sampled row."""
    sample = list(zip(rows, examples, strict=True))[:200]
    n = min(len(r) for r, _ in sample)

    def find(attr: str, avoid: int | None) -> int:
        for j in range(n):
            if j != avoid and all(r[j] == getattr(e, attr) for r, e in sample):
                return j
        raise InputError(f"cannot locate the {attr} column in the train file (the reader and the file disagree)")

    i_a = find("text_a", None)
    i_b = find("text_b", i_a) if examples[0].text_b is not None else None
    return i_a, i_b


def augment_file(
    task: str,
    data_dir: str | Path,
    out: str | Path | None = None,
    *,
    model_dir: str | Path,
    n_aug: int = 20,
    p: float = 0.4,
    k: int = 15,
    seed: int = 42,
    use_mlm: bool | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
    columns: Any = None,
) -> dict[str, Any]:
    """Write the augmented train file of ``task`` (same format as its train file), atomically.

    task: a GLUE task (its train.tsv), or ``"custom"`` with ``columns`` (a
    :class:`~confdistill.data.TableColumns` or its plain mapping): ``DATA_DIR/train.{csv,tsv,jsonl}``,
    whose text columns are augmented by name and every other column copied. out: default
    ``train_aug.<ext>`` beside the train file; an existing one is refused (InputError, before any
    work) unless ``overwrite``. Returns a summary dict (rows, words with candidates, candidate
    source, output path).
    """
    from tqdm.auto import tqdm

    from confdistill.data import load_examples, resolve_split_file, resolve_table_file
    from confdistill.data.tabular import CUSTOM_TASK, TableColumns
    from confdistill.folders import claim_output
    from confdistill.io import atomic_write

    if n_aug < 0:
        raise InputError(f"--n-aug: expected >= 0, got {n_aug}")
    if not 0.0 <= p <= 1.0:
        raise InputError(f"--p: expected a probability in [0, 1], got {p}")
    if k < 1:
        raise InputError(f"--top-k: expected >= 1, got {k}")
    custom = str(task).strip().lower() == CUSTOM_TASK
    if custom and columns is not None and not isinstance(columns, TableColumns):
        columns = TableColumns.from_mapping(columns)
    data = load_examples(task, data_dir, "train", columns=columns)  # checks the task and the columns
    src = resolve_table_file(data_dir, "train") if custom else resolve_split_file(data.task.name, data_dir, "train")
    out = Path(out) if out is not None else src.with_name(f"train_aug{src.suffix if custom else '.tsv'}")
    if out.resolve() == src.resolve():
        raise InputError("--out: would overwrite the original train file", path=out)
    # One writer per --out: a second augment onto it stops at once, before the model is loaded
    # (the claim also removes a dead writer's temporaries).
    with claim_output(out, overwrite=overwrite, kind="file", what="--out"):
        examples = data.examples
        table = _Table.read(src, examples, columns if custom else None)
        texts = [e.text_a for e in examples] + [e.text_b for e in examples if e.text_b is not None]
        aug = load_augmenter(model_dir, n_aug=n_aug, p=p, k=k, texts=texts, use_mlm=use_mlm, log=log)
        n_with = 0
        with atomic_write(out) as fh:
            table.write_head(fh)
            bar = tqdm(range(len(examples)), desc=f"augment {data.task.name}", unit="ex", disable=not progress or quiet())
            for idx in bar:
                e, r = examples[idx], table.rows[idx]
                rng = np.random.default_rng([int(seed), idx])
                var_a = aug.augment_text(e.text_a, rng)
                var_b = aug.augment_text(e.text_b, rng) if table.i_b is not None and e.text_b is not None else None
                original = " ".join(split_words(aug.tokenizer, e.text_a))
                n_with += any(v != original for v in var_a)
                for j in range(n_aug):
                    new = r.copy()
                    new[table.i_a] = var_a[j]
                    if var_b is not None and table.i_b is not None:
                        new[table.i_b] = var_b[j]
                    table.write_row(fh, new)
        return {
            "task": data.task.name,
            "source": str(src),
            "out": str(out),
            "original_rows": len(examples),
            "rows": (1 + n_aug) * len(examples),
            "n_aug": n_aug,
            "p": p,
            "top_k": k,
            "seed": seed,
            "candidates": "masked-LM + embedding neighbours" if aug.mlm is not None else "embedding neighbours",
            "distinct_words": len(aug.embedding.table),
            "examples_changed": int(n_with),
        }


@dataclass
class _Table:
    """A train file's rows as the writer needs them: GLUE TSV rows as field lists (text columns found
    by content, every other field copied as is), a custom file's records as dicts (text columns by
    name), with the header and the format to write them back in."""

    suffix: str
    header: list[str]
    rows: list[Any]
    i_a: Any
    i_b: Any

    @classmethod
    def read(cls, src: Path, examples: Sequence[Any], columns: Any) -> _Table:
        if columns is None:
            # The raw lines, split like the reader (tabs, no quoting), so every other column is copied as is.
            with open(src, encoding="utf-8-sig", newline="") as fh:
                lines = fh.read().splitlines()
            rows = [lines[e.line - 1].split("\t") for e in examples]
            i_a, i_b = _text_columns(rows, examples)
            return cls(".glue", lines[: examples[0].line - 1], rows, i_a, i_b)
        from confdistill.data.tabular import _records  # the reader of every command

        records = [r for _, r in _records(src)]
        header = list(records[0]) if records else []
        return cls(src.suffix.lower(), header, records, columns.text, columns.text_pair)

    def write_head(self, fh: Any) -> None:
        """The header (GLUE: its header lines, if any; CSV/TSV: the columns), then the original rows."""
        if self.suffix == ".glue":
            for h in self.header:
                fh.write(h + "\n")
        elif self.suffix != ".jsonl":
            self._fields(fh, self.header)
        for r in self.rows:
            self.write_row(fh, r)

    def write_row(self, fh: Any, row: Any) -> None:
        if self.suffix == ".glue":
            fh.write("\t".join(row) + "\n")
        elif self.suffix == ".jsonl":
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self._fields(fh, [row.get(c, "") for c in self.header])

    def _fields(self, fh: Any, fields: list[Any]) -> None:
        if self.suffix == ".tsv":  # read with tabs and no quoting: written the same way
            fh.write("\t".join(str(f) for f in fields) + "\n")
        else:
            csv.writer(fh, lineterminator="\n").writerow(fields)
