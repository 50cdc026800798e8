"""``confdistill make-student``: a student from M evenly spaced layers of a model, or a fresh configuration."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from confdistill.models.student import MAX_PARAMETERS, SIZE_BOUNDS

    bounds = ", ".join(f"{flag} <= {bound:,}" for flag, bound in SIZE_BOUNDS.items())
    p = subparsers.add_parser(
        "make-student",
        help="build a student model directory: M evenly spaced layers of a model, or a fresh config",
        description="With only --layers M, the student keeps M of the source's N layers: student layer m "
        "copies source layer floor(m*N/M) (1-based; TinyBERT's uniform mapping when M divides N), plus "
        "embeddings, pooler and classifier. With --hidden/--intermediate/--heads, a new randomly "
        "initialised model (seeded) of that size with the source's vocabulary. Output: Hugging Face "
        "format + vocab.txt + student.json, written atomically; an existing --out is never replaced "
        f"without --overwrite. Sizes are bounded before anything is allocated: {bounds}, and at most "
        f"{MAX_PARAMETERS:,} parameters in all.",
    )
    p.add_argument("--from", "--model", dest="from_dir", required=True, metavar="DIR",
                   help="source model (Hugging Face or TinyBERT format), e.g. the teacher: a directory, minilm, or a "
                   "Hub id in the local cache")
    p.add_argument("--layers", type=int, required=True, metavar="M", help="number of encoder layers")
    p.add_argument("--hidden", type=int, metavar="H", help="hidden size (fresh configuration)")
    p.add_argument("--intermediate", type=int, metavar="I", help="feed-forward size (fresh configuration)")
    p.add_argument("--heads", type=int, metavar="A", help="attention heads; must divide the hidden size")
    p.add_argument("--num-labels", type=int, metavar="K",
                   help="classifier outputs (default: the source's; 1 = regression)")
    p.add_argument("--seed", type=int, default=0, help="seed of any randomly initialised weights (0)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output model directory (an existing non-empty one is refused without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out as a whole, once the new model is complete (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from confdistill.folders import claim_output, refuse_source_as_target
    from confdistill.models.hub import resolve_model_dir
    from confdistill.models.student import make_student

    source = resolve_model_dir(args.from_dir, what="--from")  # a directory, an alias, a Hub id in the local cache
    # before the lock (which would refuse the existing folder first)
    refuse_source_as_target(args.out, source, source_field="from_dir", source_flag="--from")
    # One writer per --out: a second make-student into it stops at once, before loading anything
    # (the lock is beside the folder, which is swapped in whole).
    with claim_output(args.out, overwrite=args.overwrite, beside=True, what="--out"):
        out = make_student(source, args.out, layers=args.layers, hidden=args.hidden,
                           intermediate=args.intermediate, heads=args.heads, num_labels=args.num_labels,
                           seed=args.seed, overwrite=args.overwrite)
    record = json.loads((out / "student.json").read_text(encoding="utf-8"))
    if record["mode"] == "layers":
        how = f"source layers {record['source_layers_copied']} of {record['source_layers']}"
    else:
        how = f"fresh H={record['hidden']} I={record['intermediate']} A={record['heads']}"
    print(f"wrote {out}: {record['layers']} layers ({how}), {record['num_labels']} label(s)", file=sys.stderr)
    return 0
