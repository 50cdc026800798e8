"""Pair truncation is TinyBERT's ``_truncate_seq_pair``, checked against a direct transcription.

The reference below transcribes TinyBERT's ``data_processing.py`` (``convert_examples_to_features``
and ``_truncate_seq_pair``) on word-piece *tokens* (``tokenizer.tokenize``), an independent path
from :func:`encode`'s batched encodings.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from confdistill.data import Example, encode, load_split, truncate_seq_pair


def _truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """TinyBERT's function, verbatim in behaviour: in place, pop from the longer, b on a tie."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def tinybert_features(tokenizer, text_a: str, text_b: str | None, max_seq_length: int) -> tuple[list[int], list[int]]:
    """``convert_examples_to_features`` for one example: (input_ids, segment_ids) before padding."""
    tokens_a = tokenizer.tokenize(text_a)
    tokens_b = None
    if text_b:
        tokens_b = tokenizer.tokenize(text_b)
        _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    elif len(tokens_a) > max_seq_length - 2:
        tokens_a = tokens_a[:(max_seq_length - 2)]
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]  # noqa: RUF005 (kept as TinyBERT writes it)
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]  # noqa: RUF005
        segment_ids += [1] * (len(tokens_b) + 1)
    return tokenizer.convert_tokens_to_ids(tokens), segment_ids


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path):
    from confdistill.models import load_tokenizer

    return load_tokenizer(minilm_dir)


def test_closed_form_equals_the_loop() -> None:
    for la, lb, budget in itertools.product(range(25), range(25), range(1, 30)):
        a, b = list(range(la)), list(range(lb))
        _truncate_seq_pair(a, b, budget)
        assert truncate_seq_pair(la, lb, budget) == (len(a), len(b)), (la, lb, budget)


def _words(n: int, word: str) -> str:
    return " ".join([word] * n)


CASES = [
    # (text_a, text_b, max_length)
    (_words(5, "good"), _words(5, "bad"), 10),      # tie, odd budget 7: TinyBERT keeps 4 + 3
    (_words(3, "good"), _words(3, "bad"), 8),       # tie, odd budget 5
    (_words(6, "good"), _words(6, "bad"), 12),      # tie, even budget 9 -> 5 + 4
    (_words(2, "good"), _words(2, "bad"), 6),       # tie down to 2 + 1
    (_words(1, "good"), _words(9, "bad"), 4),       # budget 1: b cut down, then a kept
    (_words(20, "good"), _words(2, "bad"), 12),     # long a
    (_words(2, "good"), _words(20, "bad"), 12),     # long b
    (_words(12, "good"), _words(9, "bad"), 16),     # both long, a longer
    ("", _words(9, "bad"), 8),                      # empty a
    (_words(9, "good"), " ", 8),                    # b with no tokens: budget - 3, no second [SEP]
    (_words(9, "good"), "", 8),                     # empty text_b: a single text (budget - 2)
    ("unflinchingly bleak and desperate", "the actors' performances are charming", 11),  # word pieces
    (_words(3, "good"), _words(2, "bad"), 64),      # no truncation
]


@pytest.mark.parametrize("text_a,text_b,max_length", CASES)
def test_encode_matches_tinybert(tokenizer, text_a: str, text_b: str, max_length: int) -> None:
    enc = encode(tokenizer, [Example(text_a, text_b, 0, 2)], max_length=max_length)
    ids, types = tinybert_features(tokenizer, text_a, text_b, max_length)
    assert enc.input_ids[0] == ids and enc.token_type_ids[0] == types
    assert len(ids) <= max_length and enc.pair_truncation == "tinybert"


def test_many_pairs_in_one_batch(tokenizer) -> None:
    words = ["good", "bad", "movie", "unbelievably", "plot", "is", "not", "fun", "!"]
    examples = [Example(" ".join(words[: (i * 7) % 9 + (i % 5)] * (i % 4 + 1)),
                        " ".join(words[: (i * 5) % 9] * (i % 3 + 1)), i % 2, i + 2) for i in range(120)]
    for max_length in (9, 16, 25):
        enc = encode(tokenizer, examples, max_length=max_length, chunk_size=17)
        for i, ex in enumerate(examples):
            assert (enc.input_ids[i], enc.token_type_ids[i]) == tinybert_features(
                tokenizer, ex.text_a, ex.text_b, max_length), (i, max_length)


def test_longest_first_differs_on_ties(tokenizer) -> None:
    """The tokenizer's own rule, still available, keeps the extra token of an odd budget in b."""
    ex = Example(_words(5, "good"), _words(5, "bad"), 0, 2)
    good, bad = tokenizer.convert_tokens_to_ids(["good", "bad"])
    ours = encode(tokenizer, [ex], max_length=10).input_ids[0]
    hf = encode(tokenizer, [ex], max_length=10, pair_truncation="longest_first").input_ids[0]
    assert (ours.count(good), ours.count(bad)) == (4, 3)
    assert (hf.count(good), hf.count(bad)) == (3, 4)
    assert hf == tokenizer(ex.text_a, ex.text_b, truncation="longest_first", max_length=10)["input_ids"]
    with pytest.raises(ValueError, match="pair_truncation"):
        encode(tokenizer, [ex], pair_truncation="only_first")


@pytest.mark.parametrize("task", ["RTE", "MRPC"])
def test_real_glue_pairs(tokenizer, glue_dir: Path, task: str) -> None:
    examples = load_split(task, glue_dir, "dev")[:400]
    enc = encode(tokenizer, examples, max_length=48)
    cut = 0
    for i, ex in enumerate(examples):
        ref = tinybert_features(tokenizer, ex.text_a, ex.text_b, 48)
        assert (enc.input_ids[i], enc.token_type_ids[i]) == ref, (task, ex.line)
        cut += len(ref[0]) == 48
    assert cut > 20  # the check covers many truncated pairs


def test_other_templates_are_followed(tokenizer) -> None:
    """The special tokens come from the tokenizer's template (here RoBERTa-like: a double separator)."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tokenizer)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    post = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] [SEP] $B:1 [SEP]:1",
                              special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.backend_tokenizer.post_processor = post
    examples = [Example(_words(7, "good"), _words(4, "bad"), 0, 2), Example("fun", " ", 0, 3)]
    enc = encode(tok, examples, max_length=10)
    good, bad = tok.convert_tokens_to_ids(["good", "bad"])
    # 4 special tokens: a budget of 6, cut by TinyBERT's rule from (7, 4) to (3, 3)
    assert enc.input_ids[0] == [cls, *[good] * 3, sep, sep, *[bad] * 3, sep]
    assert enc.token_type_ids[0] == [0] * 6 + [1] * 4
    assert enc.input_ids[1] == [cls, tok.convert_tokens_to_ids("fun"), sep]
