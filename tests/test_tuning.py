"""The tuning study: runs, resumes without repeating trials, respects the accuracy constraint,
shares one storage between worker processes, prunes, and writes a runnable best.toml.

The study machinery is tested with cheap fake objectives (deterministic functions of the trial's
parameters), so each test takes about a second; one integration test runs a real trial on tiny BERTs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from distill_helpers import read_csv_rows, write_word_sst2

optuna = pytest.importorskip("optuna")

from confdistill.errors import InputError  # noqa: E402
from confdistill.tuning.study import (  # noqa: E402
    PARAM_NAMES,
    SearchSpace,
    StudyOptions,
    TrialContext,
    TrialResult,
    default_storage_url,
    open_study,
    run_study,
)

BASELINE = {
    "stage1_epochs": 10.0, "stage2_epochs": 3.0, "stage1_lr": 5e-5, "stage2_lr": 3e-5,  # TinyBERT: per stage
    "temperature": 1.0, "alpha": 0.0, "lambda_conf": 0.0, "augment": False, "mapping": "uniform",
}
SPACE = SearchSpace(stage1_epochs=(1.0, 4.0), stage2_epochs=(1.0, 4.0))


def fake_result(p: dict[str, Any]) -> TrialResult:
    """σ falls with T and λ; accuracy falls with α (so low σ can cost accuracy)."""
    sigma = 0.2 / p["temperature"] + 0.05 / (1.0 + p["lambda_conf"]) + 0.01 * p["stage2_epochs"]
    acc = 0.9 - 0.2 * p["alpha"]
    return TrialResult(sigma=sigma, dev_accuracy=acc, teacher_dev_accuracy=0.9, kappa=0.1,
                       verdict="holds" if sigma <= 0.1 else "fails", extra={"beta": 1.0})


class Counting:
    def __init__(self, fn=fake_result) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fn = fn

    def __call__(self, params: dict[str, Any], ctx: TrialContext) -> TrialResult:
        assert set(params) == set(PARAM_NAMES)
        assert ctx.workdir.is_dir()
        self.calls.append(dict(params))
        return self.fn(params)


def _opts(out: Path, n: int, **kw: Any) -> StudyOptions:
    kw.setdefault("space", SPACE)
    kw.setdefault("show_progress", False)
    kw.setdefault("kappa", 0.1)  # a study needs a tolerance (test_study_without_tolerance_is_refused)
    return StudyOptions(out=out, n_trials=n, **kw)



def test_three_trial_study_writes_outputs(tmp_path: Path) -> None:
    obj = Counting()
    summary = run_study(obj, _opts(tmp_path, 3, baseline=BASELINE, kappa=0.12),
                        write_best=lambda params, path: path.write_text(json.dumps(params)))
    assert len(obj.calls) == 3
    assert obj.calls[0] == BASELINE  # the baseline runs first, with the experiment's settings
    rows = read_csv_rows(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert [r["role"] for r in rows] == ["baseline", "search", "search"]
    # Independent check of every row against the fake objective.
    for r, call in zip(rows, obj.calls, strict=True):
        assert float(r["sigma"]) == pytest.approx(fake_result(call).sigma)
        assert float(r["temperature"]) == pytest.approx(call["temperature"])
    feasible = [r for r in rows if float(r["dev_accuracy"]) >= 0.9 - 0.01 - 1e-12]
    want = min(feasible, key=lambda r: float(r["sigma"]))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s == json.loads(json.dumps(summary))
    assert s["best"]["trial"] == int(want["number"])
    assert s["baseline"]["sigma"] == pytest.approx(fake_result(BASELINE).sigma)
    assert s["kappa"] == 0.12 and s["phi_cnf_restored"] == (float(want["sigma"]) <= 0.12)
    assert s["best"]["verdict"] == ("holds" if float(want["sigma"]) <= 0.12 else "fails")
    assert s["best"]["verdict_95"] is None  # the fake objective gives no bootstrap bounds
    assert json.loads((tmp_path / "best.toml").read_text()) == s["best"]["params"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "study.db").is_file()


def test_study_without_tolerance_is_refused(tmp_path: Path) -> None:
    """No --kappa, no study: the β bound always holds, so it cannot be the target (nothing is written)."""
    obj = Counting()
    with pytest.raises(InputError, match="--kappa") as exc:
        run_study(obj, _opts(tmp_path / "o", 1, kappa=None))
    assert "always holds" in str(exc.value) and "\n" not in str(exc.value)
    assert obj.calls == [] and not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="--kappa: expected a tolerance"):
        run_study(obj, _opts(tmp_path / "o", 1, kappa=0.0))


def test_verdict_95_from_the_trials_bootstrap_bounds(tmp_path: Path) -> None:
    def objective(p: dict[str, Any]) -> TrialResult:
        sigma = 0.2 / p["temperature"]
        return TrialResult(sigma=sigma, dev_accuracy=0.9, teacher_dev_accuracy=0.9,
                           extra={"sigma_lower95": sigma - 0.01, "sigma_upper95": sigma + 0.01})

    summary = run_study(Counting(objective), _opts(tmp_path, 1, baseline=BASELINE, kappa=0.195))
    base = summary["baseline"]  # σ = 0.2, bounds [0.19, 0.21] straddle κ = 0.195
    assert (base["verdict"], base["verdict_95"]) == ("fails", "undecided")
    assert summary["best_verdict_95"] == "undecided" and summary["phi_cnf_restored"] is False


def test_resume_does_not_repeat_finished_trials(tmp_path: Path) -> None:
    first = Counting()
    run_study(first, _opts(tmp_path, 2, baseline=BASELINE))
    assert len(first.calls) == 2
    # A new process would open the same storage: a fresh study object, target 3 trials in total.
    second = Counting()
    run_study(second, _opts(tmp_path, 3, baseline=BASELINE))
    assert len(second.calls) == 1  # only the missing trial ran; the baseline is not enqueued again
    assert second.calls[0] not in first.calls
    rows = read_csv_rows(tmp_path / "trials.csv")
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and {r["state"] for r in rows} == {"COMPLETE"}
    # Running again with the target reached does nothing.
    third = Counting()
    run_study(third, _opts(tmp_path, 3, baseline=BASELINE))
    assert third.calls == []


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() outside optimize, on purpose
def test_killed_trial_is_failed_and_retried_with_same_params(tmp_path: Path) -> None:
    run_study(Counting(), _opts(tmp_path, 1))
    # Simulate a worker killed mid-trial: a RUNNING trial whose process no longer exists.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = open_study(_opts(tmp_path, 2))
    t = study.ask()
    params = SPACE.suggest(t)
    t.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    obj = Counting()
    run_study(obj, _opts(tmp_path, 2))
    rows = read_csv_rows(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert obj.calls == [params]  # the retry reran the killed trial's configuration


def test_best_respects_accuracy_constraint(tmp_path: Path) -> None:
    # Lowest σ needs a high α, which costs accuracy: the unconstrained optimum is infeasible.
    def objective(p: dict[str, Any]) -> TrialResult:
        return TrialResult(sigma=1.0 - p["alpha"], dev_accuracy=0.95 - 0.3 * p["alpha"], teacher_dev_accuracy=0.9)

    infeasible_low = {**BASELINE, "alpha": 0.8}  # σ 0.2, accuracy 0.71
    study = open_study(_opts(tmp_path, 8, epsilon=0.02))
    study.enqueue_trial(infeasible_low)
    summary = run_study(Counting(objective), _opts(tmp_path, 8, epsilon=0.02))
    rows = [r for r in read_csv_rows(tmp_path / "trials.csv") if r["state"] == "COMPLETE"]
    ok = [r for r in rows if 0.95 - 0.3 * float(r["alpha"]) >= 0.9 - 0.02]
    assert min(float(r["sigma"]) for r in rows) == pytest.approx(0.2)  # the infeasible one is the lowest σ
    best = summary["best"]
    assert best["dev_accuracy"] >= 0.9 - 0.02
    assert best["sigma"] == pytest.approx(min(float(r["sigma"]) for r in ok))
    assert best["sigma"] > 0.2
    # optuna's own constrained best agrees (constraint stored with Trial.set_constraint).
    reloaded = optuna.load_study(study_name="confdistill", storage=default_storage_url(tmp_path))
    assert reloaded.best_trial.number == best["trial"]
    assert all((t.constraints["accuracy"] > 0) == (t.user_attrs["dev_accuracy"] < 0.88)
               for t in reloaded.trials if t.state.name == "COMPLETE")


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from confdistill.tuning.study import SearchSpace, StudyOptions, TrialResult, run_study

    def objective(p, ctx):
        time.sleep(0.25)  # long enough that the two workers overlap
        return TrialResult(sigma=p["alpha"] + 0.1 / p["temperature"], dev_accuracy=0.9, teacher_dev_accuracy=0.9)

    out, n = Path(sys.argv[1]), int(sys.argv[2])
    space = SearchSpace(stage1_epochs=(1.0, 4.0), stage2_epochs=(1.0, 4.0))
    run_study(objective, StudyOptions(out=out, n_trials=n, space=space, show_progress=False, seed=5, kappa=0.1))
    """
)


