"""Helpers for the distillation tests: a small SST-2 folder (real rows when ../shared has them)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONFDISTILL_SHARED", PROJECT_ROOT.parent / "shared"))

_POS = ["good", "great", "lovely", "wonderful", "fine", "moving", "funny", "smart", "best", "charming"]
_NEG = ["bad", "awful", "boring", "dull", "poor", "worst", "silly", "tedious", "weak", "messy"]
_FILL = ["the", "film", "movie", "story", "a", "is", "was", "very", "and", "plot", "acting", "it", "really"]


def _synthetic_rows(n: int, seed: int) -> list[tuple[str, int]]:
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
        train, dev = _synthetic_rows(n_train, 1), _synthetic_rows(n_dev, 2)
    for name, rows in (("train", train), ("dev", dev)):
        text = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)
        (folder / f"{name}.tsv").write_text(text, encoding="utf-8")
    return root


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
