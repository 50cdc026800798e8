"""best.toml (and every experiment file the tuner writes) is written by tomli-w and loads back,
through the experiment loader, into the very configuration it was written from."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
tomli_w = pytest.importorskip("tomli_w")

BASELINE = {
    "stage1_epochs": 3.0, "stage2_epochs": 3.0, "stage1_lr": 5e-5, "stage2_lr": 5e-5,
    "temperature": 1.0, "alpha": 0.0, "lambda_conf": 0.0, "augment": False, "mapping": "uniform",
}


def _experiment(tmp_path: Path) -> dict[str, Any]:
    """A tiny experiment with what a round trip can lose: unset optional settings (eval_step,
    checkpoint_steps), a teacher fine-tuned from an encoder with its own settings, a tolerance,
    a split cap, a key that needs quoting, a unicode name and floats of every kind."""
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "encoder").mkdir()
    return {
        "experiment": {"name": "tiny – σ", "output_dir": "out", "seed": 3, "max_length": 32, "kappa": 0.125},
        "analysis": {"n_bootstrap": 20, "threshold": 0.85},
        "footprint": {"enabled": False, "batch_sizes": [1, 4]},
        "tasks": {"SST-2": {
            "data_dir": str(tmp_path / "glue"),
            "max_train_examples": 16,
            "teacher": {"encoder": str(tmp_path / "encoder"),
                        "finetune": {"num_train_epochs": 1.0, "learning_rate": 3e-5, "eval_step": None}},
            "students": [{"name": "L1", "from": "teacher", "layers": 1,
                          "stage1": {"num_train_epochs": 1.0, "train_batch_size": 8, "eval_step": None,
                                     "checkpoint_steps": None},
                          "stage2": {"num_train_epochs": 1.0, "train_batch_size": 8, "eval_step": None,
                                     "checkpoint_steps": None, "weight_decay": 0.01}}],
        }},
    }


def _objective(tmp_path: Path):
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import ExperimentObjective, select

    cfg = experiment_from_dict(_experiment(tmp_path), base_dir=tmp_path)
    task, student = select(cfg, None, None)
    return ExperimentObjective(cfg, task, student, tmp_path / "tune", log=lambda m: None)


def test_best_toml_round_trips_to_the_same_config(tmp_path: Path) -> None:
    from confdistill.experiments.config import load_experiment

    obj = _objective(tmp_path)
    params = {**BASELINE, "temperature": 2.5, "alpha": 0.25, "lambda_conf": 3.0, "stage2_lr": 7e-5,
              "stage1_epochs": 2.0, "mapping": "top"}
    path = tmp_path / "best.toml"
    obj.write_best_toml(params, path)
    want = obj.config_for(params, "L1-tuned")
    want = dataclasses.replace(want, footprint=dataclasses.replace(want.footprint, enabled=True))
    back = load_experiment(path)
    assert dataclasses.replace(back, source=want.source) == want
    # and once more: what was read back writes the same file
    from confdistill.tuning.objective import experiment_to_toml

    assert experiment_to_toml(back) == experiment_to_toml(want)


def test_best_toml_is_written_by_tomli_w(tmp_path: Path) -> None:
    from confdistill.tuning.experiment_toml import experiment_document

    obj = _objective(tmp_path)
    obj.write_best_toml(BASELINE, tmp_path / "best.toml")
    text = (tmp_path / "best.toml").read_text(encoding="utf-8")
    comment, body = text.split("\n", 1)
    assert comment.startswith("# best configuration found by confdistill tune")
    cfg = obj.config_for(BASELINE, "L1-tuned")
    cfg = dataclasses.replace(cfg, footprint=dataclasses.replace(cfg.footprint, enabled=True))
    assert body == tomli_w.dumps(experiment_document(cfg))
    doc = tomllib.loads(text)
    stage2 = doc["tasks"]["SST-2"]["students"][0]["stage2"]
    assert stage2["checkpoint_steps"] == "none"  # TOML has no null: unset stays unset, not the default
    assert doc["experiment"]["name"] == "tiny – σ" and doc["experiment"]["kappa"] == 0.125
    assert doc["tasks"]["SST-2"]["teacher"]["finetune"]["eval_step"] == "none"


def test_values_toml_cannot_hold_are_refused() -> None:
    from confdistill.tuning.experiment_toml import _plain

    assert _plain({"a": None, "b": (1, Path("x"))}) == {"b": [1, "x"]}
    with pytest.raises(TypeError, match="set"):
        _plain({1, 2})


def _every_student_key(tmp_path: Path) -> dict[str, Any]:
    """An experiment whose students between them give every key of the schema's student table:
    a narrow student made by general distillation (with its own teacher and settings), a student
    sliced from the teacher with a fresh shape, one given as a directory; compressed forms of a
    student and of the teacher; the "best" model analysed."""
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    for name in ("teacher", "general-tinybert", "big"):
        (tmp_path / name).mkdir()
    (tmp_path / "wiki.txt").write_text("unlabeled text\n")
    return {
        "experiment": {"name": "round trip", "output_dir": "out", "seed": 5},
        "tasks": {"SST-2": {
            "data_dir": str(tmp_path / "glue"),
            "teacher": {"dir": str(tmp_path / "teacher"), "compress": ["onnx-int8"]},
            "students": [
                {"name": "G2-H32", "stages": ["stage2"], "analyse": "best", "compress": ["onnx-int8"],
                 "general": {"corpus": ["wiki.txt"], "layers": 2, "hidden": 32, "heads": 2, "intermediate": 64,
                             "encoder_init": "sliced", "teacher": str(tmp_path / "big"), "text_column": "text",
                             "num_train_epochs": 2.0, "eval_step": "none", "shuffle_buffer": 100},
                 "stage2": {"temperature": 2.0, "checkpoint_steps": "none"}},
                {"name": "L1-narrow", "from": "teacher", "layers": 1, "hidden": 64, "heads": 4, "intermediate": 96,
                 "stage1": {"layer_mapping": "top", "eval_step": "none"}},
                {"name": "tinybert", "dir": "general-tinybert", "stage": "prediction"},
            ],
        }},
    }


def test_best_toml_keeps_every_student_key(tmp_path: Path) -> None:
    """Written from the schema: a general (narrow) student comes back with its shape and general
    distillation, compressed forms and the analysed model kept, and every key the schema's student
    table reads is written by some student of the file."""
    from confdistill.experiments import schema
    from confdistill.experiments.config import experiment_from_dict, load_experiment
    from confdistill.tuning.experiment_toml import experiment_document, experiment_to_toml

    cfg = experiment_from_dict(_every_student_key(tmp_path), base_dir=tmp_path)
    path = tmp_path / "best.toml"
    path.write_text(experiment_to_toml(cfg), encoding="utf-8")
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    schema.ExperimentFile.model_validate(doc)  # the document is a valid experiment file
    back = load_experiment(path)
    assert dataclasses.replace(back, source=cfg.source) == cfg
    general = back.tasks[0].students[0]
    assert general.general is not None and general.general["hidden"] == 32 and general.general["eval_step"] is None
    assert general.general["encoder_init"] == "sliced" and general.general["teacher"] == str(tmp_path / "big")
    assert general.compress == ("onnx-int8",) and general.analyse == "best"
    assert back.tasks[0].teacher.compress == ("onnx-int8",)
    written = set().union(*(s.keys() for s in experiment_document(cfg)["tasks"]["SST-2"]["students"]))
    # ``stage`` is distill's word for ``stages``: written as ``stages``
    assert written == set(schema.StudentTable.keys()) - {"stage"}


def test_tuner_defaults_are_the_trainers() -> None:
    """The tuner's baseline for a setting the file leaves unset is what ``distill`` trains with:
    stage 1 10 epochs at 5e-5, stage 2 3 epochs at 3e-5 (TinyBERT), from the settings models."""
    from confdistill.distillation.config import DistillConfig
    from confdistill.experiments.specs import StudentSpec
    from confdistill.tuning import params

    d = DistillConfig()
    assert not hasattr(params, "_DEFAULTS")
    base = params.baseline_params(StudentSpec(key="s", name="s", layers=1))
    assert (base["stage1_epochs"], base["stage1_lr"]) == (d.intermediate_epochs, d.intermediate_lr) == (10.0, 5e-5)
    assert (base["stage2_epochs"], base["stage2_lr"]) == (d.prediction_epochs, d.prediction_lr) == (3.0, 3e-5)
    assert (base["temperature"], base["alpha"], base["lambda_conf"], base["mapping"]) == (
        d.temperature, d.alpha, d.lambda_conf, d.layer_mapping)
