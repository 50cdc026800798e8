"""Tiny random classifiers of every encoder family, each with a tokenizer of its own kind.

``save_tiny_family(name, out, layers=2)`` writes a Hugging Face directory (config, safetensors,
tokenizer) built with ``AutoConfig.for_model`` (2 layers, hidden 32, 2 heads by default) and a
tokenizer trained with the ``tokenizers`` library on a few hundred generated sentences: WordPiece
for BERT / DistilBERT / ELECTRA, byte-level BPE for RoBERTa and ModernBERT, Unigram
(SentencePiece-style) for XLM-RoBERTa and DeBERTa. Seconds per family. ``FAMILIES`` lists the
test names; a new family is one more entry of ``_SPECS`` (and then of ``models/families.py``).

DeBERTa appears twice: ``deberta-v2`` (a v2-xlarge-like layout: convolution after the first layer,
separate position projections ``pos_key_proj``/``pos_query_proj``, no position buckets) and
``deberta-v3`` (shared position keys, 32 position buckets — exact up to 16 tokens apart, log-spaced
beyond —, LayerNorm on the relative embeddings, no absolute
positions), so both of DisentangledSelfAttention's position paths are exercised. ModernBERT gets a
local window of 4 tokens, so its sliding-window layers really mask in test-sized inputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WORDS = [
    "the", "a", "film", "movie", "story", "plot", "acting", "music", "scene", "actor", "it", "was",
    "is", "very", "really", "quite", "not", "good", "great", "lovely", "wonderful", "funny",
    "smart", "charming", "bad", "awful", "boring", "dull", "poor", "silly", "weak", "and", "but",
    "with", "of", "to", "in", "long", "short", "new", "old", "night", "day", "house", "river",
    "city", "dog", "cat",
]


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` generated sentences over a small vocabulary (the tokenizers' training text)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + rng.choice([".", "!", ""])
            for _ in range(n)]


@dataclass(frozen=True)
class _Spec:
    model_type: str
    tokenizer: str                       # "wordpiece" | "bpe" | "unigram"
    specials: tuple[str, str, str, str, str]   # cls/bos, sep/eos, pad, unk, mask
    config: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask")


_BERT_SPECIALS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
_ROBERTA_SPECIALS = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")

_SPECS: dict[str, _Spec] = {
    "bert": _Spec("bert", "wordpiece", _BERT_SPECIALS),
    "roberta": _Spec("roberta", "bpe", _ROBERTA_SPECIALS, {"type_vocab_size": 1},
                     ("input_ids", "attention_mask")),
    "xlm-roberta": _Spec("xlm-roberta", "unigram", _ROBERTA_SPECIALS, {"type_vocab_size": 1},
                         ("input_ids", "attention_mask")),
    "electra": _Spec("electra", "wordpiece", _BERT_SPECIALS, {"embedding_size": 32}),
    "distilbert": _Spec("distilbert", "wordpiece", _BERT_SPECIALS, {}, ("input_ids", "attention_mask")),
    "modernbert": _Spec("modernbert", "bpe", _BERT_SPECIALS,
                        {"global_attn_every_n_layers": 2, "local_attention": 4},
                        ("input_ids", "attention_mask")),
    "deberta-v2": _Spec("deberta-v2", "unigram", _BERT_SPECIALS, {
        "relative_attention": True, "pos_att_type": ["p2c", "c2p"], "share_att_key": False,
        "conv_kernel_size": 3, "position_buckets": -1, "max_relative_positions": -1,
        "position_biased_input": False, "norm_rel_ebd": "layer_norm"}),
    "deberta-v3": _Spec("deberta-v2", "unigram", _BERT_SPECIALS, {
        "relative_attention": True, "pos_att_type": ["p2c", "c2p"], "share_att_key": True,
        "position_buckets": 32, "max_relative_positions": -1, "position_biased_input": False,
        "norm_rel_ebd": "layer_norm", "type_vocab_size": 0}),
}

#: Test names of the families, one pytest parameter each.
FAMILIES = tuple(_SPECS)


def _train_tokenizer(spec: _Spec) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    cls, sep, pad, unk, mask = spec.specials
    specials = [pad, unk, cls, sep, mask] if spec.tokenizer == "wordpiece" else [cls, pad, sep, unk, mask]
    if spec.tokenizer == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer: Any = trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    elif spec.tokenizer == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token=unk)
    tok.train_from_iterator(sentences(), trainer=trainer)
    cls_id, sep_id = tok.token_to_id(cls), tok.token_to_id(sep)
    if spec.specials[0] == "<s>":   # RoBERTa's pairs: <s> A </s></s> B </s>
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, cls_id), (sep, sep_id)])
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)])
    return tok


def save_tiny_family(name: str, out: Path, *, layers: int = 2, hidden: int = 32, heads: int = 2,
                     intermediate: int = 64, num_labels: int = 2, seed: int = 0, **config: Any) -> Path:
    """Write a tiny random ``name`` classifier (see the module docstring) to ``out``; returns ``out``.
    ``config``: further configuration values (e.g. ``initializer_range``)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    spec = _SPECS[name]
    tok = _train_tokenizer(spec)
    cls, sep, pad, unk, mask = spec.specials
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, cls_token=cls, sep_token=sep, pad_token=pad,
                                        unk_token=unk, mask_token=mask, model_max_length=64,
                                        model_input_names=list(spec.inputs))
    if spec.specials[0] == "<s>":
        tokenizer.add_special_tokens({"bos_token": cls, "eos_token": sep})
    sizes = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
             "intermediate_size": intermediate}
    if spec.model_type == "distilbert":
        sizes = {"dim": hidden, "n_layers": layers, "n_heads": heads, "hidden_dim": intermediate}
    ids = {"pad_token_id": tok.token_to_id(pad)}
    if spec.model_type == "modernbert":
        ids.update(cls_token_id=tok.token_to_id(cls), sep_token_id=tok.token_to_id(sep),
                   bos_token_id=tok.token_to_id(cls), eos_token_id=tok.token_to_id(sep))
    if spec.specials[0] == "<s>":
        ids.update(bos_token_id=tok.token_to_id(cls), eos_token_id=tok.token_to_id(sep))
    positions = 64 + (2 if spec.model_type in ("roberta", "xlm-roberta") else 0)
    config = AutoConfig.for_model(spec.model_type, vocab_size=tok.get_vocab_size(), num_labels=num_labels,
                                  max_position_embeddings=positions, **sizes, **ids, **{**spec.config, **config})
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
