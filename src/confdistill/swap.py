"""Folders replaced or emptied as a unit: at any kill, the old folder or the new one.

A folder cannot be replaced by one rename (the target must go aside first), so
:func:`replace_folder` journals the swap, as :mod:`confdistill.commit` does for files:

1. the new folder is complete in a temporary sibling ``.NAME.PID.XXXX.tmp`` and fsynced;
2. the journal ``.NAME.swap`` (beside the target: writer's pid, the temporary's name and the
   old copy's ``.NAME.old-PID``) is written and fsynced — **the decision**;
3. target → ``.NAME.old-PID``, temporary → target, the parent folder fsynced;
4. the old copy removed, then the journal.

A kill before 2 leaves the old target untouched (the dead writer's temporary is removed by the next
command). After it, :func:`recover_folder_swap` finishes the swap — called by the next command on
that target, by readers (:func:`confdistill.folders.recover_folder`) and by
:func:`confdistill.folders.remove_stale_temps` — so the target is exactly the old or the new
folder once anyone looks. An old copy without a journal is what versions before the journal left
when killed between the renames: it is put back when the target is missing.

:func:`clear_folder` empties a folder in place for ``--overwrite`` of a run folder (whose lock
file must stay where it is): its entries are moved into ``.clearing-PID``, which is then renamed
``.cleared-PID`` (the decision) and deleted. :func:`recover_clear` puts a dead writer's
``.clearing-PID`` back (the old run) and deletes a ``.cleared-PID`` (the emptied folder, where
the new run starts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from confdistill.io import atomic_write, fsync_dir, pid_alive, temp_owner

__all__ = ["SWAP_SUFFIX", "clear_folder", "recover_clear", "recover_folder_swap", "recover_in", "replace_folder"]

SWAP_SUFFIX = ".swap"
_CLEARING, _CLEARED = ".clearing-", ".cleared-"
_CLEAR = re.compile(r"^\.(clearing|cleared)-(\d+)$")


def _journal(target: Path) -> Path:
    return target.with_name(f".{target.name}{SWAP_SUFFIX}")


def _old_name(target: Path, pid: int) -> str:
    return f".{target.name}.old-{pid}"


def _fsync_tree(root: Path) -> None:
    """Every file and folder under ``root`` on disk before the swap is decided (a power cut after
    the rename must not show a new folder of empty files)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


