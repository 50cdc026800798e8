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
from confdistill.folders import recover_folder
from confdistill.io import needs_unpickling

__all__ = [
    "WEIGHT_FILES",
    "LoadReport",
    "check_dir",
    "checkpoint_keys",
    "load_bin",
    "model_file_errors",
    "quiet_transformers",
    "read_config_dict",
    "seeded",
    "weights_file",
]

#: The advice given with a weights file that would need unpickling.
CONVERT_TO_SAFETENSORS = ("convert it to safetensors where you trust its source (load it there; "
                          "save_pretrained writes model.safetensors)")

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
    recover_folder(path)  # a save killed mid-swap: the old or the new folder, never none
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


@contextlib.contextmanager
def model_file_errors(config_file: Path, weights: Path) -> Iterator[None]:
    """Errors the libraries raise on a model directory's own files, as one-line
    :class:`InputError` s naming the file: a ``config.json`` value of the wrong type (transformers'
    strict validation names the key: ``"num_hidden_layers": "one"``) and a damaged weights file
    (safetensors: ``header too large``). Anything else passes through unchanged."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        if kind.startswith("StrictDataclass"):  # huggingface_hub's validation of a config field
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise InputError(f"invalid model configuration: {' '.join(str(cause).split())}", path=config_file) from None
        if kind == "SafetensorError":
            raise InputError(f"unreadable weights file ({kind}: {' '.join(str(exc).split())})", path=weights) from None
        raise


def checkpoint_keys(weights: Path) -> list[str]:
    """Tensor names in a weights file without loading the tensors (mmap for .bin)."""
    try:
        if weights.name.endswith(".index.json"):
            weight_map = json.loads(weights.read_text(encoding="utf-8"))["weight_map"]
            if weights.name.startswith("pytorch_model"):
                # transformers would torch.load the shards itself: each is checked here first, so that
                # one needing unpickling is refused naming it (mmapped: no tensor data is read).
                for shard in sorted(set(weight_map.values())):
                    load_bin(_shard_path(weights, shard))
            return list(weight_map)
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as fh:
                return list(fh.keys())
        return list(load_bin(weights))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {exc})", path=weights) from None


def _shard_path(index: Path, shard: object) -> Path:
    """A shard named by an index, which must be a file in the index's own folder."""
    if not isinstance(shard, str) or Path(shard).name != shard or shard in (".", ".."):
        raise InputError(f"weight_map names {shard!r}, not a file beside the index", path=index)
    return index.parent / shard


def load_bin(weights: Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin`` state dict (tensors only: ``weights_only``), mmapped when possible.

    A file that would need unpickling (objects other than tensors) is refused with one line naming
    it and saying to convert it to safetensors; it is never unpickled."""
    try:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if needs_unpickling(exc):
                raise
            # Files written before torch 1.6 (TinyBERT's releases) are not zip archives: no mmap.
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        if needs_unpickling(exc):
            raise InputError("needs unpickling (it holds objects other than tensors), which could run code, so "
                             f"it is never loaded: {CONVERT_TO_SAFETENSORS}", path=weights) from None
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         path=weights) from None
    if not isinstance(state, dict):
        raise InputError("expected a state dict (name -> tensor) in the weights file", path=weights)
    return state
