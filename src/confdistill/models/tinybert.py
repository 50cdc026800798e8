"""TinyBERT's classifier: its checkpoint format and its prediction head.

**Format.** The research code (huawei-noah ``TinyBERT/task_distill.py``) saves
``TinyBertForSequenceClassification.state_dict()`` as ``pytorch_model.bin`` (keys ``bert.*``,
``classifier.*`` and its stage-1 projection ``fit_dense.*``; older pytorch-pretrained-bert releases
also spell LayerNorm ``gamma``/``beta``, carry ``fit_denses.N``, ``cls.*`` pre-training heads or
a DataParallel ``module.`` prefix) and ``config.json`` (or ``bert_config.json``) with the BERT sizes
and no ``model_type`` (or ``"tiny_bert"``). :func:`is_tinybert_checkpoint` recognises it and
:func:`load_tinybert` reads it.

**Head.** TinyBERT predicts with ``logits = classifier(relu(pooled_output))`` where
``pooled_output = tanh(W_p · h_CLS + b_p)`` (its ``BertPooler``: the last layer's first token,
dense, tanh — as in transformers), and *no* dropout (the module has one but never calls it), in
training as in evaluation. transformers' ``BertForSequenceClassification`` computes
``classifier(dropout(pooled_output))``: same parameters, other function. A TinyBERT-format
checkpoint is therefore loaded as :class:`TinyBertForSequenceClassification`, a subclass whose
only change is that the module applied between pooler and classifier (transformers' forward calls
it ``self.dropout``) is a ReLU. Everything else — the encoder, ``output_hidden_states``,
attention implementations, the score capture of :mod:`confdistill.models.attention_scores`, the
loss, ``base_model`` — is transformers' code, unchanged.

The head is recorded in the configuration: ``config.confdistill_head = "tinybert"`` (written to
``config.json`` by ``save_pretrained``, next to ``architectures: ["TinyBertForSequenceClassification"]``).
:func:`confdistill.models.loading.load_classifier` honours it, so a TinyBERT-head model saved
with ``save_classifier`` keeps its head when reloaded, and a student built from it by
``make_student`` (which copies the configuration) gets it too. The directory stays a plain
``model_type: "bert"`` checkpoint that any BERT tool can read; a tool that ignores the flag (e.g.
``transformers.pipeline``) computes transformers' head, ``classifier(pooled)``, without the ReLU.

Numerics: TinyBERT's LayerNorm has ``eps = 1e-12`` whatever the configuration says (used here)
and its additive attention mask is −10000 where transformers' is ``finfo.min``: probabilities
and hidden states are the same in float32 (both ``exp`` underflow to 0), and the pre-softmax
scores differ only at padded keys, which TinyBERT's loss sets to 0 either way (``<= -1e2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from confdistill.errors import InputError
from confdistill.models.files import LoadReport, load_bin, quiet_transformers, seeded

__all__ = [
    "HEAD_CONFIG_KEY",
    "TINYBERT_HEAD",
    "TinyBertForSequenceClassification",
    "has_tinybert_head",
    "is_tinybert_checkpoint",
    "load_tinybert",
]

#: Configuration attribute naming the prediction head; absent = transformers' own head.
HEAD_CONFIG_KEY = "confdistill_head"
#: Its value for TinyBERT's ``classifier(relu(pooled_output))``.
TINYBERT_HEAD = "tinybert"
#: TinyBERT's ``BertLayerNorm`` epsilon (hard-coded there).
TINYBERT_LAYER_NORM_EPS = 1e-12

_BERT_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "pad_token_id",
)


class TinyBertForSequenceClassification(BertForSequenceClassification):
    """transformers' BERT classifier with TinyBERT's head: ``logits = classifier(relu(pooled))``.

    transformers' forward applies ``self.dropout`` to the pooled output before ``self.classifier``;
    here that module is a ReLU (TinyBERT has no dropout in its head). Same parameters and state
    dict keys as ``BertForSequenceClassification``. See the module docstring.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        setattr(config, HEAD_CONFIG_KEY, TINYBERT_HEAD)
        self.dropout = nn.ReLU()   # the name transformers' forward uses between pooler and classifier


