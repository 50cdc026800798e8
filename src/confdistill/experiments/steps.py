"""The step engine of ``confdistill run``: a small DAG of steps, each skipped when its content hash says it is done.

For every task: data -> teacher (fine-tuned if asked) -> teacher predictions on train and dev; for
every student: init (make-student) -> stage 1 -> stage 2 -> predictions on train and dev -> analysis;
per model a footprint (parameters, size, CPU latency); finally the report.

Each step is a node with

- an **input hash** over everything that determines its outputs: its settings, the output hashes of
  the steps it reads, the content of external inputs (data files, model directories) and the code
  version (the package version, torch/transformers versions and the source of the modules the step
  runs), and
- **outputs** (files or directories) whose content hashes are recorded after the step finished.

The manifest ``OUT/.steps/<step>.json`` stores both. A step is skipped when its manifest's input
hash equals the current one *and* its outputs re-hash to the recorded values (so a deleted or
corrupted file is rebuilt). Because a step's input hash contains its upstream steps' *output*
hashes, a changed setting re-runs exactly the steps it affects, and a rebuilt step whose outputs
come out identical stops the invalidation there (nothing downstream of identical bytes re-runs).

A killed run picks up where it stopped: finished steps are skipped, and a training step that was
interrupted resumes from its last checkpoint (``resume=True``) when it was started with the same
input hash (recorded in ``OUT/.steps/<step>.started.json``); checkpoints of other settings are
discarded rather than resumed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill import __version__
from confdistill.errors import InputError
from confdistill.io import sha256_file, sha256_json, write_json

PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: Source folders / files (relative to the package) whose code determines each kind of step.
CODE_OF_KIND: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "finetune": ("distillation", "data", "models"),
    "make_student": ("models",),
    "stage1": ("distillation", "data", "models"),
    "stage2": ("distillation", "data", "models"),
    "predict": ("prediction", "data", "models"),
    "analyze": ("properties", "prediction/softmax_file.py"),
    "footprint": ("experiments/footprint.py", "models", "prediction"),
    "general": ("distillation", "data", "models"),
    "export": ("models",),
    "report": ("reports", "properties", "prediction/softmax_file.py"),
}

@dataclass
class Step:
    """One node of the plan. ``action`` does the work; it may assume its ``deps`` are done."""

    name: str  # "SST-2/L3/stage1": unique, also the manifest's name
    kind: str  # key of CODE_OF_KIND
    deps: list[str]
    settings: dict[str, Any]
    outputs: list[Path]
    action: Callable[[Step], None]
    sources: list[Path] = field(default_factory=list)  # external inputs hashed by content
    train_dir: Path | None = None  # training output dir (resumable from its checkpoints)
    resume: bool = False  # set by the runner just before ``action``


@dataclass
class RunSummary:
    """Which steps ran and which were skipped, in plan order (``reasons``: why each ran)."""

    out: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- hashing


class Hasher:
    """Content hashes of files and directories, memoised per (path, size, mtime) within one run."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._memo:
            self._memo[key] = sha256_file(path)
        return self._memo[key]

    def path(self, path: Path) -> str | None:
        """Hash of a file, or of a directory (relative names + file hashes, hidden entries skipped);
        None when it does not exist."""
        if path.is_file():
            return self.file(path)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            return sha256_json({str(p.relative_to(path)): self.file(p) for p in files})
        return None


_code_memo: dict[str, str] = {}


def code_version(kind: str) -> str:
    """Hash of the package version, library versions and the source of the modules a step runs."""
    if kind not in _code_memo:
        import torch
        import transformers

        files: list[Path] = []
        for rel in CODE_OF_KIND.get(kind, ()):
            p = PACKAGE_DIR / rel
            files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []
        _code_memo[kind] = sha256_json({
            "confdistill": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "source": {str(f.relative_to(PACKAGE_DIR)): sha256_file(f) for f in files},
        })
    return _code_memo[kind]


def manifest_path(out: Path, name: str, suffix: str = ".json") -> Path:
    return out / ".steps" / (name.replace("/", "__") + suffix)


# ----------------------------------------------------------------------------- execution


