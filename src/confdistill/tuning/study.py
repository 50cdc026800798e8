"""Property-guided hyper-parameter search (RQ2): an Optuna study that minimises σ(X_train).

The study searches the distillation's hyper-parameters (:class:`SearchSpace`) for a student whose
confidence gap to the teacher, σ(X_train), is smallest, subject to an accuracy constraint:

    student dev accuracy ≥ teacher dev accuracy − ε

stored on every trial with :meth:`optuna.trial.Trial.set_constraint` (optuna ≥ 5; a value ≤ 0 is
feasible), so the constrained TPE sampler learns the feasible region and ``best`` is always feasible.
``mode="pareto"`` runs the two-objective study (minimise σ, maximise accuracy) instead and reports
its Pareto front; the same constraint is stored, so the front can be filtered by it.

What a trial *does* is the caller's objective, ``objective(params, ctx) -> TrialResult``
(:mod:`confdistill.tuning.objective` runs a real distillation; tests pass a cheap fake), so the
study machinery — storage, resumption, workers, constraint, outputs — is testable in seconds.

Storage and resumption. The default storage is ``sqlite:///OUT/study.db`` opened with
``load_if_exists``: re-running the same command after a kill resumes the study, and ``n_trials``
is the study's *total* target (COMPLETE + PRUNED trials), so finished trials are never repeated.
Trials left RUNNING by a killed worker are failed and re-queued once (same parameters): at once
when the worker ran on this host and its process is gone, otherwise by Optuna's heartbeat after
``grace_period`` seconds. Any SQLAlchemy URL (``postgresql://…``) lets many workers on many
machines share one study; each worker stops when the study reaches the target (a worker may
overshoot by the trials already running elsewhere).

Pruning. An objective may report intermediate σ values (``TrialContext.report``); in the
constrained study a searched trial whose report is worse than the median of earlier trials at the
same step is pruned (``MedianPruner`` after ``pruner_startup_trials`` completed trials) and shows
as PRUNED in trials.csv. The real objective reports σ on the dev split at stage-2 evaluations, a
proxy for σ(X_train) (:mod:`confdistill.tuning.objective`).

Determinism. The sampler is re-seeded before each trial from ``(seed, trial number)``, so a
single worker with a given seed proposes the same sequence of configurations, a resumed study
does not re-propose the configurations of its first trials, and concurrent workers (which draw
different trial numbers) never propose identical random configurations.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from confdistill.errors import InputError
from confdistill.io import atomic_path, atomic_write, pid_alive, write_json

if TYPE_CHECKING:
    import optuna

Mode = Literal["constrained", "pareto"]
PARAM_NAMES = (
    "stage1_epochs",
    "stage2_epochs",
    "stage1_lr",
    "stage2_lr",
    "temperature",
    "alpha",
    "lambda_conf",
    "augment",
    "mapping",
)
_FINISHED_STATES = ("COMPLETE", "PRUNED")


class TrialFailed(Exception):
    """A trial that could not produce a result (e.g. the loss diverged to NaN): marked FAIL, study goes on."""


# --------------------------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------------------------


@dataclass
class SearchSpace:
    """Ranges of the searched hyper-parameters (plain data; a range with low == high, or a single
    choice, fixes that dimension).

    Units: epochs are whole passes over the (possibly augmented) train set; learning rates are
    AdamW peak rates (log-uniform); ``temperature`` is T ≥ 1 of the stage-2 soft loss (κ needs
    T ≥ 1); ``alpha`` is the hard-label weight, < 1; ``lambda_conf`` is the weight λ of the
    confidence-gap term (a categorical grid that includes 0, so "tuning alone" is inside the
    space); ``augment`` uses the augmented train file; ``mapping`` is the stage-1 layer mapping
    (DistillConfig.layer_mapping: TinyBERT's ``uniform``, the teacher's ``top`` or ``bottom`` layers;
    :func:`confdistill.tuning.objective.space_for` fixes it where it makes no difference).
    """

    stage1_epochs: tuple[float, float] = (1, 10)
    stage2_epochs: tuple[float, float] = (1, 5)
    stage1_lr: tuple[float, float] = (1e-5, 2e-4)
    stage2_lr: tuple[float, float] = (1e-5, 2e-4)
    temperature: tuple[float, float] = (1.0, 8.0)
    alpha: tuple[float, float] = (0.0, 0.9)
    lambda_conf: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0, 10.0)
    augment: tuple[bool, ...] = (False,)
    mapping: tuple[str, ...] = ("uniform", "top", "bottom")

    def __post_init__(self) -> None:
        for name in ("stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr", "temperature", "alpha"):
            low, high = getattr(self, name)
            if not low <= high:
                raise InputError(f"search space {name}: expected low <= high, got ({low}, {high})")
        if self.temperature[0] < 1.0:
            raise InputError(f"search space temperature: expected T >= 1 (κ needs it), got {self.temperature}")
        if not (self.alpha[0] >= 0.0 and self.alpha[1] < 1.0):
            raise InputError(f"search space alpha: expected 0 <= alpha < 1, got {self.alpha}")
        if self.stage1_lr[0] <= 0 or self.stage2_lr[0] <= 0:
            raise InputError("search space learning rates: expected > 0")
        for name in ("lambda_conf", "augment", "mapping"):
            if len(getattr(self, name)) == 0:
                raise InputError(f"search space {name}: expected at least one choice")

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Draw (or read, for an enqueued trial) one configuration: ``{name: value}`` for PARAM_NAMES."""
        p: dict[str, Any] = {}
        p["stage1_epochs"] = _suggest_epochs(trial, "stage1_epochs", self.stage1_epochs)
        p["stage2_epochs"] = _suggest_epochs(trial, "stage2_epochs", self.stage2_epochs)
        p["stage1_lr"] = trial.suggest_float("stage1_lr", *self.stage1_lr, log=True)
        p["stage2_lr"] = trial.suggest_float("stage2_lr", *self.stage2_lr, log=True)
        p["temperature"] = trial.suggest_float("temperature", *self.temperature)
        p["alpha"] = trial.suggest_float("alpha", *self.alpha)
        p["lambda_conf"] = float(trial.suggest_categorical("lambda_conf", list(self.lambda_conf)))
        p["augment"] = bool(trial.suggest_categorical("augment", list(self.augment)))
        p["mapping"] = str(trial.suggest_categorical("mapping", list(self.mapping)))
        return p

    def including(self, params: dict[str, Any]) -> SearchSpace:
        """This space widened so that ``params`` (e.g. the baseline configuration) lies inside it."""
        changes: dict[str, Any] = {}
        for name in ("stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr", "temperature", "alpha"):
            if name in params:
                low, high = getattr(self, name)
                v = params[name]
                changes[name] = (min(low, v), max(high, v))
        for name in ("lambda_conf", "augment", "mapping"):
            if name in params and params[name] not in getattr(self, name):
                changes[name] = (*getattr(self, name), params[name])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def _suggest_epochs(trial: optuna.trial.Trial, name: str, bounds: tuple[float, float]) -> float:
    # Whole epochs (as TinyBERT) when the range is whole; a fractional bound (e.g. a baseline of
    # 0.5 epochs) makes the dimension continuous. Returned as float, DistillConfig's type.
    low, high = bounds
    if float(low).is_integer() and float(high).is_integer():
        return float(trial.suggest_int(name, int(low), int(high)))
    return float(trial.suggest_float(name, float(low), float(high)))


