"""Settings of general distillation (``confdistill general-distill``) as typed data.

:class:`GeneralConfig` is the loop's :class:`~.settings.TrainConfig` and the stage-1 loss's
:class:`~.settings.Stage1Loss` (the same fields, ranges and defaults as ``distill``: TinyBERT's
general_distill.py has the same defaults, lr 5e-5, 3 epochs, batch 32, warm-up 0.1, weight decay
0.01, 128 tokens) plus the teacher, the corpus, the output folder and the student's shape
(:class:`StudentShape`). A value out of range is an :class:`~confdistill.errors.InputError` naming
the option as soon as the settings are built; ``from_dict(to_dict(c)) == c``, so run.json stores
them and ``--resume`` compares them.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, model_validator

from confdistill.distillation.settings import (
    AtLeastOne,
    Device,
    PathText,
    Settings,
    Stage1Loss,
    TrainConfig,
    describe_errors,
)
from confdistill.errors import InputError, setting_name

__all__ = ["GENERAL_RESUME_MUTABLE", "GeneralConfig", "StudentShape"]

#: Fields that may differ between the original run and its ``--resume`` invocation.
GENERAL_RESUME_MUTABLE = frozenset({"resume", "overwrite", "device", "eval_batch_size"})


class _Checked(Settings):
    """Settings whose construction raises a one-line :class:`InputError` naming the options."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            # A check of several fields (heads and hidden) has no single location: no "key:" prefix.
            parts = [p.removeprefix(": ") for p in describe_errors(exc)]
            raise InputError("; ".join(parts)) from None


#: How a general student's embeddings and encoder layers start (models/general_student.py); the
#: settings, the experiment schema and the command line's choices all take them from here.
EmbeddingInit = Literal["teacher", "fresh"]
EncoderInit = Literal["fresh", "sliced"]
EMBEDDING_INITS: tuple[str, ...] = get_args(EmbeddingInit)
ENCODER_INITS: tuple[str, ...] = get_args(EncoderInit)


class StudentShape(_Checked):
    """The student's size: M layers of width H with A attention heads and FFN width I.

    H must be a multiple of A (each head is H/A wide). The vocabulary, positions and token types
    are the teacher's. embeddings: "teacher" (copied, or PCA-projected when narrower; the default)
    or "fresh" (TinyBERT's random start). encoder_init: "fresh" (TinyBERT's random encoder layers,
    the default) or "sliced" (each layer starts from its mapped teacher layer cut to the narrow
    sizes; needs embeddings "teacher"); see :mod:`confdistill.models.general_student`.
    """

    layers: AtLeastOne
    hidden: AtLeastOne
    heads: AtLeastOne
    intermediate: AtLeastOne
    embeddings: EmbeddingInit = "teacher"
    encoder_init: EncoderInit = "fresh"

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> StudentShape:
        if self.hidden % self.heads:
            raise ValueError(f"{setting_name('hidden')} {self.hidden} is not divisible by "
                             f"{setting_name('heads')} {self.heads} "
                             "(each attention head is hidden/heads wide)")
        if self.encoder_init == "sliced" and self.embeddings != "teacher":
            raise ValueError(f"{setting_name('encoder_init')} sliced needs {setting_name('embeddings')} teacher "
                             "(the layers are sliced through the embeddings' projection)")
        return self


class GeneralConfig(_Checked, TrainConfig, Stage1Loss):
    """General distillation: the teacher's attention scores and hidden states, on unlabeled text.

    corpus: text files (one text per line) or CSV/TSV/JSONL files read through ``text_column``.
    shuffle_buffer: texts held by the streamed shuffle (memory bound; see :mod:`confdistill.data.corpus`).
    resume / overwrite: continue the run in ``out`` / discard what ``out`` holds. eval_step,
    eval_batch_size and group_by_length do not apply (there is no evaluation split; batches
    are drawn from the stream).
    """

    teacher: PathText = ""
    corpus: list[PathText] = Field(default_factory=list)
    text_column: str | None = None
    out: PathText = ""
    student: StudentShape | None = None
    shuffle_buffer: AtLeastOne = 10_000
    resume: bool = False
    overwrite: bool = False
    device: Device = "auto"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneralConfig:
        """Build from a dict; unknown keys are an :class:`InputError` naming them."""
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise InputError(f"unknown GeneralConfig setting(s) {unknown}; known: {sorted(cls.model_fields)}")
        return cls(**data)

    def validate(self) -> None:
        """Raise :class:`InputError` on settings that cannot work together (before anything is written)."""
        for name in ("teacher", "corpus", "out", "student"):
            if not getattr(self, name):
                raise InputError(f"{setting_name(name)} is required")
        if self.resume and self.overwrite:
            raise InputError(f"give {setting_name('resume')} (continue the run in {setting_name('out')}) or "
                             f"{setting_name('overwrite')} (discard it), not both")

    def loop(self) -> TrainConfig:
        """The loop's settings as a :class:`TrainConfig`."""
        return TrainConfig(**TrainConfig.pick(self.to_dict()))

    def resume_record(self) -> dict[str, Any]:
        """The settings that must be equal for ``--resume`` to continue the same run."""
        return {k: v for k, v in self.to_dict().items() if k not in GENERAL_RESUME_MUTABLE}