def execute(
    steps: list[Step], out: Path, *, dry_run: bool = False, log: Callable[[str], None] | None = None
) -> RunSummary:
    """Run ``steps`` (in order; deps first) into ``out``, skipping those that are up to date.

    With ``dry_run`` nothing runs: each step is reported as ``skip`` (up to date), ``run`` (with the
    reason) or ``run?`` (depends on a step that will run: whether it re-runs depends on whether
    that step's outputs change).
    """
    if log is None:
        quiet = os.environ.get("CONFDISTILL_QUIET") == "1"   # confdistill --quiet
        log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    hasher = Hasher()
    summary = RunSummary(out=out)
    output_hash: dict[str, str] = {}
    pending: set[str] = set()  # dry run: steps that would run
    width = max((len(s.name) for s in steps), default=0)
    for i, step in enumerate(steps, 1):
        tag = f"[{i:>2}/{len(steps)}] {step.name:<{width}}"
        if dry_run and any(d in pending for d in step.deps):
            pending.add(step.name)
            summary.ran.append(step.name)
            summary.reasons[step.name] = "after upstream"
            waiting = [d for d in step.deps if d in pending]
            shown = ", ".join(waiting[:3]) + (f" and {len(waiting) - 3} more" if len(waiting) > 3 else "")
            log(f"{tag}  run?  (after {shown})")
            continue
        input_hash = _input_hash(step, output_hash, hasher)
        reason, recorded = _why_run(step, out, input_hash, hasher)
        if reason is None:
            output_hash[step.name] = recorded
            summary.skipped.append(step.name)
            log(f"{tag}  skip  (up to date)")
            continue
        summary.ran.append(step.name)
        summary.reasons[step.name] = reason
        if dry_run:
            pending.add(step.name)
            log(f"{tag}  run   ({reason})")
            continue
        log(f"{tag}  run   ({reason})")
        step.resume = _prepare_resume(step, out, input_hash)
        if step.resume:
            log(f"{' ' * len(tag)}  resuming from the checkpoints in {step.train_dir}")
        t0 = time.perf_counter()
        step.action(step)
        seconds = time.perf_counter() - t0
        hashes = {}
        for p in step.outputs:
            h = hasher.path(p)
            if h is None:
                raise RuntimeError(f"step {step.name} finished without writing {p}")
            hashes[rel(p, out)] = h
        output_hash[step.name] = sha256_json(hashes)
        write_json(manifest_path(out, step.name), {
            "step": step.name,
            "kind": step.kind,
            "input_hash": input_hash,
            "outputs": hashes,
            "settings": step.settings,
            "deps": step.deps,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        manifest_path(out, step.name, ".started.json").unlink(missing_ok=True)
        if step.train_dir is not None:
            shutil.rmtree(_stale_dir(step), ignore_errors=True)
        summary.seconds[step.name] = seconds
        log(f"{' ' * len(tag)}  done in {seconds:.1f} s")
    return summary


def rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)


def _input_hash(step: Step, output_hash: dict[str, str], hasher: Hasher) -> str:
    sources = {}
    for p in step.sources:
        h = hasher.path(p)
        if h is None:
            raise InputError(f"step {step.name}: input {p} does not exist")
        sources[str(p)] = h
    return sha256_json({
        "kind": step.kind,
        "settings": step.settings,
        "deps": {d: output_hash[d] for d in step.deps},
        "sources": sources,
        "code": code_version(step.kind),
    })


def _why_run(step: Step, out: Path, input_hash: str, hasher: Hasher) -> tuple[str | None, str]:
    """(reason to run or None, recorded output hash when up to date)."""
    manifest = manifest_path(out, step.name)
    if not manifest.is_file():
        return "not run yet", ""
    try:
        record = json.loads(manifest.read_text())
        recorded: dict[str, str] = record["outputs"]
        recorded_input = record["input_hash"]
    except (ValueError, KeyError, TypeError):
        return "manifest unreadable", ""
    if recorded_input != input_hash:
        return "inputs changed", ""
    expected = {rel(p, out) for p in step.outputs}
    if set(recorded) != expected:
        return "outputs changed", ""
    for name, h in recorded.items():
        p = Path(name) if Path(name).is_absolute() else out / name
        now = hasher.path(p)
        if now is None:
            return f"output missing: {name}", ""
        if now != h:
            return f"output modified: {name}", ""
    return None, sha256_json(recorded)


def _prepare_resume(step: Step, out: Path, input_hash: str) -> bool:
    """Decide whether a training step resumes; clear the way when it starts afresh.

    It resumes (``resume=True``: the trainer continues from its last checkpoint, or returns at once
    if that run completed) only a run that was started with the same input hash. A run of other
    settings is moved aside to ``.<dir>.stale`` (the trainer refuses to write into an OUT holding a
    run), and deleted once the new run has finished.
    """
    if step.train_dir is None:
        return False
    started = manifest_path(out, step.name, ".started.json")
    same = False
    if started.is_file():
        try:
            same = json.loads(started.read_text()).get("input_hash") == input_hash
        except ValueError:
            same = False
    resume = same and (step.train_dir / "run.json").is_file()
    if not resume and step.train_dir.exists():
        stale = _stale_dir(step)
        shutil.rmtree(stale, ignore_errors=True)
        step.train_dir.rename(stale)
    write_json(started, {"step": step.name, "input_hash": input_hash,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return resume


def _stale_dir(step: Step) -> Path:
    assert step.train_dir is not None
    return step.train_dir.with_name(f".{step.train_dir.name}.stale")
