"""Loading HF and TinyBERT-format directories, vocabulary checks, saving."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.errors import InputError
from confdistill.models import check_same_vocab, load_classifier, load_tokenizer, save_classifier

SENTENCES = ["a charming and often affecting journey .", "unflinchingly bleak and desperate",
             "the plot is not very fun , but the actors are good"]


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def _reference(path: Path):
    from transformers import BertForSequenceClassification, BertTokenizerFast

    model = BertForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    return model, BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)


def _tinybert_release(src: Path, out: Path, *, config_name: str = "bert_config.json",
                      legacy_file: bool = False) -> Path:
    """A pytorch-pretrained-bert style checkpoint built from an HF tiny BERT by renaming keys."""
    from safetensors.torch import load_file

    state = load_file(src / "model.safetensors")
    renamed = {}
    for key, tensor in state.items():
        if key.endswith("position_ids"):
            continue
        if "LayerNorm" in key:
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[key] = tensor.clone()
    hidden = renamed["bert.embeddings.word_embeddings.weight"].shape[1]
    for i in range(3):  # TinyBERT's stage-1 projections travel with its checkpoints
        renamed[f"fit_denses.{i}.weight"] = torch.randn(768, hidden)
        renamed[f"fit_denses.{i}.bias"] = torch.zeros(768)
    out.mkdir(parents=True)
    # the legacy (pre-zip) serialisation of torch < 1.6, as TinyBERT's 2019 releases
    torch.save(renamed, out / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy_file)
    cfg = json.loads((src / "config.json").read_text())
    legacy = {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "intermediate_size", "hidden_act", "hidden_dropout_prob",
                                  "attention_probs_dropout_prob", "max_position_embeddings",
                                  "type_vocab_size", "initializer_range")}
    legacy.update({"model_type": "tiny_bert", "pre_trained": "", "training": "", "emb_size": hidden})
    (out / config_name).write_text(json.dumps(legacy))
    shutil.copy(src / "vocab.txt", out / "vocab.txt")  # vocab.txt only, no tokenizer.json
    return out


def test_hf_directory_same_logits_as_transformers(tiny_bert: Callable[..., Path]) -> None:
    path = tiny_bert(num_labels=3)
    model, tokenizer = load_classifier(path)
    ref_model, ref_tok = _reference(path)
    assert not model.training and model.config.num_labels == 3
    assert model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(_logits(model, tokenizer), _logits(ref_model, ref_tok), rtol=1e-5, atol=1e-5)
    report = model.confdistill_load_report
    assert report.format == "huggingface" and not report.fresh_head
    eager, _ = load_classifier(path, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"


@pytest.mark.parametrize("config_name", ["bert_config.json", "config.json"])
def test_tinybert_release_format(tiny_bert: Callable[..., Path], tmp_path: Path, config_name: str) -> None:
    src = tiny_bert()
    release = _tinybert_release(src, tmp_path / "tinybert", config_name=config_name,
                                legacy_file=config_name == "bert_config.json")
    model, tokenizer = load_classifier(release)
    ref_model, ref_tok = _reference(src)
    report = model.confdistill_load_report
    assert report.format == "tinybert" and not report.fresh_head
    assert report.ignored_keys == sorted(f"fit_denses.{i}.{p}" for i in range(3) for p in ("bias", "weight"))
    # tokenizer from vocab.txt alone, detected as uncased
    assert tokenizer("Hello World")["input_ids"] == ref_tok("Hello World")["input_ids"]
    # TinyBERT's head on the same weights: classifier(relu(pooled)), not transformers' classifier(pooled)
    batch = ref_tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ref_model.classifier(torch.relu(ref_model.bert(**batch).pooler_output))
    assert type(model).__name__ == "TinyBertForSequenceClassification" and report.head == "tinybert"
    torch.testing.assert_close(_logits(model, tokenizer), expected, rtol=1e-5, atol=1e-5)
    sd, ref_sd = model.state_dict(), ref_model.state_dict()
    for key in ref_sd:
        torch.testing.assert_close(sd[key], ref_sd[key], rtol=0, atol=0)


def test_bare_encoder_gets_seeded_head(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    full = BertForSequenceClassification.from_pretrained(tiny_bert())
    full.bert.save_pretrained(tmp_path / "enc")  # a BertModel, as MiniLM ships
    load_tokenizer(tiny_bert()).save_pretrained(tmp_path / "enc")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = load_classifier(tmp_path / "enc", num_labels=3, seed=7)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    b, _ = load_classifier(tmp_path / "enc", num_labels=3, seed=7)
    c, _ = load_classifier(tmp_path / "enc", num_labels=3, seed=8)
    assert a.confdistill_load_report.fresh_head and a.classifier.weight.shape == (3, 32)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    torch.testing.assert_close(a.bert.encoder.layer[1].output.dense.weight,
                               full.bert.encoder.layer[1].output.dense.weight, rtol=0, atol=0)


def test_minilm_loads(minilm_dir: Path) -> None:
    model, tokenizer = load_classifier(minilm_dir, num_labels=2)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.confdistill_load_report.fresh_head and len(tokenizer) == 30522


def test_bad_directories(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model directory does not exist"):
        load_classifier(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no config\.json or bert_config\.json"):
        load_classifier(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert(), broken)
    (broken / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="unreadable weights file"):
        load_classifier(broken)
    with pytest.raises(InputError, match=r"classifier has 2 output.*task needs 3"):
        load_classifier(tiny_bert(), num_labels=3)


def test_vocab_check(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    teacher = load_tokenizer(tiny_bert())
    check_same_vocab(teacher, load_tokenizer(tiny_bert(layers=1)), "t", "s")  # same vocabulary: fine
    tokens = (tiny_bert() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    swapped = tokens.copy()
    swapped[2000] = "zzzunknownzzz"
    (tmp_path / "v1.txt").write_text("\n".join(swapped) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"id 2000 is '.+' for the teacher but 'zzzunknownzzz'"):
        check_same_vocab(teacher, BertTokenizerFast(vocab=str(tmp_path / "v1.txt")), "t", "s")
    (tmp_path / "v2.txt").write_text("\n".join(tokens[:-5]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="30522 vs 30517 tokens"):
        check_same_vocab(teacher, BertTokenizerFast(vocab=str(tmp_path / "v2.txt")), "t", "s")
    cased = BertTokenizerFast(vocab=str(tiny_bert() / "vocab.txt"), do_lower_case=False)
    with pytest.raises(InputError, match="different normalisation"):
        check_same_vocab(teacher, cased, "t", "s")


def test_save_roundtrip_and_vocab(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    model, tokenizer = load_classifier(tiny_bert())
    out = save_classifier(model, tokenizer, tmp_path / "saved")
    assert (out / "vocab.txt").read_bytes() == (tiny_bert() / "vocab.txt").read_bytes()
    again, tok2 = load_classifier(out)
    torch.testing.assert_close(_logits(again, tok2), _logits(model, tokenizer), rtol=0, atol=0)

    class Exploding:
        def save_pretrained(self, path: Path) -> None:
            (Path(path) / "config.json").write_text("{}")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_classifier(Exploding(), tokenizer, out)
    # the earlier model is intact, no temporary left behind
    torch.testing.assert_close(_logits(load_classifier(out)[0], tok2), _logits(model, tokenizer))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
