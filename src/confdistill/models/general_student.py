"""The student of general distillation: a fresh configuration of the teacher's architecture.

:func:`fresh_student` builds M layers of width H with A heads and FFN size I, with the teacher's
vocabulary, positions and token types, its encoder layers randomly initialised (seeded), as
TinyBERT's ``TinyBertForPreTraining.from_scratch``.

**Embeddings start from the teacher's** (``embeddings="teacher"``, the default), not fresh:

* equal widths (H = d_t): word, position and token-type tables and the embedding LayerNorm are
  copied;
* narrower (H < d_t): each table is projected, ``E_s = E_t · P``, where ``P`` (d_t × H) holds the
  top-H principal directions of the teacher's (centred) word embeddings — the rank-H linear map
  that keeps the most of their variance. The LayerNorm starts at its identity (1, 0), since the
  teacher's per-dimension scales do not live in the projected basis.

Why: the embedding tables are most of a small student's parameters (30k × H words), and a
general-distillation run on a modest corpus updates a rare token's row only when the token occurs.
A fresh table leaves such rows random; the teacher's geometry gives every token a meaningful vector
from step 0, and the embedding term of the loss (MSE of the fit_dense-projected embedding output
to the teacher's) starts near a linear fit of it instead of from noise. ``embeddings="fresh"`` is
TinyBERT's own choice (everything from scratch) for comparison.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from confdistill.models.files import seeded

__all__ = ["EMBEDDING_INITS", "fresh_student", "pca_projection"]

EMBEDDING_INITS = ("teacher", "fresh")
EmbeddingInit = Literal["teacher", "fresh"]


def pca_projection(table: torch.Tensor, width: int) -> torch.Tensor:
    """(d, width) matrix of the top-``width`` principal directions of the rows of ``table`` (n, d).

    Computed in float64 by SVD of the centred table; each direction's sign is fixed (largest
    component positive) so the projection does not depend on the SVD routine's sign choice.
    """
    x = table.detach().double()
    x = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    directions = vh[:width].T.contiguous()                    # (d, width)
    signs = torch.sign(directions.gather(0, directions.abs().argmax(0, keepdim=True)))
    return (directions * signs).to(table.dtype)


def fresh_student(teacher: Any, *, layers: int, hidden: int, heads: int, intermediate: int,
                  embeddings: EmbeddingInit = "teacher", seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A new model of ``type(teacher)`` with the given sizes (see the module docstring).

    Returns (model, record): the record says what was copied or projected, for run.json.
    Sizes are taken as valid (checked by the caller's settings and the layer mapping).
    """
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    config.hidden_size = hidden
    config.num_attention_heads = heads
    config.intermediate_size = intermediate
    with seeded(seed):
        student = type(teacher)(config)
    record: dict[str, Any] = {"layers": layers, "hidden": hidden, "heads": heads, "intermediate": intermediate,
                              "seed": seed, "embeddings": embeddings}
    if embeddings == "fresh":
        record["embeddings_init"] = "fresh (random, as TinyBERT's from_scratch)"
        return student, record
    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    tables = [n for n in ("word_embeddings", "position_embeddings", "token_type_embeddings") if hasattr(s_emb, n)]
    width_t = int(teacher.config.hidden_size)
    with torch.no_grad():
        if hidden == width_t:
            for name in tables:
                getattr(s_emb, name).weight.copy_(getattr(t_emb, name).weight)
            s_emb.LayerNorm.load_state_dict(t_emb.LayerNorm.state_dict())
            record["embeddings_init"] = "copied from the teacher (equal widths)"
        else:
            projection = pca_projection(t_emb.word_embeddings.weight, hidden)
            for name in tables:
                getattr(s_emb, name).weight.copy_(getattr(t_emb, name).weight @ projection)
            s_emb.LayerNorm.weight.fill_(1.0)
            s_emb.LayerNorm.bias.zero_()
            record["embeddings_init"] = (f"teacher's tables projected {width_t} -> {hidden} onto the top {hidden} "
                                         "principal directions of its word embeddings; LayerNorm identity")
    return student, record
