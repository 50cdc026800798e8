"""What distillation bought: parameters, size on disk, and CPU latency per example.

Latency is measured the plain way: the model in eval mode under ``torch.inference_mode``, inputs of a
fixed length built from real text (so teacher and student do exactly the same work and the
tokeniser's vocabulary statistics are realistic), a few warm-up calls (allocator, oneDNN kernels),
then the median of ``repeats`` timed calls, divided by the batch size. It takes seconds, not a
benchmark suite: the numbers are for the report's "speed-up" column, on whatever CPU runs it.

An ONNX directory (``confdistill export``) is measured the same way with ONNX Runtime (as many
intra-op threads as torch uses, the same inputs): ``parameters`` is then the number of elements of
the graph's initializers (int8 weights count like fp32 ones, plus their scales and zero points) and
``size_bytes`` the bytes of ``model.onnx`` and any external-data file.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_size_bytes(model_dir: str | Path) -> int:
    """Bytes on disk of the weight files of a model directory (config/tokeniser files excluded)."""
    model_dir = Path(model_dir)
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def make_inputs(tokenizer: Any, texts: Sequence[str] | None, *, batch_size: int, seq_len: int,
                seed: int = 0) -> dict[str, Any]:
    """A batch of ``(batch_size, seq_len)`` token ids, every position attended.

    Built by tokenising ``texts`` (real sentences), concatenating their word pieces and cutting the
    stream into rows of ``seq_len`` ([CLS] ... [SEP]); without texts, random ids drawn from the
    vocabulary (seeded).
    """
    import torch

    body = seq_len - 2
    pieces: list[int] = []
    if texts:
        for t in texts:
            pieces.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
            if len(pieces) >= batch_size * body:
                break
    if not pieces:
        g = torch.Generator().manual_seed(seed)
        low = min(1000, len(tokenizer) // 2)   # past BERT's special/unused ids; inside a small vocabulary
        pieces = torch.randint(low, max(low + 1, len(tokenizer) - 1), (batch_size * body,), generator=g).tolist()
    while len(pieces) < batch_size * body:  # few texts: repeat the stream
        pieces = pieces + pieces
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else 101
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else 102
    rows = [[cls_id, *pieces[i * body:(i + 1) * body], sep_id] for i in range(batch_size)]
    ids = torch.tensor(rows, dtype=torch.long)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }


def time_model(model: Any, inputs: dict[str, Any], *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall seconds of one forward pass over ``inputs`` (after ``warmup`` untimed passes)."""
    import torch

    model.eval()
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(**inputs)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_footprint(
    model_dir: str | Path,
    *,
    texts: Sequence[str] | None = None,
    seq_len: int = 64,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 5,
) -> dict[str, Any]:
    """Parameters, weight bytes on disk and CPU latency (ms per example) of one classifier directory.

    Returns ``{"parameters", "size_bytes", "seq_len", "threads", "latency_ms": {"1": ms, "32": ms},
    "runtime"}`` (``runtime``: ``"torch"`` or ``"onnxruntime"``, then with ``quantization``);
    ``latency_ms[b]`` = median forward time of a ``(b, seq_len)`` batch / b, in milliseconds.
    """
    import torch

    from confdistill.models import load_classifier
    from confdistill.models.families import model_inputs
    from confdistill.models.onnx_dir import is_onnx_dir

    if is_onnx_dir(model_dir):
        return _measure_onnx(model_dir, texts=texts, seq_len=seq_len, batch_sizes=batch_sizes, repeats=repeats)
    model, tokenizer = load_classifier(model_dir)
    model.eval()
    latency: dict[str, float] = {}
    for b in batch_sizes:
        inputs = model_inputs(model, make_inputs(tokenizer, texts, batch_size=b, seq_len=seq_len))
        latency[str(b)] = 1000.0 * time_model(model, inputs, repeats=repeats) / b
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "size_bytes": weights_size_bytes(model_dir),
        "seq_len": seq_len,
        "threads": torch.get_num_threads(),
        "latency_ms": latency,
        "runtime": "torch",
    }


def _measure_onnx(model_dir: str | Path, *, texts: Sequence[str] | None, seq_len: int,
                  batch_sizes: Sequence[int], repeats: int) -> dict[str, Any]:
    """:func:`measure_footprint` of an ONNX directory (see the module docstring)."""
    from confdistill.models.onnx_dir import onnx_parameter_count, onnx_size_bytes
    from confdistill.prediction.onnx_runtime import load_onnx_classifier, time_onnx

    model, tokenizer = load_onnx_classifier(model_dir)
    latency: dict[str, float] = {}
    for b in batch_sizes:
        inputs = {k: v.numpy() for k, v in make_inputs(tokenizer, texts, batch_size=b, seq_len=seq_len).items()}
        latency[str(b)] = 1000.0 * time_onnx(model, inputs, repeats=repeats) / b
    return {
        "parameters": onnx_parameter_count(model_dir),
        "size_bytes": onnx_size_bytes(model_dir),
        "seq_len": seq_len,
        "threads": model.threads,
        "latency_ms": latency,
        "runtime": model.runtime,
        "quantization": model.quantization,
    }
