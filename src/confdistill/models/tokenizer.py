"""Tokenizers of model directories: loading, the same-tokenizer check, ``vocab.txt``.

:func:`load_tokenizer` takes the tokenizer from the model directory (``tokenizer.json`` /
``tokenizer_config.json``, or only ``vocab.txt``: a WordPiece tokenizer, lower-casing when the
vocabulary has (almost) no upper-case entries, as for the uncased BERTs TinyBERT ships).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.models.files import check_dir, quiet_transformers

__all__ = ["STAGE2_HINT", "check_same_vocab", "describe_tokenizer", "load_tokenizer", "tokenizer_difference",
           "write_vocab"]


def load_tokenizer(path: str | Path) -> Any:
    """The fast tokenizer of a model directory (see the module docstring)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    path = check_dir(path)
    vocab_file = path / "vocab.txt"
    try:
        with quiet_transformers():
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


#: What to do when stage 1 (or general distillation) meets two tokenizers: the distill command's
#: wording; an experiment file passes its own (``stages = ["stage2"]``).
STAGE2_HINT = "use --stage prediction (stage 2 needs only the teacher's logits on the same texts)"


def describe_tokenizer(tokenizer: Any) -> str:
    """``RobertaTokenizer (BPE, 50265 tokens)``: the class, the subword model and the vocabulary size."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else "slow"
    return f"{type(tokenizer).__name__} ({kind}, {len(tokenizer.get_vocab())} tokens)"


def tokenizer_difference(teacher_tokenizer: Any, student_tokenizer: Any) -> str | None:
    """Why the two tokenizers do not tokenise text identically, or None when they do.

    Compares the vocabularies (size, then the first id whose token differs) and the
    normalisation (lower-casing, accents) on a probe sentence.
    """
    tv, sv = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if len(tv) != len(sv):
        return f"different vocabularies: {len(tv)} vs {len(sv)} tokens"
    t_by_id = sorted(tv.items(), key=lambda kv: kv[1])
    s_by_id = sorted(sv.items(), key=lambda kv: kv[1])
    for (t_tok, t_id), (s_tok, s_id) in zip(t_by_id, s_by_id, strict=True):
        if t_tok != s_tok or t_id != s_id:
            return f"different vocabularies: id {t_id} is {t_tok!r} for the teacher but {s_tok!r} for the student"
    probe = "Hello WORLD, Ünïcode café — naïve 123"
    t_ids = teacher_tokenizer(probe)["input_ids"]
    s_ids = student_tokenizer(probe)["input_ids"]
    if t_ids != s_ids:
        return (f"same vocabulary but different normalisation: {probe!r} gives "
                f"{teacher_tokenizer.convert_ids_to_tokens(t_ids)[1:5]} vs "
                f"{student_tokenizer.convert_ids_to_tokens(s_ids)[1:5]} (lower-casing/accents differ)")
    return None


def check_same_vocab(teacher_tokenizer: Any, student_tokenizer: Any, teacher_dir: str | Path,
                     student_dir: str | Path, *, needs: str = "stage 1 (intermediate layers)",
                     hint: str = STAGE2_HINT) -> None:
    """Refuse (InputError, one line) a teacher and student that do not tokenise text identically,
    for a step that ``needs`` one tokenizer: stage 1 matches attention and hidden states position
    by position. The line names both tokenizers, why they differ and what works instead (``hint``).
    """
    why = tokenizer_difference(teacher_tokenizer, student_tokenizer)
    if why is not None:
        raise InputError(f"teacher {teacher_dir} and student {student_dir} tokenise text differently ({why}): "
                         f"teacher {describe_tokenizer(teacher_tokenizer)}, student "
                         f"{describe_tokenizer(student_tokenizer)}; {needs} matches them token by token, "
                         f"so across tokenizers only stage 2 runs: {hint}")


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
