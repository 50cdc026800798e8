"""Atomic file output, files committed as a unit, safe tensor files, and content hashing.

Every output of confdistill goes through these helpers so that a failed or killed run never
leaves a half-written file and never replaces an earlier good result: data is written to a
temporary sibling and moved into place with :func:`os.replace` (atomic on POSIX) only once
complete.

- Temporary names carry the writer's process id (``.NAME.PID.XXXXXXXX.tmp[.ext]``, folders too,
  and ``.NAME.old-PID`` for a folder being replaced), so that the next command writing there can
  tell a dead process's leftovers from a live writer's and remove them
  (:func:`confdistill.folders.remove_stale_temps`). A folder is swapped in under a journal
  (:mod:`confdistill.swap`), so a kill between its two renames is finished, not lost.
- Outputs get the user's umask (0644 files, 0755 folders with the usual 022), not the 0600/0700
  of :func:`tempfile.mkstemp`/:func:`tempfile.mkdtemp`.
- Several files that only make sense together (a prediction file and its sidecar) are put in
  place as one unit by :mod:`confdistill.commit`.
- Tensor files are read with :func:`load_tensors`, which never unpickles code.

Output folders (who may write where, the lock, refusing to overwrite, stale temporaries) live in
:mod:`confdistill.folders`, files committed as a unit in :mod:`confdistill.commit`; both import
this module, so their helpers are imported from them, never through here.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# ------------------------------------------------------------------------------------ modes


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so no other thread sees it change)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: str | Path, *, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open()``/``mkdir()`` would have (0666/0777 minus the umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def default_modes(root: str | Path) -> None:
    """:func:`default_mode` for a folder and everything in it (executable bits of files kept)."""
    mask = current_umask()
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = 0o777 if os.stat(path).st_mode & 0o100 else 0o666
                os.chmod(path, mode & ~mask)


# ------------------------------------------------------------------------- temporary names

#: ``.NAME.PID.RANDOM.tmp[.ext]`` (files and folders) and ``.NAME.old-PID`` (a folder being replaced).
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp(?:\.[^.]*)?$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")
#: Temporary names written before the process id was part of them: stale once the folder is ours.
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?:\.[^.]*)?$")


def _prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a reused id counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_owner(name: str) -> tuple[str, int | None] | None:
    """(target name, writer pid or None for an old-style name) when ``name`` is one of our temporaries."""
    for pattern in (_TEMP, _OLD):
        m = pattern.match(name)
        if m:
            return m["name"], int(m["pid"])
    m = _LEGACY.match(name)
    return (m["name"], None) if m else None


# ---------------------------------------------------------------------------- atomic output


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success move it onto ``path``.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary). If the block raises, ``path`` is untouched.
    An OS error without a file name (a write, flush or fsync on the open file: a full disk) is
    re-raised naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        default_mode(tmp)
        with os_errors_named(path), os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling *path* for writers that need a file name (savefig, parquet, torch.save).

    The caller writes to the yielded path; on success it is moved onto ``path``.
    The temporary name keeps the suffix of ``path`` so that format detection by extension still works.
    An OS error the writer raises without a file name (or wrapped, as torch's) is re-raised naming ``path``.
    """
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with os_errors_named(path):
            yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _inside(filename: Any, folder: Path) -> Path | None:
    """``filename`` relative to ``folder`` when it lies inside it, else None."""
    if not isinstance(filename, str | os.PathLike):
        return None
    with contextlib.suppress(ValueError):
        return Path(os.path.abspath(filename)).relative_to(os.path.abspath(folder))
    return None


