"""The experiment runner end to end on tiny random BERTs: the report's table equals an independent
analysis of the written prediction files; a second run skips every step; a damaged output or a
changed setting re-runs exactly the steps it affects."""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from confdistill.experiments.config import ExperimentConfig, experiment_from_dict
from confdistill.experiments.runner import build_plan, run_experiment

TASK = "tiny"
STUDENTS = ("L1", "narrow")


def experiment(out: Path, corpus: Path, encoder: Path, **stage2_override: Any) -> ExperimentConfig:
    fast = {"train_batch_size": 16, "eval_step": None, "checkpoint_steps": None, "max_seq_length": 32}
    narrow_stage2 = {"learning_rate": 5e-3, **stage2_override}
    data = {
        # kappa: the tolerance both splits are judged against (the stage-2 β only checks the bound)
        "experiment": {"name": "tiny", "seed": 3, "max_length": 32, "predict_batch_size": 16, "kappa": 0.05},
        "finetune": {**fast, "num_train_epochs": 1.0, "learning_rate": 5e-3},
        "stage1": {**fast, "num_train_epochs": 1.0, "learning_rate": 5e-3},
        "stage2": {**fast, "num_train_epochs": 1.0, "learning_rate": 5e-3},
        "footprint": {"seq_len": 8, "batch_sizes": [1, 4], "repeats": 1},
        "analysis": {"n_bootstrap": 20},
        "teacher": {"encoder": str(encoder)},
        "students": [
            {"name": "L1", "layers": 1},
            {"name": "narrow", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32,
             "stage2": narrow_stage2},
        ],
        "tasks": {TASK: {"task": "SST-2", "data_dir": str(corpus)}},
    }
    return experiment_from_dict(data, source="<test>", out=out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from confdistill.data.synthetic import write_synthetic_glue

    return write_synthetic_glue(tmp_path_factory.mktemp("corpus"), n_train=64, n_dev=32, seed=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, corpus: Path, tiny_bert: Any) -> dict[str, Any]:
    """One full run of the tiny experiment (shared, read-only: tests that change it copy it first)."""
    encoder = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    out = tmp_path_factory.mktemp("run") / "out"
    cfg = experiment(out, corpus, encoder)
    summary = run_experiment(cfg, log=lambda _: None)
    return {"cfg": cfg, "summary": summary, "corpus": corpus, "encoder": encoder, "out": out}


def copy_run(finished: dict[str, Any], tmp_path: Path, **stage2_override: Any) -> ExperimentConfig:
    out = tmp_path / "out"
    shutil.copytree(finished["out"], out)
    return experiment(out, finished["corpus"], finished["encoder"], **stage2_override)


def step_names() -> list[str]:
    names = [f"{TASK}/data", f"{TASK}/teacher/finetune"]
    for m in ("teacher", *STUDENTS):
        if m != "teacher":
            names += [f"{TASK}/{m}/init", f"{TASK}/{m}/stage1", f"{TASK}/{m}/stage2"]
        names += [f"{TASK}/{m}/predict-train", f"{TASK}/{m}/predict-dev", f"{TASK}/{m}/footprint"]
    names += [f"{TASK}/{s}/analyze" for s in STUDENTS]
    return [*names, "report"]


def test_first_run_runs_every_step_and_writes_the_report(finished: dict[str, Any]) -> None:
    summary, out = finished["summary"], finished["out"]
    assert sorted(summary.ran) == sorted(step_names())
    assert summary.skipped == []
    for name in ("report.html", "report.md", "results.json"):
        assert (out / name).stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    md = (out / "report.md").read_text()
    for fig in (out / "figures").glob("*.png"):
        assert f"figures/{fig.name}" in md


def test_report_table_equals_independent_analysis(finished: dict[str, Any]) -> None:
    """Recompute every number of results.json from the prediction files, the tolerance and the run.json β."""
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties import analyze_pair, kappa_bound

    out = finished["out"]
    results = json.loads((out / "results.json").read_text())
    assert [(r["task"], r["student"]) for r in results["rows"]] == [(TASK, s) for s in STUDENTS]
    for row in results["rows"]:
        run = json.loads((out / TASK / "students" / row["student"] / "stage2" / "run.json").read_text())
        files = {k: read_softmax(out / v) for k, v in row["files"].items()}
        train = analyze_pair(files["teacher_train"], files["student_train"], n_bootstrap=0)
        dev = analyze_pair(files["teacher_dev"], files["student_dev"], n_bootstrap=0)
        kappa_beta = kappa_bound(run["beta"], run["n_train"], alpha=run["alpha"], temperature=run["temperature"],
                                 n_both=train.n_both)
        assert row["n_rows_train"] == run["n_train"] == 64 and row["n_rows_dev"] == 32
        assert row["teacher_accuracy_train"] == pytest.approx(train.teacher_accuracy, abs=1e-12)
        assert row["student_accuracy_train"] == pytest.approx(train.student_accuracy, abs=1e-12)
        assert row["teacher_accuracy_dev"] == pytest.approx(dev.teacher_accuracy, abs=1e-12)
        assert row["student_accuracy_dev"] == pytest.approx(dev.student_accuracy, abs=1e-12)
        assert row["sigma_train"] == pytest.approx(train.sigma, rel=1e-9)
        assert row["sigma_dev"] == pytest.approx(dev.sigma, rel=1e-9)
        # both splits against the experiment's tolerance, never against κ_β
        assert row["kappa"] == 0.05 and row["kappa_source"] == "user"
        # (a tiny random pair may be "not informative": a collapsed model, too few rows in the set)
        for a, key in ((train, "verdict"), (dev, "verdict_dev")):
            assert row[key] == ("not informative" if a.not_informative else "holds" if a.sigma <= 0.05 else "fails")
        # the stage-2 β is a check of the bound on train (γ from n_both: the rows are X_train); dev not covered
        assert row["bound"]["kappa_beta"] == pytest.approx(kappa_beta, rel=1e-9)
        assert row["bound"]["check"] == ("consistent" if train.sigma <= kappa_beta else "violated")
        assert row["analysis"]["dev"]["bound_check"] == "not covered"
        saved = json.loads((out / TASK / "students" / row["student"] / "analysis.json").read_text())
        assert saved["bound_source"] == f"{TASK}/students/{row['student']}/stage2/run.json"
        assert saved["beta"] == run["beta"] and saved["n_train"] == run["n_train"]
        # the prediction files are one row per example of the (uncapped) splits, in file order
        assert files["teacher_train"].n == files["student_train"].n == 64
    fp = results["footprint"][TASK]
    assert set(fp) == {"teacher", *STUDENTS}
    assert fp["narrow"]["parameters"] < fp["L1"]["parameters"] < fp["teacher"]["parameters"]
    assert fp["L1"]["parameter_ratio"] == pytest.approx(fp["teacher"]["parameters"] / fp["L1"]["parameters"])
    assert set(fp["teacher"]["latency_ms"]) == {"1", "4"}


def test_second_run_skips_every_step(finished: dict[str, Any], tmp_path: Path) -> None:
    cfg = copy_run(finished, tmp_path)
    before = (cfg.output_dir / "results.json").read_bytes()
    summary = run_experiment(cfg, log=lambda _: None)
    assert summary.ran == []
    assert sorted(summary.skipped) == sorted(step_names())
    assert (cfg.output_dir / "results.json").read_bytes() == before


def test_damaged_prediction_file_reruns_exactly_what_depends_on_it(finished: dict[str, Any], tmp_path: Path) -> None:
    cfg = copy_run(finished, tmp_path)
    step = f"{TASK}/L1/predict-dev"
    downstream = {step, f"{TASK}/L1/analyze", "report"}
    pred = cfg.output_dir / TASK / "predictions" / "L1.dev.csv"
    original = pred.read_bytes()
    lines = original.decode().splitlines(keepends=True)

    def damage() -> None:
        pred.write_text("".join([lines[0], *lines[2:]]))  # a row lost

    damage()
    plan = run_experiment(cfg, dry_run=True, log=lambda _: None)
    assert plan.reasons[step].startswith("output modified")
    assert set(plan.ran) == downstream  # the step, and what depends on it (marked "after upstream")
    assert {plan.reasons[s] for s in downstream - {step}} == {"after upstream"}
    summary = run_experiment(cfg, log=lambda _: None)
    assert summary.ran[0] == step and set(summary.ran) <= downstream
    assert pred.read_bytes() == original
    # The same damage again: the rebuilt file and its sidecar are now byte-identical to what the
    # downstream steps read, so their inputs are unchanged and only the damaged step re-runs.
    damage()
    summary = run_experiment(cfg, log=lambda _: None)
    assert summary.ran == [step]
    assert pred.read_bytes() == original


def test_changed_setting_reruns_exactly_the_affected_steps(finished: dict[str, Any], tmp_path: Path) -> None:
    cfg = copy_run(finished, tmp_path, temperature=2.0)
    summary = run_experiment(cfg, log=lambda _: None)
    affected = [f"{TASK}/narrow/{s}" for s in ("stage2", "predict-train", "predict-dev", "footprint", "analyze")]
    assert sorted(summary.ran) == sorted([*affected, "report"])
    assert summary.reasons[f"{TASK}/narrow/stage2"] == "inputs changed"
    results = json.loads((cfg.output_dir / "results.json").read_text())
    run = json.loads((cfg.output_dir / TASK / "students" / "narrow" / "stage2" / "run.json").read_text())
    assert run["temperature"] == 2.0
    narrow = next(r for r in results["rows"] if r["student"] == "narrow")
    assert narrow["analysis"]["train"]["temperature"] == 2.0


def test_plan_order_and_dependencies(finished: dict[str, Any]) -> None:
    cfg = copy.deepcopy(finished["cfg"])
    steps = build_plan(cfg)
    seen: set[str] = set()
    for step in steps:
        assert set(step.deps) <= seen, step.name
        seen.add(step.name)
    by_name = {s.name: s for s in steps}
    assert f"{TASK}/L1/stage1" in by_name[f"{TASK}/L1/stage2"].deps
    assert f"{TASK}/L1/stage2" in by_name[f"{TASK}/L1/analyze"].deps
    assert f"{TASK}/teacher/finetune" in by_name[f"{TASK}/L1/init"].deps


def test_every_training_step_trains_with_the_settings_it_is_hashed_by(
    tmp_path: Path, corpus: Path, tiny_bert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each training action receives exactly the hyper-parameters recorded in its step's settings.

    Regression: the teacher's fine-tuning action once closed over a loop variable that later stages
    reassigned, so the teacher trained with the last student's stage-2 settings.
    """
    import confdistill.experiments.actions as actions

    cfg = experiment(tmp_path / "out", corpus, tiny_bert(layers=2, hidden=32, heads=2, intermediate=64))
    cfg.tasks[0].teacher.finetune["learning_rate"] = 1.25e-3  # differs from every stage's
    seen: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(actions, "finetune", lambda cfg, task, enc, data, out, hp, resume: seen.update(
        {"finetune": dict(hp)}))
    monkeypatch.setattr(actions, "distill", lambda cfg, task, t, s, data, out, stage, hp, resume: seen.update(
        {f"{out.parent.name}/{stage}": dict(hp)}))
    steps = [s for s in build_plan(cfg) if s.kind in ("finetune", "stage1", "stage2")]
    for step in steps:
        step.action(step)
    assert seen["finetune"] == steps[0].settings["hparams"]
    assert seen["finetune"]["learning_rate"] == 1.25e-3
    for step in steps[1:]:
        name = "/".join(step.name.split("/")[1:])
        assert seen[name] == step.settings["hparams"], step.name


def test_shipped_example_plan(glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/glue_sst2_rte.toml validates against the real data and plans the whole RQ1 pipeline."""
    from confdistill.cli.main import main

    example = Path(__file__).resolve().parents[1] / "examples" / "glue_sst2_rte.toml"
    out = tmp_path / "glue"
    assert main(["run", str(example), "--dry-run", "--data-dir", str(glue_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "plan: 39 step(s) to run, 0 up to date" in captured.out
    for task in ("SST-2", "RTE"):
        assert f"{task}/data" in captured.err and f"{task}/teacher/finetune" in captured.err
        for student in ("L3", "L2"):
            for step in ("init", "stage1", "stage2", "predict-train", "predict-dev", "footprint", "analyze"):
                assert f"{task}/{student}/{step}" in captured.err
    assert not out.exists()  # a dry run writes nothing


def test_killed_training_step_resumes_only_with_the_same_inputs(tmp_path: Path) -> None:
    """A training step interrupted mid-run gets resume=True next time (same inputs); with other
    settings its old directory is moved aside instead, so the trainer starts afresh."""
    from confdistill.experiments.runner import Step, execute
    from confdistill.io import write_json

    out = tmp_path / "out"
    train_dir = out / "stage"
    calls: list[bool] = []

    def action(step: Step) -> None:
        calls.append(step.resume)
        if len(calls) == 1:  # first attempt: the trainer has started writing, then the run is killed
            write_json(train_dir / "run.json", {"status": "running"})
            raise KeyboardInterrupt
        assert not (train_dir / "old-marker").exists() or step.resume
        (train_dir / "final").mkdir(parents=True, exist_ok=True)
        (train_dir / "final" / "w").write_text(str(step.settings))
        write_json(train_dir / "run.json", {"status": "complete"})

    def plan(lr: float) -> list[Step]:
        return [Step(name="s/stage1", kind="stage1", deps=[], settings={"lr": lr},
                     outputs=[train_dir / "final", train_dir / "run.json"], action=action, train_dir=train_dir)]

    with pytest.raises(KeyboardInterrupt):
        execute(plan(1.0), out, log=lambda _: None)
    (train_dir / "old-marker").write_text("from the interrupted run")
    summary = execute(plan(1.0), out, log=lambda _: None)
    assert calls == [False, True]  # resumed
    assert summary.ran == ["s/stage1"]
    assert execute(plan(1.0), out, log=lambda _: None).ran == []
    # a new setting: not resumed; the previous run directory is moved aside, then removed
    summary = execute(plan(2.0), out, log=lambda _: None)
    assert calls == [False, True, False]
    assert summary.reasons["s/stage1"] == "inputs changed"
    assert not (train_dir / "old-marker").exists()
    assert not list(out.glob(".stage.stale"))
    assert (train_dir / "final" / "w").read_text() == str({"lr": 2.0})


def test_demo_experiment_is_an_ordinary_plan(tmp_path: Path, glue_dir: Path) -> None:
    from confdistill.errors import InputError
    from confdistill.experiments.demo import demo_experiment

    cfg = demo_experiment(tmp_path / "demo", quick=True)
    (task,) = cfg.tasks
    assert task.task == "SST-2" and task.teacher.encoder == "minilm"
    # two layer-mapped students and the narrow one, made by general distillation (no layer count)
    assert [(s.name, s.layers) for s in task.students] == [("L3", 3), ("L2", 2), ("G4-H192", None)]
    assert (task.data_dir / "train.tsv").read_text().count("\n") == 401  # header + generated rows
    kinds = Counter(step.kind for step in build_plan(cfg))
    # teacher + 3 students + L3's int8 form = 5 analysed models, each predicted on train and dev
    assert kinds["general"] == 1 and kinds["make_student"] == 2 and kinds["export"] == 1
    assert kinds["stage1"] == kinds["stage2"] == 3
    assert kinds["predict"] == 10 and kinds["footprint"] == 5 and kinds["analyze"] == 4
    real = demo_experiment(tmp_path / "glue", data_dir=glue_dir, task="RTE", max_train=100)
    assert real.tasks[0].task == "RTE" and real.tasks[0].max_train_examples == 100
    assert demo_experiment(tmp_path / "glue", data_dir=glue_dir, task="RTE", max_train=0).tasks[0].max_train_examples is None
    with pytest.raises(InputError, match="--data-dir and --task go together"):
        demo_experiment(tmp_path / "x", data_dir=glue_dir)
