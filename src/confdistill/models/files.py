"""Reading model directories: the configuration, the weights file and its tensor names.

Shared by the Hugging Face reader (:mod:`confdistill.models.loading`) and the TinyBERT-format
reader (:mod:`confdistill.models.tinybert`). Every problem a user can fix (missing directory,
unreadable JSON, no weights, a damaged weights file) is an :class:`InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from confdistill.errors import InputError

__all__ = [
    "WEIGHT_FILES",
    "LoadReport",
    "check_dir",
    "checkpoint_keys",
    "load_bin",
    "quiet_transformers",
    "read_config_dict",
    "seeded",
    "weights_file",
]

#: Weight files looked for, in this order.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class LoadReport:
    """What :func:`confdistill.models.loading.load_classifier` found in a model directory."""

    path: str
    format: str                                  # "huggingface" or "tinybert"
    fresh_head: bool                             # classifier initialised here (bare encoder or new width)
    ignored_keys: list[str] = field(default_factory=list)   # e.g. fit_denses.* of a TinyBERT checkpoint
    initialised_keys: list[str] = field(default_factory=list)
    head: str = "huggingface"                    # "huggingface" or "tinybert" (classifier(relu(pooled)))
    #: a head of another width replaced on request (``new_head``): what was dropped, e.g.
    #: "the checkpoint's 2-output head (classifier.bias, classifier.weight)"; None when kept
    dropped_head: str | None = None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers 5 prints a load table and progress bars on every load; we report ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def seeded(seed: int) -> contextlib.AbstractContextManager[Any]:
    """Fork the global torch RNG and seed it: fresh weights are reproducible, callers' RNG untouched."""
    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    return ctx()


def check_dir(path: str | Path) -> Path:
    """``path`` as a :class:`Path` if it is an existing directory, else :class:`InputError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError("model directory does not exist", path=path)
    if not path.is_dir():
        raise InputError("expected a model directory (config + weights), got a file", path=path)
    return path


def read_config_dict(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The model configuration (``config.json``, else ``bert_config.json``) as a dict, and its file."""
    path = check_dir(path)
    for name in ("config.json", "bert_config.json"):
        file = path / name
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"unreadable model configuration ({exc})", path=file) from None
            if not isinstance(data, dict):
                raise InputError("model configuration must be a JSON object", path=file)
            return data, file
    raise InputError("no config.json or bert_config.json: not a model directory", path=path)


def weights_file(path: Path) -> Path:
    """The first of :data:`WEIGHT_FILES` present in ``path``."""
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise InputError(f"no model weights: expected one of {', '.join(WEIGHT_FILES)}", path=path)


def checkpoint_keys(weights: Path) -> list[str]:
    """Tensor names in a weights file without loading the tensors (mmap for .bin)."""
    try:
        if weights.name.endswith(".index.json"):
            return list(json.loads(weights.read_text(encoding="utf-8"))["weight_map"])
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as fh:
                return list(fh.keys())
        return list(load_bin(weights))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {exc})", path=weights) from None


def load_bin(weights: Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin`` state dict (tensors only: ``weights_only``), mmapped when possible."""
    try:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Files written before torch 1.6 (TinyBERT's releases) are not zip archives: no mmap.
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         path=weights) from None
    if not isinstance(state, dict):
        raise InputError("expected a state dict (name -> tensor) in the weights file", path=weights)
    return state
