"""Set-ups the bad-input tests share: a one-student experiment file, a copy of a model whose
vocabulary differs, and places a run must refuse to overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ONE_EPOCH = "num_train_epochs = 1.0, train_batch_size = 8"


def tiny_experiment(path: Path, *, out: Path, data: Path, teacher: Path, student: str = 'name = "L1"\nlayers = 1',
                    stage1: str | None = ONE_EPOCH, stage2: str = ONE_EPOCH, kappa: str = "",
                    extra: str = "") -> Path:
    """Write ``path``: an SST-2 experiment with one student of ``teacher`` (a ready directory), no
    footprint. ``stage1``/``stage2``: the stage tables' contents (``stage1=None`` leaves it out);
    ``kappa``: e.g. ``"kappa = 0.05"``; ``extra``: lines after ``[experiment]``'s (further tables)."""
    stage1_line = "" if stage1 is None else f"stage1 = {{ {stage1} }}\n"
    path.write_text(f"""
[experiment]
name = "tiny"
output_dir = "{out}"
seed = 3
max_length = 32
{kappa}
{extra}
[footprint]
enabled = false
[tasks.SST-2]
data_dir = "{data}"
teacher = {{ dir = "{teacher}" }}
[[tasks.SST-2.students]]
{student}
{stage1_line}stage2 = {{ {stage2} }}
""")
    return path


def other_vocab_copy(model_dir: Path, dst: Path) -> Path:
    """A copy of ``model_dir`` whose vocabulary differs (two tokens swapped, slow tokenizer files
    only), so that the tokenizers disagree while the sizes agree."""
    shutil.copytree(model_dir, dst)
    vocab = (dst / "vocab.txt").read_text().splitlines()
    vocab[1000], vocab[1001] = vocab[1001], vocab[1000]
    (dst / "vocab.txt").write_text("\n".join(vocab) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dst / name).unlink(missing_ok=True)
    return dst


def occupied_places(folder: Path) -> dict[str, Any]:
    """A non-empty folder (``full``, holding the user's notes.txt) and a file (``file``) under ``folder``."""
    full = folder / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    (folder / "afile.txt").write_text("mine")
    return {"full": full, "file": folder / "afile.txt"}
