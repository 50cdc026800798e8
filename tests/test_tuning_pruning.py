"""Tuning, continued: pruning from the trainer's stage-2 σ reports, the layer-mapping dimension,
a best.toml that reproduces the best trial exactly, and the tuning-alone vs confidence-loss comparison.

Most tests drive the real :class:`ExperimentObjective` with the runner's ``execute`` replaced by a
fake that behaves like the trainer towards the evaluation hook (seconds); one slow test trains tiny
BERTs through the real hook.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from distill_helpers import read_csv_rows, write_word_sst2

optuna = pytest.importorskip("optuna")

from confdistill.tuning.study import (  # noqa: E402
    SearchSpace,
    StudyOptions,
    TrialContext,
    TrialResult,
    default_storage_url,
    format_summary,
    open_study,
    run_study,
)

BASELINE = {
    "stage1_epochs": 3.0, "stage2_epochs": 3.0, "stage1_lr": 5e-5, "stage2_lr": 5e-5,
    "temperature": 1.0, "alpha": 0.0, "lambda_conf": 0.0, "augment": False, "mapping": "uniform",
}
N_TRAIN, N_DEV, BATCH = 24, 12, 8




def _experiment(glue: Path, teacher: Path, *, eval_step: Any = None, layers: int = 1,
                stage1: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "experiment": {"name": "tiny", "output_dir": "out", "seed": 3, "max_length": 32},
        "analysis": {"n_bootstrap": 20},
        "footprint": {"enabled": False},
        "tasks": {"SST-2": {
            "data_dir": str(glue),
            "teacher": {"dir": str(teacher)},
            "students": [{"name": "L1", "from": "teacher", "layers": layers,
                          "stage1": {"num_train_epochs": 1.0, "train_batch_size": BATCH, "eval_step": None,
                                     "checkpoint_steps": None, **(stage1 or {})},
                          "stage2": {"num_train_epochs": 1.0, "train_batch_size": BATCH, "eval_step": eval_step,
                                     "checkpoint_steps": None}}],
        }},
    }


def _fake_teacher(path: Path, layers: int = 2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": layers}))
    return path


def _objective(tmp_path: Path, **kw: Any):
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import ExperimentObjective, select

    write_word_sst2(tmp_path / "glue")
    teacher = _fake_teacher(tmp_path / "teacher")
    cfg = experiment_from_dict(_experiment(tmp_path / "glue", teacher, **kw), base_dir=tmp_path)
    task, student = select(cfg, None, None)
    return ExperimentObjective(cfg, task, student, tmp_path / "tune", log=lambda m: None), task, student


def sigma_of(p: dict[str, Any]) -> float:
    """The fake trainer's σ (dev, at every evaluation) and σ(X_train): grows with T."""
    return 0.05 * p["temperature"]


class FakeExecute:
    """Stands in for ``runner.execute``: for a trial's stage 2 it does what the trainer does towards
    the evaluation hook (an evaluation every ``eval_step`` steps and one at the end, each calling
    the hook with the contract's info), leaves a checkpoint and the runner's "started" record
    behind, then writes the trial's analysis.json; other steps are no-ops."""

    def __init__(self) -> None:
        self.evaluated: dict[str, list[int]] = {}

    def __call__(self, steps: list[Any], out: Path, **_: Any) -> None:
        from confdistill.distillation.trainer import _EVAL_HOOK
        from confdistill.experiments.runner import manifest_path

        for step in steps:
            if step.kind != "stage2":
                continue
            hp = step.settings["hparams"]
            p = {"temperature": hp["temperature"]}
            (step.train_dir / "checkpoints" / "step-1").mkdir(parents=True, exist_ok=True)
            (step.train_dir / "final").mkdir(parents=True, exist_ok=True)
            manifest_path(out, step.name, ".started.json").parent.mkdir(parents=True, exist_ok=True)
            manifest_path(out, step.name, ".started.json").write_text("{}")
            spe = math.ceil(N_TRAIN / hp["train_batch_size"])
            total = max(1, math.ceil(hp["num_train_epochs"] * spe))
            at = [s for s in range(1, total + 1) if hp["eval_step"] and s % hp["eval_step"] == 0]
            if not at or at[-1] != total:
                at.append(total)
            hook = _EVAL_HOOK.get()
            self.evaluated[step.name] = []
            for s in at:
                self.evaluated[step.name].append(s)
                if hook is not None:
                    hook({"job": "prediction", "out": str(step.train_dir), "step": s, "epoch": s / spe,
                          "metrics": {"accuracy": 0.9, "sigma": sigma_of(p), "n_both": 10}})
            student_dir = step.train_dir.parent
            (student_dir / "analysis.json").write_text(json.dumps({
                "train": {"sigma": sigma_of(p), "kappa": 0.1, "verdict": "holds", "n_both": 20,
                          "student_accuracy": 0.9, "verdict_95": "holds", "bound_check": "consistent",
                          "sigma_one_sided95": [sigma_of(p) - 0.01, sigma_of(p) + 0.01], "kappa_from_beta": 0.5},
                "dev": {"sigma": sigma_of(p), "student_accuracy": 0.9, "teacher_accuracy": 0.9},
                "beta": 1.0, "n_train": N_TRAIN,
            }))