# --------------------------------------------------------------------------------------------
# What an objective receives and returns
# --------------------------------------------------------------------------------------------


@dataclass
class TrialContext:
    """Handed to the objective with the parameters.

    ``report(step, sigma)`` records an intermediate estimate of the trial's σ at progress point
    ``step`` (steps must mean the same progress in every trial: the median pruner compares trials
    at equal steps); it raises :class:`optuna.TrialPruned` when the pruner decides the trial is
    hopeless — let it propagate. Only ``role == "search"`` trials are pruned, and only in the
    constrained study (optuna cannot prune multi-objective trials). The real objective reports σ
    on the dev split at stage-2 evaluations, a proxy for the final σ(X_train).
    ``workdir`` is a fresh directory for this trial's small outputs (settings, analysis).
    """

    number: int
    workdir: Path
    report: Callable[[int, float], None]
    role: str = "search"


@dataclass
class TrialResult:
    """What an objective returns.

    sigma: σ(X_train), population std of Δconf over the train rows both models get right.
    dev_accuracy / teacher_dev_accuracy: fractions in [0, 1] on the dev split.
    kappa / verdict: the tolerance the trial was judged against and its φ_cnf verdict (from the
        trial's analysis; the study's summary judges every trial against ``StudyOptions.kappa``).
    extra: anything else worth a column in trials.csv (β, agreement, run directory, …; JSON-able).
    """

    sigma: float
    dev_accuracy: float
    teacher_dev_accuracy: float
    kappa: float | None = None
    verdict: str = "no verdict"
    extra: dict[str, Any] = field(default_factory=dict)


