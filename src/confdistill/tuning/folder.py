"""The tune output folder under several workers and faults: locks, identity, tidying, failures.

Locking rule (docs/reliability.md). Workers of one study share ``OUT`` (and ``OUT/experiment``):
they take a *shared* lock on it, coordinate through the study's storage, and each holds an
*exclusive* lock on the trial folder it runs (``OUT/trials/NNNNN``). An exclusive writer (``run``,
``distill``… pointed at the same folder) is kept out while any worker runs, and a worker of another
study is refused by the folder's identity (``OUT/tune.json``): its trial numbers would collide with
this study's folders.

Tidying. Trials that were killed (failed by :func:`~confdistill.tuning.workers.fail_dead_local_trials`
or the heartbeat), pruned or failed keep nothing worth tens of MB: when a study (re)starts, the
objective's ``tidy(numbers)`` is called for those whose trial folder is not locked by a live worker
(the real objective removes their model folders unless ``--keep-models``).

Failures. A trial that raises anything but an input error is recorded FAIL with its one-line
reason and does not count towards ``n_trials``; :class:`FailureStreak` stops the study after a
number of failures in a row (something every trial hits: a full disk, a broken model).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.folders import check_output_target, lock_holder
from confdistill.io import open_no_follow, write_json

IDENTITY_FILE = "tune.json"


def is_tune_folder(path: Path) -> bool:
    """Whether ``path`` looks like a folder ``tune`` wrote (a study resumes there by itself)."""
    return any((path / name).exists() for name in (IDENTITY_FILE, "study.db", "trials", "summary.json"))


def check_tune_target(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that is not a tune folder."""
    check_output_target(out, ours=is_tune_folder, can_overwrite=False, what="--out", shared=True)


def claim_identity(out: Path, storage: str, study_name: str) -> None:
    """Record which study ``out`` belongs to, or refuse one that belongs to another study."""
    path = out / IDENTITY_FILE
    mine = {"study_name": study_name, "storage": storage}
    if path.is_file():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            theirs = None
        if isinstance(theirs, dict) and {k: theirs.get(k) for k in mine} != mine:
            raise InputError(f"holds the trials of study {theirs.get('study_name')!r} in {theirs.get('storage')}, "
                             f"not {study_name!r} in {storage}: their trial folders would collide; use another --out",
                             path=out)
        if isinstance(theirs, dict):
            return
    write_json(path, mine)


def tidy_finished_trials(study: Any, out: Path, objective: Any) -> list[int]:
    """Call ``objective.tidy(numbers)`` for failed and pruned trials whose folder no live worker holds."""
    tidy = getattr(objective, "tidy", None)
    if tidy is None:
        return []
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED)):
        workdir = out / "trials" / f"{t.number:05d}"
        if lock_holder(workdir) is None:
            numbers.append(t.number)
    if numbers:
        tidy(numbers)
    return numbers


class FailureStreak:
    """Counts trials that failed in a row (an optuna callback); stops the study at ``limit``."""

    def __init__(self, limit: int = 3) -> None:
        self.limit = max(1, int(limit))
        self.count = 0
        self.last = ""

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL:
            self.count += 1
            self.last = str(trial.user_attrs.get("fail_reason") or "no reason recorded")
            print(f"trial {trial.number} failed (not counted towards --trials): {self.last}", file=sys.stderr)
            if self.count >= self.limit:
                study.stop()
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.count = 0

    @property
    def exhausted(self) -> bool:
        return self.count >= self.limit

    def error(self) -> InputError:
        return InputError(f"{self.count} trials in a row failed, so the study stopped; the last: {self.last}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``): concurrent local workers take turns."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open_no_follow(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