def test_objective_prunes_from_stage2_sigma_reports_and_resumes(tmp_path: Path, monkeypatch) -> None:
    from confdistill.experiments import runner

    fake = FakeExecute()
    monkeypatch.setattr(runner, "execute", fake)
    obj, _, _ = _objective(tmp_path)
    out = tmp_path / "tune"
    opts = StudyOptions(out=out, n_trials=4, kappa=0.1, pruner_startup_trials=2, show_progress=False,
                        space=SearchSpace(stage2_epochs=(1.0, 4.0)))
    study = open_study(opts)
    # Trials 0 and 1 complete (σ 0.1, 0.05); trial 2 (σ 0.075) equals their median: kept;
    # trial 3 (σ 0.4) is worse than the median at its first report: pruned there.
    for temp in (2.0, 1.0, 1.5, 8.0):
        study.enqueue_trial({**BASELINE, "temperature": temp})
    summary = run_study(obj, opts, write_best=obj.write_best_toml)

    rows = read_csv_rows(out / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert rows[3]["pruned_at_step"] == "1" and rows[3]["fail_reason"].startswith("pruned")
    assert float(rows[3]["pruned_sigma"]) == pytest.approx(sigma_of({"temperature": 8.0}))
    assert rows[3]["sigma"] == ""  # no σ(X_train) for a pruned trial
    # Automatic eval_step: 24 rows / batch 8 = 3 steps per epoch, 3 epochs = 9 steps → every ⌈9/4⌉ = 3.
    settings = json.loads((out / "trials" / "00000" / "settings.json").read_text())
    assert settings["stage2"]["eval_step"] == 3 and rows[0]["eval_step"] == "3"
    assert settings["stage1"]["layer_mapping"] == "uniform"
    assert fake.evaluated["SST-2/trial00000/stage2"] == [3, 6, 9]
    # Reports indexed by evaluation; the final evaluation (step 9) is not reported.
    stored = optuna.load_study(study_name="confdistill", storage=default_storage_url(out))
    assert stored.trials[0].intermediate_values == {1: pytest.approx(0.1), 2: pytest.approx(0.1)}
    assert stored.trials[3].intermediate_values == {1: pytest.approx(0.4)}
    # The pruned trial's models and "started" record are gone; the others' analyses stay.
    pruned_dir = out / "experiment" / "SST-2" / "students" / "trial00003"
    assert not (pruned_dir / "stage2" / "checkpoints").exists() and not (pruned_dir / "stage2" / "final").exists()
    assert not (out / "experiment" / ".steps" / "SST-2__trial00003__stage2.started.json").exists()
    assert (out / "trials" / "00001" / "analysis.json").is_file()
    assert summary["best"]["trial"] == 1
    # the trial's bootstrap bounds and β bound check are columns; the summary judges against κ
    assert float(rows[1]["sigma_lower95"]) == pytest.approx(0.04) and rows[1]["bound_check"] == "consistent"
    assert summary["best"]["verdict"] == "holds" and summary["best"]["verdict_95"] == "holds"  # 0.06 <= 0.1
    assert summary["baseline"] is None and summary["best"]["bound_check"] == "consistent"

    # Resuming to 5 finished trials runs exactly one new trial; the pruned one is not repeated.
    fake.evaluated.clear()
    run_study(obj, StudyOptions(out=out, n_trials=5, kappa=0.1, pruner_startup_trials=2, show_progress=False,
                                space=SearchSpace(stage2_epochs=(1.0, 4.0))))
    assert list(fake.evaluated) == ["SST-2/trial00004/stage2"]
    assert [r["state"] for r in read_csv_rows(out / "trials.csv")][:4] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]


