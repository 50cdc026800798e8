"""TinyBERT-format checkpoints predict with TinyBERT's head, checked against its formulas.

The checkpoint is written as TinyBERT's ``task_distill.py`` saves one (``torch.save`` of
``TinyBertForSequenceClassification.state_dict()``: ``bert.*``, ``classifier.*``, ``fit_dense.*``;
``config.json`` as its ``BertConfig.to_json_string``; ``vocab.txt``), with random weights. The
reference is a plain-torch transcription of TinyBERT's ``transformer/modeling.py`` in float64
(BertLayerNorm eps 1e-12, erf GELU, additive mask −10000, pooler = tanh(dense(h_CLS)),
``logits = classifier(relu(pooled_output))``), independent of transformers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from confdistill.models import load_classifier, make_student, save_classifier
from confdistill.models.attention_scores import capture_attention_scores, zero_masked_scores

H, HEADS, LAYERS, INTER, LABELS, MAX_POS = 16, 2, 2, 32, 3, 32
WORDS = ["the", "movie", "plot", "is", "not", "very", "good", "bad", "fun", "actors", "a", "."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
SENTENCES = [("the movie is good .", None), ("bad", None), ("the plot is not very fun", "actors are good"),
             ("a", "the movie is very very bad .")]


def _tinybert_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names of TinyBERT's TinyBertForSequenceClassification.state_dict()."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state: dict[str, torch.Tensor] = {
        "bert.embeddings.word_embeddings.weight": rnd(len(VOCAB) + 3, H, scale=1.0),
        "bert.embeddings.position_embeddings.weight": rnd(MAX_POS, H),
        "bert.embeddings.token_type_embeddings.weight": rnd(2, H),
        "bert.embeddings.LayerNorm.weight": 1 + rnd(H, scale=0.1),
        "bert.embeddings.LayerNorm.bias": rnd(H, scale=0.1),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name, (out_f, in_f) in {"attention.self.query": (H, H), "attention.self.key": (H, H),
                                    "attention.self.value": (H, H), "attention.output.dense": (H, H),
                                    "intermediate.dense": (INTER, H), "output.dense": (H, INTER)}.items():
            state[p + name + ".weight"] = rnd(out_f, in_f)
            state[p + name + ".bias"] = rnd(out_f, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[p + ln + ".weight"] = 1 + rnd(H, scale=0.1)
            state[p + ln + ".bias"] = rnd(H, scale=0.1)
    state["bert.pooler.dense.weight"] = rnd(H, H, scale=0.6)
    state["bert.pooler.dense.bias"] = rnd(H, scale=0.3)
    state["classifier.weight"] = rnd(LABELS, H, scale=1.0)
    state["classifier.bias"] = rnd(LABELS, scale=0.1)
    state["fit_dense.weight"] = rnd(768, H)   # TinyBERT's stage-1 projection (fit_size 768)
    state["fit_dense.bias"] = torch.zeros(768)
    return state


def write_tinybert_checkpoint(out: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A directory as task_distill.py leaves it: pytorch_model.bin, config.json, vocab.txt."""
    out.mkdir(parents=True)
    state = _tinybert_state(seed)
    torch.save(state, out / "pytorch_model.bin")
    # BertConfig(vocab_size_or_config_json_file=int, ...).to_json_string(): its __dict__, sorted
    config = {"vocab_size": len(VOCAB) + 3, "hidden_size": H, "num_hidden_layers": LAYERS,
              "num_attention_heads": HEADS, "hidden_act": "gelu", "intermediate_size": INTER,
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": MAX_POS, "type_vocab_size": 2, "initializer_range": 0.02,
              "pre_trained": "", "training": ""}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB))
    return state


