"""Loading and saving classifiers from local directories: Hugging Face and the TinyBERT release format.

Formats read by :func:`load_classifier`:

* **Hugging Face**: ``config.json`` with a known ``model_type`` + ``model.safetensors`` (or sharded
  safetensors, or ``pytorch_model.bin``). A checkpoint without a classifier head (a bare encoder
  such as MiniLM's ``BertModel``) gets a freshly initialised head, seeded. The model keeps its own
  head (``BertForSequenceClassification``: ``classifier(dropout(pooled))``), unless its
  configuration says ``"confdistill_head": "tinybert"`` (a TinyBERT model saved by confdistill).
* **TinyBERT release** (pytorch-pretrained-bert style, read by :mod:`confdistill.models.tinybert`):
  ``bert_config.json`` or a ``config.json`` without a known ``model_type`` (TinyBERT writes
  ``"tiny_bert"`` or nothing), ``pytorch_model.bin`` with ``bert.*`` / ``classifier.*`` keys,
  possibly LayerNorm ``gamma``/``beta`` (renamed to ``weight``/``bias``), a ``module.`` prefix
  (DataParallel) and ``fit_dense``/``fit_denses.N`` projections of its distillation (ignored, and
  listed in the load report). The result is a
  :class:`~confdistill.models.tinybert.TinyBertForSequenceClassification`: transformers' BERT with
  TinyBERT's head ``classifier(relu(pooled))`` and no dropout, so its logits, hidden states and
  attention scores are those of TinyBERT's ``TinyBertForSequenceClassification`` (float32
  rounding aside); :func:`save_classifier` records the head in ``config.json`` and
  :func:`load_classifier` restores it.

Every loaded model carries ``model.confdistill_load_report`` (:class:`LoadReport`): the format,
the head, whether the head is new, and the checkpoint tensors that were ignored.

The tokenizer comes from the same directory (:func:`~confdistill.models.tokenizer.load_tokenizer`).
:func:`save_classifier` writes the class names (``id2label`` / ``label2id``) it is given into
``config.json``, so that any tool (``transformers.pipeline`` …) reports them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.io import atomic_directory, os_errors_named, write_json
from confdistill.models.families import family_of_type
from confdistill.models.files import (
    LoadReport,
    check_dir,
    checkpoint_keys,
    model_file_errors,
    quiet_transformers,
    read_config_dict,
    seeded,
    weights_file,
)
from confdistill.models.onnx_dir import refuse_onnx_dir
from confdistill.models.tinybert import (
    TinyBertForSequenceClassification,
    has_tinybert_head,
    is_tinybert_checkpoint,
    load_tinybert,
)
from confdistill.models.tokenizer import check_same_vocab, load_tokenizer, write_vocab

__all__ = [
    "DEFAULT_ATTN_IMPLEMENTATION",
    "LoadReport",
    "TinyBertForSequenceClassification",
    "check_same_vocab",
    "load_classifier",
    "load_tokenizer",
    "read_config_dict",
    "save_classifier",
    "write_vocab",
]

log = logging.getLogger("confdistill.models")

#: Fused scaled-dot-product attention: fastest for inference and for stage 2 (families without it,
#: DeBERTa, load with their eager attention: :meth:`~confdistill.models.families.Family.implementation`).
DEFAULT_ATTN_IMPLEMENTATION = "sdpa"

# Names kept for callers of the former single-module layout.
_seeded = seeded
_quiet_transformers = quiet_transformers
_is_tinybert = is_tinybert_checkpoint


def _load_hf(path: Path, config_dict: dict[str, Any], keys: list[str], num_labels: int | None,
             attn_implementation: str, seed: int, new_head: bool = False) -> tuple[Any, LoadReport]:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    family = family_of_type(config_dict.get("model_type"), where=path)
    attn_implementation = family.implementation(attn_implementation)  # DeBERTa has no SDPA kernel
    has_head = any(k == "classifier.weight" or k.endswith(".classifier.weight") or k.startswith("classifier.")
                   for k in keys)
    ckpt_labels = int(config_dict.get("num_labels") or len(config_dict.get("id2label") or {}) or 2)
    rehead = has_head and num_labels is not None and num_labels != ckpt_labels
    if rehead and not new_head:
        raise InputError(f"the model's classifier has {ckpt_labels} output(s) but the task needs {num_labels}; "
                         "use a model trained for this task (or a bare encoder; finetune --num-labels "
                         f"{num_labels} replaces the head)", path=path)
    tinybert_head = has_tinybert_head(config_dict)
    if tinybert_head and config_dict.get("model_type") != "bert":
        raise InputError(f"config.json asks for TinyBERT's head but its model_type is "
                         f"{config_dict.get('model_type')!r}, not 'bert'", path=path)
    labels = num_labels if num_labels is not None else ckpt_labels
    loader: Any = TinyBertForSequenceClassification if tinybert_head else AutoModelForSequenceClassification
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path, num_labels=labels)
            with seeded(seed):
                # A head of another width: transformers draws the tensors whose shapes differ anew.
                model, info = loader.from_pretrained(
                    path, config=config, attn_implementation=attn_implementation, output_loading_info=True,
                    ignore_mismatched_sizes=rehead)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the model ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})",
                         path=path) from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    head_params = {n for n, _ in model.named_parameters() if n.startswith(family.head_prefixes)}
    fresh = bool(head_params & set(missing))
    others = [k for k in missing if k not in head_params and ".pooler." not in k]
    if others:
        raise InputError(f"checkpoint lacks {len(others)} tensor(s) of the model, e.g. {others[0]}", path=path)
    mismatched = sorted(m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys") or [])
    dropped = [k for k in mismatched if k in head_params] if rehead else []
    if len(dropped) != len(mismatched):
        raise InputError(f"checkpoint tensor shapes do not match its configuration: {mismatched[:3]}", path=path)
    report = LoadReport(str(path), "huggingface", fresh or bool(dropped), sorted(info.get("unexpected_keys", ())),
                        missing + dropped, head="tinybert" if tinybert_head else "huggingface",
                        dropped_head=f"the checkpoint's {ckpt_labels}-output head ({', '.join(dropped)})"
                        if dropped else None)
    return model, report


def load_classifier(
    path: str | Path,
    *,
    num_labels: int | None = None,
    attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION,
    seed: int = 0,
    new_head: bool = False,
) -> tuple[Any, Any]:
    """Load a sequence classifier and its tokenizer from a local directory (HF or TinyBERT format).

    ``num_labels``: width of the head the task needs (1 = regression); a checkpoint whose head has
    another width is refused, unless ``new_head`` (``finetune --num-labels``): its output tensors
    are then dropped and drawn anew (seeded), and ``LoadReport.dropped_head`` says which; a bare
    encoder gets a new head of that width, initialised with ``seed`` (default width 2).
    ``attn_implementation``: ``"sdpa"`` (fast), ``"eager"``, or a name registered with
    transformers (e.g. the score-capturing one). The model is in eval mode.
    A Hub id is not accepted here: resolve it first (:func:`confdistill.models.hub.resolve_model_dir`).
    An ONNX export (``confdistill export``) is refused with one line: it has no PyTorch weights to
    train (``predict`` runs it through :mod:`confdistill.prediction.onnx_runtime` instead).
    """
    path = check_dir(path)
    refuse_onnx_dir(path)
    config_dict, config_file = read_config_dict(path)
    weights = weights_file(path)
    keys = checkpoint_keys(weights)
    if num_labels is not None and num_labels < 1:
        raise InputError(f"num_labels must be ≥ 1, got {num_labels}")
    with model_file_errors(config_file, weights):
        if is_tinybert_checkpoint(config_dict, config_file, keys):
            if config_dict.get("model_type") not in (None, "bert", "tiny_bert", "tinybert"):
                raise InputError(f"unsupported legacy model_type {config_dict.get('model_type')!r}: "
                                 "expected a BERT checkpoint", path=config_file)
            model, report = load_tinybert(path, config_dict, weights, num_labels, attn_implementation, seed)
        else:
            model, report = _load_hf(path, config_dict, keys, num_labels, attn_implementation, seed, new_head)
    tokenizer = load_tokenizer(path)
    vocab_size = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab_size and len(tokenizer) > vocab_size:
        raise InputError(f"tokenizer has {len(tokenizer)} tokens but the model's embeddings only "
                         f"{vocab_size}", path=path)
    model.eval()
    model.confdistill_load_report = report
    if report.ignored_keys:
        log.info("%s: ignored %d checkpoint tensor(s): %s", path, len(report.ignored_keys),
                 ", ".join(report.ignored_keys[:8]) + (" ..." if len(report.ignored_keys) > 8 else ""))
    if report.dropped_head:
        log.info("%s: dropped %s; initialised a %d-output one (seed %d)", path, report.dropped_head,
                 model.config.num_labels, seed)
    elif report.fresh_head:
        log.info("%s: no classifier head for %d label(s) in the checkpoint: initialised one (seed %d)",
                 path, model.config.num_labels, seed)
    return model, tokenizer


def _label_maps(model: Any, label_names: Sequence[str]) -> tuple[dict[str, str], dict[str, int]]:
    names = [str(n) for n in label_names]
    width = int(getattr(model.config, "num_labels", len(names)))
    if len(names) != width:
        raise ValueError(f"{len(names)} label name(s) {names} for a classifier with {width} output(s)")
    if len(set(names)) != len(names):
        raise ValueError(f"label names must be distinct, got {names}")
    return {str(i): n for i, n in enumerate(names)}, {n: i for i, n in enumerate(names)}


def _write_label_names(config_file: Path, id2label: dict[str, str], label2id: dict[str, int]) -> None:
    data = json.loads(config_file.read_text(encoding="utf-8"))
    data["id2label"], data["label2id"] = id2label, label2id
    # transformers' own layout (PretrainedConfig.to_json_string): sorted keys, indent 2.
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_classifier(model: Any, tokenizer: Any, out_dir: str | Path, *,
                    extra_json: dict[str, Any] | None = None,
                    label_names: Sequence[str] | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` to ``out_dir`` (HF format + ``vocab.txt``), atomically.

    ``label_names``: the class names in index order (e.g. ``TaskSpec.class_names``), written to
    ``config.json`` as ``id2label`` / ``label2id``; their number must be the head's width. An empty
    sequence (regression) or ``None`` keeps what the model's configuration has. The model object
    is not changed. ``extra_json``: ``{file name: data}`` written beside (e.g. provenance). A crash
    mid-save leaves any previous ``out_dir`` intact.
    """
    out_dir = Path(out_dir)
    model = getattr(model, "module", model)  # DDP / accelerate wrappers
    maps = _label_maps(model, label_names) if label_names else None
    # os_errors_named: safetensors reports a full disk as "SafetensorError … (os error 28)".
    with os_errors_named(out_dir), atomic_directory(out_dir) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        if maps is not None:
            _write_label_names(tmp / "config.json", *maps)
        tokenizer.save_pretrained(tmp)
        write_vocab(tokenizer, tmp)
        for name, data in (extra_json or {}).items():
            write_json(tmp / name, data)
    return out_dir
