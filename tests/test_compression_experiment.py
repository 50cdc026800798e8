"""Experiments with real compression: a student made by general distillation (``general = {…}``) and
compressed forms (``compress = ["onnx-int8"]``), each predicted and analysed against the teacher like
any student; the report lists every model with its footprint, accuracy and σ, and draws the
trade-off; content-hash skipping covers the new steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from confdistill.errors import InputError
from confdistill.experiments.config import ExperimentConfig, experiment_from_dict
from confdistill.experiments.runner import build_plan, run_experiment

TASK = "tiny"


def experiment(out: Path, corpus: Path, encoder: Path, *, compress: list[str], epochs: float = 1.0,
               general: dict[str, Any] | None = None) -> ExperimentConfig:
    fast = {"train_batch_size": 16, "eval_step": None, "checkpoint_steps": None, "max_seq_length": 32}
    text = next(corpus.rglob("train.tsv"))
    data = {
        "experiment": {"name": "tiny", "seed": 3, "max_length": 32, "predict_batch_size": 16, "kappa": 0.05},
        "finetune": {**fast, "num_train_epochs": 1.0, "learning_rate": 5e-3},
        "stage1": {**fast, "num_train_epochs": epochs, "learning_rate": 5e-3},
        "stage2": {**fast, "num_train_epochs": epochs, "learning_rate": 5e-3},
        "footprint": {"seq_len": 8, "batch_sizes": [1, 4], "repeats": 1},
        "analysis": {"n_bootstrap": 20},
        "teacher": {"encoder": str(encoder), "compress": ["onnx"]},
        "students": [
            {"name": "L1", "layers": 1, "compress": compress},
            {"name": "narrow", "general": general or {
                "corpus": str(text), "text_column": "sentence", "layers": 1, "hidden": 16, "heads": 2,
                "intermediate": 32, "num_train_epochs": 1.0, "train_batch_size": 16, "learning_rate": 5e-3,
                "checkpoint_steps": "none"}},
        ],
        "tasks": {TASK: {"task": "SST-2", "data_dir": str(corpus)}},
    }
    return experiment_from_dict(data, source="<test>", out=out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from confdistill.data.synthetic import write_synthetic_glue

    return write_synthetic_glue(tmp_path_factory.mktemp("corpus"), n_train=64, n_dev=32, seed=1)


def test_general_student_and_compressed_forms_end_to_end(corpus: Path, tiny_bert: Any, tmp_path: Path) -> None:
    encoder = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    out = tmp_path / "out"
    cfg = experiment(out, corpus, encoder, compress=["onnx-int8"])
    names = [s.name for s in build_plan(cfg)]
    for step in (f"{TASK}/narrow/general", f"{TASK}/narrow/stage1", f"{TASK}/L1-onnx-int8/export",
                 f"{TASK}/L1-onnx-int8/predict-dev", f"{TASK}/L1-onnx-int8/analyze", f"{TASK}/teacher-onnx/analyze"):
        assert step in names, step
    assert names.index(f"{TASK}/narrow/general") < names.index(f"{TASK}/narrow/stage1")
    run_experiment(cfg, log=lambda _: None)

    results = json.loads((out / "results.json").read_text())
    rows = {r["student"]: r for r in results["rows"]}
    assert set(rows) == {"L1", "narrow", "L1-onnx-int8", "teacher-onnx"}
    assert rows["L1-onnx-int8"]["compressed_from"] == "L1" and rows["L1-onnx-int8"]["compression"] == "onnx-int8"
    assert rows["L1-onnx-int8"]["bound"]["check"] is None  # no β for a compressed form: no bound
    # The teacher's fp32 ONNX export predicts (almost) like the teacher: σ ≈ 0, same accuracy.
    assert rows["teacher-onnx"]["sigma_train"] < 1e-4
    assert rows["teacher-onnx"]["student_accuracy_dev"] == rows["teacher-onnx"]["teacher_accuracy_dev"]
    fps = results["footprint"][TASK]
    assert fps["L1-onnx-int8"]["runtime"] == "onnxruntime" and fps["L1-onnx-int8"]["quantization"] == "int8"
    assert fps["L1-onnx-int8"]["size_bytes"] < fps["L1"]["size_bytes"] / 2
    # The narrow student is the general distillation's: 16 wide, 1 layer.
    config = json.loads((out / TASK / "students" / "narrow" / "stage2" / "final" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (16, 1)
    assert "general" in results["training"][TASK]["narrow"]
    html = (out / "report.html").read_text()
    assert "L1-onnx-int8" in html and "ONNX Runtime int8" in html and "Speed-up against σ(train)" in html
    assert (out / "figures" / f"{TASK}_tradeoff.png").is_file()

    # Content hashes cover the new steps: a second run skips everything; another compressed form
    # runs only its own export, predictions, footprint and analysis (and the report).
    assert run_experiment(cfg, log=lambda _: None).ran == []
    again = run_experiment(experiment(out, corpus, encoder, compress=["onnx-int8", "onnx"]), log=lambda _: None)
    assert sorted(again.ran) == sorted([*(f"{TASK}/L1-onnx/{x}" for x in
                                          ("export", "predict-train", "predict-dev", "footprint", "analyze")),
                                        "report"])


def test_bad_compression_settings_name_the_key(corpus: Path, tiny_bert: Any, tmp_path: Path) -> None:
    encoder = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    with pytest.raises(InputError, match=r"students\[0\]\.compress: expected a list drawn from"):
        experiment(tmp_path / "o", corpus, encoder, compress=["onnx-int4"])
    bad = {"corpus": "x.txt", "layers": 1, "hidden": 15, "heads": 2, "intermediate": 32}
    with pytest.raises(InputError, match=r"students\[1\]\.general\.heads: expected a divisor of hidden = 15"):
        experiment(tmp_path / "o", corpus, encoder, compress=[], general=bad)