def tinybert_reference(state: dict[str, torch.Tensor], input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                       attention_mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(logits, hidden states [embeddings, layer 1..L], attention scores per layer), float64."""
    w = {k: v.double() for k, v in state.items()}

    def layer_norm(x: torch.Tensor, prefix: str) -> torch.Tensor:
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return w[prefix + ".weight"] * ((x - u) / torch.sqrt(s + 1e-12)) + w[prefix + ".bias"]

    def dense(x: torch.Tensor, prefix: str) -> torch.Tensor:
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    def heads(x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, HEADS, H // HEADS).permute(0, 2, 1, 3)

    b, s = input_ids.shape
    positions = torch.arange(s).unsqueeze(0).expand_as(input_ids)
    x = (w["bert.embeddings.word_embeddings.weight"][input_ids] + w["bert.embeddings.position_embeddings.weight"][positions]
         + w["bert.embeddings.token_type_embeddings.weight"][token_type_ids])
    x = layer_norm(x, "bert.embeddings.LayerNorm")
    mask = (1.0 - attention_mask[:, None, None, :].double()) * -10000.0
    hidden, scores = [x], []
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (heads(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        att = q @ k.transpose(-1, -2) / math.sqrt(H // HEADS) + mask
        scores.append(att)
        ctx = (torch.softmax(att, -1) @ v).permute(0, 2, 1, 3).reshape(b, s, H)
        a_out = layer_norm(dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        inter = dense(a_out, p + "intermediate.dense")
        inter = inter * 0.5 * (1.0 + torch.erf(inter / math.sqrt(2.0)))
        x = layer_norm(dense(inter, p + "output.dense") + a_out, p + "output.LayerNorm")
        hidden.append(x)
    pooled = torch.tanh(dense(x[:, 0], "bert.pooler.dense"))
    logits = dense(torch.relu(pooled), "classifier")
    return logits, hidden, scores


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    a = [t[0] for t in SENTENCES]
    pair = [t[1] or "" for t in SENTENCES]
    # single texts as singles, pairs as pairs, one padded batch
    rows = [tokenizer(x, y or None) for x, y in zip(a, pair, strict=True)]
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda v: v + [0] * (width - len(v))  # noqa: E731
    return {"input_ids": torch.tensor([pad(r["input_ids"]) for r in rows]),
            "token_type_ids": torch.tensor([pad(r["token_type_ids"]) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r["input_ids"])) for r in rows])}


def _check_against_reference(model, tokenizer, state: dict[str, torch.Tensor]) -> None:
    batch = _batch(tokenizer)
    assert (batch["attention_mask"] == 0).any()   # padded keys are part of the check
    ref_logits, ref_hidden, ref_scores = tinybert_reference(state, **batch)
    with torch.no_grad(), capture_attention_scores(model) as scores:
        out = model(**batch, output_hidden_states=True)
    torch.testing.assert_close(out.logits.softmax(-1).double(), ref_logits.softmax(-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.logits.double(), ref_logits, rtol=0, atol=1e-4)
    assert len(out.hidden_states) == LAYERS + 1
    for ours, ref in zip(out.hidden_states, ref_hidden, strict=True):
        torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-4)
    for i in range(LAYERS):
        # masked keys: finfo.min here, -10000 in TinyBERT; both become 0 under TinyBERT's <= -1e2 rule
        torch.testing.assert_close(zero_masked_scores(scores[i]).double(), zero_masked_scores(ref_scores[i]),
                                   rtol=0, atol=1e-4)
    # the ReLU matters for these weights: transformers' head classifier(pooled) would be far off
    pooled = out.hidden_states[-1][:, 0] @ state["bert.pooler.dense.weight"].T + state["bert.pooler.dense.bias"]
    hf_logits = torch.tanh(pooled) @ state["classifier.weight"].T + state["classifier.bias"]
    assert (hf_logits.double() - ref_logits).abs().max() > 1e-2


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tinybert_checkpoint_predicts_with_tinybert_head(tmp_path: Path, attn: str) -> None:
    state = write_tinybert_checkpoint(tmp_path / "tb")
    model, tokenizer = load_classifier(tmp_path / "tb", attn_implementation=attn)
    report = model.confdistill_load_report
    assert report.format == "tinybert" and report.head == "tinybert" and not report.fresh_head
    assert report.ignored_keys == ["fit_dense.bias", "fit_dense.weight"]
    assert type(model).__name__ == "TinyBertForSequenceClassification" and model.config.num_labels == LABELS
    _check_against_reference(model, tokenizer, state)


def test_tinybert_head_survives_save_and_reload(tmp_path: Path) -> None:
    state = write_tinybert_checkpoint(tmp_path / "tb")
    model, tokenizer = load_classifier(tmp_path / "tb")
    saved = save_classifier(model, tokenizer, tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    assert config["confdistill_head"] == "tinybert" and config["model_type"] == "bert"
    assert config["architectures"] == ["TinyBertForSequenceClassification"]
    again, tok2 = load_classifier(saved)
    report = again.confdistill_load_report
    assert report.format == "huggingface" and report.head == "tinybert" and not report.fresh_head
    assert type(again).__name__ == "TinyBertForSequenceClassification"
    _check_against_reference(again, tok2, state)
    # a student built from it keeps the head (make_student copies the configuration)
    student_dir = make_student(saved, tmp_path / "student", layers=1)
    student, _ = load_classifier(student_dir)
    assert student.confdistill_load_report.head == "tinybert"
    assert isinstance(student.dropout, torch.nn.ReLU)


def test_tinybert_head_has_no_dropout_in_training(tmp_path: Path) -> None:
    write_tinybert_checkpoint(tmp_path / "tb")
    model, tokenizer = load_classifier(tmp_path / "tb")
    seen: dict[str, torch.Tensor] = {}
    model.bert.pooler.register_forward_hook(lambda m, i, o: seen.__setitem__("pooled", o))
    model.classifier.register_forward_hook(lambda m, i, o: seen.__setitem__("head_in", i[0]))
    model.train()
    with torch.no_grad():
        model(**_batch(tokenizer))
    assert torch.equal(seen["head_in"], torch.relu(seen["pooled"]))


def test_huggingface_models_keep_their_head(tiny_bert, tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    model, tokenizer = load_classifier(tiny_bert())
    assert type(model) is BertForSequenceClassification and model.confdistill_load_report.head == "huggingface"
    again, _ = load_classifier(save_classifier(model, tokenizer, tmp_path / "saved"))
    assert type(again) is BertForSequenceClassification
    assert "confdistill_head" not in json.loads((tmp_path / "saved" / "config.json").read_text())
