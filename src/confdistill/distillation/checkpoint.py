"""Training checkpoints: everything needed to continue a killed run to the same final weights.

A checkpoint is a directory ``OUT/checkpoints/step-00000123/`` holding ``state.pt`` (model and
fit_dense weights, optimiser, scheduler, RNG states of python/numpy/torch, progress counters) and
``progress.json`` (the counters, human-readable). It is written with
:func:`confdistill.io.atomic_directory`, so a kill during the save leaves the previous checkpoint
intact; only the newest ``keep`` are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confdistill.errors import InputError
from confdistill.io import atomic_directory

_NAME = re.compile(r"^step-(\d{8})$")


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy (global) and torch (CPU and, when present, CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / "state.pt").exists())


def save_checkpoint(root: str | Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``state`` (must include ``progress``: a JSON-able dict) atomically; prune to the newest ``keep``."""
    path = Path(root) / f"step-{int(step):08d}"
    with atomic_directory(path) as tmp:
        torch.save(state, tmp / "state.pt")
        (tmp / "progress.json").write_text(json.dumps(state["progress"], indent=2) + "\n")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (our own files: full unpickling allowed)."""
    path = Path(path)
    try:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(f"cannot read checkpoint ({exc}); remove it to resume from an earlier one", path=path) from exc


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest checkpoint directory, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None
