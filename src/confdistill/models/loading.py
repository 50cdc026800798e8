"""Loading and saving classifiers from local directories: Hugging Face and the TinyBERT release format.

Formats read by :func:`load_classifier`:

* **Hugging Face**: ``config.json`` with a known ``model_type`` + ``model.safetensors`` (or sharded
  safetensors, or ``pytorch_model.bin``). A checkpoint without a classifier head (a bare encoder
  such as MiniLM's ``BertModel``) gets a freshly initialised head, seeded.
* **TinyBERT release** (pytorch-pretrained-bert style): ``bert_config.json`` or a ``config.json``
  without a known ``model_type`` (TinyBERT writes ``"tiny_bert"`` or nothing), ``pytorch_model.bin``
  with ``bert.*`` / ``classifier.*`` keys, possibly LayerNorm ``gamma``/``beta`` (renamed to
  ``weight``/``bias``), a ``module.`` prefix (DataParallel) and ``fit_dense``/``fit_denses.N``
  projections of its distillation (ignored, and listed in the load report). The result is a
  transformers ``BertForSequenceClassification`` with identical outputs.

Every loaded model carries ``model.confdistill_load_report`` (:class:`LoadReport`): the format,
whether the head is new, and the checkpoint tensors that were ignored.

The tokenizer comes from the same directory (``tokenizer.json`` / ``tokenizer_config.json``, or
only ``vocab.txt``: a WordPiece tokenizer, lower-casing when the vocabulary has (almost) no
upper-case entries, as for the uncased BERTs TinyBERT ships).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from confdistill.errors import InputError
from confdistill.io import atomic_directory, os_errors_named, write_json

__all__ = [
    "DEFAULT_ATTN_IMPLEMENTATION",
    "LoadReport",
    "check_same_vocab",
    "load_classifier",
    "load_tokenizer",
    "read_config_dict",
    "save_classifier",
    "write_vocab",
]

log = logging.getLogger("confdistill.models")

#: Fused scaled-dot-product attention: fastest for inference and for stage 2.
DEFAULT_ATTN_IMPLEMENTATION = "sdpa"

_BERT_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "classifier_dropout",
)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


@dataclass
class LoadReport:
    """What :func:`load_classifier` found in a model directory."""

    path: str
    format: str                                  # "huggingface" or "tinybert"
    fresh_head: bool                             # classifier initialised here (bare encoder or new width)
    ignored_keys: list[str] = field(default_factory=list)   # e.g. fit_denses.* of a TinyBERT checkpoint
    initialised_keys: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers 5 prints a load table and progress bars on every load; we report ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _check_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError("model directory does not exist", path=path)
    if not path.is_dir():
        raise InputError("expected a model directory (config + weights), got a file", path=path)
    return path


def read_config_dict(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The model configuration (``config.json``, else ``bert_config.json``) as a dict, and its file."""
    path = _check_dir(path)
    for name in ("config.json", "bert_config.json"):
        file = path / name
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"unreadable model configuration ({exc})", path=file) from None
            if not isinstance(data, dict):
                raise InputError("model configuration must be a JSON object", path=file)
            return data, file
    raise InputError("no config.json or bert_config.json: not a model directory", path=path)


def _weights_file(path: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise InputError(f"no model weights: expected one of {', '.join(_WEIGHT_FILES)}", path=path)


def _checkpoint_keys(weights: Path) -> list[str]:
    """Tensor names in a weights file without loading the tensors (mmap for .bin)."""
    try:
        if weights.name.endswith(".index.json"):
            return list(json.loads(weights.read_text(encoding="utf-8"))["weight_map"])
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as fh:
                return list(fh.keys())
        return list(_load_bin(weights))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {exc})", path=weights) from None