Objective = Callable[[dict[str, Any], TrialContext], TrialResult]


# --------------------------------------------------------------------------------------------
# Storage and sampler
# --------------------------------------------------------------------------------------------


def default_storage_url(out: str | Path) -> str:
    """``sqlite:///OUT/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(out).resolve() / 'study.db').as_posix()}"


def open_storage(url: str, *, heartbeat_interval: int = 30, grace_period: int = 120) -> Any:
    """An RDB storage with heartbeats: a trial whose worker stops beating for ``grace_period`` s is
    failed and re-queued once with the same parameters (``RetryHeartbeatStaleTrialCallback``)."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url.split("///", 1)[1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)

        def connect() -> Any:
            import sqlite3

            # Several local workers on one file: wait for the write lock instead of failing, and use
            # write-ahead logging (readers do not block the writer; a killed process loses nothing
            # committed; ~2× faster than the default rollback journal on slow disks).
            con = sqlite3.connect(path, timeout=120, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            return con

        engine_kwargs["creator"] = connect
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    kwargs: dict[str, Any] = {}
    with _quiet_experimental():
        if retry_cls is not None:
            kwargs["heartbeat_stale_trial_callback"] = retry_cls(max_retry=1)
        else:  # optuna < 4.9
            kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    for attempt in range(5):
        try:
            with _quiet_experimental():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    **kwargs,
                )
        except ImportError as exc:  # e.g. postgresql driver missing
            raise InputError(f"--storage {redact_url(url)}: cannot open ({exc})") from exc
        except Exception as exc:
            if not type(exc).__module__.startswith("sqlalchemy"):
                raise
            if attempt == 4:
                raise InputError(f"--storage {redact_url(url)}: cannot open ({type(exc).__name__}: {exc})") from exc
            # Workers starting together race to create the schema (the loser sees a duplicate
            # alembic_version row or a locked database): once created, opening succeeds.
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def redact_url(url: str) -> str:
    """The storage URL with any password hidden (it goes into summary.json and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


@contextlib.contextmanager
def _quiet_experimental() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        yield


def _seed_for(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(number)]).generate_state(1)[0])


def _reseed(sampler: Any, seed: int) -> None:
    # TPESampler / NSGAIISampler / RandomSampler keep their randomness in LazyRandomState objects
    # (`_rng`, and `_random_sampler._rng` for the start-up phase); optuna's own reseed_rng() only
    # draws fresh OS entropy, so set them here. Unknown samplers are left alone.
    for obj in (sampler, getattr(sampler, "_random_sampler", None)):
        state = getattr(obj, "_rng", None)
        if state is not None and hasattr(state, "rng"):
            state.rng.seed(seed)


def make_sampler(kind: str, seed: int, mode: Mode) -> Any:
    """A sampler re-seeded before each trial from (seed, trial number). kind: tpe | nsga2 | random."""
    import optuna

    bases = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    if kind not in bases:
        raise InputError(f"--sampler: expected one of {sorted(bases)}, got {kind!r}")
    base = bases[kind]

    class _TrialSeeded(base):  # type: ignore[misc, valid-type]
        def before_trial(self, study: Any, trial: Any) -> None:
            _reseed(self, _seed_for(seed, trial.number))
            super().before_trial(study, trial)

    _TrialSeeded.__name__ = f"TrialSeeded{base.__name__}"
    kwargs: dict[str, Any] = {"seed": seed}
    if kind != "random" and not hasattr(optuna.trial.Trial, "set_constraint"):
        kwargs["constraints_func"] = lambda t: (t.user_attrs.get("constraint", 0.0),)  # optuna < 5
    if kind == "tpe":
        # constant_liar: running trials of other workers count as "bad" so workers spread out.
        return _TrialSeeded(constant_liar=True, multivariate=True, **kwargs)
    return _TrialSeeded(**kwargs)


# --------------------------------------------------------------------------------------------
# Running the study
# --------------------------------------------------------------------------------------------


@dataclass
class StudyOptions:
    """Everything that defines a study besides the objective (plain data).

    n_trials: the study's total target of finished (COMPLETE + PRUNED) trials, all workers together.
    epsilon: allowed dev-accuracy loss (fraction, 0.01 = one point).
    kappa: the user's tolerance for σ (required: :func:`run_study` refuses to start without one,
        see :func:`require_tolerance`).
    baseline: the configuration to beat (the experiment's own hyper-parameters), enqueued first.
    compare_lambda: λ values to try *at the baseline hyper-parameters* (the confidence-aware
        loss without tuning), enqueued after the baseline.
    attrs: identity of the experiment (task, student, teacher…): stored on creation, and a resumed
        study with different attrs is refused (its trials would not be comparable); so is one whose
        categorical choices (λ, augment, mapping) differ (Optuna cannot change them in a study).
    pruner_startup_trials: completed trials before the median pruner may prune.
    max_failures_in_a_row: failed trials (which never count towards ``n_trials``) after which the
        study stops with an error: something every trial hits.
    """

    out: Path
    n_trials: int
    mode: Mode = "constrained"
    epsilon: float = 0.01
    kappa: float | None = None
    storage: str | None = None
    study_name: str = "confdistill"
    seed: int = 0
    sampler: str = "tpe"
    space: SearchSpace = field(default_factory=SearchSpace)
    baseline: dict[str, Any] | None = None
    compare_lambda: Sequence[float] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    pruner_startup_trials: int = 5
    heartbeat_interval: int = 30
    grace_period: int = 120
    show_progress: bool = True
    max_failures_in_a_row: int = 3


def validate_options(opts: StudyOptions) -> None:
    """Raise :class:`InputError` on a study setting that cannot work (before any trial)."""
    if opts.mode not in ("constrained", "pareto"):
        raise InputError(f"--objective: expected 'constrained' or 'pareto', got {opts.mode!r}")
    if not isinstance(opts.n_trials, int) or opts.n_trials < 1:
        raise InputError(f"--trials: expected a number of trials >= 1, got {opts.n_trials}")
    if not 0.0 <= opts.epsilon < 1.0:
        raise InputError(f"--epsilon: expected an accuracy fraction in [0, 1), got {opts.epsilon}")
    if opts.kappa is not None and not (math.isfinite(opts.kappa) and opts.kappa > 0):
        raise InputError(f"--kappa: expected a tolerance > 0, got {opts.kappa}")
    for lam in opts.compare_lambda:
        if not (math.isfinite(lam) and lam >= 0):
            raise InputError(f"--compare-lambda: expected λ >= 0, got {lam}")
    if opts.sampler not in ("tpe", "nsga2", "random"):
        raise InputError(f"--sampler: expected tpe, nsga2 or random, got {opts.sampler!r}")


def require_tolerance(kappa: float | None) -> float:
    """The study's tolerance κ, or a one-line InputError naming --kappa.

    Why there is no default: the only other κ is the bound κ_β from β, and σ(X_train) ≤ κ_β holds
    whenever β is measured right (docs/method.md), so a study "restoring" φ_cnf against it would
    restore nothing.
    """
    from confdistill.properties.verdict import validate_tolerance

    value = validate_tolerance(kappa)
    if value is None:
        raise InputError(
            "--kappa: tune needs a tolerance on σ (--kappa K, or kappa in the experiment file): the β bound "
            "κ_β always holds when β is measured right, so it cannot be the target")
    return value


def open_study(opts: StudyOptions) -> optuna.Study:
    """Create the study, or load it (same name and storage) and check that it is the same study."""
    import optuna

    validate_options(opts)
    url = opts.storage or default_storage_url(opts.out)
    storage = open_storage(url, heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period)
    directions = ["minimize"] if opts.mode == "constrained" else ["minimize", "maximize"]
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=opts.pruner_startup_trials, n_warmup_steps=0)
        if opts.mode == "constrained"
        else optuna.pruners.NopPruner()  # optuna cannot prune multi-objective trials
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=opts.study_name,
        directions=directions,
        sampler=make_sampler(opts.sampler, opts.seed, opts.mode),
        pruner=pruner,
        load_if_exists=True,
    )
    identity = {"mode": opts.mode, "epsilon": opts.epsilon, **opts.attrs}
    stored = study.user_attrs
    if "identity" not in stored:
        study.set_user_attr("identity", identity)
        study.set_user_attr("space", opts.space.to_dict())
    else:
        old = stored["identity"]
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} → {identity.get(k)!r}" for k in diff)
            raise InputError(
                f"study {opts.study_name!r} in {redact_url(url)} was created for a different experiment "
                f"({details}); use another --study-name or --out"
            )
        # Optuna cannot change a categorical's choices within a study (its trials would fail one by
        # one with a ValueError): say so before any trial starts. Numeric ranges may change.
        old_space, new_space = stored.get("space") or {}, opts.space.to_dict()
        for name in ("lambda_conf", "augment", "mapping"):
            if name in old_space and old_space[name] != new_space[name]:
                raise InputError(
                    f"study {opts.study_name!r} in {redact_url(url)} searches {name} in {old_space[name]}, "
                    f"this run in {new_space[name]}: the choices of a study cannot change; use the same "
                    "options, or another --study-name or --out"
                )
    return study


def _worker_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail (and re-queue once, same parameters) RUNNING trials whose worker process ran on this
    host and no longer exists — a killed local run resumes at once instead of after the heartbeat
    grace period. Returns the failed trial numbers."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = str(t.user_attrs.get("worker", ""))
        h, _, pid = tag.rpartition(":")
        if h != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            ok = study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if ok:
            failed.append(t.number)
            callback = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
            if callback is not None:
                callback(study, study._storage.get_trial(t._trial_id))
    return failed


def _enqueue_fixed_trials(study: optuna.Study, opts: StudyOptions) -> None:
    """Enqueue the baseline and the baseline+λ trials unless the study already has them."""
    if opts.baseline is None:
        return
    wanted: list[tuple[str, dict[str, Any]]] = [("baseline", dict(opts.baseline))]
    for lam in opts.compare_lambda:
        wanted.append(("baseline+lambda", {**opts.baseline, "lambda_conf": float(lam)}))
    existing = [
        (t.user_attrs.get("role"), {**t.system_attrs.get("fixed_params", {}), **t.params})
        for t in study.get_trials(deepcopy=False)
    ]
    for role, params in wanted:
        if not any(r == role and _same(params, p) for r, p in existing):
            study.enqueue_trial(params, user_attrs={"role": role})


def _same(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        return round(float(v), 12) if isinstance(v, float | int) and not isinstance(v, bool) else v

    return all(k in have and norm(have[k]) == norm(v) for k, v in wanted.items())


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
    from confdistill.tuning.folder import FailureStreak, claim_identity, tidy_finished_trials

    # The default storage is named relative to OUT: a folder moved elsewhere is still the same study's.
    claim_identity(opts.out, redact_url(opts.storage) if opts.storage else "sqlite:///OUT/study.db", opts.study_name)
    study = open_study(dataclasses.replace(opts, space=space))
    fail_dead_local_trials(study)
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
    finally:
        optuna.logging.set_verbosity(verbosity)
    summary = write_outputs(study, opts, write_best=write_best)
    if streak.exhausted:
        raise streak.error()
    return summary


# --------------------------------------------------------------------------------------------
# Reading the study back: rows, best, Pareto front, outputs
# --------------------------------------------------------------------------------------------


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial (every state), in trial-number order: the trials.csv rows."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "role": ua.get("role", "search"),
            "worker": ua.get("worker", ""),
        }
        for name in PARAM_NAMES:
            row[name] = t.params.get(name)
        for name in ("sigma", "dev_accuracy", "teacher_dev_accuracy", "constraint", "kappa", "verdict", "seconds",
                     "fail_reason"):
            row[name] = ua.get(name)
        c = t.constraints.get("accuracy") if hasattr(t, "constraints") else ua.get("constraint")
        row["feasible"] = None if c is None else bool(c <= 0)
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            row["pruned_at_step"] = last
            row["pruned_sigma"] = t.intermediate_values[last]
        for k, v in ua.items():
            if k.startswith("x_"):
                row[k[2:]] = v
        rows.append(row)
    return rows


def _complete(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["state"] == "COMPLETE" and r["sigma"] is not None]


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed rows not dominated in (σ ↓, dev accuracy ↑), sorted by σ."""
    done = _complete(rows)
    front = []
    for r in done:
        dominated = any(
            o["sigma"] <= r["sigma"]
            and o["dev_accuracy"] >= r["dev_accuracy"]
            and (o["sigma"] < r["sigma"] or o["dev_accuracy"] > r["dev_accuracy"])
            for o in done
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r["sigma"], -r["dev_accuracy"]))