def test_two_workers_share_one_storage(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "study"), "8"], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    study = optuna.load_study(study_name="confdistill", storage=default_storage_url(tmp_path / "study"))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    # Both stop at the shared target; a worker may add the trial it was running when it was reached.
    assert 8 <= len(done) <= 9
    by_worker: dict[str, list[int]] = {}
    for t in done:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    assert len(by_worker) == 2 and all(by_worker.values())  # both workers ran trials
    assert sum(len(v) for v in by_worker.values()) == len(done)
    assert len({t.number for t in done}) == len(done)
    assert len({tuple(sorted(t.params.items())) for t in done}) == len(done)  # different configurations


def test_pareto_mode_front(tmp_path: Path) -> None:
    obj = Counting()
    summary = run_study(obj, _opts(tmp_path, 6, mode="pareto", baseline=BASELINE))
    study = optuna.load_study(study_name="confdistill", storage=default_storage_url(tmp_path))
    assert len(study.directions) == 2
    pts = {t.number: (t.values[0], t.values[1]) for t in study.trials if t.state.name == "COMPLETE"}
    front = sorted(n for n, (s, a) in pts.items()
                   if not any(s2 <= s and a2 >= a and (s2, a2) != (s, a) for s2, a2 in pts.values()))
    assert sorted(summary["pareto_front"]) == front
    assert sorted(summary["pareto_front"]) == sorted(t.number for t in study.best_trials)