def test_baseline_and_pareto_trials_are_never_pruned(tmp_path: Path, monkeypatch) -> None:
    from confdistill.experiments import runner

    monkeypatch.setattr(runner, "execute", FakeExecute())
    obj, _, _ = _objective(tmp_path)
    out = tmp_path / "tune"
    # The baseline (T = 8: the worst σ) is enqueued after two better trials: it still completes.
    opts = StudyOptions(out=out, n_trials=3, kappa=0.1, pruner_startup_trials=1, show_progress=False,
                        baseline={**BASELINE, "temperature": 8.0})
    study = open_study(opts)
    for temp in (1.2, 1.0):
        study.enqueue_trial({**BASELINE, "temperature": temp})
    run_study(obj, opts)
    assert [(r["role"], r["state"]) for r in read_csv_rows(out / "trials.csv")] == [
        ("search", "COMPLETE"), ("search", "COMPLETE"), ("baseline", "COMPLETE")]
    # Two objectives: optuna cannot prune, so a searched trial with the worst σ also completes.
    opts = StudyOptions(out=tmp_path / "pareto", n_trials=3, kappa=0.1, mode="pareto", pruner_startup_trials=1,
                        show_progress=False)
    study = open_study(opts)
    for temp in (1.2, 1.0, 8.0):
        study.enqueue_trial({**BASELINE, "temperature": temp})
    run_study(obj, opts)
    assert [r["state"] for r in read_csv_rows(tmp_path / "pareto" / "trials.csv")] == ["COMPLETE"] * 3


def test_best_toml_reproduces_the_best_trial_field_by_field(tmp_path: Path, monkeypatch) -> None:
    from confdistill.experiments import runner
    from confdistill.experiments.config import load_experiment

    monkeypatch.setattr(runner, "execute", FakeExecute())
    obj, _, _ = _objective(tmp_path)
    out = tmp_path / "tune"
    opts = StudyOptions(out=out, n_trials=3, kappa=0.1, show_progress=False, space=SearchSpace(stage2_epochs=(1.0, 4.0)))
    study = open_study(opts)
    for temp, mapping in ((3.0, "uniform"), (1.25, "bottom"), (2.0, "top")):
        study.enqueue_trial({**BASELINE, "temperature": temp, "mapping": mapping, "alpha": 0.3})
    summary = run_study(obj, opts, write_best=obj.write_best_toml)
    assert summary["best"]["trial"] == 1
    trial = json.loads((out / "trials" / "00001" / "settings.json").read_text())
    back = load_experiment(out / "best.toml").tasks[0].students[0]
    for stage in ("stage1", "stage2"):
        want, got = trial[stage], getattr(back, stage)
        assert sorted(got) == sorted(want), stage
        for key, value in want.items():
            assert got[key] == value, f"{stage}.{key}: best.toml {got[key]!r} != trial {value!r}"
    # The settings that make it exact: an unset optional setting stays unset (not its default)…
    assert back.stage1["eval_step"] is None and back.stage2["checkpoint_steps"] is None
    assert '"none"' in (out / "best.toml").read_text()
    # …the chosen stage-2 eval_step and the searched layer mapping are written out.
    assert back.stage2["eval_step"] == 3 and back.stage1["layer_mapping"] == "bottom"


def test_best_toml_without_data_keeps_eval_step_unset(tmp_path: Path) -> None:
    """Before the data exist no eval_step can be chosen: None round-trips as "none", not as 50."""
    from confdistill.distillation import DistillConfig
    from confdistill.experiments.config import experiment_from_dict, load_experiment
    from confdistill.tuning.objective import ExperimentObjective, select

    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    teacher = _fake_teacher(tmp_path / "teacher")
    cfg = experiment_from_dict(_experiment(tmp_path / "glue", teacher), base_dir=tmp_path)
    task, student = select(cfg, None, None)
    obj = ExperimentObjective(cfg, task, student, tmp_path / "tune", log=lambda m: None)
    params = {**BASELINE, "temperature": 2.5, "mapping": "top"}
    obj.write_best_toml(params, tmp_path / "best.toml")
    back = load_experiment(tmp_path / "best.toml").tasks[0].students[0]
    want = obj.config_for(params, "L1-tuned").tasks[0].students[0]
    assert back.stage1 == want.stage1 and back.stage2 == want.stage2
    assert back.stage2["eval_step"] is None and DistillConfig().eval_step is not None