def best_row(rows: Sequence[dict[str, Any]], *, where: Callable[[dict[str, Any]], bool] | None = None) -> dict | None:
    """The feasible completed row with the smallest σ (ties: higher accuracy, then lower number)."""
    cands = [r for r in _complete(rows) if r["feasible"] and (where is None or where(r))]
    if not cands:
        return None
    return min(cands, key=lambda r: (r["sigma"], -r["dev_accuracy"], r["number"]))


def _judged(row: dict[str, Any], kappa: float | None) -> Any:
    """:func:`confdistill.properties.verdict.judge` of a trial's σ(X_train) against the study's κ.

    The one-sided 95% bounds come from the trial's analysis (``sigma_lower95`` / ``sigma_upper95``
    columns); an objective that does not give them has no ``verdict_95`` (None in the summary).
    """
    from confdistill.properties.verdict import judge

    lo, hi = row.get("sigma_lower95"), row.get("sigma_upper95")
    n = row.get("n_both") or 1
    return judge(float(row["sigma"]), (lo, hi), tolerance=kappa, bound=None, split="train", n_set=int(n),
                 n_rows=int(n), k=2)


def _brief(row: dict[str, Any] | None, kappa: float | None) -> dict[str, Any] | None:
    if row is None:
        return None
    j = _judged(row, kappa)
    known95 = row.get("sigma_lower95") is not None and row.get("sigma_upper95") is not None
    out = {
        "trial": row["number"],
        "role": row["role"],
        "sigma": row["sigma"],
        "dev_accuracy": row["dev_accuracy"],
        "teacher_dev_accuracy": row["teacher_dev_accuracy"],
        "feasible": row["feasible"],
        "kappa_own": row["kappa"],
        "verdict_own": row["verdict"],
        "verdict": j.verdict,
        "verdict_95": j.verdict_95 if known95 else None,
        "bound_check": row.get("bound_check"),  # the trial's β bound: a check of β, never the target
        "params": {k: row[k] for k in PARAM_NAMES},
    }
    if kappa is not None:
        out["phi_cnf_holds"] = j.verdict == "holds"
    return out


