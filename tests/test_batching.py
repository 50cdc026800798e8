"""Tokenisation and length-grouped dynamic-padding batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.data import Example, encode, make_loader, set_loader_epoch


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def _examples(n: int, seed: int = 0, pairs: bool = False) -> list[Example]:
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "movie", "the", "plot", "is", "not", "very", "fun", "actors"]
    out = []
    for i in range(n):
        a = " ".join(rng.choice(words, size=int(rng.integers(1, 40))))
        b = " ".join(rng.choice(words, size=int(rng.integers(1, 20)))) if pairs else None
        out.append(Example(a, b, int(rng.integers(0, 2)), i + 2))
    return out


def test_encode_matches_one_by_one(tokenizer) -> None:
    examples = _examples(30, pairs=True)
    # the tokenizer's own pair rule (TinyBERT's, the default, is checked in test_pair_truncation.py)
    enc = encode(tokenizer, examples, max_length=24, chunk_size=7, pair_truncation="longest_first")
    for i, ex in enumerate(examples):
        ref = tokenizer(ex.text_a, ex.text_b, truncation=True, max_length=24)
        assert enc.input_ids[i] == ref["input_ids"] and enc.token_type_ids[i] == ref["token_type_ids"]
    assert enc.lengths.max() == 24 and enc.lengths.min() < 24
    assert enc.labels.dtype == np.int64 and list(enc.labels) == [e.label for e in examples]
    single = encode(tokenizer, [Example("hello world", None, 0.5, 1)])
    assert single.input_ids[0][0] == tokenizer.cls_token_id and single.labels.dtype == np.float32


@pytest.mark.parametrize("shuffle,group", [(True, True), (True, False), (False, True), (False, False)])
def test_every_example_once_and_padding(tokenizer, shuffle: bool, group: bool) -> None:
    examples = _examples(203)
    enc = encode(tokenizer, examples, max_length=32)
    loader = make_loader(enc, 8, shuffle=shuffle, seed=3, group_by_length=group, mega_batch_mult=5)
    seen: list[int] = []
    for batch in loader:
        idx = batch["index"].tolist()
        seen += idx
        lengths = enc.lengths[idx]
        assert batch["input_ids"].shape == (len(idx), lengths.max())  # padded to the batch max only
        assert batch["attention_mask"].sum(1).tolist() == lengths.tolist()
        for r, i in enumerate(idx):
            assert batch["input_ids"][r, : lengths[r]].tolist() == enc.input_ids[i]
            assert (batch["input_ids"][r, lengths[r]:] == tokenizer.pad_token_id).all()
        assert batch["labels"].tolist() == [examples[i].label for i in idx]
    assert sorted(seen) == list(range(203))  # no drop, no duplicate
    sizes = [len(b) for b in loader.batch_sampler]
    assert sizes == [8] * 25 + [3]  # only the last batch is short
    assert len(loader) == 26
    if not shuffle:
        assert seen == (sorted(seen, key=lambda i: -enc.lengths[i]) if group else list(range(203)))


def test_deterministic_and_grouped(tokenizer) -> None:
    enc = encode(tokenizer, _examples(400, seed=1), max_length=64)

    def order(seed: int, epoch: int = 0, group: bool = True) -> list[list[int]]:
        loader = make_loader(enc, 16, shuffle=True, seed=seed, group_by_length=group)
        set_loader_epoch(loader, epoch)
        return [b["index"].tolist() for b in loader]

    assert order(0) == order(0)
    assert order(0) != order(1) and order(0) != order(0, epoch=1)
    # the first batches are not simply the longest: batch order is shuffled
    lengths = [int(enc.lengths[b].max()) for b in order(0)]
    assert lengths != sorted(lengths, reverse=True)

    def padding(batches: list[list[int]]) -> float:
        return sum(int(enc.lengths[b].max()) * len(b) - int(enc.lengths[b].sum()) for b in batches)

    # grouping within mega-batches removes most of the padding of random batches
    assert padding(order(0)) < 0.25 * padding(order(0, group=False))


def test_fixed_length(tokenizer) -> None:
    enc = encode(tokenizer, _examples(20), max_length=128)
    batch = next(iter(make_loader(enc, 8, shuffle=False, group_by_length=False, fixed_length=128)))
    assert batch["input_ids"].shape == (8, 128) and batch["attention_mask"].sum().item() == enc.lengths[:8].sum()
    with pytest.raises(ValueError, match="fixed_length=8 is shorter"):
        make_loader(enc, 8, shuffle=False, fixed_length=8)


def test_accelerate_prepare_keeps_batches(tokenizer) -> None:
    from accelerate import Accelerator

    enc = encode(tokenizer, _examples(100, seed=2), max_length=32)
    plain = make_loader(enc, 10, shuffle=True, seed=5)
    prepared = Accelerator(cpu=True).prepare(make_loader(enc, 10, shuffle=True, seed=5))
    for epoch in range(2):
        set_loader_epoch(plain, epoch)
        set_loader_epoch(prepared, epoch)
        a = [b["index"].tolist() for b in plain]
        b = [b["index"].tolist() for b in prepared]
        assert a == b
    assert isinstance(b[0], list) and torch.is_tensor(next(iter(prepared))["input_ids"])


def test_pad_to_max_length_shapes(tokenizer) -> None:
    enc = encode(tokenizer, _examples(37, pairs=True), max_length=48)
    dynamic = list(make_loader(enc, 8, shuffle=False))
    padded = list(make_loader(enc, 8, shuffle=False, pad_to_max_length=True))
    assert [b["index"].tolist() for b in dynamic] == [b["index"].tolist() for b in padded]
    for d, p in zip(dynamic, padded, strict=True):
        assert p["input_ids"].shape == (len(p["index"]), 48)
        assert p["attention_mask"].sum(1).tolist() == enc.lengths[p["index"].numpy()].tolist()
        width = d["input_ids"].shape[1]
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(p[key][:, :width], d[key]) and not p[key][:, width:].any()
    assert min(d["input_ids"].shape[1] for d in dynamic) < 48  # the default pads each batch to its longest
    assert make_loader(enc, 8, shuffle=False, pad_to_max_length=True, fixed_length=48) is not None
    with pytest.raises(ValueError, match="contradicts"):
        make_loader(enc, 8, shuffle=False, pad_to_max_length=True, fixed_length=64)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_pad_to_max_length_same_outputs(tokenizer, tiny_bert, attn: str) -> None:
    from confdistill.models import load_classifier

    model, _ = load_classifier(tiny_bert(), attn_implementation=attn)
    enc = encode(tokenizer, _examples(24, seed=4, pairs=True), max_length=64)
    outputs = {}
    for pad in (False, True):
        batch = next(iter(make_loader(enc, 24, shuffle=False, pad_to_max_length=pad)))
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            outputs[pad] = (model(**inputs, output_hidden_states=True), batch["attention_mask"].bool())
    (dyn, mask), (pad, _) = outputs[False], outputs[True]
    assert pad.hidden_states[0].shape[1] == 64 and dyn.hidden_states[0].shape[1] < 64
    torch.testing.assert_close(pad.logits, dyn.logits, rtol=0, atol=1e-5)
    for h_dyn, h_pad in zip(dyn.hidden_states, pad.hidden_states, strict=True):
        real = mask  # real tokens only: padded positions have no meaning
        torch.testing.assert_close(h_pad[:, : h_dyn.shape[1]][real], h_dyn[real], rtol=0, atol=1e-5)
