"""Where a study lives and how it is opened: the storage URL, the RDB storage with heartbeats, and
:func:`open_study` (create, or load and check that it is the same study).

The default storage is ``sqlite:///OUT/study.db``; any SQLAlchemy URL (``postgresql+psycopg://…``)
lets many workers on many machines share one study.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confdistill.errors import InputError
from confdistill.tuning.options import StudyOptions, validate_options
from confdistill.tuning.sampler import make_pruner, make_sampler

if TYPE_CHECKING:
    import optuna


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
            hint = "; pip install 'confdistill[postgres]' and use postgresql+psycopg://…" if url.startswith("postgres") else ""
            raise InputError(f"--storage {redact_url(url)}: cannot open ({exc}){hint}") from exc
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


def storage_failure(exc: BaseException) -> str | None:
    """The database's own words when ``exc`` (or an error it was raised while handling: Optuna
    follows a failed commit with an ``AssertionError``) is a failure to write the study's storage
    (a full disk: SQLite's "database or disk is full" / "disk I/O error"); None otherwise."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__module__.startswith("sqlalchemy"):
            return " ".join(str(getattr(cur, "orig", None) or cur).split())[:300]
        if type(cur).__name__ == "StorageInternalError" and cur.__cause__ is None and cur.__context__ is None:
            return " ".join(str(cur).split())[:300]
        cur = cur.__cause__ or cur.__context__
    return None


def storage_for(opts: StudyOptions) -> Any:
    """The storage of this study (``opts.storage``, or the default SQLite file under ``opts.out``)."""
    url = opts.storage or default_storage_url(opts.out)
    return open_storage(url, heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period)


def open_study(opts: StudyOptions, *, storage: Any = None) -> optuna.Study:
    """Create the study, or load it (same name and storage) and check that it is the same study.
    ``storage``: the study's storage when the caller opened it already (:func:`storage_for`)."""
    import optuna

    validate_options(opts)
    url = opts.storage or default_storage_url(opts.out)
    if storage is None:
        storage = storage_for(opts)
    directions = ["minimize"] if opts.mode == "constrained" else ["minimize", "maximize"]
    pruner = make_pruner(opts)
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
