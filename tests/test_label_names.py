"""Class names in every classifier written: ``save_classifier(label_names=...)`` → config.json → any tool."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from confdistill.data import TASKS, TableColumns, get_task, load_examples
from confdistill.models import load_classifier, save_classifier


def _pipeline_labels(model_dir: Path) -> set[str]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), device="cpu")
    out = classify(["a charming and often affecting journey .", "unflinchingly bleak"], top_k=None)
    return {row["label"] for rows in out for row in rows}


def test_glue_class_names() -> None:
    assert get_task("SST-2").class_names == ("negative", "positive")
    assert get_task("CoLA").class_names == ("unacceptable", "acceptable")
    assert get_task("MNLI").class_names == ("contradiction", "entailment", "neutral")  # TinyBERT's order
    assert get_task("QNLI").class_names == ("entailment", "not_entailment")
    assert get_task("STS-B").class_names == ()
    for spec in TASKS.values():
        assert len(spec.class_names) == (0 if spec.is_regression else spec.num_labels)
        assert len(set(spec.class_names)) == len(spec.class_names)


def test_pipeline_reports_glue_names(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    model, tokenizer = load_classifier(tiny_bert())
    out = save_classifier(model, tokenizer, tmp_path / "sst2", label_names=get_task("SST-2").class_names)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert _pipeline_labels(out) == {"negative", "positive"}
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # the model object is not changed
    # reloaded and saved again without names: the names in its configuration stay
    again, tok2 = load_classifier(out)
    assert again.config.id2label == {0: "negative", 1: "positive"}
    kept = save_classifier(again, tok2, tmp_path / "kept")
    assert json.loads((kept / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}


def test_pipeline_reports_custom_names(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\nbuy now,spam\nhello mum,ham\nfried,eggs\n")
    spec = load_examples("custom", data, "train", columns=TableColumns(text="text", label="label")).task
    assert spec.class_names == ("eggs", "ham", "spam")  # inferred, sorted
    model, tokenizer = load_classifier(tiny_bert(num_labels=3))
    out = save_classifier(model, tokenizer, tmp_path / "custom", label_names=spec.class_names)
    assert _pipeline_labels(out) == {"eggs", "ham", "spam"}


def test_no_names_keeps_the_config(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    model, tokenizer = load_classifier(tiny_bert())
    for names in (None, ()):   # () = a regression task's class names
        out = save_classifier(model, tokenizer, tmp_path / f"plain{names}", label_names=names)
        assert load_classifier(out)[0].config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    with pytest.raises(ValueError, match="3 label name"):
        save_classifier(model, tokenizer, tmp_path / "bad", label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        save_classifier(model, tokenizer, tmp_path / "bad", label_names=["a", "a"])
    assert not (tmp_path / "bad").exists()
