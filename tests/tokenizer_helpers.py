"""Tiny models whose tokenizers differ from tests/conftest.py's WordPiece ``tiny_bert``.

``tiny_roberta(out, texts)``: a RoBERTa-style classifier (2 layers, hidden 32, random weights) with a
byte-level BPE tokenizer trained by ``tokenizers`` on ``texts`` — the usual "teacher of another
family" of the cross-tokenizer tests (stage 2 across tokenizers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def byte_level_tokenizer(texts: Sequence[str], *, vocab_size: int = 600, max_length: int = 128) -> object:
    """A RobertaTokenizerFast whose byte-level BPE vocabulary was trained on ``texts``."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
                            show_progress=False)
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")),
                                                      ("<s>", bpe.token_to_id("<s>")))
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=max_length, bos_token="<s>",
                                eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>")


def tiny_roberta(out: Path, texts: Sequence[str], *, num_labels: int = 2, seed: int = 0,
                 layers: int = 2, hidden: int = 32, max_length: int = 128, favour: int | None = None) -> Path:
    """Save a random RoBERTa classifier with a byte-level BPE tokenizer trained on ``texts`` in ``out``.

    ``favour``: a class whose output bias is raised by 3, so that the random teacher predicts it on
    most texts (an analysis then has rows that both models classify correctly)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = byte_level_tokenizer(texts, max_length=max_length)
    config = AutoConfig.for_model("roberta", vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=2, intermediate_size=2 * hidden,
                                  max_position_embeddings=max_length + 2, type_vocab_size=1,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, num_labels=num_labels)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    if favour is not None:
        with torch.no_grad():
            model.classifier.out_proj.bias[favour] += 3.0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