def test_median_pruner_prunes_a_bad_trial(tmp_path: Path) -> None:
    def objective(p: dict[str, Any], ctx: TrialContext) -> TrialResult:
        sigma = p["temperature"]  # the worse (higher) σ is already visible at step 0
        for step in range(3):
            ctx.report(step, sigma)
        return TrialResult(sigma=sigma, dev_accuracy=0.9, teacher_dev_accuracy=0.9)

    opts = _opts(tmp_path, 4, pruner_startup_trials=2)
    study = open_study(opts)
    # Trial 2 (σ 1.5) equals the median of the first two (2, 1): kept; trial 3 (σ 8) is pruned.
    for temp in (2.0, 1.0, 1.5, 8.0):
        study.enqueue_trial({**BASELINE, "temperature": temp})
    run_study(objective, opts)
    states = [r["state"] for r in read_csv_rows(tmp_path / "trials.csv")]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]


def test_resumed_study_with_other_settings_is_refused(tmp_path: Path) -> None:
    run_study(Counting(), _opts(tmp_path, 1, epsilon=0.01))
    with pytest.raises(InputError, match="epsilon"):
        run_study(Counting(), _opts(tmp_path, 2, epsilon=0.05))
    with pytest.raises(InputError, match="--epsilon"):
        open_study(_opts(tmp_path / "x", 1, epsilon=1.5))
    with pytest.raises(InputError, match="temperature"):
        SearchSpace(temperature=(0.5, 2.0))


