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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError

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


def is_candidate_token(token: str) -> bool:
    """A vocabulary entry usable as a replacement: a whole alphabetic word (no ``##`` piece, no [SPECIAL])."""
    return token.isalpha()


def split_words(tokenizer: Any, text: str) -> list[str]:
    """BERT's basic tokenisation (normaliser + pre-tokeniser of a fast tokenizer): lower-cased
    (for uncased vocabularies) words and punctuation, as TinyBERT's ``basic_tokenizer.tokenize``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        norm = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        if backend.pre_tokenizer is not None:
            return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(norm)]
        return norm.split()
    basic = getattr(tokenizer, "basic_tokenizer", None)
    if basic is not None:
        return list(basic.tokenize(text))
    return text.split()


# --------------------------------------------------------------------------------------------
# Candidate sources
# --------------------------------------------------------------------------------------------


def nearest_neighbours(
    embeddings: Any,
    queries: Any,
    candidate_ids: Any,
    *,
    k: int,
    exclude: Any | None = None,
    batch_size: int = 2048,
) -> Any:
    """Top-k cosine neighbours of each query among the candidate rows of ``embeddings``.

    embeddings: (V, d) float tensor, the word-embedding matrix; queries: (U, d) float tensor;
    candidate_ids: (C,) long tensor of vocabulary ids allowed as answers; exclude: (U,) long tensor,
    a vocabulary id per query that must not be returned (the word itself; −1 for none).
    Returns a (U, min(k, C)) long tensor of vocabulary ids, most similar first. Ties are broken by
    ``torch.topk`` deterministically for a given input.
    """
    import torch

    cand = torch.nn.functional.normalize(embeddings[candidate_ids].float(), dim=1)  # (C, d)
    k = min(int(k), cand.shape[0] - (1 if exclude is not None else 0))
    out = torch.empty((queries.shape[0], max(k, 0)), dtype=torch.long)
    if k <= 0:
        return out
    # Position of each excluded vocabulary id inside candidate_ids (−1 when absent).
    pos_of = torch.full((embeddings.shape[0],), -1, dtype=torch.long)
    pos_of[candidate_ids] = torch.arange(candidate_ids.shape[0])
    for start in range(0, queries.shape[0], batch_size):
        q = torch.nn.functional.normalize(queries[start : start + batch_size].float(), dim=1)
        sim = q @ cand.T  # (b, C) cosine similarities
        if exclude is not None:
            ex = exclude[start : start + batch_size]
            rows = torch.nonzero(ex >= 0).flatten()
            cols = pos_of[ex[rows]]
            keep = cols >= 0
            sim[rows[keep], cols[keep]] = float("-inf")
        out[start : start + q.shape[0]] = candidate_ids[sim.topk(k, dim=1).indices]
    return out


@dataclass
class EmbeddingCandidates:
    """Replacement candidates for words from nearest neighbours in a word-embedding matrix.

    ``table[word]`` lists up to k replacement words (most similar first), computed once per
    distinct word with :meth:`build`.
    """

    table: dict[str, list[str]]

    @classmethod
    def build(cls, words: Sequence[str], tokenizer: Any, embeddings: Any, *, k: int = 15) -> EmbeddingCandidates:
        """words: distinct replaceable words; embeddings: (V, d) tensor aligned with the tokenizer's vocabulary."""
        import torch

        vocab: dict[str, int] = tokenizer.get_vocab()
        V = embeddings.shape[0]
        cand_ids = torch.tensor(
            sorted(i for t, i in vocab.items() if i < V and is_candidate_token(t)), dtype=torch.long
        )
        if cand_ids.numel() == 0:
            raise InputError("the tokenizer's vocabulary has no whole-word entries to use as replacements")
        id_to_token = {i: t for t, i in vocab.items()}
        queries = torch.empty((len(words), embeddings.shape[1]), dtype=torch.float32)
        exclude = torch.full((len(words),), -1, dtype=torch.long)
        keep = []
        for j, w in enumerate(words):
            ids = [i for i in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(w)) if i is not None and i < V]
            if not ids or ids == [tokenizer.unk_token_id]:
                continue  # unknown word: no meaningful embedding
            queries[j] = embeddings[ids].float().mean(dim=0)
            if len(ids) == 1:
                exclude[j] = ids[0]
            keep.append(j)
        table: dict[str, list[str]] = {w: [] for w in words}
        if keep:
            idx = torch.tensor(keep, dtype=torch.long)
            nn = nearest_neighbours(embeddings, queries[idx], cand_ids, k=k, exclude=exclude[idx])
            for row, j in enumerate(keep):
                w = words[j]
                table[w] = [t for t in (id_to_token[int(i)] for i in nn[row]) if t != w]
        return cls(table)


