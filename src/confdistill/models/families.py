"""The one place that knows each encoder family's layout: adding a family is one entry here plus a test.

A :class:`Family` says, for the transformers classes of one ``model_type``:

* where the encoder layers are (``layers``, a dotted path from ``model.base_model``) and, inside
  one layer, the module whose attention scores TinyBERT's stage 1 matches (``attention``);
* how those scores are captured (``scores``): ``"interface"`` — the family calls transformers'
  ``AttentionInterface`` (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ModernBERT), so the
  score-capturing implementation of :mod:`confdistill.models.attention_scores` is switched in;
  ``"deberta"`` — DeBERTa's disentangled attention computes its scores itself, and the capture
  wraps that module's forward;
* which attention implementation to load it with (DeBERTa-v2 has no SDPA kernel: eager);
* which inputs its forward takes (DistilBERT and ModernBERT take no ``token_type_ids``);
* which parameters make up the classification head (a bare encoder lacks them: a fresh head);
* how to cut its configuration to M layers of given sizes (:meth:`Family.cut_config`): the
  configuration's own attribute names (DistilBERT's ``n_layers``/``dim``/``hidden_dim``), and
  ModernBERT's ``layer_types`` (its local/global pattern) following the layers kept;
* whether general distillation's sliced start (:func:`~confdistill.models.general_student.slice_teacher_layers`,
  written for BERT's ``attention.self.query/key/value`` layout) applies.

A ``model_type`` not listed is refused by :func:`family_of_type` with one line naming the type
and the supported ones (docs/method.md has the table of what works per family and command).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from confdistill.errors import InputError

__all__ = ["FAMILIES", "Family", "family_of", "family_of_type", "model_inputs", "supported_types"]

#: Every input a batch may carry; a family takes a subset.
ALL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Family:
    """The layout of one encoder family (see the module docstring)."""

    name: str
    model_types: tuple[str, ...]
    layers: str                          # dotted path from base_model to the ModuleList of layers
    attention: str                       # dotted path from one layer to its self-attention module
    scores: str = "interface"            # "interface" | "deberta"
    attn_implementation: str = "sdpa"    # the fast implementation it supports
    inputs: tuple[str, ...] = ALL_INPUTS
    head_prefixes: tuple[str, ...] = ("classifier",)
    config_names: dict[str, str] = field(default_factory=lambda: {
        "layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
        "intermediate": "intermediate_size"})
    embedding_tables: tuple[str, ...] = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    embedding_norm: str = "LayerNorm"    # the embeddings' LayerNorm, inside base_model.embeddings
    layer_types: bool = False            # ModernBERT: config.layer_types, one entry per layer
    sliceable: bool = False              # BERT's attention.self.query/key/value layout

    @property
    def layer_key(self) -> re.Pattern[str]:
        """State-dict keys of encoder layer N: groups (prefix, N, rest)."""
        return re.compile(rf"^((?:.*\.)?{re.escape(self.layers)}\.)(\d+)(\..*)$")

    def encoder_layers(self, model: Any) -> list[Any]:
        return list(_get(model.base_model, self.layers))

    def attention_modules(self, model: Any) -> list[Any]:
        """Each layer's self-attention module, in layer order."""
        return [_get(layer, self.attention) for layer in self.encoder_layers(model)]

    def implementation(self, requested: str) -> str:
        """The attention implementation to load with: ``requested`` unless the family computes its own."""
        return requested if self.scores == "interface" else "eager"

    def cut_config(self, config: Any, kept_layers: list[int], **sizes: int) -> Any:
        """A copy of ``config`` with ``len(kept_layers)`` layers (0-based source layers, in order) and
        the given ``sizes`` (``hidden``, ``heads``, ``intermediate``; absent = unchanged)."""
        data = config.to_dict()
        data[self.config_names["layers"]] = len(kept_layers)
        for key, value in sizes.items():
            if value is not None:
                data[self.config_names[key]] = int(value)
        if self.layer_types:
            data["layer_types"] = [config.layer_types[j] for j in kept_layers]
        for key in ("embedding_size", "pooler_hidden_size"):
            if sizes.get("hidden") is not None and data.get(key) == config.hidden_size:
                # ELECTRA's/DeBERTa's embeddings, DeBERTa's pooler: as wide as the layers stay so
                data[key] = int(sizes["hidden"])
        new = type(config).from_dict(data)
        new._attn_implementation = config._attn_implementation
        return new


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


_BERT_LIKE = dict(layers="encoder.layer", attention="attention.self", sliceable=True)

FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",), **_BERT_LIKE),
    Family("roberta", ("roberta", "xlm-roberta"), **_BERT_LIKE),
    Family("electra", ("electra",), **_BERT_LIKE),
    Family("distilbert", ("distilbert",), layers="transformer.layer", attention="attention",
           inputs=("input_ids", "attention_mask"), head_prefixes=("pre_classifier", "classifier"),
           config_names={"layers": "n_layers", "hidden": "dim", "heads": "n_heads", "intermediate": "hidden_dim"}),
    Family("modernbert", ("modernbert",), layers="layers", attention="attn",
           inputs=("input_ids", "attention_mask"), head_prefixes=("head", "classifier"), layer_types=True,
           embedding_tables=("tok_embeddings",), embedding_norm="norm"),
    Family("deberta", ("deberta-v2",), layers="encoder.layer", attention="attention.self", scores="deberta",
           attn_implementation="eager", head_prefixes=("pooler", "classifier")),
)

_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def supported_types() -> list[str]:
    return sorted(_BY_TYPE)


def family_of_type(model_type: str | None, *, where: Any = None) -> Family:
    """The family of a ``model_type``; :class:`InputError` naming it and the supported ones otherwise."""
    family = _BY_TYPE.get(str(model_type))
    if family is None:
        raise InputError(f"model_type {model_type!r} is not supported: confdistill works with "
                         f"{', '.join(supported_types())} encoders", path=where)
    return family


def family_of(model: Any) -> Family:
    """The family of a model (a DDP/accelerate wrapper or a stage-1 wrapper is looked through)."""
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} is not a transformers encoder (no configuration)")
    return family_of_type(getattr(model.config, "model_type", None))


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that ``model``'s family takes (e.g. no token_type_ids for DistilBERT);
    a module without a transformers configuration (a plain ``nn.Module``) gets every input."""
    inner = model
    while not hasattr(inner, "config") and hasattr(inner, "module"):
        inner = inner.module
    names = family_of(inner).inputs if hasattr(inner, "config") else ALL_INPUTS
    return {k: batch[k] for k in names if k in batch}
