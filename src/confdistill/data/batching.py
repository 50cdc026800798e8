"""Tokenisation once per split, and batches with as little padding as possible.

* :func:`encode` runs the fast tokenizer over a whole split in large batched calls (truncation to
  ``max_length``), *without* padding: each example keeps its own length. Pairs are truncated by
  TinyBERT's rule (:func:`truncate_seq_pair`, see below) by default.
* :func:`make_loader` returns a plain :class:`torch.utils.data.DataLoader` driven by
  :class:`LengthGroupedBatchSampler` and a collate function that pads each batch only to its own
  longest example, or — ``pad_to_max_length=True``, the research code's way — every batch to
  ``max_length`` (the attention mask makes the two give the same outputs on the real tokens).

Pair truncation, ``pair_truncation="tinybert"`` (default): exactly TinyBERT's
``convert_examples_to_features`` (``data_processing.py``): both texts are tokenised without special
tokens; while ``len(a) + len(b) > max_length - 3`` (3 special tokens; the template's count for
other tokenizers) a token is dropped from the end of the longer
one, from ``b`` on a tie (``_truncate_seq_pair``); then ``[CLS] a [SEP] b [SEP]`` (types 0…0 1…1),
through the tokenizer's own template. As there, an empty ``text_b`` makes a single-text example
(budget ``max_length - 2``) and a ``b`` left with no tokens gets no second ``[SEP]``. The
tokenizer's ``longest_first`` (``pair_truncation="longest_first"``, the former behaviour) differs
on odd budgets: from a tie it keeps the extra token in ``b`` where TinyBERT keeps it in ``a``.

Length grouping, with ``shuffle=True`` (training): the examples are permuted (seeded), cut into
*mega-batches* of ``mega_batch_mult × batch_size`` examples, each mega-batch is sorted by length
and cut into batches, and the order of all batches is shuffled. Every batch is thus a random
draw of similar-length examples (the same examples as TinyBERT's random batches in
distribution, up to the grouping), padding shrinks to a few tokens, and no example is dropped:
only the epoch's last batch may be smaller. With ``shuffle=False`` (evaluation, prediction) the
whole split is sorted by length; ``index`` in each batch maps rows back to file order.

Determinism: the order depends only on ``(seed, epoch)``; call ``set_epoch(epoch)`` on the batch
sampler (``accelerate`` does this itself on prepared loaders, through ``batch_sampler.sampler``)
to reshuffle each epoch. ``accelerate.prepare`` shards the loader by whole batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from confdistill.data.glue import Example
from confdistill.data.pairs import encode_pairs_tinybert, truncate_seq_pair

__all__ = [
    "PAIR_TRUNCATIONS",
    "Collator",
    "EncodedSplit",
    "LengthGroupedBatchSampler",
    "collate_width",
    "encode",
    "make_loader",
    "set_loader_epoch",
    "truncate_seq_pair",
]

#: Pair truncation rules of :func:`encode`.
PAIR_TRUNCATIONS = ("tinybert", "longest_first")


@dataclass
class EncodedSplit:
    """A tokenised split, unpadded.

    ``input_ids[i]`` / ``token_type_ids[i]``: token ids of example ``i`` (length ``lengths[i]``
    ≤ ``max_length``, ``[CLS] a [SEP] (b [SEP])``); ``labels``: shape ``(n,)``, int64 class
    indices or float32 scores (``is_regression``); ``pair_truncation``: the rule pairs were cut
    with (part of what the token ids depend on, e.g. for cache keys).
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray
    pad_token_id: int = 0
    max_length: int = 128
    pair_truncation: str = "tinybert"
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64,
                                   count=len(self.input_ids))
        if len(self.labels) != len(self.input_ids) or len(self.token_type_ids) != len(self.input_ids):
            raise ValueError("input_ids, token_type_ids and labels must have the same length")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def is_regression(self) -> bool:
        return bool(np.issubdtype(self.labels.dtype, np.floating))

    def subset(self, indices: Sequence[int]) -> EncodedSplit:
        """The examples at ``indices`` (in that order), e.g. a few hundred rows for a quick run."""
        idx = list(indices)
        return EncodedSplit([self.input_ids[i] for i in idx], [self.token_type_ids[i] for i in idx],
                            self.labels[idx], self.pad_token_id, self.max_length, self.pair_truncation)


