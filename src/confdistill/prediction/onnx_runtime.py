"""Running an ONNX model directory (``confdistill export``) with ONNX Runtime.

Why a wrapper rather than a second prediction path: :func:`~confdistill.prediction.predict.predict_encoded`
stays the one place where a split becomes logits — same length-sorted batches from
:func:`~confdistill.data.batching.make_loader`, same row order, same float64 softmax after — and
only the forward pass differs. :class:`OnnxClassifier` offers what that path reads from a PyTorch
model (``config.num_labels``, ``config.max_position_embeddings``) and :meth:`OnnxClassifier.logits`
for one batch. So a PyTorch model and its ONNX export (fp32 or int8) are compared on exactly the
same inputs.

Threads: ONNX Runtime's intra-op pool is sized like torch's (``torch.get_num_threads()``, unless
given), so latencies of the two runtimes are measured on the same number of cores.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from confdistill.errors import InputError

__all__ = ["RUNTIME", "OnnxClassifier", "load_onnx_classifier", "time_onnx"]

#: The sidecar's ``runtime`` value for ONNX models.
RUNTIME = "onnxruntime"


class OnnxClassifier:
    """An ONNX Runtime session over an exported classifier (CPUExecutionProvider).

    ``config``: ``num_labels``, ``max_position_embeddings`` (from the manifest), as on a
    transformers model; ``manifest``: ``onnx.json``; ``quantization``: None or ``"int8"``.
    """

    runtime = RUNTIME

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        from confdistill.models.onnx_dir import ONNX_MODEL, read_onnx_manifest

        self.path = Path(path)
        self.manifest = read_onnx_manifest(self.path)
        self.quantization: str | None = self.manifest.get("quantization")
        self.config = SimpleNamespace(num_labels=int(self.manifest.get("num_labels") or 2),
                                      max_position_embeddings=self.manifest.get("max_position_embeddings"))
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        self.threads = int(threads)
        model_file = self.path / str(self.manifest.get("model_file", ONNX_MODEL))
        try:
            self.session = ort.InferenceSession(str(model_file), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
            raise InputError(f"ONNX Runtime cannot load the graph ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]})", path=model_file) from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, batch: dict[str, Any]) -> np.ndarray:
        """Logits (b, k) float32 of one batch (tensors or arrays keyed by the graph's input names)."""
        feed = {name: np.ascontiguousarray(np.asarray(batch[name]), dtype=np.int64) for name in self.input_names}
        return np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)


def load_onnx_classifier(path: str | Path, *, threads: int | None = None) -> tuple[OnnxClassifier, Any]:
    """The session and the tokenizer of an ONNX directory (the tokenizer files copied at export)."""
    from confdistill.models.tokenizer import load_tokenizer

    return OnnxClassifier(path, threads=threads), load_tokenizer(path)


def time_onnx(model: OnnxClassifier, inputs: dict[str, Any], *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall seconds of one session run over ``inputs`` (after ``warmup`` untimed runs): the
    counterpart of :func:`confdistill.experiments.footprint.time_model`."""
    feed = {k: np.asarray(v) for k, v in inputs.items()}
    for _ in range(warmup):
        model.logits(feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.logits(feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