def test_layer_mapping_dimension(tmp_path: Path) -> None:
    from confdistill.distillation import DistillConfig
    from confdistill.errors import InputError
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import baseline_params, select, space_for, student_with

    assert "layer_mapping" in DistillConfig.model_fields
    write_word_sst2(tmp_path / "glue")
    teacher = _fake_teacher(tmp_path / "teacher", layers=2)

    def student_of(**kw: Any):
        cfg = experiment_from_dict(_experiment(tmp_path / "glue", teacher, **kw), base_dir=tmp_path)
        return select(cfg, None, None)

    task, small = student_of(layers=1)
    assert space_for(small, SearchSpace(), aug_available=False, task=task).mapping == ("uniform", "top", "bottom")
    task, same = student_of(layers=2)
    assert space_for(same, SearchSpace(), aug_available=False, task=task).mapping == ("uniform",)
    no_stage1 = type(small)(**{**small.__dict__, "stages": ("stage2",)})
    assert space_for(no_stage1, SearchSpace(), aug_available=False, task=task).mapping == ("uniform",)
    # The experiment's own mapping is the baseline's; a trial's goes into its stage-1 settings.
    task, top = student_of(layers=1, stage1={"layer_mapping": "top"})
    assert top.stage1["layer_mapping"] == "top" and baseline_params(top)["mapping"] == "top"
    assert student_with(top, {**BASELINE, "mapping": "bottom"}, name="t", aug_train=None).stage1["layer_mapping"] == "bottom"
    # The experiment validator knows the field (a misspelt one is refused).
    with pytest.raises(InputError, match="layer_maping"):
        student_of(stage1={"layer_maping": "top"})


def _fake(p: dict[str, Any], ctx: TrialContext) -> TrialResult:
    """σ falls with T and λ; accuracy falls with α."""
    sigma = 0.2 / p["temperature"] + 0.05 / (1.0 + p["lambda_conf"])
    return TrialResult(sigma=sigma, dev_accuracy=0.9 - 0.2 * p["alpha"], teacher_dev_accuracy=0.9, kappa=0.1)


def test_lambda_comparison_arms_and_printout(tmp_path: Path) -> None:
    opts = StudyOptions(out=tmp_path, n_trials=7, baseline=BASELINE, compare_lambda=(1.0, 3.0), kappa=0.105,
                        show_progress=False, epsilon=0.01)
    study = open_study(opts)
    # Searched trials (role "search"): two with λ = 0, two with λ > 0, one of them infeasible.
    for p in ({"temperature": 4.0, "lambda_conf": 0.0}, {"temperature": 2.0, "lambda_conf": 0.0},
              {"temperature": 8.0, "lambda_conf": 10.0, "alpha": 0.5}, {"temperature": 2.0, "lambda_conf": 3.0}):
        study.enqueue_trial({**BASELINE, **p})
    summary = run_study(_fake, opts)
    cmp = summary["lambda_comparison"]
    rows = [r for r in read_csv_rows(tmp_path / "trials.csv") if r["state"] == "COMPLETE"]

    def best(rs: list[dict[str, str]]) -> dict[str, str]:
        ok = [r for r in rs if float(r["dev_accuracy"]) >= 0.9 - 0.01]
        return min(ok, key=lambda r: float(r["sigma"]))

    search = [r for r in rows if r["role"] == "search"]
    alone = best([r for r in search if float(r["lambda_conf"]) == 0])
    tuned = best([r for r in search if float(r["lambda_conf"]) > 0])
    assert cmp["tuning_alone"]["trial"] == int(alone["number"])  # T = 4: σ 0.1
    assert cmp["tuning_alone"]["sigma"] == pytest.approx(0.2 / 4 + 0.05)
    assert cmp["confidence_loss_tuned"]["trial"] == int(tuned["number"])  # T = 2, λ = 3 (T = 8 is infeasible)
    assert cmp["confidence_loss_tuned"]["sigma"] == pytest.approx(0.1 + 0.05 / 4)
    assert [a["lambda_conf"] for a in cmp["confidence_loss_at_baseline"]] == [1.0, 3.0]
    assert [a["sigma"] for a in cmp["confidence_loss_at_baseline"]] == pytest.approx([0.2 + 0.025, 0.2 + 0.0125])
    assert cmp["baseline"]["sigma"] == pytest.approx(0.25) and cmp["baseline"]["verdict"] == "fails"
    assert cmp["tuning_alone"]["verdict"] == "holds" and cmp["confidence_loss_tuned"]["verdict"] == "fails"
    assert cmp["restores"] == ["tuning_alone"]
    assert cmp["counts"] == {"tuning_alone": 2, "confidence_loss_at_baseline": 2, "confidence_loss_tuned": 2}
    assert cmp["notes"] == [] and cmp["kappa"] == 0.105 and cmp["min_dev_accuracy"] == pytest.approx(0.89)
    text = "\n".join(format_summary(summary))
    assert "tuning alone (λ = 0)" in text and "σ = 0.1," in text and "φ_cnf holds" in text
    assert "restores φ_cnf within the accuracy floor: tuning_alone" in text


