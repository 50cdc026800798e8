"""One tuning trial as a real distillation: trial parameters → stage 1 → stage 2 → predict → analyze.

:class:`ExperimentObjective` turns an experiment file's task and student into the objective of
:func:`confdistill.tuning.study.run_study`. Each trial is the experiment runner's own plan
(:mod:`confdistill.experiments.runner`) for one extra student, ``trialNNNNN``, whose stage-1 and
stage-2 hyper-parameters are the trial's; the runner writes everything into one shared experiment
directory (``OUT/experiment``) so that the data, teacher fine-tuning and teacher predictions are
computed once (under a file lock, so concurrent local workers do not duplicate them) and skipped by
content hash in every later trial. The trial's numbers are read from the runner's ``analysis.json``:

- σ(X_train), its one-sided 95% bounds, the verdict against the study's tolerance κ (the task's
  ``kappa`` is set to it, so the runner's analysis judges against it too) and the β bound check on
  the **train** split (φ_cnf is defined on X_train);
- student and teacher accuracy on the **dev** split (the accuracy constraint).

Parameter → setting: :mod:`confdistill.tuning.params`.

Every trial's complete stage settings are written to ``OUT/trials/NNNNN/settings.json``;
``best.toml`` holds exactly the best trial's settings (unset optional ones as ``"none"``).

Pruning proxy. σ(X_train) exists only once a trial has finished (stage 2, then predictions over
the train split). While stage 2 runs, the trainer evaluates on the **dev** split every
``eval_step`` steps and measures σ of the confidence gap there
(:func:`confdistill.distillation.evaluation_hook`); the objective reports that dev σ to the
pruner, which stops a searched trial whose σ is worse than the median of earlier trials at the
same point. Dev σ is a *proxy* that tracks σ(X_train) (same statistic, same models, a held-out
sample of the same distribution); only the final σ(X_train) is the objective. Reports are indexed
by evaluation number (1, 2, 3 …) so that trials of different lengths are compared at the same
fraction of stage 2 (with the automatic ``eval_step`` below) or at the same step (with an
experiment's fixed ``eval_step``); the last evaluation of a run is not reported (its training is
already paid for). When the experiment leaves stage 2's ``eval_step`` unset (or ``"none"``), a
trial evaluates about :data:`EVALS_PER_STAGE2` times: ``eval_step = ⌈total steps / 4⌉``.
A pruned trial's model files are deleted (unless ``keep_models``) and its runner state is cleared,
so it never blocks or is resumed by another trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.experiments.config import ExperimentConfig, StudentSpec, TaskConfig
from confdistill.experiments.values import NAME_MAX_LENGTH
from confdistill.io import atomic_write
from confdistill.tuning.contract import TrialContext, TrialFailed, TrialResult
from confdistill.tuning.experiment_toml import experiment_to_toml, optional_fields
from confdistill.tuning.folder import file_lock
from confdistill.tuning.params import (
    baseline_params,
    distill_defaults,
    layer_counts,
    model_layers,
    select,
    space_for,
    student_with,
)
from confdistill.tuning.space import SearchSpace

__all__ = [
    "EVALS_PER_STAGE2",
    "ExperimentObjective",
    "baseline_params",
    "experiment_to_toml",
    "file_lock",
    "layer_counts",
    "model_layers",
    "optional_fields",
    "select",
    "space_for",
    "student_with",
    "warmup_steps",
]

#: Stage-2 evaluations (σ reports for pruning) per trial when the experiment leaves ``eval_step`` unset.
EVALS_PER_STAGE2 = 4


def warmup_steps(evals: int) -> int:
    """The pruner's ``n_warmup_steps`` that spares a trial's first ``evals`` stage-2 evaluations:
    this objective numbers its reports 1, 2, 3 … (see the module docstring), so pruning starts at
    report ``evals + 1``; 0 spares none (the default)."""
    if evals < 0:
        raise InputError(f"--pruner-warmup-evals: expected a number of evaluations >= 0, got {evals}")
    return evals + 1 if evals else 0


class ExperimentObjective:
    """The real objective: each call distills one student with the trial's parameters.

    cfg: the experiment; task / student: which of its pairs to tune; out: the tune output folder
    (the runner's directory is ``out/experiment``); aug_train: an augmented train file, enabling the
    ``augment`` dimension; keep_models: keep every trial's model directories (default: only the
    predictions, run.json files and analysis are kept — a trial's models are tens of MB);
    kappa: the study's tolerance (``tune --kappa``), replacing the task's ``kappa`` in every trial's
    experiment and in ``best.toml`` (None keeps the task's).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        task: TaskConfig,
        student: StudentSpec,
        out: str | Path,
        *,
        aug_train: str | Path | None = None,
        keep_models: bool = False,
        log: Callable[[str], None] | None = None,
        kappa: float | None = None,
    ) -> None:
        if kappa is not None:
            task = dataclasses.replace(task, kappa=float(kappa))
        self.task = task
        self.student = student
        self.out = Path(out)
        self.exp_dir = self.out / "experiment"
        self.aug_train = None if aug_train is None else str(Path(aug_train).resolve())
        self.keep_models = keep_models
        self._rows: dict[tuple[str | None, str], int] = {}
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.cfg = dataclasses.replace(
            cfg,
            output_dir=self.exp_dir,
            tasks=[dataclasses.replace(task, students=[student])],
            footprint=dataclasses.replace(cfg.footprint, enabled=False),
        )

    # -- shared steps ---------------------------------------------------------------------------

    def data_dir(self) -> Path:
        """The folder the runner trains from (the capped copy when the experiment caps splits)."""
        from confdistill.experiments.runner import TaskPaths

        capped = self.task.max_train_examples or self.task.max_dev_examples
        return TaskPaths(self.exp_dir / self.task.key).data if capped else self.task.data_dir

    def prepare(self) -> None:
        """Data, teacher fine-tuning and teacher predictions, once (locked; later calls skip by hash)."""
        from confdistill.experiments.runner import build_plan, execute

        k = self.task.key
        steps = [s for s in build_plan(self.cfg) if s.name == f"{k}/data" or s.name.startswith(f"{k}/teacher/")]
        with file_lock(self.exp_dir / ".tune.lock"):
            execute(steps, self.exp_dir, log=self.log)

    def make_augmented(self, *, n_aug: int, p: float, seed: int, model: str | Path | None = None) -> Path:
        """Write (once) an augmented copy of the train split the runner uses: ``OUT/aug/train_aug.tsv``."""
        from confdistill.data.augment import augment_file
        from confdistill.experiments.config import resolve_model_source

        suffix = ".tsv"
        if self.task.columns is not None:  # custom data: augmented in its own format
            from confdistill.data import resolve_table_file

            suffix = resolve_table_file(self.data_dir(), "train").suffix.lower()
        path = self.out / "aug" / f"train_aug.n{n_aug}.p{p}.s{seed}{suffix}"
        with file_lock(self.exp_dir / ".tune.lock"):
            if not path.is_file():
                if model is None:
                    # The teacher's own embeddings; a teacher still to be fine-tuned shares its encoder's.
                    model = self.task.teacher.dir or self.task.teacher.encoder
                model_dir = resolve_model_source(str(model), what="augmentation model")
                augment_file(self.task.task, self.data_dir(), path, model_dir=model_dir, n_aug=n_aug, p=p,
                             seed=seed, log=self.log, columns=self.task.columns)
        self.aug_train = str(path.resolve())
        return path

    # -- before the first trial ----------------------------------------------------------------

    def validate(self, space: SearchSpace, baseline: dict[str, Any] | None) -> None:
        """Every setting a trial will use, checked before the first one (InputError, exit 2).

        The stage settings of the baseline and of the search space's corners go through the
        trainer's own validation (a stage-2 batch size 0, non-positive epochs…); a student with stage 1
        must share the teacher's tokenizer (checked when both folders exist yet; stage 2 alone
        runs across tokenizers).
        """
        from confdistill.distillation.config import DistillConfig, FinetuneConfig
        from confdistill.experiments.runner import STAGE_NAMES

        for name in ("stage1_epochs", "stage2_epochs"):
            if getattr(space, name)[0] <= 0:
                raise InputError(f"search space {name}: expected epochs > 0, got {getattr(space, name)}")
        if any(not (math.isfinite(x) and x >= 0) for x in space.lambda_conf):
            raise InputError(f"search space lambda_conf: expected values >= 0, got {list(space.lambda_conf)}")
        low = {k: v[0] for k, v in dataclasses.asdict(space).items() if k not in ("lambda_conf", "augment", "mapping")}
        high = {k: v[1] for k, v in dataclasses.asdict(space).items() if k not in ("lambda_conf", "augment", "mapping")}
        corners = [p for p in (baseline, low, high) if p]
        extra = {"lambda_conf": space.lambda_conf[0], "augment": False, "mapping": space.mapping[0]}
        from confdistill.experiments.actions import train_kwargs

        common = train_kwargs(self.task, self.cfg)  # the runner's own (custom data: its columns)
        for params in corners:
            student = student_with(self.student, {**extra, **params}, name="validate", aug_train=self.aug_train)
            for stage in student.stages:
                hp = {k: v for k, v in getattr(student, stage).items()}
                try:
                    DistillConfig.from_dict({"teacher": "t", "student": "s", "task": self.task.task, "data_dir": "d",
                                             "out": "o", "stage": STAGE_NAMES[stage], **common, **hp}).validate()
                except InputError as exc:
                    raise InputError(f"{self.student.key}.{stage}: {exc}") from None
        if self.task.teacher.encoder is not None:
            try:
                FinetuneConfig.from_dict({"model": "m", "task": self.task.task, "data_dir": "d", "out": "o", **common,
                                          **self.task.teacher.finetune}).validate()
            except InputError as exc:
                raise InputError(f"{self.task.teacher.key}.finetune: {exc}") from None
        self._check_vocabulary()

    def _check_vocabulary(self) -> None:
        from confdistill.experiments.runner import check_student_tokenizer

        check_student_tokenizer(self.task, self.student, where=self.student.key)

    def tidy(self, numbers: list[int]) -> None:
        """Remove the model folders of these (failed, killed or pruned) trials unless ``keep_models``,
        and their runner records, so nothing resumes them; their small outputs stay."""
        from confdistill.experiments.runner import TaskPaths, manifest_path

        if self.keep_models:
            return
        for number in numbers:
            name = f"trial{number:05d}"
            student_dir = TaskPaths(self.exp_dir / self.task.key).student(name)
            if student_dir.is_dir():
                self._remove_models(student_dir)
            for stage in ("init", "stage1", "stage2"):
                manifest_path(self.exp_dir, f"{self.task.key}/{name}/{stage}", ".started.json").unlink(missing_ok=True)

    # -- one trial ------------------------------------------------------------------------------

    def train_rows(self, aug_train: str | None, columns: dict[str, Any] | None = None) -> int | None:
        """Rows of the file stage 2 trains on (the augmented file, or the runner's train split), read
        as the trainer reads them; None when it cannot be read yet (before :meth:`prepare`)."""
        key = (aug_train, json.dumps(columns, sort_keys=True, default=str))
        if key not in self._rows:
            from confdistill.data import TableColumns, load_examples, read_glue_file, read_table

            try:
                if aug_train:
                    if columns is not None:
                        rows = len(read_table(aug_train, TableColumns.from_mapping(columns))[0])
                    else:
                        rows = len(read_glue_file(self.task.task, aug_train))
                else:
                    rows = len(load_examples(self.task.task, self.data_dir(), "train", columns=columns).examples)
            except (InputError, OSError):
                return None
            self._rows[key] = rows
        return self._rows[key]

    def auto_eval_step(self, stage2: dict[str, Any]) -> int | None:
        """``⌈total stage-2 steps / EVALS_PER_STAGE2⌉`` for these stage-2 settings (the trainer's
        step count: ⌈epochs · ⌈rows / batch⌉⌉); None when the train file cannot be read."""
        d = distill_defaults()
        rows = self.train_rows(stage2.get("aug_train"), self.task.columns)
        if rows is None:
            return None
        batch = int(stage2.get("train_batch_size") or d["train_batch_size"])
        epochs = float(stage2.get("num_train_epochs", d["num_train_epochs"]))
        total = max(1, math.ceil(epochs * math.ceil(rows / batch)))
        return max(1, math.ceil(total / EVALS_PER_STAGE2))

    def student_for(self, params: dict[str, Any], name: str) -> StudentSpec:
        """The trial's student: ``params`` applied, and stage 2's ``eval_step`` chosen for pruning
        when the experiment leaves it unset (see the module docstring)."""
        s = student_with(self.student, params, name=name, aug_train=self.aug_train)
        if s.stage2.get("eval_step") is None:
            step = self.auto_eval_step(s.stage2)
            if step is not None:
                s = dataclasses.replace(s, stage2={**s.stage2, "eval_step": step})
        return s

    def config_for(self, params: dict[str, Any], name: str, *, output_dir: Path | None = None) -> ExperimentConfig:
        """The one-task, one-student experiment that trains ``params`` as student ``name``."""
        s = self.student_for(params, name)
        task = dataclasses.replace(self.cfg.tasks[0], students=[s])
        return dataclasses.replace(self.cfg, tasks=[task], output_dir=output_dir or self.exp_dir)

    def _remove_models(self, student_dir: Path) -> None:
        # A trial's models are tens of MB each; its predictions, run.json files and analysis stay.
        if self.keep_models:
            return
        for sub in ("init", "stage1", "stage2"):
            for part in ("final", "best", "checkpoints", "intermediate", "teacher_logits.pt",
                         "teacher_eval_logits.pt", "teacher_beta_logits.pt"):
                target = student_dir / sub / part
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.is_file():
                    target.unlink()
            if sub == "init":
                shutil.rmtree(student_dir / sub, ignore_errors=True)

    def __call__(self, params: dict[str, Any], ctx: TrialContext) -> TrialResult:
        import optuna

        from confdistill.distillation import evaluation_hook
        from confdistill.experiments.runner import TaskPaths, build_plan, execute, manifest_path

        name = f"trial{ctx.number:05d}"
        cfg = self.config_for(params, name)
        student = cfg.tasks[0].students[0]
        steps = [s for s in build_plan(cfg) if s.kind not in ("report", "footprint")]
        student_dir = TaskPaths(self.exp_dir / self.task.key).student(name)
        with atomic_write(ctx.workdir / "settings.json") as fh:
            json.dump({"params": params, "student": name, "stages": list(student.stages),
                       "stage1": student.stage1, "stage2": student.stage2}, fh, indent=2, default=str)
        self.log(f"[trial {ctx.number}] {json.dumps(params)} (stage-2 eval_step {student.stage2.get('eval_step')})")
        stage2_epochs = float(student.stage2.get("num_train_epochs", distill_defaults()["num_train_epochs"]))
        evaluations = 0

        def on_evaluation(info: dict[str, Any]) -> None:
            # Called by the trainer after every stage-2 evaluation (on dev): report dev σ, the
            # pruning proxy, indexed by evaluation number; the last evaluation is not reported.
            nonlocal evaluations
            if info.get("job") != "prediction":
                return
            evaluations += 1
            sigma = (info.get("metrics") or {}).get("sigma")
            if sigma is None or not math.isfinite(float(sigma)) or float(info["epoch"]) >= stage2_epochs - 1e-9:
                return
            ctx.report(evaluations, float(sigma))  # may raise optuna.TrialPruned: let it through

        try:
            with evaluation_hook(on_evaluation):
                execute(steps, self.exp_dir, log=lambda m: self.log(f"[trial {ctx.number}] {m}"))
        except optuna.TrialPruned:
            # Nothing of a pruned trial is reused: drop its models, and forget that its stages were
            # started, so that a later run under the same name starts afresh instead of resuming it.
            self.log(f"[trial {ctx.number}] pruned after {evaluations} stage-2 evaluation(s)")
            self._remove_models(student_dir)
            for step in steps:
                if step.train_dir is not None and step.train_dir.is_relative_to(student_dir):
                    manifest_path(self.exp_dir, step.name, ".started.json").unlink(missing_ok=True)
            raise
        except Exception as exc:
            # A failed trial keeps no models either. Inside a trial, an input error is usually the
            # configuration's doing (a diverged student's NaN outputs, a setting the engine
            # refuses): this trial fails, the study goes on (run_study stops a run of failures).
            self.tidy([ctx.number])
            if isinstance(exc, InputError):
                raise TrialFailed(f"trial {ctx.number}: {exc}") from exc
            raise
        analysis = json.loads((student_dir / "analysis.json").read_text())
        train, dev = analysis["train"], analysis["dev"]
        if train.get("sigma") is None or dev.get("student_accuracy") is None:
            raise TrialFailed(f"trial {ctx.number}: analysis has no σ / accuracy ({student_dir / 'analysis.json'})")
        self._remove_models(student_dir)
        # Copy the trial's analysis beside the study's outputs (small; handy to inspect a trial).
        with atomic_write(ctx.workdir / "analysis.json") as fh:
            json.dump(analysis, fh, indent=2)
        lower95, upper95 = train.get("sigma_one_sided95") or (None, None)
        return TrialResult(
            sigma=float(train["sigma"]),
            dev_accuracy=float(dev["student_accuracy"]),
            teacher_dev_accuracy=float(dev["teacher_accuracy"]),
            kappa=None if train.get("kappa") is None else float(train["kappa"]),
            verdict=str(train.get("verdict", "no verdict")),
            extra={
                "sigma_lower95": lower95,
                "sigma_upper95": upper95,
                "verdict_95": train.get("verdict_95"),
                # why the trial cannot be judged (a collapsed student, too few rows): never "holds"
                "not_informative": list(train.get("not_informative") or []),
                # the β bound of this trial: a check that β was measured right, never the target
                "bound_check": train.get("bound_check"),
                "kappa_from_beta": train.get("kappa_from_beta"),
                "beta": analysis.get("beta"),
                "n_train": analysis.get("n_train"),
                "n_both": train.get("n_both"),
                "train_student_accuracy": train.get("student_accuracy"),
                "dev_sigma": dev.get("sigma"),
                "eval_step": student.stage2.get("eval_step"),
                "student": str(student_dir),
            },
        )

    # -- best.toml ------------------------------------------------------------------------------

    def write_best_toml(self, params: dict[str, Any], path: Path) -> None:
        """An experiment file that trains the best configuration as student ``<name>-tuned``.

        Its output directory is the tune's experiment directory, so ``confdistill run best.toml``
        reuses the data and teacher steps already done there (skipped by content hash).
        """
        # within the name's length bound (values.NAME_MAX_LENGTH), so that best.toml reads back
        cfg = self.config_for(params, f"{self.student.name[:NAME_MAX_LENGTH - len('-tuned')]}-tuned")
        cfg = dataclasses.replace(cfg, footprint=dataclasses.replace(cfg.footprint, enabled=True))
        with atomic_write(path) as fh:
            fh.write(experiment_to_toml(cfg, comment=f"best configuration found by confdistill tune ({self.out})"))
