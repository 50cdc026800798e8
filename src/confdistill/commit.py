"""Several files that only make sense together, put in place as one unit.

A prediction file and its sidecar (``.meta.json``) must never be a new file beside an old sidecar
(another model, split or row count). Two renames cannot be atomic together, so
:func:`commit_files` writes a small journal ``.TARGET.commit`` once every temporary file is
complete; a kill before it leaves the old files, a kill after it is finished by the next writer,
by readers (:func:`recover_commit`) and by :func:`confdistill.folders.remove_stale_temps`. The old
companion is removed before the new data is moved in, so an interrupted commit can show a file
without its sidecar, never a mismatched pair. :func:`write_with_sidecar` does all of it for a data
file and its JSON sidecar, which also records the data file's SHA-256 (:func:`sidecar_matches`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confdistill.io import (
    _json_default,
    atomic_write,
    fsync_dir,
    os_errors_named,
    pid_alive,
    sha256_file,
    temp_owner,
    temp_sibling,
)

__all__ = ["JOURNAL_SUFFIX", "commit_files", "recover_commit", "sidecar_matches", "write_with_sidecar"]

JOURNAL_SUFFIX = ".commit"


def _journal(target: Path) -> Path:
    return target.with_name(f".{target.name}{JOURNAL_SUFFIX}")


def commit_files(moves: Sequence[tuple[Path, Path]], *, remove: Sequence[Path] = ()) -> None:
    """Put finished temporary files in place as one unit: all new, or (killed early) all old.

    moves: ``(temporary, target)`` pairs in one folder, applied in order; remove: files (in the
    same folder) deleted *before* the moves, e.g. an old sidecar that must never sit beside a new
    data file. The decision is a journal ``.TARGET.commit`` (TARGET: the first move's), written
    atomically once every temporary is complete; a kill before it leaves the old files, a kill after
    it is finished by :func:`recover_commit` (called by the next writer, by readers, and by
    :func:`remove_stale_temps`). Ordering ``remove`` first means an interrupted commit can show a
    target without its companion, never a new one beside an old one.
    """
    if not moves:
        return
    folder = moves[0][1].parent
    ops: list[list[str]] = [["unlink", p.name] for p in remove]
    ops += [["move", src.name, dst.name] for src, dst in moves]
    if any(os.path.abspath(p.parent) != os.path.abspath(folder) for p in [*remove, *(x for m in moves for x in m)]):
        raise ValueError("commit_files: every file must be in one folder")
    journal = _journal(moves[0][1])
    with atomic_write(journal) as fh:
        json.dump({"pid": os.getpid(), "ops": ops}, fh)
    # Decided: from here only forward. If this raises, the journal stays for recover_commit.
    _apply(folder, ops)
    journal.unlink()
    fsync_dir(folder)


def _apply(folder: Path, ops: list[list[str]]) -> None:
    """Apply a journal's operations; safe to repeat (a move already done is skipped, and so is the
    removal of a file that a completed later move has put in place)."""
    for i, op in enumerate(ops):
        if op[0] == "unlink":
            moved_in = any(o[0] == "move" and o[2] == op[1] and not (folder / o[1]).exists() for o in ops[i + 1:])
            if not moved_in:
                with contextlib.suppress(FileNotFoundError):
                    (folder / op[1]).unlink()
        elif op[0] == "move" and (folder / op[1]).exists():
            os.replace(folder / op[1], folder / op[2])
    fsync_dir(folder)


def recover_commit(target: str | Path) -> bool:
    """Finish a :func:`commit_files` of ``target`` that a killed process left half done.

    Returns True when one was finished. A journal whose writer is still running is left alone.
    A reader of files written as a unit calls this first; it is cheap when there is nothing to do.
    """
    target = Path(target)
    journal = _journal(target)
    if not journal.is_file():
        return False
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        pid, ops = int(record["pid"]), list(record["ops"])
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # written atomically: unreadable means not ours
        return False
    if pid != os.getpid() and pid_alive(pid):
        return False
    if not _safe_ops(target.name, ops):
        journal.unlink(missing_ok=True)  # not one of ours (planted?): nothing in it is done
        return False
    _apply(target.parent, ops)
    journal.unlink(missing_ok=True)
    return True


def _safe_ops(target: str, ops: list[Any]) -> bool:
    """A journal read back is data from a shared folder: it may only move our temporary files onto
    ``target`` or its companions (``target.…``) and remove those, all in its own folder."""
    def ours(name: Any) -> bool:
        return (isinstance(name, str) and "/" not in name and name not in (".", "..")
                and (name == target or name.startswith(target + ".")))

    for op in ops:
        if not isinstance(op, list) or not op:
            return False
        if op[0] == "unlink" and len(op) == 2 and ours(op[1]):
            continue
        if (op[0] == "move" and len(op) == 3 and ours(op[2]) and isinstance(op[1], str) and "/" not in op[1]
                and temp_owner(op[1]) is not None):
            continue
        return False
    return True


def write_with_sidecar(path: str | Path, sidecar: str | Path, write: Callable[[Path], None],
                       meta: dict[str, Any] | None) -> None:
    """Write a data file and its JSON sidecar as one unit (:func:`commit_files`).

    write(tmp): writes the data to the temporary path given (same suffix as ``path``). The sidecar
    gets ``file_sha256``, the SHA-256 of the data file's bytes, so that a reader can also check that
    a pair belongs together (:func:`sidecar_matches`). ``meta=None`` writes no sidecar and removes
    an old one (it would describe other data). A failure leaves the old pair as it was.
    """
    path, sidecar = Path(path), Path(sidecar)
    recover_commit(path)
    temps: list[Path] = []
    try:
        data_tmp = temp_sibling(path)
        temps.append(data_tmp)
        with os_errors_named(path):
            write(data_tmp)
            with open(data_tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        moves = [(data_tmp, path)]
        if meta is not None:
            side_tmp = temp_sibling(sidecar)
            temps.append(side_tmp)
            record = {**meta, "file_sha256": sha256_file(data_tmp)}
            with os_errors_named(sidecar), open(side_tmp, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=2, default=_json_default)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            moves.append((side_tmp, sidecar))
        commit_files(moves, remove=[sidecar])
    except BaseException:
        if _journal(path).is_file():
            # Failed after the decision: never roll back (the old companion may be gone already);
            # finish now if the error allows, else the journal and its temporaries wait for the
            # next writer or reader.
            with contextlib.suppress(Exception):
                recover_commit(path)
        else:
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        raise


def sidecar_matches(path: str | Path, sidecar: str | Path) -> bool | None:
    """Whether ``sidecar`` describes the bytes of ``path`` (its ``file_sha256``); None when the
    sidecar records no hash (written by an earlier version) or either file is missing.
    Finishes an interrupted :func:`write_with_sidecar` first."""
    path, sidecar = Path(path), Path(sidecar)
    recover_commit(path)
    if not path.is_file() or not sidecar.is_file():
        return None
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("file_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    if recorded is None:
        return None
    return recorded == sha256_file(path)


