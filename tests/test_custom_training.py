"""``finetune`` and ``distill`` on users' own CSV / JSONL files (``--task custom`` with column options):
label names from train (so train and dev agree), recorded in run.json, accuracy / correlation metrics,
and wrong columns refused with exit 2 naming the file and the column."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from confdistill.cli.main import main
from confdistill.distillation import DistillConfig, FinetuneConfig
from confdistill.errors import InputError
from distill_helpers import one_thread, synthetic_rows

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


NAMES = {0: "neg", 1: "pos"}


def _write_csv(path: Path, rows: list[tuple[str, object]]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "review", "sentiment"])
        for i, (text, label) in enumerate(rows):
            w.writerow([i, text, label])


def _write_jsonl(path: Path, rows: list[tuple[str, object]]) -> None:
    path.write_text("".join(json.dumps({"review": t, "sentiment": y, "note": "x"}) + "\n" for t, y in rows),
                    encoding="utf-8")


def _data(tmp_path: Path, kind: str, n_train: int = 48, n_dev: int = 15) -> Path:
    """A custom data folder; dev holds only "pos" rows, so a per-file label order would map it to 0."""
    folder = tmp_path / f"data_{kind}"
    folder.mkdir()
    train = [(s, NAMES[y]) for s, y in synthetic_rows(n_train, 1)]
    dev = [(s, "pos") for s, y in synthetic_rows(4 * n_dev, 2) if y == 1][:n_dev]
    assert len(dev) == n_dev
    write = _write_csv if kind == "csv" else _write_jsonl
    write(folder / f"train.{kind}", train)
    write(folder / f"dev.{kind}", dev)
    return folder


def _columns(*extra: str) -> list[str]:
    return ["--task", "custom", "--text-column", "review", "--label-column", "sentiment", *extra]


def test_finetune_then_distill_on_csv_and_jsonl(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.prediction.predict import predict_split
    from confdistill.prediction.softmax_file import read_softmax

    csv_dir, jsonl_dir = _data(tmp_path, "csv"), _data(tmp_path, "jsonl")
    teacher0 = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    student0 = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=1)

    ft = tmp_path / "ft"
    code = main(["finetune", "--model", str(teacher0), "--data-dir", str(csv_dir), "--out", str(ft), *_columns(),
                 "--epochs", "2", "--batch-size", "16", "--learning-rate", "1e-3", "--eval-step", "3",
                 "--checkpoint-steps", "none"])
    assert code == 0
    run = json.loads((ft / "run.json").read_text())
    assert run["status"] == "complete" and run["task"] == "custom"
    assert run["label_names"] == ["neg", "pos"]
    assert run["columns"] == {"text": "review", "label": "sentiment", "text_pair": None,
                              "label_names": ["neg", "pos"], "regression": False}
    assert run["settings"]["columns"]["text"] == "review"
    assert run["n_train"] == 48 and run["n_eval"] == 15 and run["best"]["metric"] == "accuracy"
    assert set(run["final_eval"]) == {"accuracy"}
    assert run["data"]["train"]["path"].endswith("train.csv")
    assert run["data"]["eval"]["path"].endswith("dev.csv")

    kd = tmp_path / "kd"
    code = main(["distill", "--stage", "both", "--teacher", str(ft / "final"), "--student", str(student0),
                 "--data-dir", str(jsonl_dir), "--out", str(kd), *_columns(), "--intermediate-epochs", "1",
                 "--prediction-epochs", "1", "--train-batch-size", "16", "--eval-step", "3",
                 "--checkpoint-steps", "none"])
    assert code == 0
    run = json.loads((kd / "run.json").read_text())
    assert run["status"] == "complete" and run["task"] == "custom" and run["label_names"] == ["neg", "pos"]
    assert run["intermediate"]["status"] == "complete"
    assert run["data"]["train"]["path"].endswith("train.jsonl") and run["n_train"] == 48
    assert run["beta"] > 0 and run["beta_split_file"].endswith("train.jsonl")
    evals = [json.loads(x)["eval"] for x in (kd / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["accuracy"] for e in evals][-1] == run["final_eval"]["accuracy"]

    # Dev's only label, "pos", is class 1 as in train: the final accuracy is the share of rows the
    # final model predicts as 1 (independently, through predict's own loading and softmax file).
    out = predict_split(kd / "final", "custom", jsonl_dir, "dev", tmp_path / "dev.csv",
                        columns={"text": "review", "label": "sentiment"}, progress=False)
    pred = read_softmax(out)
    assert (pred.label == 1).all()
    assert run["final_eval"]["accuracy"] == pytest.approx(float(np.mean(pred.pred == 1)), abs=1e-12)


def test_regression_and_text_pairs(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "reg"
    folder.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 32), ("dev", 12)):
        rows = [{"a": s, "b": s[::-1], "score": round(rng.uniform(0, 5), 2)} for s, _ in synthetic_rows(n, len(split))]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, num_labels=1)
    out = tmp_path / "ft"
    code = main(["finetune", "--model", str(model), "--data-dir", str(folder), "--out", str(out), "--task", "custom",
                 "--text-column", "a", "--text-pair-column", "b", "--label-column", "score", "--regression",
                 "--epochs", "1", "--batch-size", "16", "--eval-step", "none", "--checkpoint-steps", "none"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["best"]["metric"] == "corr" and set(run["final_eval"]) == {"pearson", "spearman", "corr"}
    assert run["label_names"] == [] and run["columns"]["regression"] is True
    assert run["columns"]["text_pair"] == "b"


def test_wrong_columns_exit_2_naming_file_and_column(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    csv_dir = _data(tmp_path, "csv", 20, 5)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=1)
    out = tmp_path / "out"
    capsys.readouterr()

    def last_err() -> str:
        lines = capsys.readouterr().err.strip().splitlines()
        return lines[-1] if lines else ""

    code = main(["finetune", "--model", str(t), "--data-dir", str(csv_dir), "--out", str(out), "--task", "custom",
                 "--text-column", "reviewtext", "--label-column", "sentiment"])
    err = last_err()
    assert code == 2 and "train.csv" in err and "'reviewtext'" in err, err
    code = main(["distill", "--teacher", str(t), "--student", str(s), "--data-dir", str(csv_dir), "--out", str(out),
                 "--task", "custom", "--text-column", "review", "--label-column", "stars"])
    err = last_err()
    assert code == 2 and "train.csv" in err and "'stars'" in err, err
    # Column options without --task custom, and --task custom without columns.
    code = main(["finetune", "--model", str(t), "--data-dir", str(csv_dir), "--out", str(out), "--task", "sst2",
                 "--text-column", "review"])
    assert code == 2 and "--text-column" in last_err()
    code = main(["distill", "--teacher", str(t), "--student", str(s), "--data-dir", str(csv_dir), "--out", str(out),
                 "--task", "custom", "--label-column", "sentiment"])
    assert code == 2 and "--text-column" in last_err()
    assert not out.exists()


def test_config_validation_names_the_argument() -> None:
    base = dict(task="custom", data_dir="d", out="o")
    # from Python the settings are named as fields (the command line's flags: test above)
    with pytest.raises(InputError, match="task custom needs columns "):
        FinetuneConfig(model="m", **base).validate()
    with pytest.raises(InputError, match="columns apply to task custom only"):
        DistillConfig(teacher="t", student="s", task="SST-2", data_dir="d", out="o",
                      columns={"text": "a", "label": "b"}).validate()
    with pytest.raises(InputError, match=r"columns\.label_names must list"):
        FinetuneConfig(model="m", columns={"text": "a", "label": "b", "label_names": ["x", "x"]}, **base).validate()
    with pytest.raises(InputError, match="unknown column setting"):
        FinetuneConfig(model="m", columns={"text": "a", "label": "b", "txt": "c"}, **base).validate()
    ok = DistillConfig(teacher="t", student="s", columns={"text": "a", "label": "b"}, **base)
    ok.validate()
    assert DistillConfig.from_dict(ok.to_dict()) == ok
