"""The training loop: stage-1 loss against an independent TinyBERT computation, both stages (and
fine-tuning) lowering their losses, stage 2 raising teacher–student agreement, β as defined, and
bad inputs refused with exit 2 and nothing overwritten."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.cli.main import main
from confdistill.distillation import DistillConfig, FinetuneConfig, distill, finetune
from distill_helpers import hand_scores, kl_rows, log_softmax, one_thread, softmax, step_entries, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs))


# ---------------------------------------------------------------------------------------------
# Stage 1 loss on a fixed batch == the TinyBERT formulas computed independently
# ---------------------------------------------------------------------------------------------

def test_stage1_loss_matches_tinybert_formulas(tiny_bert: Callable[..., Path]) -> None:
    from transformers import BertForSequenceClassification, BertTokenizerFast

    from confdistill.distillation.losses import make_fit_denses
    from confdistill.distillation.mapping import layer_mapping
    from confdistill.distillation.trainer import Stage1Student, stage1_loss

    t_dir = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)
    s_dir = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64, seed=1)
    teacher = BertForSequenceClassification.from_pretrained(t_dir).eval()
    student = BertForSequenceClassification.from_pretrained(s_dir).eval()
    tok = BertTokenizerFast.from_pretrained(t_dir)
    batch = tok(["a fine film", "the worst plot of the year , really dull and long", "ok"],
                padding=True, return_tensors="pt")
    torch.manual_seed(3)
    fit = make_fit_denses(32, 64, 2)
    mapping = layer_mapping(2, 4)
    assert mapping == [0, 2, 4]
    model = Stage1Student(student, fit).eval()
    total, att, rep = stage1_loss(model, teacher, mapping, dict(batch))

    # Independent: transformers' own forward for hidden states, scores from the Q/K weights,
    # TinyBERT's `torch.where(x <= -1e2, 0, x)` and nn.MSELoss, teacher layers 2 and 4 (k = 2).
    mse = torch.nn.MSELoss()
    mask = batch["attention_mask"]
    with torch.no_grad():
        th = teacher(**batch, output_hidden_states=True).hidden_states
        sh = student(**batch, output_hidden_states=True).hidden_states
        ref_att = torch.zeros(())
        for m in (1, 2):
            # Old BERT's additive mask, −10000 (zeroed by the ≤ −100 rule like transformers 5's).
            s = hand_scores(student, sh[m - 1], m - 1, mask, -10000.0)
            t = hand_scores(teacher, th[2 * m - 1], 2 * m - 1, mask, -10000.0)
            s = torch.where(s <= -1e2, torch.zeros_like(s), s)
            t = torch.where(t <= -1e2, torch.zeros_like(t), t)
            ref_att = ref_att + mse(s, t)
        ref_rep = sum(mse(fit[m](sh[m]), th[2 * m]) for m in range(3))
    assert mask.min() == 0  # the batch has padding, so the masking matters
    torch.testing.assert_close(att.detach(), ref_att, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rep.detach(), ref_rep, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total.detach(), ref_att + ref_rep, rtol=1e-5, atol=1e-6)
    # Gradients reach the student and the projections, never the teacher.
    total.backward()
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert fit[0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


# ---------------------------------------------------------------------------------------------
# End to end: fine-tune a teacher, distill (both stages), check losses, agreement and β
# ---------------------------------------------------------------------------------------------

def _agreement(student_dir: Path, teacher_dir: Path, data: Path) -> tuple[float, np.ndarray, np.ndarray]:
    from confdistill.data import encode, load_split
    from confdistill.models.loading import load_classifier
    from confdistill.prediction.predict import predict_encoded

    out = []
    for d in (student_dir, teacher_dir):
        model, tok = load_classifier(d, num_labels=2)
        enc = encode(tok, load_split("sst2", data, "train"), 128)
        out.append(torch.from_numpy(predict_encoded(model, enc, batch_size=64, device="cpu")).double())
    s, t = out
    return float((s.argmax(1) == t.argmax(1)).double().mean()), s.numpy(), t.numpy()


def test_finetune_and_two_stage_distillation(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 192, 64, real=False)  # learnable generated sentences
    teacher0 = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)
    student0 = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64, seed=1)

    ft = finetune(FinetuneConfig(model=str(teacher0), task="SST-2", data_dir=str(data), out=str(tmp_path / "ft"),
                                 num_train_epochs=6, learning_rate=2e-3, eval_step=None, checkpoint_steps=None))
    steps = step_entries(tmp_path / "ft")
    assert len(steps) == 6 * math.ceil(192 / 32)
    assert _mean([e["loss"] for e in steps[-6:]]) < _mean([e["loss"] for e in steps[:6]]) - 0.1
    assert ft["final_eval"]["accuracy"] >= 0.75
    teacher = tmp_path / "ft" / "final"

    before, s0_logits, t_logits0 = _agreement(student0, teacher, data)
    run = distill(DistillConfig(teacher=str(teacher), student=str(student0), task="sst2", data_dir=str(data),
                                out=str(tmp_path / "kd"), stage="both", intermediate_epochs=4, prediction_epochs=4,
                                intermediate_lr=2e-3, prediction_lr=5e-3, eval_step=6, checkpoint_steps=None))
    # Stage 1 lowered its loss (both parts).
    s1 = step_entries(tmp_path / "kd" / "intermediate")
    for key in ("att_loss", "rep_loss"):
        assert _mean([e[key] for e in s1[-3:]]) < 0.8 * _mean([e[key] for e in s1[:3]]), key
    # Stage 2 lowered its loss (soft CE = H(teacher) + KL: the KL part shrinks) and raised agreement.
    s2 = step_entries(tmp_path / "kd")
    assert _mean([e["soft_loss"] for e in s2[-6:]]) < _mean([e["soft_loss"] for e in s2[:6]])
    after, s_logits, t_logits = _agreement(tmp_path / "kd" / "final", teacher, data)
    assert after >= 0.85 and after > before + 0.15, (before, after)
    assert kl_rows(t_logits, s_logits).sum() < 0.8 * kl_rows(t_logits0, s0_logits).sum()

    # Layout and metadata.
    kd = tmp_path / "kd"
    for name in ("final", "best", "checkpoints", "metrics.jsonl", "loss_curves.png", "run.json",
                 "teacher_logits.pt", "intermediate/final/fit_denses.pt"):
        assert (kd / name).exists(), name
    assert run["status"] == "complete" and run["intermediate"]["layer_mapping"] == [0, 2, 4]
    assert run["data"]["train"]["rows"] == run["n_train"] == 192
    assert run["best"]["metric"] == "accuracy" and run["best"]["value"] >= run["final_eval"]["accuracy"] - 1e-12

    # β: total KL(q_t ‖ q_s) over the train split in eval mode, recomputed independently here.
    q_t, log_q_s = softmax(t_logits), log_softmax(s_logits)
    kl = kl_rows(t_logits, s_logits)
    assert run["beta"] == pytest.approx(kl.sum(), rel=1e-4)
    assert run["beta_mean"] == pytest.approx(kl.mean(), rel=1e-4)
    assert run["beta_soft_ce"] == pytest.approx(-(q_t * log_q_s).sum(), rel=1e-4)
    assert run["n_train"] == 192 and run["alpha"] == 0.0 and run["temperature"] == 1.0


def test_stage2_with_alpha_and_confidence_term_runs(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 64, 32, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    run = distill(DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data),
                                out=str(tmp_path / "kd"), stage="prediction", num_train_epochs=1, alpha=0.5,
                                lambda_conf=2.0, temperature=2.0, eval_step=None, checkpoint_steps=None))
    steps = step_entries(tmp_path / "kd")
    e = steps[0]
    assert e["hard_loss"] > 0 and e["conf_loss"] > 0
    # The logged total is the weighted sum of the logged parts (batch means).
    assert e["loss"] == pytest.approx(0.5 * e["soft_loss"] + 0.5 * e["hard_loss"] + 2.0 * e["conf_loss"], rel=1e-5)
    assert run["alpha"] == 0.5 and run["temperature"] == 2.0 and run["beta"] > 0


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing overwritten
# ---------------------------------------------------------------------------------------------

def _other_vocab_model(src: Path, dst: Path) -> Path:
    from transformers import BertTokenizerFast

    shutil.copytree(src, dst)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (dst / f).unlink(missing_ok=True)
    vocab = dst / "vocab.txt"
    vocab.write_text("".join(f"{w}\n" for w in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "zebra"]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(dst)
    return dst


def test_bad_inputs_exit_2_and_write_nothing(tiny_bert: Callable[..., Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 40, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    wide = tiny_bert(layers=1, hidden=64, heads=2, intermediate=64, seed=2)
    other = _other_vocab_model(s, tmp_path / "other_vocab")
    capsys.readouterr()
    empty = tmp_path / "empty" / "SST-2"
    empty.mkdir(parents=True)
    (empty / "train.tsv").write_text("sentence\tlabel\n")
    (empty / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    out = tmp_path / "out"

    def distill_cli(*extra: str, teacher: Path = t, student: Path = s, data_dir: Path = data,
                    task: str = "sst2") -> tuple[int, str]:
        code = main(["distill", "--teacher", str(teacher), "--student", str(student), "--task", task,
                     "--data-dir", str(data_dir), "--out", str(out), "--num-train-epochs", "1", *extra])
        lines = capsys.readouterr().err.strip().splitlines()
        return code, lines[-1] if lines else ""  # the error line (progress bars may precede it)

    cases = [
        (dict(teacher=tmp_path / "missing"), "does not exist"),
        (dict(task="nosuchtask"), "nosuchtask"),
        (dict(student=other), "vocabular"),
        (dict(data_dir=tmp_path / "empty"), "empty"),
    ]
    for kwargs, needle in cases:
        code, err = distill_cli(**kwargs)
        assert code == 2, (kwargs, err)
        assert needle in err.lower() and err.startswith("confdistill distill: error:"), err
        assert not out.exists(), kwargs
    code, err = distill_cli("--stage", "intermediate", student=wide)
    assert code == 2 and "wider than allowed by the mapping" in err and not out.exists()
    code, err = distill_cli("--alpha", "2")
    assert code == 2 and "--alpha" in err and not out.exists()

    # A finished run is never overwritten without --resume.
    code, _ = distill_cli("--eval-step", "100")
    assert code == 0
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = distill_cli("--eval-step", "100")
    assert code == 2 and "--resume" in err
    assert snapshot == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(["finetune", "--model", str(t), "--task", "sst2", "--data-dir", str(data), "--out", str(out)])
    assert code == 2 and snapshot == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