def summarize(rows: Sequence[dict[str, Any]], opts: StudyOptions) -> dict[str, Any]:
    """The content of summary.json (see :func:`run_study`). κ is the user's tolerance (never κ_β)."""
    baseline = next((r for r in _complete(rows) if r["role"] == "baseline"), None)
    kappa = None if opts.kappa is None else float(opts.kappa)
    kappa_source = None if kappa is None else "user tolerance (--kappa or the experiment's kappa)"
    best = best_row(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    teacher_acc = next((r["teacher_dev_accuracy"] for r in _complete(rows)), None)
    base_b, best_b = _brief(baseline, kappa), _brief(best, kappa)
    summary: dict[str, Any] = {
        "study_name": opts.study_name,
        "storage": redact_url(opts.storage or default_storage_url(opts.out)),
        "objective": opts.mode,
        "epsilon": opts.epsilon,
        "target_trials": opts.n_trials,
        "trials": counts,
        "teacher_dev_accuracy": teacher_acc,
        "min_dev_accuracy": None if teacher_acc is None else teacher_acc - opts.epsilon,
        "kappa": kappa,
        "kappa_source": kappa_source,
        "baseline": base_b,
        "best": best_b,
        "phi_cnf_restored": None if best_b is None or kappa is None else best_b["verdict"] == "holds",
        "best_verdict_95": None if best_b is None else best_b["verdict_95"],
        "baseline_already_holds": None if base_b is None or kappa is None else base_b["verdict"] == "holds",
        "pareto_front": [r["number"] for r in pareto_front(rows)],
    }
    if best is not None and baseline is not None:
        summary["sigma_change"] = best["sigma"] - baseline["sigma"]
        summary["accuracy_change"] = best["dev_accuracy"] - baseline["dev_accuracy"]
    summary["lambda_comparison"] = compare_lambda(rows, kappa, min_dev_accuracy=summary["min_dev_accuracy"])
    return summary


def _lam(r: dict[str, Any]) -> float:
    return float(r["lambda_conf"] or 0.0)


def _arm(row: dict[str, Any] | None, kappa: float | None, min_acc: float | None) -> dict[str, Any] | None:
    """A trial's line of the λ comparison: :func:`_brief` plus its verdict against κ and the floor."""
    b = _brief(row, kappa)
    if b is None:
        return None
    b["lambda_conf"] = float(b["params"]["lambda_conf"] or 0.0)
    b["accuracy_ok"] = None if min_acc is None else bool(b["dev_accuracy"] >= min_acc - 1e-12)
    return b


def compare_lambda(
    rows: Sequence[dict[str, Any]], kappa: float | None, *, min_dev_accuracy: float | None = None
) -> dict[str, Any]:
    """Tuning alone vs the confidence-aware loss (issue RQ2, part 3), on this study's task and student.

    - ``baseline``: the experiment's own settings (no tuning; its λ as the file sets it);
    - ``tuning_alone``: the best feasible *searched* trial with λ = 0 (hyper-parameters tuned, plain
      TinyBERT loss);
    - ``confidence_loss_at_baseline``: the ``--compare-lambda`` trials, the baseline with only λ > 0
      changed (the loss without tuning), by λ;
    - ``confidence_loss_tuned``: the best feasible searched trial with λ > 0 (tuning + the loss).

    Each arm has σ(X_train), dev accuracy, ``accuracy_ok`` (≥ teacher − ε), ``verdict`` (σ vs the
    tolerance κ, through :func:`confdistill.properties.verdict.judge`), ``verdict_95`` and its parameters; ``counts`` says how many completed trials each arm had (a missing arm is
    ``None`` and explained in ``notes``); ``restores`` lists the arms whose best trial both keeps
    the accuracy and holds φ_cnf.
    """
    done = _complete(rows)
    searched0 = [r for r in done if r["role"] == "search" and _lam(r) == 0.0]
    searched_l = [r for r in done if r["role"] == "search" and _lam(r) > 0.0]
    arms_at_base = sorted((r for r in done if r["role"] == "baseline+lambda"), key=_lam)
    baseline = next((r for r in done if r["role"] == "baseline"), None)
    out: dict[str, Any] = {
        "kappa": kappa,
        "min_dev_accuracy": min_dev_accuracy,
        "baseline": _arm(baseline, kappa, min_dev_accuracy),
        "tuning_alone": _arm(best_row(searched0), kappa, min_dev_accuracy),
        "confidence_loss_at_baseline": [_arm(r, kappa, min_dev_accuracy) for r in arms_at_base],
        "confidence_loss_tuned": _arm(best_row(searched_l), kappa, min_dev_accuracy),
        "counts": {
            "tuning_alone": len(searched0),
            "confidence_loss_at_baseline": len(arms_at_base),
            "confidence_loss_tuned": len(searched_l),
        },
    }
    notes: list[str] = []
    if not searched0:
        notes.append("no searched trial had λ = 0, so tuning alone is untested: run a tuning-alone study "
                     "with --lambda-choices 0 (another --study-name or --out)")
    elif out["tuning_alone"] is None:
        notes.append(f"none of the {len(searched0)} searched λ = 0 trials kept dev accuracy ≥ teacher − ε")
    if not arms_at_base:
        notes.append("the loss without tuning was not run: add --compare-lambda (e.g. --compare-lambda 0.3,1,3)")
    if not searched_l:
        notes.append("no searched trial had λ > 0: tuning + the loss is untested (see --lambda-choices)")
    elif out["confidence_loss_tuned"] is None:
        notes.append(f"none of the {len(searched_l)} searched λ > 0 trials kept dev accuracy ≥ teacher − ε")
    if kappa is None:
        notes.append("no tolerance κ (--kappa): no verdicts")
    out["notes"] = notes
    named = [("baseline", out["baseline"]), ("tuning_alone", out["tuning_alone"]),
             *((f"confidence_loss_at_baseline[λ={a['lambda_conf']:g}]", a) for a in out["confidence_loss_at_baseline"]),
             ("confidence_loss_tuned", out["confidence_loss_tuned"])]
    out["restores"] = [n for n, a in named if a is not None and a["verdict"] == "holds" and a["feasible"]]
    return out


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The study's summary as printable lines: trials, baseline vs best, κ, and the λ comparison
    (one line per arm: σ, dev accuracy, verdict against κ) with its notes."""

    def arm(label: str, a: dict[str, Any] | None, missing: str) -> str:
        if a is None:
            return f"  {label:<28} {missing}"
        acc = "" if a.get("accuracy_ok") is None else (" (≥ floor)" if a["accuracy_ok"] else " (below floor)")
        v95 = "" if a.get("verdict_95") is None else f", at 95%: {a['verdict_95']}"
        return (f"  {label:<28} σ = {a['sigma']:.4g}, dev accuracy = {a['dev_accuracy']:.4f}{acc}, "
                f"φ_cnf {a.get('verdict', 'no verdict')}{v95} (trial {a['trial']}, "
                f"λ = {a['params']['lambda_conf']:g})")

    lines = [f"trials: {json.dumps(summary['trials'])}"]
    base, best = summary.get("baseline"), summary.get("best")
    if base:
        lines.append(f"baseline: σ = {base['sigma']:.4g}, dev accuracy = {base['dev_accuracy']:.4f}")
    if best:
        lines.append(f"best:     σ = {best['sigma']:.4g}, dev accuracy = {best['dev_accuracy']:.4f} "
                     f"(trial {best['trial']})")
    else:
        lines.append("best:     no feasible trial yet")
    restored = summary["phi_cnf_restored"]
    if summary.get("best_verdict_95") is not None:
        restored = f"{restored} (best trial at 95%: {summary['best_verdict_95']})"
    lines.append(f"κ = {summary['kappa']} ({summary['kappa_source']}); φ_cnf restored: {restored}")
    cmp = summary.get("lambda_comparison")
    if cmp:
        floor = cmp.get("min_dev_accuracy")
        lines.append("tuning alone vs the confidence-aware loss"
                     + ("" if floor is None else f" (accuracy floor {floor:.4f})") + ":")
        lines.append(arm("baseline (no tuning)", cmp.get("baseline"), "not run"))
        lines.append(arm("tuning alone (λ = 0)", cmp.get("tuning_alone"), "no feasible searched λ = 0 trial"))
        for a in cmp.get("confidence_loss_at_baseline") or []:
            lines.append(arm("loss alone (baseline + λ)", a, ""))
        if not cmp.get("confidence_loss_at_baseline"):
            lines.append(arm("loss alone (baseline + λ)", None, "not run (--compare-lambda)"))
        lines.append(arm("tuning + loss (λ > 0)", cmp.get("confidence_loss_tuned"), "no feasible searched λ > 0 trial"))
        restores = cmp.get("restores") or []
        lines.append(f"  restores φ_cnf within the accuracy floor: {', '.join(restores) if restores else 'none'}")
        lines.extend(f"  note: {n}" for n in cmp.get("notes") or [])
    return lines


def write_trials_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or ["number"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def plot_pareto(rows: Sequence[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """Dev accuracy (y) vs σ(X_train) (x): feasible / infeasible trials, the Pareto front, the
    baseline and best trials, κ as a vertical line and the accuracy floor as a horizontal one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = _complete(rows)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    feas = [r for r in done if r["feasible"]]
    infeas = [r for r in done if not r["feasible"]]
    if feas:
        ax.scatter([r["sigma"] for r in feas], [r["dev_accuracy"] for r in feas], c="tab:blue", s=22,
                   label=f"feasible ({len(feas)})", zorder=2)
    if infeas:
        ax.scatter([r["sigma"] for r in infeas], [r["dev_accuracy"] for r in infeas], c="tab:red", marker="x",
                   s=22, label=f"infeasible: accuracy < teacher − ε ({len(infeas)})", zorder=2)
    front = pareto_front(rows)
    if front:
        ax.step([r["sigma"] for r in front], [r["dev_accuracy"] for r in front], where="post", c="tab:orange",
                lw=1.2, zorder=1)
        ax.scatter([r["sigma"] for r in front], [r["dev_accuracy"] for r in front], facecolors="none",
                   edgecolors="tab:orange", s=90, lw=1.5, label="Pareto front", zorder=3)
    base = next((r for r in done if r["role"] == "baseline"), None)
    if base is not None:
        ax.scatter([base["sigma"]], [base["dev_accuracy"]], marker="*", c="black", s=180, label="baseline", zorder=4)
    best = summary.get("best")
    if best is not None:
        ax.scatter([best["sigma"]], [best["dev_accuracy"]], marker="D", facecolors="none", edgecolors="tab:green",
                   s=110, lw=2, label=f"best (trial {best['trial']})", zorder=4)
    if summary.get("kappa") is not None:
        ax.axvline(summary["kappa"], c="tab:purple", ls="--", lw=1.2,
                   label=f"tolerance κ = {summary['kappa']:.4g}")
    if summary.get("min_dev_accuracy") is not None:
        ax.axhline(summary["min_dev_accuracy"], c="grey", ls=":", lw=1.2,
                   label=f"teacher acc − ε = {summary['min_dev_accuracy']:.4f}")
    ax.set_xlabel("σ(X_train)  (std of Δconf over rows both models get right)")
    ax.set_ylabel("student dev accuracy")
    ax.set_title(f"study {summary.get('study_name')}: {len(done)} completed trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_outputs(
    study: optuna.Study,
    opts: StudyOptions,
    *,
    write_best: Callable[[dict[str, Any], Path], None] | None = None,
) -> dict[str, Any]:
    """Write trials.csv, pareto.png, summary.json (and best.toml through ``write_best``, given the
    best trial's parameters) under ``opts.out``; every file atomically. Returns the summary."""
    rows = trial_rows(study)
    summary = summarize(rows, opts)
    out = Path(opts.out)
    write_trials_csv(rows, out / "trials.csv")
    plot_pareto(rows, summary, out / "pareto.png")
    if write_best is not None and summary["best"] is not None:
        write_best(summary["best"]["params"], out / "best.toml")
        summary["best_toml"] = str(out / "best.toml")
    write_json(out / "summary.json", summary)
    return summary