def encode(tokenizer: Any, examples: Sequence[Example], max_length: int = 128,
           *, chunk_size: int = 4096, pair_truncation: str = "tinybert") -> EncodedSplit:
    """Tokenise ``examples`` (fast tokenizer, batched, truncated to ``max_length``, no padding).

    Pairs are encoded as ``[CLS] a [SEP] b [SEP]`` with token types 0/1 and truncated by
    ``pair_truncation``: ``"tinybert"`` (TinyBERT's ``_truncate_seq_pair``, the default) or
    ``"longest_first"`` (the tokenizer's rule); see the module docstring.
    """
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4, got {max_length}")
    if pair_truncation not in PAIR_TRUNCATIONS:
        raise ValueError(f"pair_truncation must be one of {PAIR_TRUNCATIONS}, got {pair_truncation!r}")
    tinybert = pair_truncation == "tinybert"
    n = len(examples)
    input_ids: list[list[int]] = [[] for _ in range(n)]
    token_type_ids: list[list[int]] = [[] for _ in range(n)]
    # Single texts and pairs need separate calls (text_pair cannot hold None). TinyBERT makes a
    # single text of a pair whose text_b is empty (`if example.text_b:`).
    singles = [i for i, ex in enumerate(examples) if ex.text_b is None or (tinybert and not ex.text_b)]
    chosen = set(singles)
    pairs = [i for i in range(n) if i not in chosen]
    for group, is_pair in ((singles, False), (pairs, True)):
        for start in range(0, len(group), chunk_size):
            idx = group[start:start + chunk_size]
            texts = [examples[i].text_a for i in idx]
            if is_pair and tinybert:
                ids, types = encode_pairs_tinybert(tokenizer, texts, [str(examples[i].text_b) for i in idx],
                                                    max_length)
                for j, i in enumerate(idx):
                    input_ids[i], token_type_ids[i] = ids[j], types[j]
                continue
            kwargs: dict[str, Any] = dict(truncation="longest_first" if is_pair else True,
                                          max_length=max_length, padding=False,
                                          return_attention_mask=False, return_token_type_ids=True)
            if is_pair:
                out = tokenizer(texts, [examples[i].text_b for i in idx], **kwargs)
            else:
                out = tokenizer(texts, **kwargs)
            for j, i in enumerate(idx):
                input_ids[i] = list(out["input_ids"][j])
                token_type_ids[i] = list(out["token_type_ids"][j])
    if n and isinstance(examples[0].label, float):
        labels = np.asarray([ex.label for ex in examples], dtype=np.float32)
    else:
        labels = np.asarray([ex.label for ex in examples], dtype=np.int64)
    pad = tokenizer.pad_token_id
    return EncodedSplit(input_ids, token_type_ids, labels, 0 if pad is None else int(pad), max_length,
                        pair_truncation)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices: every index exactly once per epoch (see the module docstring).

    ``lengths``: shape ``(n,)`` token counts. ``shuffle`` seeded by ``seed + epoch``;
    ``group_by_length=False`` gives plain (shuffled or sequential) batches.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, shuffle: bool,
                 seed: int = 0, group_by_length: bool = True, mega_batch_mult: int = 50) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.group_by_length = bool(group_by_length)
        self.mega_batch_mult = max(1, int(mega_batch_mult))
        self.epoch = 0
        # accelerate propagates set_epoch through `batch_sampler.sampler` of a sharded loader.
        self.sampler = self
        self.drop_last = False

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch`` (same seed and epoch → same batches)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch, in order."""
        n = len(self.lengths)
        bs = self.batch_size
        if not self.shuffle:
            order = np.arange(n)
            if self.group_by_length:
                # Longest first: a memory problem shows on the first batch; stable → deterministic.
                order = np.argsort(-self.lengths, kind="stable")
            return [order[i:i + bs].tolist() for i in range(0, n, bs)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        if not self.group_by_length:
            return [perm[i:i + bs].tolist() for i in range(0, n, bs)]
        mega = bs * self.mega_batch_mult
        batches: list[list[int]] = []
        for start in range(0, n, mega):
            chunk = perm[start:start + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + bs].tolist() for i in range(0, len(chunk), bs))
        order = rng.permutation(len(batches))
        shuffled = [batches[i] for i in order]
        # At most one batch is short (the tail of the last mega-batch): keep it last, as in plain
        # random batching, so that "steps × batch_size" counts examples until the epoch's end.
        return [b for b in shuffled if len(b) == bs] + [b for b in shuffled if len(b) < bs]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()


class _IndexDataset(Dataset[int]):
    """Items are row numbers; the collator looks the tokens up (one list lookup per example)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return int(i)


