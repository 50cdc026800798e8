"""``confdistill tune EXPERIMENT.toml``: search distillation hyper-parameters that restore φ_cnf (RQ2)."""

from __future__ import annotations

import argparse

from confdistill.cli.trainer_args import add_trainer_arguments


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune",
        help="Optuna study: minimise σ(X_train) keeping dev accuracy ≥ teacher's − ε (RQ2)",
        description="Search stage-1/stage-2 epochs and learning rates, temperature T, α, augmentation, "
        "the stage-1 layer mapping (uniform/top/bottom) and the confidence-gap weight λ for one task and student of an experiment file, minimising "
        "σ(X_train) subject to student dev accuracy ≥ teacher dev accuracy − ε (or, with --objective "
        "pareto, the two-objective study of σ and accuracy); φ_cnf is restored when the best trial's σ "
        "is within your tolerance --kappa (the experiment's kappa by default; required). The "
        "experiment's own settings are the first (baseline) trial. The study lives in a SQLite file under --out by default: re-running "
        "the same command resumes it; --storage URL (e.g. postgresql+psycopg://user@host/db, with the postgres extra: "
        "pip install 'confdistill[postgres]') lets workers on many machines "
        "share it. Writes trials.csv, pareto.png, best.toml (run it with `confdistill run`) and "
        "summary.json under --out.",
        epilog="Pruning: searched trials report σ on the dev split at each stage-2 evaluation (a proxy for "
        "σ(X_train), the objective); one whose report is worse than the median of earlier trials at the "
        "same evaluation is stopped (PRUNED in trials.csv). With stage 2's eval_step unset, a trial "
        "evaluates about 4 times. Baseline and --compare-lambda trials are never pruned; --pruner-startup-trials "
        "and --pruner-warmup-evals say when pruning may start (both recorded in summary.json). The Pareto "
        "study is never pruned.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT.toml")
    p.add_argument("--task", help="task key of the experiment (needed when it has several)")
    p.add_argument("--student", help="student name (needed when the task has several)")
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="the study's total number of finished trials (all workers together; a resumed "
                   "study runs only the missing ones)")
    p.add_argument("--epsilon", type=float, default=0.01,
                   help="allowed dev-accuracy loss as a fraction (default 0.01 = one point)")
    p.add_argument("--objective", choices=("constrained", "pareto"), default="constrained",
                   help="constrained: minimise σ s.t. the accuracy constraint; pareto: minimise σ and "
                   "maximise accuracy (two objectives, constraint stored for filtering)")
    p.add_argument("--kappa", type=float, metavar="K",
                   help="your tolerance on σ(X_train), the target to restore (default: the experiment's kappa; "
                   "required when it sets none: the β bound always holds, so it cannot be a target)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    p.add_argument("--study-name", help="study name (default TASK-STUDENT)")
    p.add_argument("--out", metavar="DIR", help="output folder (default EXPERIMENT_OUTPUT/tune/TASK-STUDENT)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the experiment's)")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random"), default="tpe")
    p.add_argument("--lambda-choices", type=_floats, metavar="L1,L2,…",
                   help="values of λ searched (default 0,0.3,1,3,10; 0 = plain TinyBERT loss)")
    p.add_argument("--compare-lambda", type=_floats, nargs="?", const=[1.0], metavar="L1,L2,…",
                   help="also run the confidence-aware loss at the baseline hyper-parameters with these λ "
                   "(default 1.0) and compare, in summary.json, with tuning alone (λ = 0) and tuned λ > 0")
    p.add_argument("--make-aug", action="store_true",
                   help="write an augmented train file first (confdistill augment) and search augmentation on/off")
    p.add_argument("--n-aug", type=int, default=20, help="with --make-aug: variants per example (default 20)")
    p.add_argument("--aug-p", type=float, default=0.4, help="with --make-aug: replacement probability")
    p.add_argument("--pruner-startup-trials", type=int, default=5, metavar="N",
                   help="finished trials before any trial may be pruned (default 5)")
    p.add_argument("--pruner-warmup-evals", type=int, default=0, metavar="N",
                   help="stage-2 evaluations of a trial that are never pruned, its first N (default 0: "
                   "pruning may stop a trial from its first evaluation on)")
    p.add_argument("--no-baseline", action="store_true", help="do not enqueue the experiment's own settings")
    p.add_argument("--keep-models", action="store_true", help="keep every trial's model directories")
    # The options it shares with distill/finetune, defined once (tune's own meaning in the help).
    add_trainer_arguments(
        p, defaults={"seed": None, "aug_train": None}, only=("seed", "aug_train"),
        help_text={"seed": "sampler seed", "aug_train": "augmented train file: adds augmentation on/off to the search"},
        shown_defaults={"seed": "the experiment's seed", "aug_train": "none"},
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from confdistill.errors import InputError
    from confdistill.experiments.config import load_experiment
    from confdistill.folders import output_lock
    from confdistill.tuning.folder import check_tune_target
    from confdistill.tuning.objective import (
        ExperimentObjective,
        baseline_params,
        select,
        space_for,
        warmup_steps,
    )
    from confdistill.tuning.study import (
        SearchSpace,
        StudyOptions,
        claim_folder,
        format_summary,
        require_tolerance,
        run_study,
        validate_options,
    )

    cfg = load_experiment(args.experiment, data_dir=args.data_dir)
    task, student = select(cfg, args.task, args.student)
    out = Path(args.out).resolve() if args.out else cfg.output_dir / "tune" / f"{task.key}-{student.name}"
    # ---- every setting checked before anything is written or any trial runs (exit 2) ----------
    if args.aug_train and args.make_aug:
        raise InputError("give either --aug-train FILE or --make-aug, not both")
    if args.aug_train and not Path(args.aug_train).is_file():
        raise InputError("--aug-train: file not found", path=args.aug_train)
    if args.pruner_startup_trials < 0:
        raise InputError(f"--pruner-startup-trials: expected a number of trials >= 0, got {args.pruner_startup_trials}")
    pruner_warmup_steps = warmup_steps(args.pruner_warmup_evals)
    # Refuse before the teacher is trained or anything is written: no tolerance, no target.
    kappa = require_tolerance(args.kappa if args.kappa is not None else task.kappa)
    if args.make_aug and not (args.n_aug >= 1 and 0.0 < args.aug_p <= 1.0):
        raise InputError(f"--n-aug must be >= 1 and --aug-p in (0, 1], got {args.n_aug} and {args.aug_p}")
    if args.lambda_choices is not None and (not args.lambda_choices or any(not x >= 0 for x in args.lambda_choices)):
        raise InputError(f"--lambda-choices: expected values >= 0, got {args.lambda_choices}")
    objective = ExperimentObjective(cfg, task, student, out, aug_train=args.aug_train, keep_models=args.keep_models,
                                    kappa=kappa)
    base = SearchSpace()
    if args.lambda_choices:
        base = dataclasses.replace(base, lambda_conf=tuple(args.lambda_choices))
    aug_available = bool(args.aug_train or args.make_aug)
    space = space_for(student, base, aug_available=aug_available, task=task)
    opts = StudyOptions(
        out=out,
        n_trials=args.trials,
        mode=args.objective,
        epsilon=args.epsilon,
        kappa=kappa,
        storage=args.storage,
        study_name=args.study_name or f"{task.key}-{student.name}",
        seed=cfg.seed if args.seed is None else args.seed,
        sampler=args.sampler,
        space=space,
        baseline=None if args.no_baseline else baseline_params(student),
        compare_lambda=tuple(args.compare_lambda or ()),
        pruner_startup_trials=args.pruner_startup_trials,
        pruner_warmup_steps=pruner_warmup_steps,
        attrs={"experiment": cfg.name, "task": task.key, "student": student.name},
    )
    validate_options(opts)
    objective.validate(space, opts.baseline)
    check_tune_target(out)
    # Workers of one study share the folder (shared locks); exclusive writers are kept out. The
    # folder is claimed (tune.json) before anything else is written: a worker starting meanwhile
    # sees this study's folder, not a foreign non-empty one.
    with output_lock(out, shared=True):
        claim_folder(opts)
        with output_lock(out / "experiment", shared=True):
            objective.prepare()
            if args.make_aug:
                objective.make_augmented(n_aug=args.n_aug, p=args.aug_p, seed=cfg.seed)
            summary = run_study(objective, opts, write_best=objective.write_best_toml)
    print("\n".join(format_summary(summary)))
    print(f"outputs:  {out}/{{trials.csv,pareto.png,best.toml,summary.json}}")
    return 0
