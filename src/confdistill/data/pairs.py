"""TinyBERT's pair features: ``_truncate_seq_pair`` and the ``[CLS] a [SEP] b [SEP]`` layout.

TinyBERT's ``convert_examples_to_features`` (``data_processing.py``) tokenises both texts without
special tokens, truncates them with ``_truncate_seq_pair`` to ``max_seq_length - 3`` tokens
(while too long: drop the last token of the longer text, of ``b`` on a tie) and builds
``[CLS] a [SEP] b [SEP]`` with segment ids 0…0 1…1 — with no ``b`` part (no second ``[SEP]``)
when ``b`` has no tokens. :func:`encode_pairs_tinybert` does this for a batch of pairs, with the
special tokens of the tokenizer's own template (:class:`_PairLayout`; BERT's is TinyBERT's).
Used by :func:`confdistill.data.batching.encode`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["encode_pairs_tinybert", "truncate_seq_pair"]


def truncate_seq_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of ``a`` and ``b`` TinyBERT's ``_truncate_seq_pair`` keeps for a ``budget``.

    Its loop — while ``len(a) + len(b) > budget``: drop the last token of ``a`` if it is the
    longer, else of ``b`` (so ``b`` on a tie) — in closed form: cut the longer down to the
    shorter, then alternately ``b``, ``a``, ``b``…
    """
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    if len_a > len_b:
        take = min(len_a - len_b, excess)
        len_a -= take
    else:
        take = min(len_b - len_a, excess)
        len_b -= take
    rest = excess - take
    return len_a - rest // 2, len_b - (rest + 1) // 2


class _PairLayout:
    """``[CLS] a [SEP] (b [SEP])`` and token types as the tokenizer's template builds them.

    The fast tokenizer's post-processor is run once on a probe pair (and a probe single) to learn
    which special tokens go before, between and after the texts and the token types of each part;
    building is then list concatenation (the post-processor per example costs ~40 µs). Tokenizers
    without a post-processor get BERT's layout from ``cls_token_id`` / ``sep_token_id``.
    """

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        post = getattr(backend, "post_processor", None)
        learnt = self._learn(backend, post) if post is not None else None
        if learnt is None:
            cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
            if cls is None or sep is None:
                raise ValueError("the tokenizer has no [CLS]/[SEP] tokens: cannot build BERT pairs")
            learnt = ([[(cls, 0)], [(sep, 0)], [(sep, 1)]], [0, 1]), ([[(cls, 0)], [(sep, 0)]], [0])
        self.pair, self.single = learnt
        #: Special tokens of a pair (3 for BERT: the budget of the texts is max_length - 3).
        self.pair_specials = sum(len(slot) for slot in self.pair[0])

    @staticmethod
    def _learn(backend: Any, post: Any) -> Any:
        """(pair parts, single parts) from the post-processor, or None if no probe word works."""
        for word in ("a", "the", "x", "1"):
            one = backend.encode(word, add_special_tokens=False)
            if len(one.ids) != 1 or any(one.special_tokens_mask):
                continue
            two = backend.encode(f"{word} {word}", add_special_tokens=False)
            parts = []
            for pair in (True, False):
                merged = post.process(two, one if pair else None, add_special_tokens=True)
                slots: list[list[tuple[int, int]]] = [[]]
                text_types: list[int] = []
                in_text = False
                for tok, typ, special in zip(merged.ids, merged.type_ids, merged.special_tokens_mask, strict=True):
                    if special:
                        if in_text:
                            slots.append([])
                        slots[-1].append((tok, typ))
                        in_text = False
                    elif not in_text:
                        text_types.append(typ)
                        in_text = True
                if in_text:
                    slots.append([])
                parts.append((slots, text_types))
            if [len(p[1]) for p in parts] == [2, 1]:
                return tuple(parts)
        return None

    def __call__(self, ids_a: list[int], ids_b: list[int]) -> tuple[list[int], list[int]]:
        """Input ids and token types; an empty ``ids_b`` gives the single-text layout (TinyBERT's)."""
        slots, text_types = self.pair if ids_b else self.single
        texts = [ids_a, ids_b] if ids_b else [ids_a]
        ids: list[int] = []
        types: list[int] = []
        for k, slot in enumerate(slots):
            ids += [t for t, _ in slot]
            types += [y for _, y in slot]
            if k < len(texts):
                ids += texts[k]
                types += [text_types[k]] * len(texts[k])
        return ids, types


def encode_pairs_tinybert(tokenizer: Any, texts_a: list[str], texts_b: list[str],
                           max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """TinyBERT's pair features (see the module docstring), in one batched tokenizer call per side."""
    kwargs: dict[str, Any] = dict(add_special_tokens=False, return_attention_mask=False,
                                  return_token_type_ids=False)
    all_a, all_b = tokenizer(texts_a, **kwargs)["input_ids"], tokenizer(texts_b, **kwargs)["input_ids"]
    layout = _PairLayout(tokenizer)
    budget = max_length - layout.pair_specials
    ids_out: list[list[int]] = []
    types_out: list[list[int]] = []
    for ids_a, ids_b in zip(all_a, all_b, strict=True):
        keep_a, keep_b = truncate_seq_pair(len(ids_a), len(ids_b), budget)
        # A b left without tokens: TinyBERT's `if tokens_b:` adds no b segment, no second [SEP].
        ids, types = layout(list(ids_a[:keep_a]), list(ids_b[:keep_b]))
        ids_out.append(ids)
        types_out.append(types)
    return ids_out, types_out
