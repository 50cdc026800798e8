"""tune --pruner-startup-trials / --pruner-warmup-evals: defaults as before, passed to the median
pruner, validated (one line, exit 2) and recorded in summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill_helpers import read_csv_rows

optuna = pytest.importorskip("optuna")

from confdistill.tuning.study import (  # noqa: E402
    SearchSpace,
    StudyOptions,
    TrialContext,
    TrialResult,
    open_study,
    run_study,
)

BASELINE = {
    "stage1_epochs": 3.0, "stage2_epochs": 3.0, "stage1_lr": 5e-5, "stage2_lr": 5e-5,
    "temperature": 1.0, "alpha": 0.0, "lambda_conf": 0.0, "augment": False, "mapping": "uniform",
}


def reporting(p: dict[str, Any], ctx: TrialContext) -> TrialResult:
    """Reports σ = T at steps 1, 2, 3 (as the real objective numbers its stage-2 evaluations)."""
    for step in (1, 2, 3):
        ctx.report(step, p["temperature"])
    return TrialResult(sigma=p["temperature"], dev_accuracy=0.9, teacher_dev_accuracy=0.9)


def _run(out: Path, temps: list[float], **kw: Any) -> list[dict[str, str]]:
    opts = StudyOptions(out=out, n_trials=len(temps), kappa=0.1, show_progress=False,
                        space=SearchSpace(stage1_epochs=(1.0, 4.0)), **kw)
    study = open_study(opts)
    for t in temps:
        study.enqueue_trial({**BASELINE, "temperature": t})
    run_study(reporting, opts)
    return read_csv_rows(out / "trials.csv")


def test_startup_trials_and_warmup_steps_reach_the_pruner(tmp_path: Path) -> None:
    from confdistill.tuning.objective import warmup_steps

    temps = [2.0, 1.0, 1.5, 8.0]  # the last one is the worst at every step
    rows = _run(tmp_path / "a", temps, pruner_startup_trials=3)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["PRUNED"]
    assert rows[-1]["pruned_at_step"] == "1"  # no warm-up: pruned at its first report
    # four start-up trials: the fourth is not judged yet
    assert [r["state"] for r in _run(tmp_path / "b", temps, pruner_startup_trials=4)] == ["COMPLETE"] * 4
    # two warm-up evaluations: judged from the third report on
    rows = _run(tmp_path / "c", temps, pruner_startup_trials=3, pruner_warmup_steps=warmup_steps(2))
    assert rows[-1]["state"] == "PRUNED" and rows[-1]["pruned_at_step"] == "3"
    # three: never judged (its reports are 1, 2, 3)
    rows = _run(tmp_path / "d", temps, pruner_startup_trials=3, pruner_warmup_steps=warmup_steps(3))
    assert rows[-1]["state"] == "COMPLETE"
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["pruner"] == {"kind": "median", "startup_trials": 3, "warmup_steps": 4}


def test_defaults_are_the_previous_pruner(tmp_path: Path) -> None:
    from confdistill.tuning.objective import warmup_steps

    opts = StudyOptions(out=tmp_path, n_trials=1, kappa=0.1)
    assert (opts.pruner_startup_trials, opts.pruner_warmup_steps, warmup_steps(0)) == (5, 0, 0)
    pruner = open_study(opts).pruner
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    pareto = StudyOptions(out=tmp_path / "p", n_trials=1, kappa=0.1, mode="pareto")
    assert isinstance(open_study(pareto).pruner, optuna.pruners.NopPruner)


def _experiment_file(tmp_path: Path) -> Path:
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import experiment_to_toml

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "teacher").mkdir()
    cfg = experiment_from_dict({
        "experiment": {"name": "tiny", "output_dir": "out", "seed": 3, "max_length": 32},
        "footprint": {"enabled": False},
        "tasks": {"SST-2": {"data_dir": str(tmp_path), "teacher": {"dir": str(tmp_path / "teacher")},
                            "students": [{"name": "L1", "from": "teacher", "layers": 1}]}},
    }, base_dir=tmp_path)
    path = tmp_path / "exp.toml"
    path.write_text(experiment_to_toml(cfg))
    return path


@pytest.mark.parametrize(("option", "needle"), [
    ("--pruner-startup-trials", "--pruner-startup-trials: expected a number of trials >= 0, got -1"),
    ("--pruner-warmup-evals", "--pruner-warmup-evals: expected a number of evaluations >= 0, got -1"),
])
def test_negative_pruner_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      option: str, needle: str) -> None:
    from confdistill.cli.main import main

    exp = _experiment_file(tmp_path)
    rc = main(["tune", str(exp), "--trials", "1", "--kappa", "0.1", "--out", str(tmp_path / "o"), option, "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "startup", "warmup"), [
    ([], 5, 0),
    (["--pruner-startup-trials", "2", "--pruner-warmup-evals", "3"], 2, 4),
])
def test_cli_passes_and_records_the_pruner_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   argv: list[str], startup: int, warmup: int) -> None:
    """Through the CLI, with the distillation replaced by a cheap objective (the study is real)."""
    from confdistill.cli.main import main
    from confdistill.tuning import objective as objective_mod
    from confdistill.tuning import study as study_mod

    seen: list[StudyOptions] = []
    real_run_study = study_mod.run_study

    def fake_run_study(objective: Any, opts: StudyOptions, **kw: Any) -> dict[str, Any]:
        seen.append(opts)
        return real_run_study(lambda p, ctx: TrialResult(sigma=0.05, dev_accuracy=0.9, teacher_dev_accuracy=0.9),
                              opts)

    monkeypatch.setattr(study_mod, "run_study", fake_run_study)
    monkeypatch.setattr(objective_mod.ExperimentObjective, "prepare", lambda self: None)
    exp = _experiment_file(tmp_path)
    out = tmp_path / "o"
    assert main(["tune", str(exp), "--trials", "1", "--kappa", "0.1", "--out", str(out), *argv]) == 0
    assert (seen[0].pruner_startup_trials, seen[0].pruner_warmup_steps) == (startup, warmup)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pruner"] == {"kind": "median", "startup_trials": startup, "warmup_steps": warmup}
