"""Running (or resuming) a study in one worker: :func:`run_study`.

Each worker opens the shared storage, fails the RUNNING trials of dead local workers (re-queued
once with the same parameters), tidies failed and pruned trials, enqueues the baseline trials the
study does not have yet, then runs trials until the study has ``n_trials`` finished (COMPLETE +
PRUNED) ones, all workers together; finally it writes the outputs (:mod:`confdistill.tuning.outputs`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confdistill.errors import InputError
from confdistill.io import pid_alive
from confdistill.tuning.contract import Objective, TrialContext, TrialFailed
from confdistill.tuning.options import StudyOptions, require_tolerance, validate_options
from confdistill.tuning.outputs import write_outputs
from confdistill.tuning.space import SearchSpace
from confdistill.tuning.storage import (
    default_storage_url,
    open_study,
    redact_url,
    storage_failure,
    storage_for,
)

if TYPE_CHECKING:
    import optuna


def _worker_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study: optuna.Study, storage: Any) -> list[int]:
    """Fail (and re-queue once, same parameters) RUNNING trials whose worker process ran on this
    host and no longer exists — a killed local run resumes at once instead of after the heartbeat
    grace period. ``storage`` is the study's storage (:func:`~confdistill.tuning.storage.storage_for`).
    Returns the failed trial numbers."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed: list[int] = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = str(t.user_attrs.get("worker", ""))
        h, _, pid = tag.rpartition(":")
        if h != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            ok = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if ok:
            failed.append(t.number)
            # What Optuna does with a trial whose heartbeat went stale: the retry callback re-queues it.
            callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
            if callback is not None:
                callback(study, storage.get_trial(trial_id))
    return failed


def _enqueue_fixed_trials(study: optuna.Study, opts: StudyOptions) -> None:
    """Enqueue the baseline and the baseline+λ trials unless the study already has them.

    The enqueued parameters are kept in the trial's user attribute ``enqueued_params`` (a waiting
    trial has no ``params`` yet). Workers sharing ``OUT`` take turns (a lock file), so two workers
    starting together do not both enqueue the baseline.
    """
    if opts.baseline is None:
        return
    from confdistill.tuning.folder import file_lock

    with file_lock(opts.out / ".enqueue.lock"):
        _enqueue_missing(study, opts)


def _enqueue_missing(study: optuna.Study, opts: StudyOptions) -> None:
    assert opts.baseline is not None
    wanted: list[tuple[str, dict[str, Any]]] = [("baseline", dict(opts.baseline))]
    for lam in opts.compare_lambda:
        wanted.append(("baseline+lambda", {**opts.baseline, "lambda_conf": float(lam)}))
    existing = [
        (t.user_attrs.get("role"), {**t.user_attrs.get("enqueued_params", {}), **t.params})
        for t in study.get_trials(deepcopy=False)
    ]
    for role, params in wanted:
        if not any(r == role and _same(params, p) for r, p in existing):
            study.enqueue_trial(params, user_attrs={"role": role, "enqueued_params": params})


