"""Building a student from a model directory: M evenly spaced layers of it, or a fresh configuration.

Two modes of :func:`make_student`:

* **layers only** (``hidden``, ``intermediate`` and ``heads`` all ``None``): the student is the
  source with only ``M`` of its ``N`` encoder layers. Student layer ``m`` (1-based, m = 1..M) is a
  copy of source layer ``floor(m·N/M)`` (1-based): the *last* layer of each of ``M`` consecutive
  blocks of the source, so the top layer is always kept. When ``M`` divides ``N`` this is exactly
  TinyBERT's uniform mapping ``g(m) = m·N/M`` (N=12, M=4 → layers 3, 6, 9, 12). Embeddings, pooler
  and the classifier are copied too (the classifier only when its width is the one asked for;
  otherwise a new head is initialised, seeded).
* **fresh configuration** (any of ``hidden``, ``intermediate``, ``heads`` given): a new model of
  the source's architecture and vocabulary with those sizes (unspecified ones: ``heads`` and
  ``intermediate`` from the source when compatible, ``intermediate = 4·hidden`` when ``hidden``
  changes), randomly initialised with ``seed``; nothing is copied.

The output directory is written atomically in Hugging Face format with ``vocab.txt`` and a
``student.json`` recording how it was made. An existing non-empty ``out`` (e.g. another model) is
refused unless ``overwrite`` — it is then replaced as a whole, only once the new model is complete —
and a file is never replaced by a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confdistill.errors import InputError, setting_name

__all__ = ["MAX_PARAMETERS", "SIZE_BOUNDS", "check_parameter_count", "check_sizes", "evenly_spaced_layers",
           "make_student"]



def evenly_spaced_layers(n_source: int, n_student: int) -> list[int]:
    """0-based source layers copied into a student of ``n_student`` layers: ``floor(m·N/M) − 1``, m = 1..M."""
    if not 1 <= n_student <= n_source:
        raise InputError(f"{setting_name('layers')} must be between 1 and the source's {n_source} layers, "
                         f"got {n_student}")
    return [m * n_source // n_student - 1 for m in range(1, n_student + 1)]


#: Upper bounds on a new model's sizes, checked before anything is allocated (make-student,
#: general-distill): far beyond any BERT-family model (BERT-large: 24 layers, width 1024, 16
#: heads, feed-forward 4096, a handful of labels), yet a typo (a few extra zeros) is refused in one
#: line instead of exhausting memory (``--num-labels 1000000000`` allocated ~15 GB before failing).
SIZE_BOUNDS = {"--layers": 96, "--hidden": 16_384, "--heads": 256, "--intermediate": 65_536, "--num-labels": 10_000}
#: ... and on the parameters they add up to (4 GB in float32; BERT-large has 0.34 billion).
MAX_PARAMETERS = 1_000_000_000


def check_sizes(**sizes: int | None) -> None:
    """Each given size (``layers``, ``hidden``, ``heads``, ``intermediate``, ``num_labels``) is an
    integer in [1, its :data:`SIZE_BOUNDS`]; else an :class:`InputError` naming the setting (the
    flag on the command line) and the bound."""
    for name, value in sizes.items():
        bound = SIZE_BOUNDS["--" + name.replace("_", "-")]
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{setting_name(name)} must be a positive integer, got {value!r}")
        if value > bound:
            raise InputError(f"{setting_name(name)} {value:,} exceeds the bound {bound:,} (a size no BERT-family "
                             "model needs: check the number)")


def check_parameter_count(config: Any, *, layers: int | None = None, hidden: int | None = None,
                          intermediate: int | None = None) -> None:
    """Refuse a configuration (with ``layers``/``hidden``/``intermediate`` in place of its own when
    given) of more than :data:`MAX_PARAMETERS` parameters, before it is allocated. BERT's count (per
    layer 4·H² + 2·H·I + 9·H + I; embeddings (vocab + positions + types)·H + 2·H; pooler H² + H; head
    K·(H + 1)); for the other families an estimate within a few per cent, which a bound needs."""
    from confdistill.models.families import family_of_type

    names = family_of_type(config.model_type).config_names  # DistilBERT: n_layers, dim, hidden_dim
    h = int(hidden or getattr(config, names["hidden"]))
    i = int(intermediate or getattr(config, names["intermediate"]))
    n = int(layers or getattr(config, names["layers"]))
    table = int(config.vocab_size) + int(config.max_position_embeddings) + int(getattr(config, "type_vocab_size", 2))
    count = n * (4 * h * h + 2 * h * i + 9 * h + i) + table * h + 2 * h + h * h + h + int(config.num_labels) * (h + 1)
    if count > MAX_PARAMETERS:
        raise InputError(f"a model of {n} layers, width {h}, feed-forward {i} and {config.num_labels} label(s) has "
                         f"{count:,} parameters, more than the bound {MAX_PARAMETERS:,}: choose smaller sizes")


def make_student(
    from_dir: str | Path,
    out: str | Path,
    *,
    layers: int,
    hidden: int | None = None,
    intermediate: int | None = None,
    heads: int | None = None,
    num_labels: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write a student built from ``from_dir`` to ``out`` (see the module docstring); returns ``out``.

    ``num_labels``: width of the student's head (default: the source's, 2 for a bare encoder).
    ``label_names``: class names for its ``config.json`` (see ``save_classifier``; default: kept).
    A source with TinyBERT's head (a TinyBERT-format checkpoint) gives a student with that head.
    Raises :class:`InputError` for sizes that cannot work (``layers`` > source layers, ``heads``
    not dividing ``hidden``…) and for an existing non-empty ``out`` without ``overwrite``, before
    anything is written.
    """
    import torch

    from confdistill.folders import (
        check_output_target,
        recover_folder,
        refuse_source_as_target,
        remove_stale_temps,
    )
    from confdistill.models.families import family_of
    from confdistill.models.files import seeded as _seeded
    from confdistill.models.loading import load_classifier, save_classifier

    check_sizes(layers=layers, hidden=hidden, intermediate=intermediate, heads=heads, num_labels=num_labels)
    from_dir, out = Path(from_dir), Path(out)
    refuse_source_as_target(out, from_dir, source_field="from_dir", source_flag="--from")
    recover_folder(out)  # an earlier make-student killed mid-swap: its old or new folder first
    check_output_target(out, overwrite=overwrite, kind="dir", what=setting_name("out"))
    source, tokenizer = load_classifier(from_dir, seed=seed)
    family = family_of(source)
    src_cfg = source.config
    n_source = int(src_cfg.num_hidden_layers)
    if layers > n_source:
        raise InputError(f"{setting_name('layers')} {layers} exceeds the {n_source} layers of the source: the uniform "
                         "layer mapping needs a student no deeper than its teacher", path=from_dir)
    src_labels = int(src_cfg.num_labels)
    labels = num_labels or src_labels
    fresh = any(v is not None for v in (hidden, intermediate, heads))

    # The layers a student of this depth stands for: copied in "layers" mode; in both modes they
    # decide per-layer settings that follow the layer (ModernBERT's local/global attention).
    chosen = evenly_spaced_layers(n_source, layers)
    record: dict[str, Any] = {"from": str(from_dir), "seed": seed, "num_labels": labels,
                              "source_layers": n_source, "layers": layers}
    if fresh:
        new_hidden = hidden or int(src_cfg.hidden_size)
        new_heads = heads
        if new_heads is None:
            new_heads = int(src_cfg.num_attention_heads)
            if new_hidden % new_heads:
                raise InputError(f"{setting_name('hidden')} {new_hidden} is not divisible by the source's "
                                 f"{new_heads} attention heads: give {setting_name('heads')}")
        if new_hidden % new_heads:
            raise InputError(f"{setting_name('heads')} {new_heads} must divide {setting_name('hidden')} {new_hidden}")
        if intermediate is not None:
            new_intermediate = intermediate
        elif new_hidden == int(src_cfg.hidden_size):
            new_intermediate = int(getattr(src_cfg, family.config_names["intermediate"]))  # DistilBERT: hidden_dim
        else:
            new_intermediate = 4 * new_hidden
        config = family.cut_config(src_cfg, chosen, hidden=new_hidden, heads=new_heads, intermediate=new_intermediate)
        config.num_labels = labels
        check_parameter_count(config)
        with _seeded(seed):
            student = type(source)(config)
        record.update(mode="fresh", hidden=new_hidden, heads=new_heads, intermediate=new_intermediate)
    else:
        config = family.cut_config(src_cfg, chosen)
        config.num_labels = labels
        check_parameter_count(config)
        with _seeded(seed):
            student = type(source)(config)   # the new head (if any) is drawn here, seeded
        src_state = source.state_dict()
        new_state = student.state_dict()
        head_copied = labels == src_labels and not source.confdistill_load_report.fresh_head
        copied: set[str] = set()
        with torch.no_grad():
            for key, tensor in new_state.items():
                match = family.layer_key.match(key)
                if match:
                    src_key = f"{match.group(1)}{chosen[int(match.group(2))]}{match.group(3)}"
                elif key.startswith(family.head_prefixes):
                    if not head_copied:
                        continue
                    src_key = key
                else:
                    src_key = key
                if src_key not in src_state:
                    raise InputError(f"cannot map student tensor {key} to the source ({type(source).__name__})",
                                     path=from_dir)
                tensor.copy_(src_state[src_key])
                copied.add(src_key)
        # Tensors of the copied layers that the student's layer has no place for: ModernBERT's first
        # layer has no attention LayerNorm, so a later layer copied there loses its own.
        left = sorted(k for k in src_state if (m := family.layer_key.match(k)) and int(m.group(2)) in chosen
                      and k not in copied)
        record.update(mode="layers", source_layers_copied=[i + 1 for i in chosen],
                      source_tensors_not_copied=left, classifier_copied=head_copied,
                      rule="student layer m copies source layer floor(m*N/M), 1-based")
    check_output_target(out, overwrite=overwrite, kind="dir", what=setting_name("out"))  # again: it took a while
    remove_stale_temps(out.parent, recursive=False, names=[out.name])
    save_classifier(student, tokenizer, out, extra_json={"student.json": record}, label_names=label_names)
    return out