@contextlib.contextmanager
def _exclusively(path: Path) -> Iterator[bool]:
    """Hold a flock on ``path`` (a journal or a clearing folder) while recovering it, so that two
    readers recovering at once take turns; yields whether ``path`` is still the same entry."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ replacing


def replace_folder(tmp: str | Path, target: str | Path) -> None:
    """Put the finished temporary folder ``tmp`` (a sibling of ``target``) in place of ``target``.

    A failure before the decision removes ``tmp`` and leaves ``target`` as it was; after it, the
    swap is only ever finished, never rolled back (tried again at once, else left to
    :func:`recover_folder_swap`).
    """
    tmp, target = Path(tmp), Path(target)
    parent, pid = target.parent, os.getpid()
    old = _old_name(target, pid) if os.path.lexists(target) else None
    journal = _journal(target)
    try:
        _fsync_tree(tmp)
        if old is not None and os.path.lexists(parent / old):
            shutil.rmtree(parent / old)  # this process's own leftover of an earlier failed swap
        with atomic_write(journal) as fh:
            json.dump({"pid": pid, "new": tmp.name, "old": old}, fh)
        fsync_dir(parent)
    except BaseException:
        if not journal.is_file():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _finish(target, tmp.name, old)
    except BaseException:
        with contextlib.suppress(Exception):
            _finish(target, tmp.name, old)
        raise


def _finish(target: Path, new: str, old: str | None) -> None:
    """Steps 3 and 4 of a decided swap; safe to repeat from any point."""
    parent = target.parent
    if os.path.lexists(parent / new):
        if os.path.lexists(target):
            if old is None:
                # Something appeared at the target after the decision (not a confdistill writer:
                # they hold the target's lock). It stays; the new folder goes with the journal.
                shutil.rmtree(parent / new, ignore_errors=True)
                _journal(target).unlink(missing_ok=True)
                return
            os.replace(target, parent / old)
        os.replace(parent / new, target)
        fsync_dir(parent)
    if old is not None:
        shutil.rmtree(parent / old, ignore_errors=True)
    _journal(target).unlink(missing_ok=True)
    fsync_dir(parent)


def recover_folder_swap(target: str | Path) -> bool:
    """Finish a :func:`replace_folder` of ``target`` that a killed process left half done, or put
    back the old copy an earlier version left; True when something was done. A live writer's swap
    is left alone. Cheap when there is nothing to do."""
    target = Path(target)
    journal = _journal(target)
    if not journal.is_file():
        return _put_back_old(target)
    with _exclusively(journal) as present:
        if not present:
            return False
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            pid, new, old = int(record["pid"]), record["new"], record["old"]
        except (OSError, ValueError, KeyError, TypeError):
            journal.unlink(missing_ok=True)  # written atomically: unreadable means not ours
            return False
        if pid != os.getpid() and pid_alive(pid):
            return False
        # Data from a shared folder: it may only name this target's own temporary and old copy.
        if not (isinstance(new, str) and "/" not in new and temp_owner(new) == (target.name, pid)
                and old in (None, _old_name(target, pid))):
            journal.unlink(missing_ok=True)
            return False
        _finish(target, new, old)
        return True


def _put_back_old(target: Path) -> bool:
    """A target missing beside a dead writer's old copy and no journal: versions before the journal
    were killed between the two renames. The old copy (the newest, if several) is put back."""
    parent = target.parent
    if os.path.lexists(target) or not parent.is_dir():
        return False
    olds = []
    for name in os.listdir(parent):
        owner = temp_owner(name)
        if (owner is not None and owner[1] is not None and name == _old_name(target, owner[1])
                and owner[1] != os.getpid() and not pid_alive(owner[1]) and (parent / name).is_dir()):
            olds.append(parent / name)
    if not olds:
        return False
    with contextlib.suppress(FileNotFoundError):  # another reader put it back first
        os.replace(max(olds, key=lambda p: p.stat().st_mtime), target)
        fsync_dir(parent)
        return True
    return False


# ------------------------------------------------------------------------------- clearing


def clear_folder(path: str | Path, *, keep: Sequence[str]) -> None:
    """Empty ``path`` except ``keep`` as one step: a kill leaves the old content or an empty folder.

    A failure before the decision puts every entry back.
    """
    path = Path(path)
    if not path.is_dir():
        return
    recover_clear(path)
    entries = [e for e in os.listdir(path) if e not in keep]
    if not entries:
        return
    pid = os.getpid()
    clearing, cleared = path / f"{_CLEARING}{pid}", path / f"{_CLEARED}{pid}"
    os.mkdir(clearing)
    try:
        for name in entries:
            os.replace(path / name, clearing / name)
        fsync_dir(clearing)
        os.replace(clearing, cleared)  # the decision
    except BaseException:
        if clearing.is_dir():
            _put_back(path, clearing)
        raise
    fsync_dir(path)
    shutil.rmtree(cleared)


def _put_back(path: Path, clearing: Path) -> None:
    for name in os.listdir(clearing):
        if not os.path.lexists(path / name):
            os.replace(clearing / name, path / name)
    with contextlib.suppress(OSError):  # not empty: an entry was made again meanwhile (kept aside)
        os.rmdir(clearing)
    fsync_dir(path)


def recover_clear(path: str | Path) -> bool:
    """Undo (``.clearing-PID``) or finish (``.cleared-PID``) a dead writer's :func:`clear_folder`
    of ``path``; True when something was done."""
    path = Path(path)
    done = False
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(path):
            m = _CLEAR.match(name)
            if m is None or (int(m[2]) != os.getpid() and pid_alive(int(m[2]))) or not (path / name).is_dir():
                continue
            with _exclusively(path / name) as present:
                if not present:
                    continue
                if m[1] == "clearing":
                    _put_back(path, path / name)
                else:
                    shutil.rmtree(path / name, ignore_errors=True)
                done = True
    return done


def recover_in(folder: Path, entries: Sequence[str], names: Sequence[str] | None = None) -> None:
    """Recover every swap and clear that dead writers left in ``folder`` (its ``entries``), before
    their temporaries are removed as stale. names: only swaps of these target names."""
    targets = set()
    for name in entries:
        owner = temp_owner(name)
        if name.startswith(".") and name.endswith(SWAP_SUFFIX):
            targets.add(name[1:-len(SWAP_SUFFIX)])
        elif owner is not None and owner[1] is not None and name == f".{owner[0]}.old-{owner[1]}":
            targets.add(owner[0])
    for target in sorted(targets):
        if names is None or target in names:
            recover_folder_swap(folder / target)
    if any(_CLEAR.match(name) for name in entries):
        recover_clear(folder)
