"""``confdistill general-distill``: TinyBERT's general distillation of a fresh student on unlabeled text.

Runs on one CPU/GPU as is, or on several processes with
``accelerate launch --num_processes N -m confdistill general-distill …`` (same arguments).
The result, ``OUT/final``, is a student for ``confdistill distill --student OUT/final``.
"""

from __future__ import annotations

import argparse

from confdistill.cli.trainer_args import add_trainer_arguments, choice, integer

#: The loop options that apply here (no evaluation split, batches drawn from the stream).
_LOOP_OPTIONS = ("learning_rate", "num_train_epochs", "train_batch_size", "max_seq_length", "warmup_proportion",
                 "weight_decay", "checkpoint_steps", "seed", "resume", "overwrite", "gradient_accumulation_steps",
                 "pad_to_max_length", "mixed_precision", "device")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from confdistill.distillation.general_config import EMBEDDING_INITS, ENCODER_INITS, GeneralConfig
    from confdistill.distillation.settings import LAYER_MAPPINGS

    d = GeneralConfig()
    p = subparsers.add_parser(
        "general-distill",
        help="TinyBERT general distillation: a fresh student learns a teacher's attention and hidden states "
        "on unlabeled text",
        description="TinyBERT's first stage. Writes OUT/{final (student + fit_denses.pt),checkpoints,"
        "metrics.jsonl,loss_curves.png,run.json}; continue with `confdistill distill --student OUT/final`. "
        "The corpus is streamed and shuffled with a bounded buffer; texts longer than --max-seq-length "
        "tokens are truncated.",
    )
    p.add_argument("--teacher", required=True, metavar="DIR", help="teacher encoder directory (e.g. a pretrained BERT)")
    p.add_argument("--corpus", required=True, nargs="+", metavar="FILE",
                   help="text files (one text per line) or .csv/.tsv/.jsonl files with --text-column")
    p.add_argument("--text-column", default=None, metavar="C", help="column (CSV/TSV header, JSON key) of the text")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a run unless --resume)")
    from confdistill.models.student import SIZE_BOUNDS

    shape = p.add_argument_group("student", "sizes are checked against the teacher and bounded ("
                                 + ", ".join(f"{flag} <= {SIZE_BOUNDS[flag]:,}" for flag in
                                             ("--layers", "--hidden", "--heads", "--intermediate"))
                                 + ") before the student is built")
    for flag, text in (("--layers", "layers M (at most the teacher's)"), ("--hidden", "hidden width H (at most the "
                       "teacher's)"), ("--heads", "attention heads A (the teacher's number: scores are matched head "
                       "by head; A must divide H)"), ("--intermediate", "feed-forward width I")):
        shape.add_argument(flag, type=integer, required=True, metavar="N", help=text)
    shape.add_argument("--embeddings", type=choice(EMBEDDING_INITS), choices=EMBEDDING_INITS, default="teacher",
                       help="start the embeddings from the teacher's (copied, or PCA-projected when narrower) or "
                       "fresh as TinyBERT (default: teacher)")
    shape.add_argument("--encoder-init", type=choice(ENCODER_INITS), choices=ENCODER_INITS, default="fresh",
                       help="encoder layers fresh as TinyBERT, or sliced from the mapped teacher layers to the "
                       "narrow sizes, its fit_dense then starting at the least-squares map (learns far more on a small "
                       "corpus; default: fresh)")
    loss = p.add_argument_group("loss and stream")
    loss.add_argument("--layer-mapping", type=choice(LAYER_MAPPINGS), choices=LAYER_MAPPINGS, default=d.layer_mapping,
                      help=f"student→teacher layers (default: {d.layer_mapping}, TinyBERT's)")
    loss.add_argument("--shuffle-buffer", type=integer, default=d.shuffle_buffer, metavar="N",
                      help=f"texts held by the streamed shuffle (default: {d.shuffle_buffer})")
    add_trainer_arguments(p, defaults={k: getattr(d, k) for k in _LOOP_OPTIONS}, only=_LOOP_OPTIONS, help_text={
        "warmup_proportion": "fraction of the steps with linear warm-up, then linear decay (TinyBERT's general "
                             "distillation)"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from confdistill.distillation.batches import single_process_launch_note
    from confdistill.distillation.general import general_distill
    from confdistill.distillation.general_config import GeneralConfig, StudentShape

    note = single_process_launch_note("general-distill")
    if note:
        print(note, file=sys.stderr)  # the first line: the run's world_size 1 is not what was asked for

    student = StudentShape(layers=args.layers, hidden=args.hidden, heads=args.heads, intermediate=args.intermediate,
                           embeddings=args.embeddings, encoder_init=args.encoder_init)
    names = set(GeneralConfig.model_fields) - {"student"}
    settings = {k: v for k, v in vars(args).items() if k in names}
    result = general_distill(GeneralConfig.from_dict({**settings, "student": student}))
    rate = (result.get("timings") or {}).get("train_samples_per_second")
    print(f"general distillation done: {result.get('outputs', {}).get('final')} ({result.get('steps')} steps, "
          f"{result.get('rows_seen')} texts" + (f", {rate:.1f} texts/s)" if rate else ")"), file=sys.stderr)
    return 0
