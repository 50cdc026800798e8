"""Candidate replacements for TinyBERT-style augmentation (:mod:`confdistill.data.augment`).

Two sources, as in TinyBERT's ``data_augmentation.py``: a masked-LM head's top-k predictions for a
single-piece word (when the model has MLM weights), and otherwise the k nearest neighbours by
cosine similarity in the teacher's input word-embedding matrix (TinyBERT used GloVe, not available
offline). Kept apart from the augmentation loop and the file handling so that each module stays
readable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from confdistill.errors import InputError


def is_candidate_token(token: str) -> bool:
    """A WordPiece entry usable as a replacement: a whole alphabetic word (no ``##`` piece, no [SPECIAL])."""
    return token.isalpha()


def word_marker(tokenizer: Any) -> str:
    """The prefix a subword vocabulary puts on a token that starts a word after a space: ``"Ġ"``
    (byte-level BPE: RoBERTa, ModernBERT) or ``"▁"`` (SentencePiece: XLM-R, DeBERTa-v3); ``""`` for
    WordPiece, whose vocabulary holds words as they are (its continuations carry ``##`` instead)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ == "WordPiece" or backend.pre_tokenizer is None:
        return ""
    pieces = backend.pre_tokenizer.pre_tokenize_str(" a")
    return pieces[-1][0][:-1] if pieces and pieces[-1][0].endswith("a") else ""


def vocabulary_words(tokenizer: Any) -> dict[int, str]:
    """``{id: word}`` for the vocabulary entries that spell a whole alphabetic word — the possible
    replacements. WordPiece: the entries themselves (``is_candidate_token``). Byte-level BPE and
    SentencePiece: the word-initial entries (``word_marker``), as the text they decode to (byte-level
    entries spell bytes: ``ĠcafÃ©`` is " café"), never the marker or bytes themselves."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    marker = word_marker(tokenizer)
    if not marker:
        return {i: t for t, i in vocab.items() if is_candidate_token(t)}
    decoder = tokenizer.backend_tokenizer.decoder
    words: dict[int, str] = {}
    for token, i in vocab.items():
        if token.startswith(marker) and len(token) > len(marker):
            word = (decoder.decode([token]) if decoder is not None else token[len(marker):]).strip()
            if word.isalpha():
                words[i] = word
    return words


def word_pieces(tokenizer: Any, word: str) -> list[str]:
    """The tokens of ``word`` as it appears inside a sentence (after a space: its word-initial form)."""
    return tokenizer.tokenize(" " + word if word_marker(tokenizer) else word)


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

        V = embeddings.shape[0]
        id_to_word = vocabulary_words(tokenizer)
        cand_ids = torch.tensor(sorted(i for i in id_to_word if i < V), dtype=torch.long)
        if cand_ids.numel() == 0:
            raise InputError("the tokenizer's vocabulary has no whole-word entries to use as replacements")
        queries = torch.empty((len(words), embeddings.shape[1]), dtype=torch.float32)
        exclude = torch.full((len(words),), -1, dtype=torch.long)
        keep = []
        for j, w in enumerate(words):
            ids = [i for i in tokenizer.convert_tokens_to_ids(word_pieces(tokenizer, w)) if i is not None and i < V]
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
                table[w] = [t for t in (id_to_word[int(i)] for i in nn[row]) if t != w]
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
