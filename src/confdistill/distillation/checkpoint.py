"""Training checkpoints: everything needed to continue a killed run to the same final weights.

A checkpoint is a directory ``OUT/checkpoints/step-00000123/`` holding ``state.pt`` (model and
fit_dense weights, optimiser, scheduler, RNG states of python/numpy/torch, progress counters) and
``progress.json`` (the counters, human-readable). It is written with
:func:`confdistill.io.atomic_directory`, so a kill during the save leaves the previous checkpoint
intact; only the newest ``keep`` are kept.

Trust: output folders are shared and copied between machines, so a checkpoint is read as data,
never as code. ``state.pt`` holds only tensors and plain containers/numbers/strings (the numpy
RNG state is stored as a tensor, not a pickled array) and is read with
``torch.load(weights_only=True)``; a file holding anything else — e.g. a planted pickle — is an
:class:`~confdistill.errors.InputError` naming it, and nothing in it runs. Checkpoints written by
earlier versions (numpy arrays inside) are still read: numpy's array reconstruction is the one
extra type allowed, and it cannot call anything.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confdistill.errors import InputError
from confdistill.io import atomic_directory, save_tensors

#: What a checkpoint's state holds (checked after loading: a file of another shape is refused).
STATE_KEYS = ("model", "optimizer", "scheduler", "rng", "progress")

_NAME = re.compile(r"^step-(\d{8})$")


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy (global) and torch (CPU and, when present, CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # A tensor and plain numbers, not the pickled ndarray: loadable with weights_only=True.
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        keys = np.asarray(numpy_state["keys"].numpy(), dtype=np.uint32)
        np.random.set_state((numpy_state["kind"], keys, numpy_state["pos"], numpy_state["has_gauss"],
                             numpy_state["cached_gaussian"]))
    else:  # a checkpoint of an earlier version: numpy's own tuple
        np.random.set_state(numpy_state)
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
        save_tensors(state, tmp / "state.pt")
        (tmp / "progress.json").write_text(json.dumps(state["progress"], indent=2) + "\n")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, as data only (see the module docstring).

    Raises :class:`InputError` naming ``state.pt`` when it is damaged, holds objects other than
    tensors and plain data, or is not a checkpoint's state.
    """
    path = Path(path)
    file = path / "state.pt"
    hint = "remove this checkpoint folder to resume from an earlier one, or start afresh with --overwrite"
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the file is refused anyway
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read it as data: unpickling refused, truncated, not a zip…
        trusted = "weights_only" in str(exc) or isinstance(exc, pickle.UnpicklingError)
        why = ("it holds objects other than tensors and plain data, which are never unpickled" if trusted
               else f"{type(exc).__name__}: {' '.join(str(exc).split('. ')[0].split())[:160]}")
        raise InputError(f"cannot read checkpoint ({why}); {hint}", path=file) from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS) or not isinstance(state["model"], dict):
        raise InputError(f"not a confdistill checkpoint (expected the keys {', '.join(STATE_KEYS)}); {hint}",
                         path=file)
    return state


def _legacy_numpy_globals() -> list[Any]:
    """numpy's array reconstruction, for checkpoints of earlier versions (RNG state as ndarray).

    It builds an array of an allowed dtype from bytes and calls nothing else; object arrays would
    need further globals, which stay forbidden.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest checkpoint directory, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_fit_denses(student_dir: str | Path, fit_denses: torch.nn.ModuleList | None) -> bool:
    """Start ``fit_denses`` from ``student_dir/fit_denses.pt`` when it is there and fits; True if loaded.

    A student written by ``general-distill`` (or an earlier stage 1) carries its projections, and
    TinyBERT's task distillation continues the general stage's ``fit_dense`` rather than drawing a
    new one. A file of other shapes (another teacher width, another depth) is ignored: the
    projections then start fresh, as without the file. Read as data only (:func:`load_tensors`).
    """
    from confdistill.io import load_tensors

    path = Path(student_dir) / "fit_denses.pt"
    if fit_denses is None or not path.is_file():
        return False
    saved = load_tensors(path, what="fit_denses file")
    own = fit_denses.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(own) or any(
            not isinstance(saved[k], torch.Tensor) or saved[k].shape != own[k].shape for k in own):
        return False
    fit_denses.load_state_dict(saved)
    return True