def _load_bin(weights: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Files written before torch 1.6 (TinyBERT's releases) are not zip archives: no mmap.
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"unreadable weights file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         path=weights) from None
    if not isinstance(state, dict):
        raise InputError("expected a state dict (name -> tensor) in the weights file", path=weights)
    return state


def _is_tinybert(config: dict[str, Any], config_file: Path, keys: list[str]) -> bool:
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


def _seeded(seed: int) -> contextlib.AbstractContextManager[Any]:
    """Fork the global torch RNG and seed it: fresh weights are reproducible, callers' RNG untouched."""
    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    return ctx()


def _load_tinybert(path: Path, config_dict: dict[str, Any], weights: Path, num_labels: int | None,
                   attn_implementation: str, seed: int) -> tuple[Any, LoadReport]:
    from transformers import BertConfig, BertForSequenceClassification

    if weights.suffix == ".bin":
        state = _load_bin(weights)
    elif weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        raise InputError("legacy (TinyBERT-format) checkpoints must be a single pytorch_model.bin or "
                         "model.safetensors, not a sharded one", path=path)
    renamed: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
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
    config = BertConfig(**kwargs, num_labels=labels)
    config._attn_implementation = attn_implementation
    fresh = ckpt_labels is None or ckpt_labels != labels
    if fresh:
        renamed.pop("classifier.weight", None)
        renamed.pop("classifier.bias", None)
    with _seeded(seed), _quiet_transformers():
        model = BertForSequenceClassification(config)
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
    report = LoadReport(str(path), "tinybert", fresh, sorted(ignored), sorted(missing))
    return model, report


def _load_hf(path: Path, config_dict: dict[str, Any], keys: list[str], num_labels: int | None,
             attn_implementation: str, seed: int) -> tuple[Any, LoadReport]:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    has_head = any(k == "classifier.weight" or k.endswith(".classifier.weight") or k.startswith("classifier.")
                   for k in keys)
    ckpt_labels = int(config_dict.get("num_labels") or len(config_dict.get("id2label") or {}) or 2)
    if has_head and num_labels is not None and num_labels != ckpt_labels:
        raise InputError(f"the model's classifier has {ckpt_labels} output(s) but the task needs {num_labels}; "
                         "use a model trained for this task (or a bare encoder)", path=path)
    labels = num_labels if num_labels is not None else ckpt_labels
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(path, num_labels=labels)
            with _seeded(seed):
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    path, config=config, attn_implementation=attn_implementation, output_loading_info=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the model ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})",
                         path=path) from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    head_params = {n for n, _ in model.named_parameters() if n.startswith(("classifier", "pre_classifier"))}
    fresh = bool(head_params & set(missing))
    others = [k for k in missing if k not in head_params and ".pooler." not in k]
    if others:
        raise InputError(f"checkpoint lacks {len(others)} tensor(s) of the model, e.g. {others[0]}", path=path)
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise InputError(f"checkpoint tensor shapes do not match its configuration: {sorted(mismatched)[:3]}",
                         path=path)
    report = LoadReport(str(path), "huggingface", fresh, sorted(info.get("unexpected_keys", ())), missing)
    return model, report


def load_tokenizer(path: str | Path) -> Any:
    """The fast tokenizer of a model directory (see the module docstring)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    path = _check_dir(path)
    vocab_file = path / "vocab.txt"
    try:
        with _quiet_transformers():
            tokens = vocab_file.read_text(encoding="utf-8").splitlines() if vocab_file.is_file() else None
            if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(path)
                if tokens is None or not _is_wordpiece(tokenizer):
                    return tokenizer
                vocab = tokenizer.get_vocab()
                if len(vocab) == len(tokens) and all(vocab.get(t) == i for i, t in enumerate(tokens)):
                    return tokenizer
                # transformers 5 silently ignores BertTokenizerFast(vocab_file=...): tokenizers built
                # that way and saved hold only the 5 special tokens. vocab.txt is then the real one.
                warnings.warn(f"{path}: tokenizer.json has {len(vocab)} tokens but vocab.txt {len(tokens)}; "
                              "using vocab.txt", stacklevel=2)
                lower = bool(getattr(tokenizer, "do_lower_case", _looks_uncased(tokens)))
                return BertTokenizerFast(vocab=_vocab_dict(tokens), do_lower_case=lower)
            if tokens is not None:
                return BertTokenizerFast(vocab=_vocab_dict(tokens), do_lower_case=_looks_uncased(tokens))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the tokenizer ({type(exc).__name__}: {exc})", path=path) from None
    raise InputError("no tokenizer: expected tokenizer.json, tokenizer_config.json or vocab.txt", path=path)


def _vocab_dict(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    return vocab


def _looks_uncased(tokens: list[str]) -> bool:
    """An uncased vocabulary has (nearly) no upper-case words; a cased one has thousands."""
    words = [t for t in tokens if t.isalpha()]
    upper = sum(1 for t in words if t != t.lower())
    return upper <= max(10, len(words) // 200)


def _is_wordpiece(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.model).__name__ == "WordPiece"


def load_classifier(
    path: str | Path,
    *,
    num_labels: int | None = None,
    attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Load a sequence classifier and its tokenizer from a local directory (HF or TinyBERT format).

    ``num_labels``: width of the head the task needs (1 = regression); a checkpoint whose head has
    another width is refused; a bare encoder gets a new head of that width, initialised with
    ``seed`` (default width 2). ``attn_implementation``: ``"sdpa"`` (fast), ``"eager"``, or a name
    registered with transformers (e.g. the score-capturing one). The model is in eval mode.
    """
    path = _check_dir(path)
    config_dict, config_file = read_config_dict(path)
    weights = _weights_file(path)
    keys = _checkpoint_keys(weights)
    if num_labels is not None and num_labels < 1:
        raise InputError(f"num_labels must be ≥ 1, got {num_labels}")
    if _is_tinybert(config_dict, config_file, keys):
        if config_dict.get("model_type") not in (None, "bert", "tiny_bert", "tinybert"):
            raise InputError(f"unsupported legacy model_type {config_dict.get('model_type')!r}: "
                             "expected a BERT checkpoint", path=config_file)
        model, report = _load_tinybert(path, config_dict, weights, num_labels, attn_implementation, seed)
    else:
        model, report = _load_hf(path, config_dict, keys, num_labels, attn_implementation, seed)
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
    if report.fresh_head:
        log.info("%s: no classifier head for %d label(s) in the checkpoint: initialised one (seed %d)",
                 path, model.config.num_labels, seed)
    return model, tokenizer


