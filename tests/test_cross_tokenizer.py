"""Distillation across tokenizers (issue 17, item 3): a RoBERTa-style teacher with a byte-level BPE
tokenizer and a WordPiece BERT student. Stage 2 runs (the teacher reads every text with its own
tokenizer, once, into the logit caches); stage 1 — alone, in ``--stage both`` or in an experiment —
is refused before anything is written, with one line naming both tokenizers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confdistill.cli.main import main
from distill_helpers import synthetic_rows, write_sst2
from input_helpers import ONE_EPOCH, tiny_experiment
from tokenizer_helpers import tiny_roberta


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Callable[..., Path]) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cross_tokenizer")
    data = write_sst2(root, 40, 16, real=False)
    # The teacher's BPE vocabulary is learnt on other sentences of the same kind (a few hundred).
    teacher = tiny_roberta(root / "roberta", [t for t, _ in synthetic_rows(300, 9)], favour=1)
    return {"root": root, "data": data, "teacher": teacher, "student": tiny_bert(layers=1, seed=2)}


def _independent_teacher_logits(teacher: Path, texts: list[str], max_length: int) -> Any:
    """The teacher's logits on each text, one at a time, with transformers only (no confdistill code)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher)
    model = AutoModelForSequenceClassification.from_pretrained(teacher, attn_implementation="eager").eval()
    with torch.no_grad():
        return torch.cat([model(**tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")).logits
                          for t in texts])


def _texts(data: Path, split: str) -> list[str]:
    return [line.split("\t")[0] for line in (data / "SST-2" / f"{split}.tsv").read_text().splitlines()[1:]]


def test_stage2_across_tokenizers_caches_the_teachers_own_logits(env: dict[str, Any]) -> None:
    import torch
    from transformers import AutoTokenizer

    from confdistill.io import load_tensors

    out = env["root"] / "stage2"
    code = main(["--quiet", "distill", "--stage", "prediction", "--teacher", str(env["teacher"]),
                 "--student", str(env["student"]), "--task", "sst2", "--data-dir", str(env["data"]),
                 "--out", str(out), "--num-train-epochs", "1", "--train-batch-size", "8", "--max-seq-length", "24"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["teacher_tokenizer"].startswith("RobertaTokenizer (BPE")
    for cache, split in (("teacher_logits.pt", "train"), ("teacher_eval_logits.pt", "dev")):
        cached = load_tensors(out / cache, what="cache")["logits"]
        expected = _independent_teacher_logits(env["teacher"], _texts(env["data"], split), 24)
        assert cached.shape == expected.shape == (len(_texts(env["data"], split)), 2)
        torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-5)
    # The student kept its own WordPiece tokenizer; the teacher's logits differ from what the
    # teacher gives on the student's token ids (so reading them with the wrong tokenizer would show).
    student_tokens = AutoTokenizer.from_pretrained(out / "final").tokenize("the film was good")
    assert student_tokens == AutoTokenizer.from_pretrained(env["student"]).tokenize("the film was good")
    assert not any(t.startswith("Ġ") for t in student_tokens)


@pytest.mark.parametrize("stage", ["intermediate", "both"])
def test_stage1_across_tokenizers_is_refused(env: dict[str, Any], stage: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = env["root"] / f"refused-{stage}"
    capsys.readouterr()
    code = main(["distill", "--stage", stage, "--teacher", str(env["teacher"]), "--student", str(env["student"]),
                 "--task", "sst2", "--data-dir", str(env["data"]), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for needle in ("RobertaTokenizer (BPE", "BertTokenizer", "(WordPiece", "use --stage prediction"):
        assert needle in err[0], (needle, err[0])
    assert not out.exists()


def test_experiment_stage_prediction_across_tokenizers(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from confdistill.io import load_tensors

    root, data = env["root"], env["data"]
    student = f'name = "bert"\ndir = "{env["student"]}"'
    # stage 1 across tokenizers: refused before any step runs, nothing written
    refused = tiny_experiment(root / "both.toml", out=root / "exp-both", data=data, teacher=env["teacher"],
                              student=student, stage1=ONE_EPOCH)
    capsys.readouterr()
    assert main(["run", str(refused)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenise text differently" in err[0] and 'stage = "prediction"' in err[0], err
    assert not (root / "exp-both").exists()
    for i, spelling in enumerate(('stage = "prediction"', 'stages = ["stage2"]')):
        exp = root / f"exp-{i}"
        path = tiny_experiment(root / f"exp-{i}.toml", out=exp, data=data, teacher=env["teacher"],
                               student=f"{student}\n{spelling}", stage1=None)
        assert main(["--quiet", "run", str(path)]) == 0
        cached = load_tensors(exp / "SST-2" / "students" / "bert" / "stage2" / "teacher_logits.pt", what="cache")
        expected = _independent_teacher_logits(env["teacher"], _texts(data, "train"), 32)  # max_length = 32
        torch.testing.assert_close(cached["logits"], expected, atol=1e-5, rtol=1e-5)
        assert not (exp / "SST-2" / "students" / "bert" / "stage1").exists()


def test_tune_accepts_a_stage2_student_across_tokenizers(env: dict[str, Any]) -> None:
    from confdistill.errors import InputError
    from confdistill.experiments.config import load_experiment
    from confdistill.tuning.objective import ExperimentObjective
    from confdistill.tuning.params import baseline_params, select, space_for
    from confdistill.tuning.space import SearchSpace

    root = env["root"]
    for i, (stages, refused) in enumerate((('stage = "prediction"', False), ("", True))):
        path = tiny_experiment(root / f"tune-{i}.toml", out=root / f"tune-exp-{i}", data=env["data"],
                               teacher=env["teacher"], student=f'name = "bert"\ndir = "{env["student"]}"\n{stages}',
                               kappa="kappa = 0.05")
        cfg = load_experiment(path)
        task, student = select(cfg, None, None)
        objective = ExperimentObjective(cfg, task, student, root / f"tune-{i}")
        space = space_for(student, SearchSpace(), aug_available=False, task=task)
        if refused:
            with pytest.raises(InputError, match=r"tokenise text differently.*stage = \"prediction\""):
                objective.validate(space, baseline_params(student))
        else:
            objective.validate(space, baseline_params(student))  # stage 2 only: accepted
        assert not (root / f"tune-{i}").exists()


def test_augmentation_by_a_byte_level_teacher_is_plain_text_for_both(env: dict[str, Any]) -> None:
    """``augment --model`` a byte-level BPE teacher: the variants are words (no ``Ġ`` markers, no
    byte characters, accents intact), each a word of the original or a word the teacher's vocabulary
    spells; stage 2 across tokenizers then trains on them with the teacher's own logits."""
    import torch
    from transformers import AutoTokenizer

    from confdistill.io import load_tensors

    root = env["root"]
    data = root / "aug_glue"
    (data / "SST-2").mkdir(parents=True)
    rows = ["sentence\tlabel", "the café was lovely and moving\t1", "a dull naïve story\t0", "the acting was awful\t0"]
    (data / "SST-2" / "train.tsv").write_text("\n".join(rows) + "\n")
    (data / "SST-2" / "dev.tsv").write_text("\n".join(rows) + "\n")
    out = root / "train_aug.tsv"
    assert main(["--quiet", "augment", "--task", "sst2", "--data-dir", str(data), "--model", str(env["teacher"]),
                 "--n-aug", "4", "--p", "0.8", "--top-k", "3", "--out", str(out)]) == 0
    variants = [line.split("\t")[0] for line in out.read_text().splitlines()[1:]]
    teacher_tok = AutoTokenizer.from_pretrained(env["teacher"])
    spelled = {teacher_tok.convert_tokens_to_string([t]).strip() for t in teacher_tok.get_vocab() if t.startswith("Ġ")}
    originals = {w for r in rows[1:] for w in r.split("\t")[0].split()}
    assert len(variants) == 3 * 5 and variants[:3] == [r.split("\t")[0] for r in rows[1:]]
    replaced = 0
    for text in variants[3:]:
        for word in text.split():
            assert "Ġ" not in word and "Ã" not in word, text
            assert word in originals or word in spelled, (word, text)
            replaced += word not in originals
    assert replaced > 0  # p = 0.8: words were replaced
    assert any("café" in v for v in variants[3:]) or any("naïve" in v for v in variants[3:])
    # stage 2 across tokenizers on the augmented file: the teacher read the variants itself
    run = root / "aug-stage2"
    assert main(["--quiet", "distill", "--stage", "prediction", "--teacher", str(env["teacher"]), "--student",
                 str(env["student"]), "--task", "sst2", "--data-dir", str(data), "--aug-train", str(out),
                 "--out", str(run), "--num-train-epochs", "1", "--max-seq-length", "24"]) == 0
    cached = load_tensors(run / "teacher_logits.pt", what="cache")["logits"]
    torch.testing.assert_close(cached, _independent_teacher_logits(env["teacher"], variants, 24), atol=1e-5, rtol=1e-5)