def test_failed_trial_is_recorded_and_study_goes_on(tmp_path: Path) -> None:
    """A failed trial (any reason but a bad setting) is FAIL with its one-line reason and does not
    count towards n_trials: the study runs until it has n_trials finished ones."""
    from confdistill.tuning.study import TrialFailed

    def objective(p: dict[str, Any], ctx: TrialContext) -> TrialResult:
        if ctx.number == 1:
            raise TrialFailed("loss diverged")
        if ctx.number == 2:
            return TrialResult(sigma=float("nan"), dev_accuracy=0.9, teacher_dev_accuracy=0.9)
        if ctx.number == 4:
            raise RuntimeError("CUDA out of memory\n(details)")  # not the study's fault: FAIL, go on
        return fake_result(p)

    summary = run_study(objective, _opts(tmp_path, 3))
    rows = read_csv_rows(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert rows[1]["fail_reason"] == "loss diverged" and "non-finite" in rows[2]["fail_reason"]
    assert rows[4]["fail_reason"] == "RuntimeError: CUDA out of memory (details)"
    assert summary["trials"] == {"COMPLETE": 3, "FAIL": 3}
    run_study(objective, _opts(tmp_path, 3))  # the target is reached: nothing more runs
    assert len(read_csv_rows(tmp_path / "trials.csv")) == 6


def test_failures_in_a_row_stop_the_study_with_one_line(tmp_path: Path) -> None:
    from confdistill.errors import InputError

    def objective(p: dict[str, Any], ctx: TrialContext) -> TrialResult:
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match=r"3 trials in a row failed.*No space left"):
        run_study(objective, _opts(tmp_path, 5))
    assert [r["state"] for r in read_csv_rows(tmp_path / "trials.csv")] == ["FAIL"] * 3


def test_lambda_comparison(tmp_path: Path) -> None:
    summary = run_study(Counting(), _opts(tmp_path, 6, baseline=BASELINE, compare_lambda=(2.0, 3.0), kappa=0.2))
    cmp = summary["lambda_comparison"]
    at_base = cmp["confidence_loss_at_baseline"]
    assert [b["params"]["lambda_conf"] for b in at_base] == [2.0, 3.0]  # 2 is not a default choice
    for b in at_base:  # identical to the baseline but for λ
        assert {k: v for k, v in b["params"].items() if k != "lambda_conf"} == {
            k: v for k, v in BASELINE.items() if k != "lambda_conf"}
        assert b["sigma"] == pytest.approx(fake_result({**BASELINE, "lambda_conf": b["params"]["lambda_conf"]}).sigma)
    rows = [r for r in read_csv_rows(tmp_path / "trials.csv") if r["state"] == "COMPLETE"]
    # Tuning alone / tuned loss: the best feasible *searched* trial with λ = 0 / λ > 0 (None if none).
    for arm, keep in (("tuning_alone", lambda lam: lam == 0.0), ("confidence_loss_tuned", lambda lam: lam > 0.0)):
        cands = [r for r in rows if r["role"] == "search" and keep(float(r["lambda_conf"]))
                 and float(r["dev_accuracy"]) >= 0.89 - 1e-12]
        if cands:
            assert cmp[arm]["sigma"] == pytest.approx(min(float(r["sigma"]) for r in cands))
            assert cmp[arm]["role"] == "search" and keep(cmp[arm]["params"]["lambda_conf"])
        else:
            assert cmp[arm] is None


# ----------------------------------------------------------------------------- objective / best.toml


def _experiment_dict(data_dir: Path, teacher: Path) -> dict[str, Any]:
    return {
        "experiment": {"name": "tiny", "output_dir": "out", "seed": 3, "max_length": 32},
        "analysis": {"n_bootstrap": 20},
        "footprint": {"enabled": False},
        "tasks": {"SST-2": {
            "data_dir": str(data_dir),
            "teacher": {"dir": str(teacher)},
            "students": [{"name": "L1", "from": "teacher", "layers": 1,
                          "stage1": {"num_train_epochs": 1.0, "train_batch_size": 8, "eval_step": None,
                                     "checkpoint_steps": None},
                          "stage2": {"num_train_epochs": 1.0, "train_batch_size": 8, "eval_step": None,
                                     "checkpoint_steps": None}}],
        }},
    }


def test_best_toml_round_trips(tmp_path: Path) -> None:
    from confdistill.experiments.config import experiment_from_dict, load_experiment
    from confdistill.tuning.objective import ExperimentObjective, baseline_params, select

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "teacher").mkdir()
    cfg = experiment_from_dict(_experiment_dict(tmp_path, tmp_path / "teacher"), base_dir=tmp_path)
    task, student = select(cfg, None, None)
    assert baseline_params(student) == {**BASELINE, "stage1_epochs": 1.0, "stage2_epochs": 1.0}
    obj = ExperimentObjective(cfg, task, student, tmp_path / "tune")
    params = {**BASELINE, "temperature": 2.5, "alpha": 0.25, "lambda_conf": 3.0, "stage2_lr": 7e-5}
    obj.write_best_toml(params, tmp_path / "best.toml")
    tomllib.loads((tmp_path / "best.toml").read_text())
    back = load_experiment(tmp_path / "best.toml")
    s = back.tasks[0].students[0]
    assert s.name == "L1-tuned" and s.layers == 1 and s.source == "teacher"
    assert s.stage2["temperature"] == 2.5 and s.stage2["alpha"] == 0.25 and s.stage2["lambda_conf"] == 3.0
    assert s.stage2["learning_rate"] == 7e-5 and s.stage2["train_batch_size"] == 8
    assert s.stage1["num_train_epochs"] == BASELINE["stage1_epochs"]
    assert back.output_dir == (tmp_path / "tune" / "experiment").resolve()
    assert back.tasks[0].teacher.dir == str(tmp_path / "teacher")


