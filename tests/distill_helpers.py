"""Helpers for the distillation tests: a small SST-2 folder (real rows when ../shared has them),
generated rows, the one-thread fixture, independent reference computations and run-output readers."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONFDISTILL_SHARED", PROJECT_ROOT.parent / "shared"))

_POS = ["good", "great", "lovely", "wonderful", "fine", "moving", "funny", "smart", "best", "charming"]
_NEG = ["bad", "awful", "boring", "dull", "poor", "worst", "silly", "tedious", "weak", "messy"]
_FILL = ["the", "film", "movie", "story", "a", "is", "was", "very", "and", "plot", "acting", "it", "really"]


def synthetic_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` generated (sentence, label) pairs whose label (1 positive) is decided by sentiment words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(_FILL) for _ in range(rng.randint(2, 14))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(_POS if label else _NEG))
        rows.append((" ".join(words), label))
    return rows


def _real_rows(path: Path, n: int) -> list[tuple[str, int]] | None:
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()[1 : n + 1]
    return [(line.split("\t")[0], int(line.split("\t")[1])) for line in lines]


def write_sst2(tmp_path: Path, n_train: int = 200, n_dev: int = 64, *, real: bool = True) -> Path:
    """Write ``tmp_path/glue/SST-2/{train,dev}.tsv``; return the GLUE root ``tmp_path/glue``.

    Uses the first rows of the real SST-2 files when ``../shared`` has them, otherwise generated
    sentences whose label is decided by sentiment words (learnable by a tiny model).
    """
    root = tmp_path / "glue"
    folder = root / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    glue = SHARED / "data" / "glue" / "SST-2"
    train = _real_rows(glue / "train.tsv", n_train) if real else None
    dev = _real_rows(glue / "dev.tsv", n_dev) if real else None
    if train is None or dev is None:
        train, dev = synthetic_rows(n_train, 1), synthetic_rows(n_dev, 2)
    for name, rows in (("train", train), ("dev", dev)):
        text = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)
        (folder / f"{name}.tsv").write_text(text, encoding="utf-8")
    return root


def write_word_sst2(folder: Path, n_train: int = 24, n_dev: int = 12) -> None:
    """Write ``folder/SST-2/{train,dev}.tsv``: tiny, fixed sentences whose label follows their two
    sentiment words (the tuning tests' corpus: same text in every run, learnable in a few steps)."""
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    task = folder / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = ["sentence\tlabel"]
        for i in range(n):
            label = i % 2
            w = words[(i // 2) % 3 + 3 * (1 - label)]
            lines.append(f"the movie was {w} and {words[(i + 1) % 3 + 3 * (1 - label)]}\t{label}")
        (task / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def copy_model(src: Path, dst: Path, **config_updates: object) -> Path:
    """Copy a model directory and update keys of its config.json (e.g. dropout off)."""
    import json

    shutil.copytree(src, dst)
    if config_updates:
        cfg_path = dst / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.update(config_updates)
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return dst


# ---------------------------------------------------------------------------------------------
# Shared by the trainer tests: thread pinning, independent reference computations, run outputs
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test with one torch thread: the machine's cores are shared and OpenMP spins under load.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` after importing it.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hand_scores(model: Any, hidden_in: Any, layer: int, mask: Any, mask_value: float) -> Any:
    """Pre-softmax attention scores Q·Kᵀ/√d + (1 − mask)·mask_value of a BERT ``layer``, straight
    from its weights (independent of the capture code). hidden_in: (batch, seq, hidden) input of the
    layer; mask: (batch, seq) attention mask; returns (batch, heads, seq, seq)."""
    att = model.bert.encoder.layer[layer].attention.self
    heads = model.config.num_attention_heads
    d = model.config.hidden_size // heads
    b, n, _ = hidden_in.shape
    q = (hidden_in @ att.query.weight.T + att.query.bias).view(b, n, heads, d).permute(0, 2, 1, 3)
    k = (hidden_in @ att.key.weight.T + att.key.bias).view(b, n, heads, d).permute(0, 2, 1, 3)
    return q @ k.transpose(-1, -2) / math.sqrt(d) + (1.0 - mask[:, None, None, :].float()) * mask_value


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (n, k) logits in numpy."""
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z))


def kl_rows(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-row KL(softmax(t) ‖ softmax(s)) of (n, k) logits, shape (n,)."""
    return (softmax(t) * (log_softmax(t) - log_softmax(s))).sum(1)


def metrics_log(out: Path) -> list[dict]:
    """Every entry of ``OUT/metrics.jsonl`` (steps and evaluations), in order."""
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def step_entries(out: Path) -> list[dict]:
    """The per-step entries (with ``loss``) of ``OUT/metrics.jsonl``."""
    return [e for e in metrics_log(out) if "loss" in e]


def weights(model_dir: Path) -> dict:
    """The tensors of ``model_dir/model.safetensors``."""
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))
