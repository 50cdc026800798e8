"""``confdistill export``: a classifier directory as an ONNX model (optionally int8) for ONNX Runtime."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a classifier to ONNX (optionally int8-quantized) for ONNX Runtime",
        description="Export a classifier directory (Hugging Face or TinyBERT format; a TinyBERT head keeps "
        "its ReLU) to DIR/model.onnx with dynamic batch and sequence axes (inputs input_ids, "
        "attention_mask, token_type_ids; output logits), beside its tokenizer files, config.json (class "
        "names as id2label) and the manifest onnx.json. --quantize int8 applies ONNX Runtime's dynamic "
        "int8 quantization and keeps only the int8 model.onnx. 'confdistill predict --model DIR' runs the "
        "result. Written atomically; an existing non-empty --out is refused without --overwrite.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (HF or TinyBERT format)")
    p.add_argument("--format", default="onnx", metavar="FORMAT", help="export format: onnx (default: onnx)")
    p.add_argument("--quantize", default=None, metavar="int8",
                   help="int8: ONNX Runtime dynamic quantization (int8 weights); default: none (fp32)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (an existing non-empty one is refused without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out as a whole, once the export is complete (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from confdistill.folders import claim_output, refuse_source_as_target
    from confdistill.models.hub import resolve_model_dir
    from confdistill.models.onnx_dir import onnx_size_bytes
    from confdistill.models.onnx_export import check_format, check_quantize, export_onnx

    check_format(args.format)
    check_quantize(args.quantize)
    model = resolve_model_dir(args.model, what="--model")  # a directory, an alias, a Hub id in the local cache
    # before the lock (which would refuse the existing folder first)
    refuse_source_as_target(args.out, model, source_field="model_dir", source_flag="--model")
    # One writer per --out, before the model is loaded (the lock is beside the folder, swapped in whole).
    with claim_output(args.out, overwrite=args.overwrite, beside=True, what="--out"):
        out = export_onnx(model, args.out, quantize=args.quantize, overwrite=args.overwrite)
    kind = args.quantize or "fp32"
    print(f"wrote {out}/model.onnx ({kind}, {onnx_size_bytes(out) / 1e6:.1f} MB)", file=sys.stderr)
    return 0