def temp_sibling(path: str | Path) -> Path:
    """Create (empty, mode from the umask) and return a temporary file beside ``path``, same suffix.

    For writers that must finish several files before any is moved into place (:func:`commit_files`);
    the caller removes it on failure (or :func:`remove_stale_temps` does, once the process is gone).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.stem), suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    default_mode(tmp)
    return Path(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling *directory*; on success it replaces ``path`` (old one removed after).

    Used for model directories (``save_pretrained``) and checkpoints: a reader never sees a
    half-written model, and a kill at any point leaves the previous folder or the new one (the
    swap is journalled: :func:`confdistill.swap.replace_folder`). A *file* at ``path`` is never
    replaced by a folder (:class:`NotADirectoryError`). An OS error the block raises without a
    file name (a library's write on a full disk) is re-raised naming ``path``.
    """
    from confdistill.swap import replace_folder  # (it imports this module)

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(_errno.ENOTDIR, "exists and is a file, not a folder (not replaced)", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path.name), suffix=".tmp", dir=path.parent))
    try:
        with os_errors_named(path):
            yield tmp
        default_modes(tmp)  # mkdtemp's 0700, and writers (safetensors) that create 0600 files
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        inside = _inside(exc.filename, tmp)
        if inside is None:
            raise
        # the file as the user will look for it, not its temporary folder's (removed by now)
        raise OSError(exc.errno, exc.strerror, str(path / inside)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, path)


def fsync_dir(folder: str | Path) -> None:
    """Make a folder's entries (renames, new and removed names) durable; best effort (some file
    systems refuse to open or fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_no_follow(path: str | Path, mode: str = "a") -> IO[Any]:
    """Open ``path`` for appending (``"a"``) or reading and writing (``"a+"``), created if absent,
    never through a symbolic link (``OSError`` ELOOP): for the few files written in place (a log
    appended on resume, a lock), where a planted link would make us write outside the output."""
    flags = os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    fd = os.open(path, flags, 0o666)
    return os.fdopen(fd, mode, encoding="utf-8")


# ---------------------------------------------------------------------------- tensor files


def os_error_in(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc``, when a library wrapped one (torch's zip writer
    raises ``RuntimeError: unexpected pos …`` on a full disk, safetensors ``… (os error 28)``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError):
            return cur
        m = re.search(r"os error (\d+)\)", str(cur))
        if m:
            code = int(m.group(1))
            return OSError(code, os.strerror(code))
        # An error raised *while handling* another is only followed for torch's writer, whose
        # RuntimeError hides the OSError of the file object it wrote to.
        wrapped = isinstance(cur, RuntimeError) and "unexpected pos" in str(cur)
        cur = cur.__cause__ or (cur.__context__ if wrapped else None)
    return None


@contextlib.contextmanager
def os_errors_named(path: str | Path) -> Iterator[None]:
    """Re-raise a library-wrapped OS error (see :func:`os_error_in`) as an :class:`OSError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except Exception as exc:
        found = os_error_in(exc)
        if found is None:
            raise
        raise OSError(found.errno, found.strerror, str(path)) from exc


def save_tensors(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` (a temporary name, normally): a full disk is an OSError naming it.

    ``obj`` should hold only tensors and plain data, so that :func:`load_tensors` can read it.
    """
    import torch

    with os_errors_named(path), open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def needs_unpickling(exc: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a file because it holds objects that only
    unpickling (which can run code) would rebuild."""
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower()


def load_tensors(path: str | Path, *, what: str = "file") -> Any:
    """Read a torch file without running code from it: ``torch.load(weights_only=True)``.

    Only tensors and plain containers/numbers/strings are accepted (no pickled objects), so a file
    planted in a shared output folder cannot execute anything. Anything else — a damaged file, a
    pickle with objects — is an :class:`~confdistill.errors.InputError` naming the file.
    """
    import pickle
    import warnings

    import torch

    from confdistill.errors import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": such a file is refused anyway
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, AttributeError,
            ImportError, KeyError, IndexError, TypeError) as exc:
        first = " ".join(str(exc).split(". ")[0].split())[:160]
        if needs_unpickling(exc):
            first = "it holds objects other than tensors and plain data, which are never unpickled"
        raise InputError(f"cannot read this {what} ({type(exc).__name__}: {first})", path=path) from None


# ----------------------------------------------------------------------------- JSON, hashes


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as pretty JSON, atomically."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in results; keep the JSON plain.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    """Hex SHA-256 of a canonical JSON encoding (sorted keys): a stable hash of settings."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()
