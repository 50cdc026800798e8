"""Output targets: never overwrite without being asked, one writer per folder, clear OS errors.

Three rules every command that writes follows (docs/reliability.md):

1. **Refuse, don't replace.** :func:`check_output_target` runs before anything is written: an
   existing non-empty folder (or an existing file) is refused unless the user said ``--overwrite``
   (or ``--resume``, or it is a folder the command continues by itself, such as an experiment
   folder for ``run``); a file is never replaced by a folder or the reverse, even with
   ``--overwrite``; a target on a read-only file system or in a folder we may not write is refused
   with that reason. It has no side effects.
2. **One writer.** :func:`output_lock` takes an OS advisory lock (``flock``) on ``OUT/.lock``
   (``.NAME.lock`` beside a file target). The kernel drops it when the process dies, however it
   dies, so there is never a stale lock to remove; a second writer gets "OUT is in use by
   process N" at once. Shared mode lets cooperating processes (``tune`` workers of one study) in
   while keeping exclusive writers out. Locks are re-entrant within a process.
3. **Say what the OS said.** :func:`confdistill.errors.describe_os_error` turns an :class:`OSError` into one line
   naming the path and the cause (read-only file system, permission denied, no space left…).
4. **Never through a link.** confdistill makes no symbolic links, so one found where it would write
   was planted (output folders are shared and copied): a lock is opened with ``O_NOFOLLOW``, and a
   link at a lock's place, or anywhere inside a folder the command continues (``--resume``, a
   ``run``/``demo``/``tune`` folder), is refused with one line naming it (:func:`refuse_links`) —
   never followed, so nothing outside the output is created or changed.

:func:`claim_output` is the usual sequence: check, lock, check again under the lock, remove dead
processes' temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from confdistill.commit import JOURNAL_SUFFIX, recover_commit
from confdistill.errors import InputError, setting_name
from confdistill.io import pid_alive, temp_owner
from confdistill.swap import SWAP_SUFFIX, clear_folder, recover_clear, recover_in

__all__ = ["LOCK_FILE", "check_output_target", "claim_output", "clear_directory",
           "lock_holder", "output_lock", "recover_folder", "refuse_links", "refuse_source_as_target",
           "remove_stale_temps"]

LOCK_FILE = ".lock"

Kind = Literal["dir", "file"]

#: Locks this process holds: lock file (resolved) -> [fd, depth, shared].
_HELD: dict[str, list] = {}


def _lock_file(path: Path, kind: Kind) -> Path:
    return path / LOCK_FILE if kind == "dir" else path.with_name(f".{path.name}.lock")


def _key(lock: Path) -> str:
    # The lock's own place (its folder resolved, the file itself never followed).
    return os.path.join(os.path.realpath(lock.parent), lock.name)


def _link_error(link: Path) -> InputError:
    try:
        to = f" (to {os.readlink(link)})"
    except OSError:
        to = ""
    return InputError(f"is a symbolic link{to}, which confdistill never made and never writes through: "
                      "remove it (output folders hold no links)", path=link)


def _open_lock(lock: Path, flags: int) -> int:
    """``os.open`` of a lock file that never follows a link (a planted ``.lock`` link to a file
    outside would get our pid written into it; a dangling one would create its target)."""
    try:
        return os.open(lock, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(lock) from None
        raise


def refuse_links(root: str | Path | None, *names: Path) -> None:
    """Refuse (:class:`InputError` naming it) a symbolic link at any of ``names``, or anywhere
    inside the folder ``root`` (not followed; ``root`` itself may be one, the user named it)."""
    for path in names:
        if path.is_symlink():
            raise _link_error(path)
    if root is None or not os.path.isdir(root):
        return
    for folder, dirs, files in os.walk(root):
        for entry in sorted([*dirs, *files]):
            if os.path.islink(os.path.join(folder, entry)):
                raise _link_error(Path(folder) / entry)


def _read_pid(lock: Path) -> str:
    """The live process(es) named in the lock file: the exclusive holder writes its pid alone,
    shared holders append theirs (so the file names every worker that may still hold it)."""
    for _ in range(20):  # the holder writes its pid right after locking: give it a moment
        with contextlib.suppress(OSError, ValueError):
            pids = [int(x) for x in lock.read_text().split()]
            live = [str(p) for p in dict.fromkeys(pids) if p != os.getpid() and pid_alive(p)]
            if live:
                return ", ".join(live)
        time.sleep(0.01)
    return "?"


def _in_use(path: Path, lock: Path, what: str) -> InputError:
    return InputError(f"{path} is in use by process {_read_pid(lock)} (another confdistill command writing "
                      f"there): wait for it to finish, or choose another {what}")


def lock_holder(path: str | Path, *, kind: Kind = "dir", shared: bool = False) -> str | None:
    """The pid (as text, ``"?"`` if unknown) of another process holding a lock on ``path`` that
    conflicts with ours (an exclusive one, or any when ``shared`` is False); None when free.
    Creates nothing."""
    lock = _lock_file(Path(path), kind)
    if lock.is_symlink() or not lock.is_file() or _key(lock) in _HELD:
        return None  # a link is no lock of ours (claiming refuses it)
    try:
        fd = _open_lock(lock, os.O_RDONLY)
    except (OSError, InputError):
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(lock)
    finally:
        os.close(fd)  # closing releases a lock we just took
    return None


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _first_missing(path: Path, existing: Path) -> Path:
    """The child of ``existing`` on the way to ``path`` (the top folder a mkdir -p would create)."""
    return existing / path.relative_to(existing).parts[0]


def _writable(folder: Path, target: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        cause = "read-only file system" if read_only else "permission denied"
        raise InputError(f"{what}: cannot write in {folder} ({cause})", path=target)


def check_output_target(
    path: str | Path,
    *,
    overwrite: bool = False,
    resume: bool | None = None,
    kind: Kind = "dir",
    what: str = "--out",
    ours: Callable[[Path], bool] | None = None,
    can_overwrite: bool = True,
    shared: bool = False,
) -> Path:
    """Refuse an output target that writing would damage; returns ``path``. No side effects.

    kind: ``"dir"`` (a folder the command fills) or ``"file"``. overwrite: the user asked to
    replace what is there. resume: None when the command has no ``--resume``; False when it has
    one and it was not given (the message mentions it); True to continue what is there. ours: for
    commands that continue their own folders by themselves (``run``, ``demo``, ``tune``), True when
    the existing folder is one of theirs. can_overwrite: whether the command has ``--overwrite``
    (for the message). shared: the caller will take a shared lock (only an exclusive holder is then
    in the way). Raises :class:`InputError` (exit 2) naming the path and how to proceed; a folder
    another process holds is reported as in use (see :func:`output_lock`).
    """
    path = Path(path)
    base = _nearest_existing(path)
    if base != path.absolute() and not base.is_dir():
        raise InputError(f"{what}: {base} is a file, so no folder can be made inside it", path=path)
    # A link where a lock goes (beside the target, or inside a folder) is refused before anything.
    refuse_links(None, _lock_file(path, "file"), *([_lock_file(path, "dir")] if kind == "dir" else []))
    if not os.path.lexists(path):
        _writable(base, path, what)
        return path
    how = [*([f"{setting_name('resume')} to continue it"] if resume is False else []),
           *([f"{setting_name('overwrite')} to replace it"] if can_overwrite else []), f"another {what}"]
    advice = "use " + ", ".join(how[:-1]) + (" or " if len(how) > 1 else "") + how[-1]
    if kind == "dir":
        if not path.is_dir():
            raise InputError(f"{what} exists and is a file, not a folder; it is never replaced by one: "
                             f"remove it or choose another {what}", path=path)
        # Its lock is inside, or beside it for a folder that is swapped in whole (claim_output).
        lock_kinds: tuple[Kind, ...] = ("dir", "file")
        for lock_kind in lock_kinds:
            if lock_holder(path, kind=lock_kind, shared=shared) is not None:
                raise _in_use(path, _lock_file(path, lock_kind), what)
        _writable(path, path, what)
        entries = [e for e in os.listdir(path) if e != LOCK_FILE]
        if entries and not (overwrite or resume or (ours is not None and ours(path))):
            raise InputError(f"{what} already exists and is not empty ({len(entries)} entries, e.g. "
                             f"{sorted(entries)[0]!r}): {advice}", path=path)
        if entries and not overwrite:
            refuse_links(path)  # continued in place: nothing in it may lead outside
        return path
    if path.is_dir():
        raise InputError(f"{what} is a folder, not a file; it is never replaced by a file: remove it or "
                         f"choose another {what}", path=path)
    holder = lock_holder(path, kind="file")
    if holder is not None:
        raise _in_use(path, _lock_file(path, kind), what)
    _writable(path.parent, path, what)
    if not overwrite:
        raise InputError(f"{what} already exists: {advice}", path=path)
    return path


@contextlib.contextmanager
def output_lock(path: str | Path, *, kind: Kind = "dir", shared: bool = False, what: str = "--out") -> Iterator[Path]:
    """Hold an advisory lock on the output ``path`` for the block (creating the folder if needed).

    Exclusive by default; ``shared=True`` for cooperating processes (each may hold it at once,
    exclusive lockers are kept out). Non-blocking: when another process holds a conflicting lock
    this raises :class:`InputError` "PATH is in use by process N" at once, having touched nothing.
    A folder this call created is removed again if the block fails before writing anything into it.
    Re-entrant within a process (a nested call on the same path just counts).
    """
    path = Path(path)
    lock = _lock_file(path, kind)
    key = _key(lock) if lock.parent.exists() else None
    if key is not None and key in _HELD:
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    created = _nearest_existing(lock.parent)
    created = None if created == lock.parent.absolute() else _first_missing(lock.parent.absolute(), created)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _in_use(path, lock, what) from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # the pid is for messages only (a full disk must not stop us here)
        if not shared:
            os.ftruncate(fd, 0)
        else:
            os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, f"{os.getpid()}\n".encode())
    key = _key(lock)
    _HELD[key] = [fd, 1, shared]
    ok = False
    try:
        yield path
        ok = True
    finally:
        del _HELD[key]
        if not ok and created is not None:
            # Folders made only to hold the lock: gone again (nothing partial is left).
            with contextlib.suppress(OSError):
                if all(f == lock.name for _, _, files in os.walk(created) for f in files):
                    shutil.rmtree(created)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def claim_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    resume: bool | None = None,
    kind: Kind = "dir",
    what: str = "--out",
    ours: Callable[[Path], bool] | None = None,
    can_overwrite: bool = True,
    shared: bool = False,
    beside: bool = False,
) -> Iterator[Path]:
    """:func:`check_output_target`, then :func:`output_lock`, then the check again (another process
    may have written in between), then :func:`remove_stale_temps` of dead writers.

    beside: the folder is replaced as a whole (written as a temporary sibling and swapped in), so
    its lock is the sibling ``.NAME.lock`` (a lock inside would be swapped away with it).
    Clearing an ``--overwrite`` target is left to the caller, after it has validated its inputs
    (:func:`clear_directory`), so that a typo does not cost the old results.
    """
    path = Path(path)
    check_output_target(path, overwrite=overwrite, resume=resume, kind=kind, what=what, ours=ours,
                        can_overwrite=can_overwrite, shared=shared)
    with output_lock(path, kind="file" if beside else kind, shared=shared, what=what):
        check_output_target(path, overwrite=overwrite, resume=resume, kind=kind, what=what, ours=ours,
                            can_overwrite=can_overwrite, shared=shared)
        if beside:
            remove_stale_temps(path.absolute().parent, recursive=False, names=[path.name])
        elif kind == "dir":
            remove_stale_temps(path, exclusive=not shared)
        else:
            remove_stale_temps(path.parent, recursive=False, names=[path.name, path.stem])
        yield path


def refuse_source_as_target(out: str | Path, source: str | Path, *, source_field: str, source_flag: str) -> None:
    """``out`` naming the command's own source folder is refused before it is claimed (it would be
    replaced by what is made from it); the settings named as the user wrote them (flag or field)."""
    if os.path.exists(out) and os.path.exists(source) and os.path.samefile(out, source):
        raise InputError(f"{setting_name('out')} must differ from {setting_name(source_field, flag=source_flag)} "
                         "(the source would be replaced)", path=out)


def clear_directory(path: str | Path, *, keep: tuple[str, ...] = (LOCK_FILE,)) -> None:
    """Remove everything in ``path`` except ``keep`` (``--overwrite``; the lock stays held), as one
    step: a kill leaves the old content or an empty folder (:func:`confdistill.swap.clear_folder`)."""
    clear_folder(path, keep=keep)


def recover_folder(path: str | Path) -> None:
    """Before reading or replacing the folder ``path``: finish or undo what a killed writer left
    there (a folder swap of ``path``, an ``--overwrite`` clear of it) and remove that writer's
    temporaries of ``path``. Best effort: a reader may not be allowed to write there."""
    path = Path(path)
    with contextlib.suppress(OSError):
        remove_stale_temps(path.absolute().parent, recursive=False, names=[path.name])
        if path.is_dir():
            recover_clear(path)


def remove_stale_temps(root: str | Path, *, exclusive: bool = False, recursive: bool = True,
                       names: Sequence[str] | None = None) -> list[Path]:
    """Remove what killed processes left under ``root``: temporary files and folders of dead
    writers (a pending :func:`commit_files` journal, folder swap or clear is finished or undone
    first, not discarded).

    exclusive: the caller holds the folder's exclusive lock, so old-style temporaries without a
    process id are stale too. names: only temporaries of these target names. Returns what was removed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    if names is not None:  # with the temporaries of their journals (written atomically too)
        names = [*names, *(f".{n}{suffix}" for n in names for suffix in (JOURNAL_SUFFIX, SWAP_SUFFIX))]
    removed: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        recover_in(here, [*files, *dirs], names)  # a decided swap's temporary is the new folder
        for entry in files:
            if entry.endswith(JOURNAL_SUFFIX) and entry.startswith("."):
                target = here / entry[1:-len(JOURNAL_SUFFIX)]
                if names is None or target.name in names:
                    recover_commit(target)
        for entry in [*files, *dirs]:
            owner = temp_owner(entry)
            if owner is None or (names is not None and owner[0] not in names):
                continue
            pid = owner[1]
            if (pid is None and not exclusive) or (pid is not None and pid_alive(pid)):
                continue
            path = here / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
        dirs[:] = [d for d in dirs if recursive and temp_owner(d) is None]
    return removed