class MaskedLMCandidates:
    """Candidates for single-piece words from a masked-LM head: the top-k tokens predicted at the
    word's position with the word masked (TinyBERT's ``_masked_language_model``), batched per sentence."""

    def __init__(self, model: Any, tokenizer: Any, *, k: int = 15, max_length: int = 128, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.k = k
        self.max_length = max_length
        self.batch_size = batch_size
        vocab = tokenizer.get_vocab()
        self._ok = np.zeros(max(vocab.values()) + 1, dtype=bool)
        for t, i in vocab.items():
            self._ok[i] = is_candidate_token(t)
        self._id_to_token = {i: t for t, i in vocab.items()}

    def __call__(self, words: Sequence[str], positions: Sequence[int]) -> dict[int, list[str]]:
        """words: the sentence's words; positions: indices of single-piece replaceable words.
        Returns ``{position: [candidate words]}`` (positions beyond max_length are skipped)."""
        import torch

        tok = self.tokenizer
        pieces = [tok.convert_tokens_to_ids(tok.tokenize(w)) for w in words]
        ids = [tok.cls_token_id]
        start = []
        for p in pieces:
            start.append(len(ids))
            ids.extend(p)
        ids = [*ids[: self.max_length - 1], tok.sep_token_id]
        positions = [i for i in positions if start[i] < len(ids) - 1]
        out: dict[int, list[str]] = {}
        base = torch.tensor(ids, dtype=torch.long)
        for s in range(0, len(positions), self.batch_size):
            chunk = positions[s : s + self.batch_size]
            batch = base.repeat(len(chunk), 1)
            at = torch.tensor([start[i] for i in chunk])
            batch[torch.arange(len(chunk)), at] = tok.mask_token_id
            with torch.no_grad():
                logits = self.model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
            scores = logits[torch.arange(len(chunk)), at]  # (b, V)
            scores[:, ~torch.from_numpy(self._ok[: scores.shape[1]])] = float("-inf")
            top = scores.topk(self.k + 1, dim=1).indices
            for row, i in enumerate(chunk):
                cands = [self._id_to_token[int(t)] for t in top[row]]
                out[i] = [c for c in cands if c != words[i]][: self.k]
        return out


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
            if self.mlm is not None and len(self.tokenizer.tokenize(w)) == 1:
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
    model_dir = Path(model_dir)
    names: list[str] = []
    for f in sorted(model_dir.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(f), "pt") as fh:
            names += list(fh.keys())
    for f in sorted(model_dir.glob("pytorch_model*.bin")):
        from confdistill.io import load_tensors

        state = load_tensors(f, what="weights file")  # data only; a damaged file is an InputError
        names += list(state.keys()) if isinstance(state, dict) else []
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

        tokenizer = load_tokenizer(model_dir)
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
) -> dict[str, Any]:
    """Write the augmented train file of ``task`` (same TSV format as its train.tsv), atomically.

    out: default ``train_aug.tsv`` beside the train file; an existing one is refused (InputError,
    before any work) unless ``overwrite``. Returns a summary dict (rows, words with candidates,
    candidate source, output path).
    """
    from tqdm.auto import tqdm

    from confdistill.data import get_task, load_split, resolve_split_file
    from confdistill.io import atomic_write

    if n_aug < 0:
        raise InputError(f"--n-aug: expected >= 0, got {n_aug}")
    if not 0.0 <= p <= 1.0:
        raise InputError(f"--p: expected a probability in [0, 1], got {p}")
    if k < 1:
        raise InputError(f"--top-k: expected >= 1, got {k}")
    spec = get_task(task)
    src = resolve_split_file(spec.name, data_dir, "train")
    out = Path(out) if out is not None else src.with_name("train_aug.tsv")
    if out.resolve() == src.resolve():
        raise InputError("--out: would overwrite the original train file", path=out)
    from confdistill.folders import check_output_target, remove_stale_temps

    check_output_target(out, overwrite=overwrite, kind="file", what="--out")
    remove_stale_temps(out.absolute().parent, recursive=False, names=[out.name])
    examples = load_split(spec.name, data_dir, "train")
    # The raw lines, split like the reader (tabs, no quoting), so every other column is copied as is.
    with open(src, encoding="utf-8-sig", newline="") as fh:
        lines = fh.read().splitlines()
    rows = [lines[e.line - 1].split("\t") for e in examples]
    i_a, i_b = _text_columns(rows, examples)
    texts = [e.text_a for e in examples] + [e.text_b for e in examples if e.text_b is not None]
    aug = load_augmenter(model_dir, n_aug=n_aug, p=p, k=k, texts=texts, use_mlm=use_mlm, log=log)
    header = lines[: examples[0].line - 1]
    n_with = 0
    with atomic_write(out) as fh:
        for h in header:
            fh.write(h + "\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")
        bar = tqdm(range(len(examples)), desc=f"augment {spec.name}", unit="ex", disable=not progress)
        for idx in bar:
            e, r = examples[idx], rows[idx]
            rng = np.random.default_rng([int(seed), idx])
            var_a = aug.augment_text(e.text_a, rng)
            var_b = aug.augment_text(e.text_b, rng) if i_b is not None and e.text_b is not None else None
            original = " ".join(split_words(aug.tokenizer, e.text_a))
            n_with += any(v != original for v in var_a)
            for j in range(n_aug):
                new = list(r)
                new[i_a] = var_a[j]
                if var_b is not None and i_b is not None:
                    new[i_b] = var_b[j]
                fh.write("\t".join(new) + "\n")
    return {
        "task": spec.name,
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
