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

**Encoder layers: fresh (TinyBERT's) or sliced from the teacher** (``encoder_init``). "fresh" draws
them at random; "sliced" (:func:`slice_teacher_layers`) starts student layer m from the teacher
layer it is mapped to, cut down to the narrow sizes: the residual stream through the same
projection ``P`` as the embeddings (``W_in P`` on the way in, ``Pᵀ W_out`` on the way out), in each
head the H/A query/key dimensions with the largest ``‖W_q row‖·‖W_k row‖`` (and value/output
dimensions by ``‖W_v row‖·‖W_o column‖``), the I feed-forward units with the largest
``‖W_in row‖·‖W_out column‖``; LayerNorm scales as the diagonal of ``Pᵀ diag(γ) P``; pooler and
classifier as the residual. Why: on a corpus this machine can afford, a fresh narrow encoder learns
nothing a classifier can use (real SST-2, 4,000 sentences: 50.9% dev after general distillation
and both task stages), while a sliced start keeps much of the teacher's function (docs/method.md
gives the measured figures). It is a pruning-style initialisation, not TinyBERT's (its general
distillation starts from scratch); no library does this weight surgery for BERT at a different
width, hence hand-written.
"""

from __future__ import annotations

from typing import Any

import torch

from confdistill.errors import InputError
from confdistill.models.families import family_of, family_of_type
from confdistill.models.files import seeded

__all__ = ["fresh_student", "pca_projection", "residual_projection", "slice_teacher_layers"]



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
                  embeddings: str = "teacher", seed: int = 0, projection: torch.Tensor | None = None,
                  teacher_layers: list[int] | None = None) -> tuple[Any, dict[str, Any]]:
    """A new model of ``type(teacher)`` with the given sizes (see the module docstring).

    Returns (model, record): the record says what was copied or projected, for run.json.
    Sizes are taken as valid (checked by the caller's settings and the layer mapping).
    projection: the (d_t, hidden) map of narrower embeddings when the caller already has it
    (:func:`residual_projection`, which the sliced layers share); computed here otherwise.
    teacher_layers: the 0-based teacher layer each student layer is mapped to (default: evenly
    spaced); per-layer settings follow them (ModernBERT's local/global attention).
    """
    family = family_of(teacher)
    if teacher_layers is None:
        teacher_layers = [m * int(teacher.config.num_hidden_layers) // layers - 1 for m in range(1, layers + 1)]
    config = family.cut_config(teacher.config, teacher_layers, hidden=hidden, heads=heads, intermediate=intermediate)
    with seeded(seed):
        student = type(teacher)(config)
    record: dict[str, Any] = {"layers": layers, "hidden": hidden, "heads": heads, "intermediate": intermediate,
                              "seed": seed, "embeddings": embeddings}
    if embeddings == "fresh":
        record["embeddings_init"] = "fresh (random, as TinyBERT's from_scratch)"
        return student, record
    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    tables = [n for n in family.embedding_tables if getattr(s_emb, n, None) is not None]  # DeBERTa: maybe None
    t_norm, s_norm = getattr(t_emb, family.embedding_norm), getattr(s_emb, family.embedding_norm)
    # The tables' widths: the hidden size, or ELECTRA's/DeBERTa's embedding_size when it differs (kept).
    width_t, width_s = (int(m.get_input_embeddings().weight.shape[1]) for m in (teacher, student))
    with torch.no_grad():
        if width_s == width_t:
            for name in tables:
                getattr(s_emb, name).weight.copy_(getattr(t_emb, name).weight)
            s_norm.load_state_dict(t_norm.state_dict())
            record["embeddings_init"] = "copied from the teacher (equal widths)"
        else:
            if projection is None:
                projection = pca_projection(teacher.get_input_embeddings().weight, width_s)
            for name in tables:
                getattr(s_emb, name).weight.copy_(getattr(t_emb, name).weight @ projection)
            s_norm.weight.fill_(1.0)
            if s_norm.bias is not None:   # ModernBERT's norms have no bias
                s_norm.bias.zero_()
            record["embeddings_init"] = (f"teacher's tables projected {width_t} -> {width_s} onto the top {width_s} "
                                         "principal directions of its word embeddings; LayerNorm identity")
    return student, record


def check_shape(teacher_config: Any, *, layers: int, hidden: int, heads: int, intermediate: int,
                sliced: bool) -> None:
    """Refuse a student shape that general distillation of this teacher cannot train, before the
    student is built (an :class:`InputError` naming the flag and its bound): at most the teacher's
    layers (each maps to a distinct teacher layer) and width (the narrow embeddings are a projection
    of the teacher's), the teacher's number of heads (scores are matched head by head), and sliced
    layers no wider in the feed-forward than the teacher's they are cut from."""
    from confdistill.models.student import check_parameter_count, check_sizes

    check_sizes(layers=layers, hidden=hidden, heads=heads, intermediate=intermediate)
    names = family_of_type(teacher_config.model_type).config_names  # DistilBERT: n_layers, dim, hidden_dim…
    t_layers, t_hidden = int(getattr(teacher_config, names["layers"])), int(getattr(teacher_config, names["hidden"]))
    t_heads, t_inter = int(getattr(teacher_config, names["heads"])), int(getattr(teacher_config, names["intermediate"]))
    for flag, value, bound in (("--layers", layers, t_layers), ("--hidden", hidden, t_hidden),
                               *((("--intermediate", intermediate, t_inter),) if sliced else ())):
        if value > bound:
            why = " (--encoder-init sliced cuts the teacher's layers)" if flag == "--intermediate" else ""
            raise InputError(f"{flag} {value} exceeds the teacher's {bound}: the student may be at most as "
                             f"{'deep' if flag == '--layers' else 'wide'} as its teacher{why}")
    if heads != t_heads:
        raise InputError(f"--heads {heads}: the teacher has {t_heads} attention heads and general distillation "
                         "matches their scores head by head, so the student needs the same number")
    check_parameter_count(teacher_config, layers=layers, hidden=hidden, intermediate=intermediate)


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest entries of ``score``, in increasing order (keeps the teacher's order)."""
    return torch.sort(torch.topk(score, k).indices).values


def residual_projection(teacher: Any, width: int) -> torch.Tensor:
    """The (d_t, width) map of the residual stream: identity at equal widths, else :func:`pca_projection`."""
    table = teacher.get_input_embeddings().weight
    if width == table.shape[1]:
        return torch.eye(width, dtype=table.dtype)
    return pca_projection(table, width)


@torch.no_grad()
def slice_teacher_layers(student: Any, teacher: Any, teacher_layers: list[int], proj: torch.Tensor) -> dict[str, Any]:
    """Overwrite ``student``'s encoder layers (and pooler, classifier) with the teacher's, sliced.

    teacher_layers: for each student layer m (0-based), the 0-based teacher layer it starts from
    (the stage-1 mapping). proj: :func:`residual_projection` of the teacher to the student's width
    (the caller computes it once and passes it to :func:`fresh_student` too). The student has the
    teacher's number of heads, a width and FFN size at most the teacher's (checked here). See the
    module docstring for what is kept. Returns a record for run.json.
    """
    s_cfg, t_cfg = student.config, teacher.config
    heads, width, inter = s_cfg.num_attention_heads, s_cfg.hidden_size, s_cfg.intermediate_size
    if heads != t_cfg.num_attention_heads or width > t_cfg.hidden_size or inter > t_cfg.intermediate_size:
        raise ValueError(f"a sliced student needs the teacher's {t_cfg.num_attention_heads} heads, a width <= "
                         f"{t_cfg.hidden_size} and a feed-forward size <= {t_cfg.intermediate_size}; got "
                         f"{heads} heads, width {width}, feed-forward {inter}")
    head_t, head_s = t_cfg.hidden_size // heads, width // heads

    def linear(dst: Any, src: Any, rows: torch.Tensor | None, cols: torch.Tensor | None, *,
               into: bool, out: bool) -> None:
        w, b = src.weight, src.bias
        w = w if rows is None else w[rows]
        w = w if cols is None else w[:, cols]
        b = b if rows is None else b[rows]
        w = w @ proj if into else w            # input from the student's residual stream
        w, b = (proj.T @ w, proj.T @ b) if out else (w, b)  # output back into it
        dst.weight.copy_(w)
        dst.bias.copy_(b)

    def layer_norm(dst: Any, src: Any) -> None:
        dst.weight.copy_(((proj * proj) * src.weight[:, None]).sum(0))
        dst.bias.copy_(proj.T @ src.bias)

    for m, j in enumerate(teacher_layers):
        t_layer, s_layer = teacher.base_model.encoder.layer[j], student.base_model.encoder.layer[m]
        t_att, s_att = t_layer.attention, s_layer.attention
        q, k, v, o = t_att.self.query, t_att.self.key, t_att.self.value, t_att.output.dense
        qk, vo = [], []
        for h in range(heads):
            dims = torch.arange(h * head_t, (h + 1) * head_t)
            qk.append(dims[_top(q.weight[dims].norm(dim=1) * k.weight[dims].norm(dim=1), head_s)])
            vo.append(dims[_top(v.weight[dims].norm(dim=1) * o.weight[:, dims].norm(dim=0), head_s)])
        qk_dims, vo_dims = torch.cat(qk), torch.cat(vo)
        linear(s_att.self.query, q, qk_dims, None, into=True, out=False)
        linear(s_att.self.key, k, qk_dims, None, into=True, out=False)
        linear(s_att.self.value, v, vo_dims, None, into=True, out=False)
        linear(s_att.output.dense, o, None, vo_dims, into=False, out=True)
        layer_norm(s_att.output.LayerNorm, t_att.output.LayerNorm)
        f_in, f_out = t_layer.intermediate.dense, t_layer.output.dense
        units = _top(f_in.weight.norm(dim=1) * f_out.weight.norm(dim=0), inter)
        linear(s_layer.intermediate.dense, f_in, units, None, into=True, out=False)
        linear(s_layer.output.dense, f_out, None, units, into=False, out=True)
        layer_norm(s_layer.output.LayerNorm, t_layer.output.LayerNorm)
    record: dict[str, Any] = {"encoder_init": f"sliced from teacher layers {[j + 1 for j in teacher_layers]}"}
    pooler_t, pooler_s = getattr(teacher.base_model, "pooler", None), getattr(student.base_model, "pooler", None)
    if pooler_t is not None and pooler_s is not None:
        linear(pooler_s.dense, pooler_t.dense, None, None, into=True, out=True)
    head_t_, head_s_ = getattr(teacher, "classifier", None), getattr(student, "classifier", None)
    if isinstance(head_t_, torch.nn.Linear) and isinstance(head_s_, torch.nn.Linear):
        linear(head_s_, head_t_, None, None, into=True, out=False)
        record["classifier_init"] = "the teacher's, through the projection"
    return record
