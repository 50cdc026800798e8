"""The files of a training run that are read back: ``run.json``, ``metrics.jsonl``, the teacher-logit
caches — and the claim on the output folder itself.

Kept apart from the loop (:mod:`confdistill.distillation.trainer`) because these are the parts that
must survive faults:

- **One writer.** :func:`claim_run_dir` takes ``OUT/.lock`` for the whole command (an OS lock, gone
  when the process dies): a second ``distill``/``finetune`` into the same OUT stops at once with
  "OUT is in use by process N". Under ``accelerate launch`` only rank 0 takes it.
- **The log is the run's.** :class:`MetricsLog` counts its lines and every checkpoint records the
  count (after an fsync), so a resumed run cuts the log back to exactly the lines written before that
  checkpoint: a kill at any point (also after the final evaluation) neither duplicates nor drops a line.
- **Caches are data, and disposable.** A teacher-logit cache is read with
  :func:`confdistill.io.load_tensors` (no unpickling); one that is damaged, planted, or of other
  inputs is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confdistill.errors import InputError, setting_name
from confdistill.folders import claim_output
from confdistill.io import atomic_path, atomic_write, load_tensors, open_no_follow, save_tensors

#: What marks a folder as holding a run (``--resume`` or ``--overwrite`` needed to write into it).
RUN_MARKERS = ("run.json", "checkpoints", "final", "metrics.jsonl", "intermediate")


def launch_rank() -> int:
    """This process's rank under ``accelerate launch``/``torchrun`` (0 when run alone)."""
    for name in ("RANK", "LOCAL_RANK"):
        with contextlib.suppress(ValueError):
            if name in os.environ:
                return int(os.environ[name])
    return 0


@contextlib.contextmanager
def claim_run_dir(out: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Check and lock a training output folder for the block (rank 0 only; see the module docstring).

    Without ``resume``/``overwrite`` an existing non-empty OUT is refused (it may hold a run, or
    anything else); a file is never replaced by a folder. Clearing for ``overwrite`` happens later,
    once the inputs are validated (``_Job.clear_dir``).
    """
    if resume and overwrite:
        raise InputError(f"give {setting_name('resume')} (continue the run in {setting_name('out')}) or "
                         f"{setting_name('overwrite')} (discard it), not both")
    if launch_rank() != 0:
        yield
        return
    with claim_output(out, resume=resume, overwrite=overwrite, what=setting_name("out")):
        yield


def read_run(out: Path) -> dict[str, Any]:
    """``OUT/run.json``, or ``{}`` when absent or unreadable."""
    path = Path(out) / "run.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def refuse_existing_run(out: Path) -> None:
    """Without --resume, never write into an OUT holding a run (nothing is overwritten)."""
    found = [m for m in RUN_MARKERS if (Path(out) / m).exists()]
    if found:
        raise InputError(f"already holds a run ({', '.join(found)}): use {setting_name('resume')} to continue it, "
                         f"{setting_name('overwrite')} to discard it, or another {setting_name('out')}", path=out)


class MetricsLog:
    """Append-only JSONL of per-step losses and evaluations that knows how many lines it holds.

    ``lines`` is the count after the last write; :meth:`flush` with ``durable`` fsyncs, so that a
    checkpoint recording ``lines`` never points past what is on disk.
    """

    def __init__(self, path: Path, *, enabled: bool, lines: int = 0) -> None:
        # Appended in place on --resume: never through a link (folders.refuse_links has refused one).
        self.fh = open_no_follow(path) if enabled else None
        self.lines = lines

    def write(self, entry: dict[str, Any]) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps(entry) + "\n")
            self.lines += 1

    def flush(self, *, durable: bool = False) -> None:
        if self.fh is not None:
            self.fh.flush()
            if durable:
                os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def truncate_metrics(path: Path, *, lines: int | None, step: int, eval_at_step: bool = False) -> int:
    """Cut the log back to what it held at the checkpoint being resumed; returns the lines kept.

    lines: the count the checkpoint recorded (exact). Checkpoints of earlier versions have none:
    then step entries up to ``step`` are kept, and evaluations before it (at it only when the
    checkpoint says it evaluated there, ``eval_at_step``). A line cut by the kill is dropped. Atomic.
    """
    if not path.exists():
        return 0
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if lines is not None and len(kept) >= lines:
            break
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if lines is None:
            at = int(entry.get("step", 0))
            if at > step or ("eval" in entry and at == step and not eval_at_step):
                continue
        kept.append(line)
    with atomic_write(path) as fh:
        fh.write("".join(k + "\n" for k in kept))
    return len(kept)


def load_cached_logits(path: Path, key: str, n: int) -> Any:
    """The logits tensor cached in ``path`` for ``key`` (n rows), or None to recompute.

    A damaged file, one holding anything but tensors and plain data (never unpickled), or one of
    other inputs is not an error: the cache is recomputed (and said so on stderr).
    """
    import torch

    if not path.exists():
        return None
    try:
        cached = load_tensors(path, what="teacher-logit cache")
    except InputError as exc:
        print(f"{exc}; recomputing it", file=sys.stderr)
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None  # other inputs (or not a cache of ours): recomputed and replaced
    logits = cached.get("logits")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        print(f"{path}: teacher-logit cache of the wrong shape; recomputing it", file=sys.stderr)
        return None
    return logits


def save_cached_logits(path: Path, key: str, logits: Any) -> None:
    """Write a teacher-logit cache (tensors and a string only), atomically."""
    with atomic_path(path) as tmp:
        save_tensors({"key": key, "logits": logits}, tmp)