def check_same_vocab(teacher_tokenizer: Any, student_tokenizer: Any,
                     teacher_dir: str | Path, student_dir: str | Path) -> None:
    """Refuse (InputError) a teacher and student that do not tokenise text identically.

    Compares the vocabularies (size, then the first id whose token differs) and the
    normalisation (lower-casing, accents) on a probe sentence.
    """
    tv, sv = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    where = f"teacher {teacher_dir} vs student {student_dir}"
    if len(tv) != len(sv):
        raise InputError(f"different vocabularies ({where}): {len(tv)} vs {len(sv)} tokens; "
                         "teacher and student must share one tokenizer")
    t_by_id = sorted(tv.items(), key=lambda kv: kv[1])
    s_by_id = sorted(sv.items(), key=lambda kv: kv[1])
    for (t_tok, t_id), (s_tok, s_id) in zip(t_by_id, s_by_id, strict=True):
        if t_tok != s_tok or t_id != s_id:
            raise InputError(f"different vocabularies ({where}): id {t_id} is {t_tok!r} for the teacher "
                             f"but {s_tok!r} for the student")
    probe = "Hello WORLD, Ünïcode café — naïve 123"
    t_ids = teacher_tokenizer(probe)["input_ids"]
    s_ids = student_tokenizer(probe)["input_ids"]
    if t_ids != s_ids:
        raise InputError(f"same vocabulary but different normalisation ({where}): "
                         f"{probe!r} gives {teacher_tokenizer.convert_ids_to_tokens(t_ids)[1:5]} vs "
                         f"{student_tokenizer.convert_ids_to_tokens(s_ids)[1:5]} (lower-casing/accents differ)")


def write_vocab(tokenizer: Any, out_dir: str | Path) -> Path | None:
    """Write ``vocab.txt`` (tokens in id order) for a WordPiece tokenizer; None for other kinds.

    transformers 5's ``save_pretrained`` no longer writes it, but TinyBERT-era tools need it.
    """
    if not _is_wordpiece(tokenizer):
        return None
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("vocabulary ids are not contiguous from 0: cannot write vocab.txt")
    out = Path(out_dir) / "vocab.txt"
    out.write_text("".join(f"{tok}\n" for tok, _ in by_id), encoding="utf-8")
    return out


def save_classifier(model: Any, tokenizer: Any, out_dir: str | Path, *,
                    extra_json: dict[str, Any] | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` to ``out_dir`` (HF format + ``vocab.txt``), atomically.

    ``extra_json``: ``{file name: data}`` written beside (e.g. provenance). A crash mid-save
    leaves any previous ``out_dir`` intact.
    """
    out_dir = Path(out_dir)
    model = getattr(model, "module", model)  # DDP / accelerate wrappers
    # os_errors_named: safetensors reports a full disk as "SafetensorError … (os error 28)".
    with os_errors_named(out_dir), atomic_directory(out_dir) as tmp, _quiet_transformers():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_vocab(tokenizer, tmp)
        for name, data in (extra_json or {}).items():
            write_json(tmp / name, data)
    return out_dir