def test_lambda_comparison_says_when_tuning_alone_is_untested(tmp_path: Path) -> None:
    # (A baseline's λ would join the choices: with a λ = 0 baseline, λ = 0 could be drawn.)
    space = SearchSpace(lambda_conf=(1.0, 3.0))
    summary = run_study(_fake, StudyOptions(out=tmp_path, n_trials=3, space=space, kappa=0.1, show_progress=False))
    cmp = summary["lambda_comparison"]
    assert cmp["tuning_alone"] is None and cmp["counts"]["tuning_alone"] == 0
    assert cmp["confidence_loss_tuned"] is not None and cmp["counts"]["confidence_loss_tuned"] == 3
    assert any("--lambda-choices 0" in n for n in cmp["notes"])
    assert any("--compare-lambda" in n for n in cmp["notes"])
    text = "\n".join(format_summary(summary))
    assert "note: no searched trial had λ = 0" in text and "no feasible searched λ = 0 trial" in text


@pytest.mark.slow
def test_real_trial_reports_dev_sigma_and_a_pruned_trial_leaves_no_trace(tiny_bert, tmp_path: Path) -> None:
    """Tiny BERTs through the real trainer hook: a trial reports σ(dev) at its stage-2 evaluations;
    a trial pruned at its first report stops there, and the next trial runs normally."""
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import ExperimentObjective, select

    write_word_sst2(tmp_path / "glue")
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    cfg = experiment_from_dict(_experiment(tmp_path / "glue", teacher), base_dir=tmp_path)
    task, student = select(cfg, None, None)
    out = tmp_path / "tune"
    obj = ExperimentObjective(cfg, task, student, out, log=lambda m: None)
    obj.prepare()
    params = {**BASELINE, "stage1_epochs": 1.0, "stage2_epochs": 2.0, "mapping": "top"}

    def ctx(number: int, report) -> TrialContext:
        (out / "trials" / f"{number:05d}").mkdir(parents=True, exist_ok=True)
        return TrialContext(number, out / "trials" / f"{number:05d}", report)

    def prune(step: int, sigma: float) -> None:
        raise optuna.TrialPruned(f"test: σ {sigma} at {step}")

    with pytest.raises(optuna.TrialPruned):
        obj(params, ctx(0, prune))
    pruned = out / "experiment" / "SST-2" / "students" / "trial00000"
    assert not (pruned / "stage2" / "checkpoints").exists() and not (pruned / "stage2" / "final").exists()
    assert not (pruned / "analysis.json").exists()

    reports: list[tuple[int, float]] = []
    result = obj(params, ctx(1, lambda step, sigma: reports.append((step, sigma))))
    # 24 rows / batch 8 = 3 steps per epoch, 2 epochs = 6 steps → eval_step ⌈6/4⌉ = 2: evaluations
    # at steps 2, 4 (reported as 1, 2) and 6 (the end: not reported).
    assert [s for s, _ in reports] == [1, 2]
    metrics = out / "experiment" / "SST-2" / "students" / "trial00001" / "stage2" / "metrics.jsonl"
    evals = {r["step"]: r["eval"] for r in map(json.loads, metrics.read_text().splitlines()) if "eval" in r}
    assert sorted(evals) == [2, 4, 6]
    # The values reported are the trainer's own σ on dev at those evaluations.
    assert [sig for _, sig in reports] == pytest.approx([evals[2]["sigma"], evals[4]["sigma"]])
    assert math.isfinite(result.sigma) and result.extra["eval_step"] == 2


def test_resumed_study_with_other_choices_is_refused_before_any_trial(tmp_path: Path) -> None:
    from confdistill.errors import InputError

    run_study(_fake, StudyOptions(out=tmp_path, n_trials=1, kappa=0.1, space=SearchSpace(mapping=("uniform",)),
                                  show_progress=False))
    with pytest.raises(InputError, match=r"mapping in \['uniform'\]"):
        run_study(_fake, StudyOptions(out=tmp_path, n_trials=2, kappa=0.1, show_progress=False))
    stored = optuna.load_study(study_name="confdistill", storage=default_storage_url(tmp_path))
    assert [t.state.name for t in stored.trials] == ["COMPLETE"]  # no trial failed on the way
