"""Every common encoder family as teacher and student (issue 17, items 1, 2 and 5).

On tiny random classifiers of BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT, ModernBERT and
DeBERTa-v2/v3, each with a tokenizer of its own kind (``family_helpers``; one pytest parameter per
family):

* make-student keeps the evenly spaced source layers: every tensor equals the source's, layer by
  layer (ModernBERT's ``layers.N`` and its local/global ``layer_types`` included);
* stage 1's captured scores: their softmax equals the probabilities the model itself returns with
  ``output_attentions=True`` (eager), and one layer equals a hand computation from its weights
  (Q·Kᵀ/√d; ModernBERT after its rotary embedding, with the sliding window; DeBERTa's
  content→content + content→position + position→content over √(3d));
* ``finetune`` and both stages of ``distill`` run, the stage-1 loss falls; ``general-distill`` runs;
* ``predict`` equals transformers' ``pipeline`` to 1e-6; the ONNX export (fp32) equals PyTorch to
  1e-4, and the int8 export runs;
* refusals (item 5): a model type outside the families, general distillation's sliced start for a
  family without BERT's attention layout: one line, exit 2, nothing created.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.cli.main import main
from confdistill.models.attention_scores import capture_attention_scores
from confdistill.models.loading import load_classifier
from confdistill.prediction.softmax_file import read_softmax
from distill_helpers import one_thread, step_entries, weights, write_sst2  # noqa: F401 (fixture)
from family_helpers import FAMILIES, sentences

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

#: Texts of different lengths (padding in the batch), the longest beyond ModernBERT's test window.
TEXTS = ["the film was good and the long story", "a boring night",
         "it was not very funny but the music was lovely and the city at night was quite new"]
_BERT_LAYOUT = ("bert", "roberta", "xlm-roberta", "electra")
_LAYER = re.compile(r"^(.*\.layers?\.)(\d+)(\..*)$")


def _by_layer(state: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """{layer: {key with the layer number taken out: tensor}} of a state dict's encoder layers."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = _LAYER.match(key)
        if m:
            out.setdefault(int(m[2]), {})[m[1] + m[3]] = tensor
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_make_student_copies_the_evenly_spaced_layers(name: str, tiny_family: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    source = tiny_family(name, layers=4)
    out = tmp_path / "student"
    assert main(["make-student", "--from", str(source), "--layers", "3", "--out", str(out)]) == 0
    kept = [0, 1, 3]                        # floor(m·4/3) − 1, m = 1..3
    src, dst = weights(source), weights(out)
    src_layers, dst_layers = _by_layer(src), _by_layer(dst)
    assert sorted(dst_layers) == [0, 1, 2]
    for m, j in enumerate(kept):
        assert dst_layers[m].keys() == src_layers[j].keys(), (m, j)
        for key, tensor in dst_layers[m].items():
            assert torch.equal(tensor, src_layers[j][key]), (m, key)
    others = {k: v for k, v in dst.items() if not _LAYER.match(k)}
    assert others and all(torch.equal(v, src[k]) for k, v in others.items())   # embeddings, head
    src_cfg, dst_cfg = (json.loads((d / "config.json").read_text()) for d in (source, out))
    assert json.loads((out / "student.json").read_text())["source_tensors_not_copied"] == []
    if "layer_types" in src_cfg:            # ModernBERT: the local/global pattern follows the layers
        assert dst_cfg["layer_types"] == [src_cfg["layer_types"][j] for j in kept]
        assert dst_cfg["layer_types"] == ["full_attention", "sliding_attention", "sliding_attention"]
    # The copied first layer computes what the source's does: equal embeddings and layer-0 states.
    s_model, tok = load_classifier(out)
    t_model, _ = load_classifier(source)
    assert s_model.config.num_hidden_layers == 3
    if name == "modernbert":                # a first student layer copied from a later source layer
        assert main(["make-student", "--from", str(source), "--layers", "1", "--out", str(tmp_path / "m1")]) == 0
        record = json.loads((tmp_path / "m1" / "student.json").read_text())
        assert record["source_tensors_not_copied"] == ["model.layers.3.attn_norm.weight"]
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        s_states = s_model(**batch, output_hidden_states=True).hidden_states
        t_states = t_model(**batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(s_states[1], t_states[1], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_make_student_fresh_sizes(name: str, tiny_family: Callable[..., Path], tmp_path: Path) -> None:
    source = tiny_family(name)
    src = json.loads((source / "config.json").read_text())
    names = ("n_heads", "hidden_dim", "dim") if name == "distilbert" else \
        ("num_attention_heads", "intermediate_size", "hidden_size")
    for argv, (heads, inter, hidden) in (((["--heads", "4"]), (4, src[names[1]], 32)),     # FFN kept
                                         ((["--hidden", "16"]), (2, 64, 16))):              # FFN 4·hidden
        out = tmp_path / argv[0][2:]
        assert main(["make-student", "--from", str(source), "--layers", "1", *argv, "--out", str(out)]) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert (cfg[names[0]], cfg[names[1]], cfg[names[2]]) == (heads, inter, hidden), argv
        model, tok = load_classifier(out)
        with torch.no_grad():
            logits = model(**dict(tok(TEXTS, padding=True, return_tensors="pt"))).logits
        assert logits.shape == (3, 2) and torch.isfinite(logits).all()


def _lin(x: torch.Tensor, layer: torch.nn.Linear, heads: int) -> torch.Tensor:
    """(…, n, hidden) → (…, heads, n, d) of a linear projection, by hand."""
    y = x @ layer.weight.T + (layer.bias if layer.bias is not None else 0.0)
    return y.view(*y.shape[:-1], heads, -1).transpose(-3, -2)


def _rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE by hand: x (b, h, n, d) at positions 0..n−1, frequencies theta^(−2i/d)."""
    n, d = x.shape[-2], x.shape[-1]
    angles = torch.arange(n, dtype=torch.float32)[:, None] / theta ** (torch.arange(0, d, 2).float() / d)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def _hand_scores(name: str, model: torch.nn.Module, x: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 1's pre-softmax scores from its weights, and where they are not masked: (b, h, n, n), (b, 1, n, n).

    x: the layer's input (hidden state 1); mask: the (b, n) attention mask."""
    cfg, base = model.config, model.base_model
    heads = cfg.num_attention_heads
    d = cfg.hidden_size // heads
    n = x.shape[1]
    allowed = mask.bool()[:, None, None, :].expand(-1, 1, n, n)
    if name in _BERT_LAYOUT:
        att = base.encoder.layer[1].attention.self
        return _lin(x, att.query, heads) @ _lin(x, att.key, heads).transpose(-1, -2) / math.sqrt(d), allowed
    if name == "distilbert":
        att = base.transformer.layer[1].attention
        return _lin(x, att.q_lin, heads) @ _lin(x, att.k_lin, heads).transpose(-1, -2) / math.sqrt(d), allowed
    if name == "modernbert":
        layer, kind = base.layers[1], cfg.layer_types[1]
        qkv = layer.attn_norm(x) @ layer.attn.Wqkv.weight.T
        q, k = (qkv[..., i * cfg.hidden_size:(i + 1) * cfg.hidden_size] for i in (0, 1))
        theta = cfg.rope_parameters[kind]["rope_theta"]
        q, k = (_rotate(t.view(*t.shape[:-1], heads, d).transpose(1, 2), theta) for t in (q, k))
        if kind == "sliding_attention":
            pos = torch.arange(n)
            allowed = allowed & ((pos[:, None] - pos[None, :]).abs() <= cfg.local_attention // 2)
        return q @ k.transpose(-1, -2) / math.sqrt(d), allowed
    # DeBERTa: c2c + c2p + p2c over √(3d), relative distance δ = i − j (log-bucketed beyond half the
    # buckets), embedding row δ + span.
    att, enc = base.encoder.layer[1].attention.self, base.encoder
    span = cfg.position_buckets if cfg.position_buckets > 0 else cfg.max_position_embeddings
    rel = enc.LayerNorm(enc.rel_embeddings.weight)[: 2 * span]
    q, k = _lin(x, att.query_proj, heads), _lin(x, att.key_proj, heads)
    k_r = _lin(rel, att.key_proj if cfg.share_att_key else att.pos_key_proj, heads)      # (h, 2span, d)
    q_r = _lin(rel, att.query_proj if cfg.share_att_key else att.pos_query_proj, heads)
    pos = torch.arange(n)
    delta = pos[:, None] - pos[None, :]
    if cfg.position_buckets > 0:        # log buckets beyond half the buckets (DeBERTa's make_log_bucket_position)
        mid, far = span // 2, delta.abs() > span // 2
        log_pos = torch.ceil(torch.log(delta.abs().clamp(min=1) / mid) / math.log((cfg.max_position_embeddings - 1)
                                                                                   / mid) * (mid - 1)) + mid
        delta = torch.where(far, log_pos.long() * delta.sign(), delta)
        assert far.any()                # the longest text reaches the log buckets
    rows = (delta + span).clamp(0, 2 * span - 1)                                          # (n, n)
    c2p = torch.einsum("bhid,hijd->bhij", q, k_r[:, rows])
    p2c = torch.einsum("bhjd,hijd->bhij", k, q_r[:, rows])
    allowed = allowed & mask.bool()[:, None, :, None]      # DeBERTa masks padded queries too
    return (q @ k.transpose(-1, -2) + c2p + p2c) / math.sqrt(3 * d), allowed


@pytest.mark.parametrize("name", FAMILIES)
def test_captured_scores_are_the_models_own_and_the_hand_computed(name: str,
                                                                  tiny_family: Callable[..., Path]) -> None:
    model, tok = load_classifier(tiny_family(name, initializer_range=0.2))   # scores of order 1, not 1e-3
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    assert ("token_type_ids" in batch) == (name not in ("roberta", "xlm-roberta", "distilbert", "modernbert"))
    model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = model(**batch, output_attentions=True, output_hidden_states=True)
        with capture_attention_scores(model) as scores:
            out = model(**batch)
    assert torch.equal(out.logits, ref.logits)               # capturing changes nothing
    assert sorted(scores) == [0, 1]
    pad = batch["attention_mask"] == 0
    assert pad.any()
    for layer, probs in enumerate(ref.attentions):
        assert scores[layer].shape == probs.shape == (3, 2, *pad.shape[1:] * 2)
        torch.testing.assert_close(torch.softmax(scores[layer], -1), probs, atol=1e-5, rtol=0)
        assert torch.all(scores[layer].transpose(1, 3)[pad] <= -100)    # padded keys: zeroed by TinyBERT's rule
    hand, allowed = _hand_scores(name, model, ref.hidden_states[1], batch["attention_mask"])
    allowed = allowed.expand_as(hand)
    assert hand[allowed].abs().max() > 0.3                   # a real test: scores far from 0
    torch.testing.assert_close(scores[1][allowed], hand[allowed], atol=1e-5, rtol=1e-5)
    assert torch.all(scores[1][~allowed] <= -100)            # padding (ModernBERT: and outside the window)
    if name == "modernbert":
        assert (~allowed & batch["attention_mask"].bool()[:, None, None, :]).any()   # the window did mask


def _distill_args(teacher: Path, student: Path, data: Path, out: Path) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--student", str(student), "--task", "sst2",
            "--data-dir", str(data), "--out", str(out), "--intermediate-epochs", "4", "--prediction-epochs", "1",
            "--intermediate-lr", "2e-3", "--train-batch-size", "16", "--max-seq-length", "64",
            "--eval-step", "none", "--checkpoint-steps", "none", "--device", "cpu"]


@pytest.mark.parametrize("name", FAMILIES)
def test_finetune_then_both_stages_and_the_stage1_loss_falls(name: str, tiny_family: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 64, 16, real=False)
    assert main(["finetune", "--model", str(tiny_family(name, initializer_range=0.2)), "--task", "sst2",
                 "--data-dir", str(data), "--out", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "16",
                 "--max-seq-length", "64", "--checkpoint-steps", "none", "--device", "cpu"]) == 0
    teacher = tmp_path / "ft" / "final"
    student = tmp_path / "student"
    assert main(["make-student", "--from", str(teacher), "--layers", "1", "--out", str(student)]) == 0
    assert main(_distill_args(teacher, student, data, tmp_path / "kd")) == 0
    run = json.loads((tmp_path / "kd" / "run.json").read_text())
    assert run["status"] == "complete"
    s1 = step_entries(tmp_path / "kd" / "intermediate")
    assert len(s1) == 16
    first, last = np.mean([e["loss"] for e in s1[:3]]), np.mean([e["loss"] for e in s1[-3:]])
    assert last < 0.9 * first, (first, last)
    assert np.mean([e["att_loss"] for e in s1[:3]]) > 1e-3     # the attention term is not vacuous
    final, _ = load_classifier(tmp_path / "kd" / "final")
    assert final.config.model_type == json.loads((teacher / "config.json").read_text())["model_type"]


@pytest.mark.parametrize("name", FAMILIES)
def test_general_distill_runs_for_each_family(name: str, tiny_family: Callable[..., Path], tmp_path: Path) -> None:
    teacher = tiny_family(name)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(48, seed=3)) + "\n", encoding="utf-8")
    out = tmp_path / "gd"
    assert main(["general-distill", "--teacher", str(teacher), "--corpus", str(corpus), "--layers", "1",
                 "--hidden", "16", "--heads", "2", "--intermediate", "32", "--out", str(out), "--device", "cpu",
                 "--batch-size", "8", "--epochs", "1", "--max-seq-length", "64"]) == 0
    losses = [e["loss"] for e in step_entries(out)]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    student, tok = load_classifier(out / "final")
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    with torch.no_grad():                # the whole classifier runs at the new width (DeBERTa's pooler too)
        assert torch.isfinite(student(**dict(tok(TEXTS, padding=True, return_tensors="pt"))).logits).all()
    if name == "modernbert":     # student layer 1 is matched to teacher layer 2, a sliding-window one
        assert student.config.layer_types == ["sliding_attention"]


@pytest.mark.parametrize("name", FAMILIES)
def test_predict_equals_the_transformers_pipeline(name: str, tiny_family: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    from transformers import pipeline

    model_dir = tiny_family(name)
    data = write_sst2(tmp_path, 8, 24, real=False)
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(model_dir), "--task", "sst2", "--data-dir", str(data), "--split", "dev",
                 "--out", str(out), "--max-seq-length", "64", "--batch-size", "8"]) == 0
    texts = [line.split("\t")[0] for line in (data / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    classify = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu")
    ref = np.array([[next(s["score"] for s in row if s["label"] == label) for label in ("LABEL_0", "LABEL_1")]
                    for row in classify(texts)])
    np.testing.assert_allclose(read_softmax(out).probs, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["distilbert", "modernbert", "deberta-v3"])
def test_augment_experiment_and_footprint_with_other_families(name: str, tiny_family: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    from confdistill.experiments.footprint import measure_footprint
    from input_helpers import tiny_experiment

    teacher = tiny_family(name)
    data = write_sst2(tmp_path, 32, 16, real=False)
    aug = tmp_path / "aug.tsv"
    assert main(["augment", "--task", "sst2", "--data-dir", str(data), "--model", str(teacher), "--n-aug", "2",
                 "--out", str(aug)]) == 0
    assert len(aug.read_text().splitlines()) == 1 + 3 * 32
    exp = tiny_experiment(tmp_path / "exp.toml", out=tmp_path / "exp", data=data, teacher=teacher)
    assert main(["run", str(exp)]) == 0
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert json.dumps(results).count("L1") > 0
    foot = measure_footprint(teacher, seq_len=16, batch_sizes=[1], repeats=1)
    assert foot["runtime"] == "torch" and foot["latency_ms"]["1"] > 0


def _onnx_batch(name: str, tok: object) -> dict[str, torch.Tensor]:
    takes_types = name not in ("distilbert", "modernbert")     # their forward has no token_type_ids
    return dict(tok(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=takes_types))


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_fp32_export_equals_pytorch(name: str, tiny_family: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.models import read_onnx_manifest
    from confdistill.prediction.onnx_runtime import OnnxClassifier

    model_dir = tiny_family(name)
    onnx_dir = tmp_path / "fp32"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "--out", str(onnx_dir)]) == 0
    model, tok = load_classifier(model_dir)
    batch = _onnx_batch(name, tok)
    assert read_onnx_manifest(onnx_dir)["inputs"] == ["input_ids", "attention_mask", "token_type_ids"][:len(batch)]
    with torch.no_grad():
        ref = torch.softmax(model(**batch).logits.double(), -1).numpy()
    got = OnnxClassifier(onnx_dir).logits({k: v.numpy() for k, v in batch.items()})
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got).double(), -1).numpy(), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_int8_export_runs(name: str, tiny_family: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.models import read_onnx_manifest
    from confdistill.prediction.onnx_runtime import OnnxClassifier

    model_dir, q8 = tiny_family(name), tmp_path / "int8"
    assert main(["export", "--model", str(model_dir), "--format", "onnx", "--quantize", "int8", "--out", str(q8)]) == 0
    assert read_onnx_manifest(q8)["quantization"] == "int8"
    model, tok = load_classifier(model_dir)
    batch = _onnx_batch(name, tok)
    with torch.no_grad():
        ref = torch.softmax(model(**batch).logits.double(), -1).numpy()
    got = OnnxClassifier(q8).logits({k: v.numpy() for k, v in batch.items()})
    # int8 weights and activations: close to fp32, not equal (a random tiny model's are near 0.5)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got).double(), -1).numpy(), ref, atol=0.05, rtol=0)


# ---- item 5: what is not supported is refused in one line, exit 2, before anything is written -----

@pytest.fixture(scope="module")
def albert_dir(tiny_family: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ALBERT (a model type outside the families) with the tiny BERT's tokenizer."""
    import shutil

    from transformers import AlbertConfig, AlbertForSequenceClassification

    bert = tiny_family("bert")
    out = tmp_path_factory.mktemp("albert")
    config = AlbertConfig(vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    AlbertForSequenceClassification(config).save_pretrained(out)
    for f in bert.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy(f, out / f.name)
    return out


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(n in err[0] for n in needles), err
    assert "internal error" not in err[0] and "Traceback" not in err[0]


def test_unsupported_model_type_is_refused_everywhere(albert_dir: Path, tiny_family: Callable[..., Path],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bert = tiny_family("bert")
    data = write_sst2(tmp_path, 16, 8, real=False)
    out = tmp_path / "out"
    commands = [
        ["make-student", "--from", str(albert_dir), "--layers", "1", "--out", str(out)],
        ["finetune", "--model", str(albert_dir), "--task", "sst2", "--data-dir", str(data), "--out", str(out)],
        _distill_args(albert_dir, bert, data, out),
        _distill_args(bert, albert_dir, data, out),
        ["predict", "--model", str(albert_dir), "--task", "sst2", "--data-dir", str(data), "--split", "dev",
         "--out", str(out / "p.csv")],
        ["export", "--model", str(albert_dir), "--format", "onnx", "--out", str(out)],
    ]
    for argv in commands:
        _one_line_exit_2(capsys, main(argv), "'albert'", "not supported", "bert, deberta-v2, distilbert")
        assert not out.exists(), argv


@pytest.mark.parametrize("name", ["distilbert", "modernbert", "deberta-v3"])
def test_sliced_general_distillation_is_refused_without_bert_layout(
        name: str, tiny_family: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(16)) + "\n", encoding="utf-8")
    out = tmp_path / "gd"
    code = main(["general-distill", "--teacher", str(tiny_family(name)), "--corpus", str(corpus), "--layers", "1",
                 "--hidden", "16", "--heads", "2", "--intermediate", "32", "--encoder-init", "sliced",
                 "--out", str(out), "--device", "cpu", "--batch-size", "8", "--epochs", "1"])
    model_type = "deberta-v2" if name.startswith("deberta") else name
    _one_line_exit_2(capsys, code, "sliced", model_type, "fresh")
    assert not out.exists()
