"""Custom data (``task = "custom"``) in experiment files, ``tune`` and ``augment``: a tiny CSV/JSONL
task planned and run end to end to a report, a one-trial study, an augmented custom file, and the
bad inputs refused in one line naming the key."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.experiments.config import experiment_from_dict, load_experiment
from distill_helpers import one_thread, synthetic_rows

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

FAST = {"train_batch_size": 16, "eval_step": None, "checkpoint_steps": None, "max_seq_length": 32,
        "num_train_epochs": 1.0, "learning_rate": 5e-3}


def write_csv(folder: Path, n_train: int = 40, n_dev: int = 16) -> Path:
    """``train.csv`` / ``dev.csv`` with columns id, review, sentiment (neg/pos); one review spans lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "review", "sentiment"])
            for i, (text, y) in enumerate(synthetic_rows(n, seed)):
                w.writerow([i, text + ("\nsecond line" if i == 3 else ""), "pos" if y else "neg"])
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write_jsonl(folder: Path, n: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 1), ("dev", 2)):
        rows = [{"a": t, "b": t[::-1], "y": y} for t, y in synthetic_rows(n, seed)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def experiment(data: Path, encoder: Path, **task: Any) -> dict[str, Any]:
    return {
        "experiment": {"name": "custom", "output_dir": "out", "seed": 3, "max_length": 32,
                       "predict_batch_size": 16, "kappa": 0.2},
        "finetune": FAST, "stage1": FAST, "stage2": FAST,
        "footprint": {"seq_len": 8, "batch_sizes": [1], "repeats": 1},
        "analysis": {"n_bootstrap": 10},
        "teacher": {"encoder": str(encoder)},
        "students": [{"name": "L1", "layers": 1}],
        "tasks": {"reviews": {"task": "custom", "data_dir": str(data), "text_column": "review",
                              "label_column": "sentiment", **task}},
    }


def test_custom_task_is_read_with_its_columns(tmp_path: Path) -> None:
    cfg = experiment_from_dict(experiment(tmp_path / "d", tmp_path / "enc"), base_dir=tmp_path)
    (task,) = cfg.tasks
    assert task.task == "custom" and task.is_custom
    assert task.columns == {"text": "review", "label": "sentiment", "text_pair": None, "label_names": None,
                            "regression": False}
    cfg = experiment_from_dict(experiment(tmp_path / "d", tmp_path / "enc", text_pair_column="b",
                                          label_names=["neg", "pos"]), base_dir=tmp_path)
    assert cfg.tasks[0].columns["text_pair"] == "b" and cfg.tasks[0].columns["label_names"] == ["neg", "pos"]


def test_custom_experiment_runs_end_to_end_to_a_report(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.experiments.runner import build_plan, run_experiment
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.tuning.experiment_toml import experiment_to_toml

    data = write_csv(tmp_path / "data")
    encoder = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    # a capped train split: the seeded subset of a CSV (with a record over two lines) stays a CSV
    cfg = experiment_from_dict(experiment(data, encoder, max_train_examples=30), base_dir=tmp_path)
    steps = {s.name: s for s in build_plan(cfg)}
    columns = {"text": "review", "label": "sentiment", "text_pair": None, "label_names": ["neg", "pos"],
               "regression": False}
    # class names fixed once from the whole train file, in every data-reading step's hash
    for name in ("reviews/data", "reviews/teacher/finetune", "reviews/L1/init", "reviews/L1/stage2",
                 "reviews/L1/predict-dev", "reviews/teacher/footprint"):
        assert steps[name].settings["columns"] == columns, name
    summary = run_experiment(cfg, log=lambda _: None)
    out = cfg.output_dir
    assert "report" in summary.ran
    for f in ("report.html", "report.md", "results.json"):
        assert (out / f).is_file()
    subset = read_rows(out / "reviews" / "data" / "train.csv")
    assert len(subset) == 30 and {r["sentiment"] for r in subset} <= {"neg", "pos"}
    analysis = json.loads((out / "reviews" / "students" / "L1" / "analysis.json").read_text())
    assert analysis["train"]["sigma"] is not None and analysis["dev"]["student_accuracy"] is not None
    pred = read_softmax(out / "reviews" / "predictions" / "L1.dev.csv")
    assert len(pred.label) == 16 and pred.meta["columns"] == columns  # the analysis can join the texts
    assert json.loads((out / "reviews" / "students" / "L1" / "init" / "config.json").read_text())["id2label"] == {
        "0": "neg", "1": "pos"}
    results = json.loads((out / "results.json").read_text())
    assert "reviews" in json.dumps(results)
    # a second run skips everything; the experiment written back as TOML reads the same task
    assert run_experiment(cfg, log=lambda _: None).ran == []
    (tmp_path / "back.toml").write_text(experiment_to_toml(cfg))
    assert load_experiment(tmp_path / "back.toml").tasks[0].columns == cfg.tasks[0].columns


def test_custom_jsonl_pairs_plan_with_given_label_names(tmp_path: Path) -> None:
    from confdistill.experiments.runner import build_plan

    data = write_jsonl(tmp_path / "pairs")
    enc = tmp_path / "enc"
    enc.mkdir()
    cfg = experiment_from_dict(experiment(data, enc, text_column="a", text_pair_column="b", label_column="y",
                                          label_names=["0", "1"], max_dev_examples=5), base_dir=tmp_path)
    steps = {s.name: s for s in build_plan(cfg)}
    assert steps["reviews/data"].settings["columns"]["label_names"] == ["0", "1"]
    steps["reviews/data"].action(steps["reviews/data"])
    lines = (cfg.output_dir / "reviews" / "data" / "dev.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0]).keys() == {"a", "b", "y"}
    assert len((cfg.output_dir / "reviews" / "data" / "train.jsonl").read_text().splitlines()) == 24


@pytest.mark.parametrize(("task", "expected"), [
    ({"text_column": None}, 'tasks.reviews.text_column: missing (task = "custom" needs text_column'),
    ({"label_column": None}, "tasks.reviews.label_column: missing"),
    ({"task": "SST-2"}, 'tasks.reviews.text_column: only applies with task = "custom"'),
    ({"text_column": "txt"}, "tasks.reviews.text_column: no column 'txt' in"),
    ({"label_column": "stars"}, "tasks.reviews.label_column: no column 'stars' in"),
    ({"text_pair_column": "other"}, "tasks.reviews.text_pair_column: no column 'other' in"),
    ({"regression": True}, "tasks.reviews.regression: the confidence analysis needs a classification task"),
    ({"label_names": ["pos"]}, "tasks.reviews.label_names: expected a list of at least two distinct class names"),
    ({"text_column": 3}, "tasks.reviews.text_column: expected a non-empty string, got 3"),
    ({"colums": "x"}, "tasks.reviews.colums: unknown key (expected one of: "),
])
def test_bad_custom_inputs_are_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       task: dict[str, Any], expected: str) -> None:
    import tomli_w

    data = write_csv(tmp_path / "data", 8, 4)
    enc = tmp_path / "enc"
    enc.mkdir()
    doc = experiment(data, enc)
    table = doc["tasks"]["reviews"]
    for k, v in task.items():
        if v is None:
            table.pop(k)
        else:
            table[k] = v
    path = tmp_path / "experiment.toml"
    path.write_text(tomli_w.dumps(_toml_ready(doc)))
    code = main(["run", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{path}: {expected}" in err, err
    assert not (tmp_path / "out").exists()


def _toml_ready(v: Any) -> Any:
    """TOML has no null: None as "none" (an optional setting switched off)."""
    if isinstance(v, dict):
        return {k: _toml_ready(x) for k, x in v.items()}
    return "none" if v is None else v


def test_every_structural_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    doc = experiment(tmp_path, tmp_path)
    doc["experiment"]["seed"] = -1
    doc["footprint"]["repeats"] = 0
    doc["students"][0]["layers"] = "two"
    with pytest.raises(InputError) as exc:
        experiment_from_dict(doc, source="e.toml")
    text = str(exc.value)
    for part in ("experiment.seed: expected an integer >= 0, got -1", "footprint.repeats: expected a positive "
                 "integer, got 0", 'students[0].layers: expected a positive integer, got "two"'):
        assert part in text, text
    assert text.startswith("e.toml: ") and "\n" not in text


def test_tune_one_trial_on_custom_data(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from confdistill.tuning.experiment_toml import experiment_to_toml

    data = write_csv(tmp_path / "data")
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    doc = experiment(data, teacher)
    doc["teacher"] = {"encoder": str(teacher)}  # fine-tuned once, in the study's shared experiment
    cfg = experiment_from_dict(doc, base_dir=tmp_path)
    (tmp_path / "exp.toml").write_text(experiment_to_toml(cfg))
    out = tmp_path / "tune"
    rc = main(["tune", str(tmp_path / "exp.toml"), "--trials", "1", "--epsilon", "0.99", "--kappa", "0.2",
               "--out", str(out), "--pruner-startup-trials", "5"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == {"COMPLETE": 1}
    analysis = json.loads((out / "trials" / "00000" / "analysis.json").read_text())
    assert summary["baseline"]["sigma"] == pytest.approx(analysis["train"]["sigma"])
    best = load_experiment(out / "best.toml").tasks[0]
    assert best.task == "custom" and best.columns is not None and best.columns["text"] == "review"


def test_augment_a_custom_csv(tiny_bert: Callable[..., Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from confdistill.data import TableColumns, read_table

    data = write_csv(tmp_path / "data", 6, 2)
    model = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)  # no MLM head: embedding neighbours
    rc = main(["augment", "--task", "custom", "--data-dir", str(data), "--text-column", "review",
               "--label-column", "sentiment", "--model", str(model), "--n-aug", "2", "--seed", "1"])
    assert rc == 0, capsys.readouterr().err
    out = data / "train_aug.csv"
    examples, spec = read_table(out, TableColumns(text="review", label="sentiment"))
    original, _ = read_table(data / "train.csv", TableColumns(text="review", label="sentiment"))
    assert len(examples) == 3 * len(original) and spec.label_names == ("neg", "pos")
    assert [e.text_a for e in examples[:6]] == [e.text_a for e in original]  # the originals first, verbatim
    rows = read_rows(out)
    assert [r["id"] for r in rows[6:8]] == ["0", "0"]  # every other column copied
    assert [e.label for e in examples[6:]] == [e.label for e in original for _ in range(2)]
    # GLUE options stay GLUE's: columns without --task custom are refused
    rc = main(["augment", "--task", "SST-2", "--data-dir", str(data), "--text-column", "review",
               "--model", str(model)])
    assert rc == 2 and "--text-column" in capsys.readouterr().err