def _same(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        return round(float(v), 12) if isinstance(v, float | int) and not isinstance(v, bool) else v

    return all(k in have and norm(have[k]) == norm(v) for k, v in wanted.items())


def claim_folder(opts: StudyOptions) -> None:
    """Record in ``OUT/tune.json`` that ``opts.out`` holds this study's trials (or refuse a folder
    of another study). Call it before writing anything else there: a worker starting meanwhile
    then sees a tune folder, not a foreign non-empty one."""
    from confdistill.tuning.folder import claim_identity

    # The default storage is named relative to OUT: a folder moved elsewhere is still the same study's.
    claim_identity(Path(opts.out), redact_url(opts.storage) if opts.storage else "sqlite:///OUT/study.db",
                   opts.study_name)


def count_finished(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_study(
    objective: Objective,
    opts: StudyOptions,
    *,
    write_best: Callable[[dict[str, Any], Path], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study until it has ``opts.n_trials`` finished trials, then write
    ``trials.csv``, ``pareto.png``, ``summary.json`` (and ``best.toml`` via ``write_best(params,
    path)``) under ``opts.out``. Returns the summary.

    The objective's :class:`optuna.TrialPruned` prunes; an :class:`InputError` (a bad setting)
    stops the study — the trial is marked FAIL and the finished ones stay in the storage; any other
    exception (:class:`TrialFailed`, a diverged run, a full disk…) marks the trial FAIL with a
    one-line reason and the study goes on: a failed trial does not count towards ``n_trials``, and
    ``max_failures_in_a_row`` failures in a row stop the study with an :class:`InputError`.

    Folder (:mod:`confdistill.tuning.folder`): a shared lock on ``opts.out`` (workers of this study
    together, exclusive writers kept out), an exclusive one on each running trial's folder, the
    study's identity in ``tune.json``; dead, pruned and failed trials are tidied first.
    """
    require_tolerance(opts.kappa)  # before anything is created or trained
    opts.out = Path(opts.out)
    validate_options(opts)
    space = opts.space.including(opts.baseline) if opts.baseline else opts.space
    for lam in opts.compare_lambda:
        space = space.including({"lambda_conf": float(lam)})  # a categorical must list every value it gets
    from confdistill.folders import output_lock

    with output_lock(opts.out, shared=True):
        return _run_locked(objective, opts, space, write_best)


def _run_locked(objective: Objective, opts: StudyOptions, space: SearchSpace,
                write_best: Callable[[dict[str, Any], Path], None] | None) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from confdistill.folders import output_lock
    from confdistill.tuning.folder import FailureStreak, tidy_finished_trials

    claim_folder(opts)
    storage = storage_for(opts)
    study = open_study(dataclasses.replace(opts, space=space), storage=storage)
    fail_dead_local_trials(study, storage)
    tidy_finished_trials(study, opts.out, objective)
    _enqueue_fixed_trials(study, opts)

    def wrapped(trial: optuna.trial.Trial) -> float | tuple[float, float]:
        trial.set_user_attr("worker", _worker_tag())
        role = str(trial.user_attrs.get("role", "search"))
        trial.set_user_attr("role", role)
        params = space.suggest(trial)

        def report(step: int, sigma: float) -> None:
            if opts.mode != "constrained" or not math.isfinite(sigma):
                return  # optuna cannot prune multi-objective trials
            trial.report(float(sigma), int(step))
            if role == "search" and trial.should_prune():
                raise optuna.TrialPruned(f"σ = {sigma:.4g} at step {step} is worse than the median")

        workdir = opts.out / "trials" / f"{trial.number:05d}"
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            with output_lock(workdir, what="trial folder"):  # this worker's own output
                result = objective(params, TrialContext(trial.number, workdir, report, role))
            if not (math.isfinite(result.sigma) and math.isfinite(result.dev_accuracy)):
                raise TrialFailed(f"non-finite σ or accuracy ({result.sigma}, {result.dev_accuracy})")
        except TrialFailed as exc:
            trial.set_user_attr("fail_reason", " ".join(str(exc).split())[:500])  # a column of trials.csv
            raise
        except optuna.TrialPruned as exc:
            trial.set_user_attr("fail_reason", " ".join(f"pruned: {exc}".split())[:500])
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            raise
        except InputError:
            raise  # a bad setting: stops the study (exit 2)
        except Exception as exc:
            # Any other failure of one trial (a diverged run, out of memory, a disk error): reported
            # as FAIL on one line, not counted, the study goes on (FailureStreak stops a pattern).
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from exc
        trial.set_user_attr("sigma", float(result.sigma))
        trial.set_user_attr("dev_accuracy", float(result.dev_accuracy))
        trial.set_user_attr("teacher_dev_accuracy", float(result.teacher_dev_accuracy))
        trial.set_user_attr("kappa", None if result.kappa is None else float(result.kappa))
        trial.set_user_attr("verdict", result.verdict)
        trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
        for k, v in result.extra.items():
            trial.set_user_attr(f"x_{k}", v)
        constraint = (result.teacher_dev_accuracy - opts.epsilon) - result.dev_accuracy
        trial.set_user_attr("constraint", float(constraint))
        if hasattr(trial, "set_constraint"):  # optuna >= 5; older ones read the user attr (make_sampler)
            trial.set_constraint("accuracy", float(constraint))
        if opts.mode == "constrained":
            return float(result.sigma)
        return float(result.sigma), float(result.dev_accuracy)

    streak = FailureStreak(opts.max_failures_in_a_row)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: our one line, not optuna's traceback
    try:
        # Failed trials do not count: optimise until the target of finished trials is reached.
        while not streak.exhausted and (remaining := opts.n_trials - count_finished(study)) > 0:
            study.optimize(
                wrapped,
                n_trials=remaining,
                catch=(TrialFailed,),
                callbacks=[optuna.study.MaxTrialsCallback(opts.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                           streak],
                show_progress_bar=opts.show_progress,
            )
    except Exception as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        url = redact_url(opts.storage or default_storage_url(opts.out))
        raise InputError(f"--storage {url}: the study could not be written ({failure})") from exc
    finally:
        optuna.logging.set_verbosity(verbosity)
    summary = write_outputs(study, opts, write_best=write_best)
    if streak.exhausted:
        raise streak.error()
    return summary
