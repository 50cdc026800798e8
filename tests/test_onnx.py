"""ONNX export and ONNX Runtime prediction (issue 12, part 2).

* fp32: ONNX Runtime's probabilities equal PyTorch's to 1e-4 (tiny random model, padded batches of
  several sizes, so both dynamic axes are exercised);
* TinyBERT's head ``classifier(relu(pooled))`` is exported (checked against the independent
  float64 transcription of TinyBERT in ``test_tinybert_head``);
* int8: agrees with fp32 on ≥ 95 % of real SST-2 dev predictions of a tiny model *trained* here for
  a few seconds on real SST-2 rows (a random model's near-0.5 probabilities would flip on any noise
  and say nothing), both predicted in batches of ``INT8_BATCH`` = 64 rows (predict's default; int8
  probabilities depend on the batch: the test prints how far they move at batch 1); skipped, with
  the reason, without ../shared;
* ``predict --model ONNX_DIR`` writes the same file and sidecar as for the PyTorch model;
* the footprint of an ONNX directory; the layout and manifest; atomic, refused, overwritten output.

Bad inputs (one line, exit 2, nothing written) are in ``test_onnx_bad_inputs.py``.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.cli.main import main
from confdistill.data.batching import encode, make_loader
from confdistill.data.glue import Example
from confdistill.models import export_onnx, is_onnx_dir, load_classifier, read_onnx_manifest, save_classifier
from confdistill.prediction.onnx_runtime import OnnxClassifier
from confdistill.prediction.predict import predict_encoded, predict_split, softmax64
from confdistill.prediction.softmax_file import read_softmax, sidecar_path
from distill_helpers import SHARED, copy_model, write_sst2

#: The batch the int8 agreement is measured at: predict's default (the sidecar records the one used).
INT8_BATCH = int(inspect.signature(predict_split).parameters["batch_size"].default)

SENTENCES = ["a gorgeous, witty, seductive movie.", "bad.", "the plot is thin and the acting is not much better",
             "it 's a charming and often affecting journey .", "dull", "an utterly incompetent conclusion to a film"]


@pytest.fixture(scope="module")
def tiny(tiny_bert: Callable[..., Path]) -> Path:
    return tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)


@pytest.fixture(scope="module")
def onnx32(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 export, made through the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    assert main(["export", "--model", str(tiny), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx8(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny-int8", quantize="int8")


def _probs(model: object, tokenizer: object, batch_size: int) -> np.ndarray:
    encoded = encode(tokenizer, [Example(s, None, 0, i) for i, s in enumerate(SENTENCES)], max_length=32)
    assert len(set(encoded.lengths.tolist())) > 1  # padding inside each batch
    return softmax64(predict_encoded(model, encoded, batch_size=batch_size, device="cpu"))


@pytest.mark.parametrize("batch_size", [1, 3, 6])
def test_fp32_probabilities_equal_pytorch(tiny: Path, onnx32: Path, batch_size: int) -> None:
    model, tokenizer = load_classifier(tiny)
    ours = _probs(OnnxClassifier(onnx32), tokenizer, batch_size)
    ref = _probs(model, tokenizer, batch_size)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_layout_and_manifest(tiny: Path, onnx32: Path, onnx8: Path) -> None:
    import onnx

    assert is_onnx_dir(onnx32) and not is_onnx_dir(tiny)
    names = sorted(p.name for p in onnx32.iterdir())
    assert {"model.onnx", "onnx.json", "config.json", "tokenizer.json", "vocab.txt"} <= set(names), names
    assert not any(n.endswith((".safetensors", ".bin", ".data")) for n in names), names
    assert sorted(p.name for p in onnx8.iterdir()) == names  # int8: the fp32 graph is not kept
    config = json.loads((onnx32 / "config.json").read_text())
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    assert (onnx32 / "vocab.txt").read_text() == (tiny / "vocab.txt").read_text()
    m32, m8 = read_onnx_manifest(onnx32), read_onnx_manifest(onnx8)
    assert m32["quantization"] is None and m8["quantization"] == "int8"
    assert m32["source_model"] == str(tiny.resolve()) and m32["source_sha256"] == m8["source_sha256"]
    assert m32["opset"] == 18 and m32["head"] == "huggingface" and m32["num_labels"] == 2
    assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(m32["versions"])
    graph = onnx.load(str(onnx32 / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["logits"]
    for inp in graph.input:  # both axes symbolic
        dims = inp.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims), inp
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger")
               for n in onnx.load(str(onnx8 / "model.onnx")).graph.node)


def test_class_names_and_tinybert_format_head(tmp_path: Path) -> None:
    from test_tinybert_head import _batch, tinybert_reference, write_tinybert_checkpoint

    state = write_tinybert_checkpoint(tmp_path / "tb")
    model, tokenizer = load_classifier(tmp_path / "tb")
    assert model.confdistill_load_report.head == "tinybert"
    save_classifier(model, tokenizer, tmp_path / "named", label_names=["neg", "mid", "pos"])
    for src in (tmp_path / "tb", tmp_path / "named"):   # TinyBERT release format, then saved by us
        out = export_onnx(src, tmp_path / f"{src.name}-onnx")
        assert read_onnx_manifest(out)["head"] == "tinybert"
        batch = _batch(tokenizer)
        assert (batch["attention_mask"] == 0).any()
        got = OnnxClassifier(out).logits({k: v.numpy() for k, v in batch.items()})
        ref, hidden, _ = tinybert_reference(state, **batch)
        np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-4)
        # without the ReLU (transformers' head) the logits would be far off: the head is in the graph
        pooled = torch.tanh(hidden[-1][:, 0] @ state["bert.pooler.dense.weight"].double().T
                            + state["bert.pooler.dense.bias"].double())
        plain = pooled @ state["classifier.weight"].double().T + state["classifier.bias"].double()
        assert np.abs(plain.numpy() - got).max() > 1e-2
    labels = json.loads((tmp_path / "named-onnx" / "config.json").read_text())["id2label"]
    assert labels == {"0": "neg", "1": "mid", "2": "pos"}


def test_predict_cli_on_onnx_dir_same_file_and_sidecar(tiny: Path, onnx32: Path, onnx8: Path,
                                                        tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 8, 40, real=False)
    outs = {}
    for name, model in (("torch", tiny), ("onnx", onnx32), ("int8", onnx8)):
        outs[name] = tmp_path / f"{name}.csv"
        argv = ["predict", "--no-progress", "--model", str(model), "--task", "SST-2", "--data-dir", str(data),
                "--out", str(outs[name]), "--eval-batch-size", "16"]
        assert main(argv) == 0
    ref, got, got8 = (read_softmax(outs[n]) for n in ("torch", "onnx", "int8"))
    header = outs["torch"].read_text().splitlines()[0]
    assert outs["onnx"].read_text().splitlines()[0] == header == "pred,p0,p1,label"
    np.testing.assert_allclose(got.probs, ref.probs, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(got.label, ref.label)
    np.testing.assert_array_equal(got8.label, ref.label)
    assert outs["int8"].read_text().splitlines()[0] == header and got8.n == ref.n
    np.testing.assert_allclose(got.probs.sum(axis=1), 1.0, atol=1e-12)
    meta_t, meta_o, meta_8 = (json.loads(sidecar_path(outs[n]).read_text()) for n in ("torch", "onnx", "int8"))
    assert meta_t["runtime"] == "torch" and "quantization" not in meta_t
    assert meta_o["runtime"] == meta_8["runtime"] == "onnxruntime"
    assert meta_o["quantization"] is None and meta_8["quantization"] == "int8"
    assert meta_t["batch_size"] == meta_o["batch_size"] == meta_8["batch_size"] == 16  # int8 depends on it
    assert meta_o["onnx_source_model"] == str(tiny.resolve()) and meta_o["model"] == str(onnx32.resolve())
    drop = {"model", "runtime", "quantization", "onnx_source_model", "file_sha256", "metrics"}
    assert {k: v for k, v in meta_o.items() if k not in drop} == {k: v for k, v in meta_t.items() if k not in drop}
    assert "file_sha256" in meta_o


def test_footprint_of_onnx_dirs(tiny: Path, onnx32: Path, onnx8: Path) -> None:
    from confdistill.experiments.footprint import measure_footprint

    ref = measure_footprint(tiny, batch_sizes=(1, 2), repeats=1)
    f32 = measure_footprint(onnx32, batch_sizes=(1, 2), repeats=1)
    f8 = measure_footprint(onnx8, batch_sizes=(1, 2), repeats=1)
    assert f32["runtime"] == f8["runtime"] == "onnxruntime" and f8["quantization"] == "int8"
    # the exporter stores identical constants once (a random model's zero biases): within 1 %
    assert f32["parameters"] == pytest.approx(ref["parameters"], rel=0.01)
    assert f8["parameters"] == pytest.approx(ref["parameters"], rel=0.01)
    assert f32["size_bytes"] == (onnx32 / "model.onnx").stat().st_size
    assert f8["size_bytes"] < 0.5 * f32["size_bytes"]
    for fp in (f32, f8):
        assert set(fp["latency_ms"]) == {"1", "2"} and all(v > 0 for v in fp["latency_ms"].values())
        assert fp["seq_len"] == ref["seq_len"] == 64 and fp["threads"] == torch.get_num_threads()


def test_export_refuses_then_overwrites_and_never_half_writes(tiny: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import confdistill.models.onnx_export as onnx_export

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="use overwrite to replace it"):
        export_onnx(tiny, out)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(onnx_export, "_export_fp32", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(tiny, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no temporary left beside it
    monkeypatch.undo()
    export_onnx(tiny, out, quantize="int8", overwrite=True)
    assert is_onnx_dir(out) and not (out / "notes.txt").exists()


def _train_tiny_on_sst2(tiny: Path, train: list[Example], steps: int = 250) -> tuple[object, object]:
    """``steps`` batches of plain fine-tuning (AdamW, dynamic padding, seeded) of the tiny model:
    about two epochs of 4000 rows, a few seconds on one core."""
    torch.manual_seed(0)
    model, tokenizer = load_classifier(tiny, num_labels=2)
    encoded = encode(tokenizer, train, max_length=48)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    done = 0
    for epoch in range(steps):
        for batch in make_loader(encoded, 32, shuffle=True, seed=epoch):
            loss = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                model.eval()
                return model, tokenizer
    raise AssertionError("unreachable")


def test_int8_agrees_with_fp32_on_real_sst2(tiny: Path, tmp_path: Path) -> None:
    from confdistill.data.glue import read_glue_file

    glue = SHARED / "data" / "glue" / "SST-2"
    if not (glue / "train.tsv").is_file() or not (glue / "dev.tsv").is_file():
        pytest.skip(f"{glue} is absent: the int8 agreement is checked on real SST-2 rows only")
    train = read_glue_file("SST-2", glue / "train.tsv")[:4000]
    dev = read_glue_file("SST-2", glue / "dev.tsv")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tokenizer = _train_tiny_on_sst2(copy_model(tiny, tmp_path / "src"), train)
    finally:
        torch.set_num_threads(before)
    trained = save_classifier(model, tokenizer, tmp_path / "trained")
    f32 = OnnxClassifier(export_onnx(trained, tmp_path / "fp32"))
    i8 = OnnxClassifier(export_onnx(trained, tmp_path / "int8", quantize="int8"))
    encoded = encode(tokenizer, dev, max_length=64)
    # Both at predict's default batch of INT8_BATCH length-sorted rows: dynamic int8 quantises each
    # batch's activations with that batch's own range, so its probabilities depend on the batch.
    prob32 = softmax64(predict_encoded(f32, encoded, batch_size=INT8_BATCH))
    prob8 = softmax64(predict_encoded(i8, encoded, batch_size=INT8_BATCH))
    p32, p8 = prob32.argmax(axis=1), prob8.argmax(axis=1)
    accuracy = float(np.mean(p32 == encoded.labels))
    assert accuracy > 0.6, f"the model did not learn SST-2 (dev accuracy {accuracy:.3f})"
    agreement = float(np.mean(p32 == p8))
    # the same rows one at a time: fp32 unchanged (padding is masked), int8 moved by the batch
    one32 = softmax64(predict_encoded(f32, encoded, batch_size=1))
    one8 = softmax64(predict_encoded(i8, encoded, batch_size=1))
    moved32, moved8 = float(np.abs(one32 - prob32).max()), float(np.abs(one8 - prob8).max())
    print(f"dev accuracy {accuracy:.3f}, int8 agreement {agreement:.4f} at batch {INT8_BATCH}; max |Δp| between "
          f"batch 1 and {INT8_BATCH}: fp32 {moved32:.1e}, int8 {moved8:.1e}")
    assert agreement >= 0.95, (f"int8 agrees with fp32 on {agreement:.3f} of {len(dev)} dev rows at batch "
                               f"{INT8_BATCH}")
    assert moved32 < 1e-5 and moved8 < 0.05, (moved32, moved8)
    shutil.rmtree(tmp_path / "src")