def test_tune_cli_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from confdistill.cli.main import main
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import experiment_to_toml

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "teacher").mkdir()
    cfg = experiment_from_dict(_experiment_dict(tmp_path, tmp_path / "teacher"), base_dir=tmp_path)
    (tmp_path / "exp.toml").write_text(experiment_to_toml(cfg))
    for argv, needle in (
        (["--task", "RTE"], "--task"),
        (["--student", "L9"], "--student"),
        (["--aug-train", str(tmp_path / "missing.tsv")], "--aug-train"),
        # the experiment sets no kappa: refused before the teacher is prepared, one line
        ([], "--kappa: tune needs a tolerance"),
        (["--kappa", "-0.1"], "--kappa: expected a tolerance"),
    ):
        rc = main(["tune", str(tmp_path / "exp.toml"), "--trials", "1", "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()



@pytest.mark.slow
def test_tune_cli_real_one_trial_study_on_tiny_berts(tiny_bert, tmp_path: Path) -> None:
    """End to end through the CLI: the baseline trial distills a 1-layer student from a tiny teacher
    (stage 1, stage 2, predictions, analysis), and the outputs agree with the trial's analysis."""
    pytest.importorskip("confdistill.distillation.trainer")
    from confdistill.cli.main import main
    from confdistill.experiments.config import load_experiment
    from confdistill.tuning.objective import experiment_to_toml

    write_word_sst2(tmp_path / "glue")
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    from confdistill.experiments.config import experiment_from_dict

    cfg = experiment_from_dict(_experiment_dict(tmp_path / "glue", teacher), base_dir=tmp_path)
    (tmp_path / "exp.toml").write_text(experiment_to_toml(cfg))
    out = tmp_path / "tune"
    # ε = 0.99: every trial is feasible, so the baseline is also the best and best.toml is written.
    rc = main(["tune", str(tmp_path / "exp.toml"), "--trials", "1", "--epsilon", "0.99", "--kappa", "0.1",
               "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == {"COMPLETE": 1}
    base = summary["baseline"]
    analysis = json.loads((out / "trials" / "00000" / "analysis.json").read_text())
    assert base["sigma"] == pytest.approx(analysis["train"]["sigma"])
    assert base["dev_accuracy"] == pytest.approx(analysis["dev"]["student_accuracy"])
    assert base["teacher_dev_accuracy"] == pytest.approx(analysis["dev"]["teacher_accuracy"])
    # the trial's analysis is judged against the study's tolerance, not κ_β (a check beside it)
    assert summary["kappa"] == analysis["train"]["kappa"] == 0.1
    expected = "not informative" if analysis["train"]["not_informative"] else \
        "holds" if base["sigma"] <= 0.1 else "fails"
    assert base["verdict"] == analysis["train"]["verdict"] == expected
    assert base["verdict_95"] == analysis["train"]["verdict_95"]
    assert base["bound_check"] == analysis["train"]["bound_check"] in ("consistent", "violated")
    assert summary["best"]["trial"] == 0
    # a tiny collapsed student has σ ≈ 0: not informative, so φ_cnf is not "restored" (issue 18)
    assert summary["phi_cnf_restored"] == (expected == "holds")
    assert load_experiment(out / "best.toml").tasks[0].kappa == 0.1  # best.toml keeps the tolerance
    best = load_experiment(out / "best.toml").tasks[0].students[0]
    assert best.name == "L1-tuned" and best.stage2["temperature"] == 1.0 and best.stage2["num_train_epochs"] == 1.0
    rows = read_csv_rows(out / "trials.csv")
    assert len(rows) == 1 and rows[0]["role"] == "baseline"