def has_tinybert_head(config: Any) -> bool:
    """Whether a configuration (object or dict) asks for TinyBERT's head."""
    value = config.get(HEAD_CONFIG_KEY) if isinstance(config, dict) else getattr(config, HEAD_CONFIG_KEY, None)
    return value == TINYBERT_HEAD


def is_tinybert_checkpoint(config: dict[str, Any], config_file: Path, keys: list[str]) -> bool:
    """A TinyBERT/pytorch-pretrained-bert checkpoint (see the module docstring), not a transformers one."""
    from transformers import CONFIG_MAPPING

    if config_file.name == "bert_config.json" or config.get("model_type") not in CONFIG_MAPPING:
        return True
    return any(k.endswith((".gamma", ".beta")) or k.startswith(("fit_dense", "module.")) for k in keys)


def _tinybert_key(key: str) -> str | None:
    """transformers' name of a TinyBERT tensor, or None for tensors without a counterpart."""
    key = key.removeprefix("module.")
    if key.startswith("fit_dense") or key.startswith("cls."):
        return None  # distillation projections / pre-training heads
    if key.endswith(".gamma"):
        key = key[: -len(".gamma")] + ".weight"
    elif key.endswith(".beta"):
        key = key[: -len(".beta")] + ".bias"
    return key


def _read_state(path: Path, weights: Path) -> dict[str, torch.Tensor]:
    if weights.suffix == ".bin":
        return load_bin(weights)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights))
    raise InputError("legacy (TinyBERT-format) checkpoints must be a single pytorch_model.bin or "
                     "model.safetensors, not a sharded one", path=path)


def load_tinybert(path: Path, config_dict: dict[str, Any], weights: Path, num_labels: int | None,
                  attn_implementation: str, seed: int) -> tuple[TinyBertForSequenceClassification, LoadReport]:
    """Read a TinyBERT-format directory into a :class:`TinyBertForSequenceClassification`.

    ``num_labels``: the task's head width (None: the checkpoint's, 2 without a head); a head of
    another width is refused, a missing one initialised with ``seed``.
    """
    renamed: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, tensor in _read_state(path, weights).items():
        new = _tinybert_key(key)
        if new is None:
            ignored.append(key)
        else:
            renamed[new if new.startswith(("bert.", "classifier.")) else f"bert.{new}"] = tensor
    head = renamed.get("classifier.weight")
    ckpt_labels = int(head.shape[0]) if head is not None else None
    if ckpt_labels is not None and num_labels is not None and num_labels != ckpt_labels:
        raise InputError(f"the model's classifier has {ckpt_labels} output(s) but the task needs {num_labels}; "
                         "use a model trained for this task (or a bare encoder)", path=path)
    kwargs = {k: config_dict[k] for k in _BERT_CONFIG_KEYS if config_dict.get(k) is not None}
    labels = num_labels or ckpt_labels or 2
    config = BertConfig(**kwargs, num_labels=labels, layer_norm_eps=TINYBERT_LAYER_NORM_EPS)
    config._attn_implementation = attn_implementation
    fresh = ckpt_labels is None or ckpt_labels != labels
    if fresh:
        renamed.pop("classifier.weight", None)
        renamed.pop("classifier.bias", None)
    with seeded(seed), quiet_transformers():
        model = TinyBertForSequenceClassification(config)
    own = model.state_dict()
    for key, tensor in renamed.items():
        if key in own and own[key].shape != tensor.shape:
            raise InputError(f"tensor {key} has shape {tuple(tensor.shape)} in the checkpoint but "
                             f"{tuple(own[key].shape)} from its configuration", path=weights)
    result = model.load_state_dict(renamed, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    allowed = {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    if set(missing) - allowed:
        bad = sorted(set(missing) - allowed)
        raise InputError(f"checkpoint lacks {len(bad)} tensor(s) of the model, e.g. {bad[0]}", path=weights)
    ignored += list(result.unexpected_keys)
    report = LoadReport(str(path), "tinybert", fresh, sorted(ignored), sorted(missing), head=TINYBERT_HEAD)
    return model, report