class Collator:
    """Pads a list of row numbers of ``encoded`` into a batch of tensors.

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, shape ``(b, L)`` with
    ``L`` the longest example of the batch, or ``fixed_length``), ``labels`` (``(b,)``, int64 or
    float32) and ``index`` (``(b,)`` int64 row numbers in the split).
    """

    def __init__(self, encoded: EncodedSplit, fixed_length: int | None = None) -> None:
        self.encoded = encoded
        self.fixed_length = fixed_length
        if fixed_length is not None and len(encoded) and int(encoded.lengths.max()) > fixed_length:
            raise ValueError(f"fixed_length={fixed_length} is shorter than the longest example "
                             f"({int(encoded.lengths.max())} tokens); encode with max_length ≤ fixed_length")

    def __call__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        enc = self.encoded
        idx = np.asarray(rows, dtype=np.int64)
        lengths = enc.lengths[idx]
        width = self.fixed_length if self.fixed_length is not None else int(lengths.max())
        ids = np.full((len(idx), width), enc.pad_token_id, dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            ids[r, : lengths[r]] = enc.input_ids[i]
            types[r, : lengths[r]] = enc.token_type_ids[i]
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.from_numpy(types),
            "labels": torch.from_numpy(enc.labels[idx]),
            "index": torch.from_numpy(idx),
        }


def make_loader(
    encoded: EncodedSplit,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    group_by_length: bool = True,
    fixed_length: int | None = None,
    mega_batch_mult: int = 50,
    num_workers: int = 0,
    pad_to_max_length: bool = False,
) -> DataLoader:
    """A DataLoader over ``encoded`` with dynamic padding and length-grouped batches.

    Batches are dicts: ``input_ids``, ``attention_mask``, ``token_type_ids`` (``(b, L)``),
    ``labels`` and ``index`` (``(b,)``; ``index`` = row numbers of the examples, to look up
    cached teacher outputs). ``pad_to_max_length`` pads every batch to ``encoded.max_length``
    tokens (``L`` = max_length, the research code's way; default: ``L`` = the batch's longest
    example); ``fixed_length`` pads to that many tokens instead. Set ``group_by_length=False`` too
    to reproduce the research code's batches fully.
    """
    width = collate_width(encoded, fixed_length=fixed_length, pad_to_max_length=pad_to_max_length)
    sampler = LengthGroupedBatchSampler(encoded.lengths, batch_size, shuffle=shuffle, seed=seed,
                                        group_by_length=group_by_length, mega_batch_mult=mega_batch_mult)
    return DataLoader(_IndexDataset(len(encoded)), batch_sampler=sampler,
                      collate_fn=Collator(encoded, width), num_workers=num_workers)


def collate_width(encoded: EncodedSplit, *, fixed_length: int | None = None,
                  pad_to_max_length: bool = False) -> int | None:
    """The :class:`Collator` ``fixed_length`` for these options (None: dynamic padding)."""
    if pad_to_max_length:
        if fixed_length is not None and fixed_length != encoded.max_length:
            raise ValueError(f"pad_to_max_length pads to max_length={encoded.max_length}; "
                             f"fixed_length={fixed_length} contradicts it")
        return int(encoded.max_length)
    return fixed_length


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle ``loader`` (from :func:`make_loader`, prepared by accelerate or not) for ``epoch``."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    sampler = getattr(loader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
