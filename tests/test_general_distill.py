"""General distillation (``confdistill general-distill``): TinyBERT's loss on a fixed batch, the
streamed shuffle, exact resume, bad input, the continuation by ``distill``, and 2 processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from distill_helpers import hand_scores, metrics_log, one_thread, step_entries, weights, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

_WORDS = ["the", "a", "film", "movie", "story", "plot", "is", "was", "very", "good", "bad", "dull", "great",
          "acting", "and", "it", "really", "long", "funny"]


def _corpus(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 20))) + "\n"
                            for _ in range(n)), encoding="utf-8")
    return path


def _config(teacher: Path, corpus: list[Path], out: Path, **kw: object):
    from confdistill.distillation.general_config import GeneralConfig, StudentShape

    shape = StudentShape(layers=2, hidden=32, heads=2, intermediate=64)
    settings = dict(teacher=str(teacher), corpus=[str(c) for c in corpus], out=str(out), student=shape,
                    train_batch_size=8, learning_rate=1e-3, num_train_epochs=1.0, device="cpu",
                    checkpoint_steps=None)
    return GeneralConfig(**{**settings, **kw})


# ---------------------------------------------------------------------------------------------
# The loss: TinyBERT's general_distill.py formulas, computed independently
# ---------------------------------------------------------------------------------------------

def test_general_loss_matches_tinybert_formulas(tiny_bert: Callable[..., Path]) -> None:
    from confdistill.data.corpus import TextCollator
    from confdistill.distillation.general import shared_fit_dense
    from confdistill.distillation.mapping import layer_mapping
    from confdistill.distillation.steps import Stage1Student, stage1_loss
    from confdistill.models.general_student import fresh_student
    from confdistill.models.loading import load_classifier

    teacher, tok = load_classifier(tiny_bert(layers=4, hidden=64, heads=2, intermediate=128))
    student, record = fresh_student(teacher, layers=2, hidden=32, heads=2, intermediate=64, seed=1)
    assert "projected 64 -> 32" in record["embeddings_init"]
    torch.manual_seed(3)
    fit = shared_fit_dense(32, 64, 2)
    assert fit is not None and len(fit) == 3 and fit[0] is fit[1] is fit[2]   # ONE fit_dense, as TinyBERT's
    mapping = layer_mapping(2, 4)
    batch = TextCollator(tok, 32)(["a fine film", "the worst plot of the year , really dull and long", "ok"])
    model = Stage1Student(student.eval(), fit).eval()
    total, att, rep = stage1_loss(model, teacher, mapping, batch)

    # TinyBERT: k = N/M; teacher_atts[i·k + k − 1] (scores before softmax, ≤ −100 → 0), teacher_reps[i·k],
    # every student rep through the same fit_dense, nn.MSELoss.
    mse, mask, k = torch.nn.MSELoss(), batch["attention_mask"], 2
    with torch.no_grad():
        th = teacher(**batch, output_hidden_states=True).hidden_states
        sh = student(**batch, output_hidden_states=True).hidden_states
        ref_att = torch.zeros(())
        for i in range(2):
            s = hand_scores(student, sh[i], i, mask, -10000.0)
            t = hand_scores(teacher, th[i * k + k - 1], i * k + k - 1, mask, -10000.0)
            ref_att = ref_att + mse(torch.where(s <= -1e2, torch.zeros_like(s), s),
                                    torch.where(t <= -1e2, torch.zeros_like(t), t))
        w, b = fit[0].weight, fit[0].bias
        ref_rep = sum(mse(sh[i] @ w.T + b, th[i * k]) for i in range(3))
    assert mask.min() == 0
    torch.testing.assert_close(att.detach(), ref_att, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rep.detach(), ref_rep, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total.detach(), ref_att + ref_rep, rtol=1e-5, atol=1e-6)


def test_embeddings_start_from_the_teacher(tiny_bert: Callable[..., Path]) -> None:
    from confdistill.models.general_student import fresh_student, pca_projection
    from confdistill.models.loading import load_classifier

    teacher, _ = load_classifier(tiny_bert(layers=4, hidden=64, heads=2, intermediate=128))
    same, _ = fresh_student(teacher, layers=2, hidden=64, heads=2, intermediate=64)
    torch.testing.assert_close(same.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    narrow, _ = fresh_student(teacher, layers=2, hidden=32, heads=2, intermediate=64)
    p = pca_projection(teacher.bert.embeddings.word_embeddings.weight, 32)
    torch.testing.assert_close(p.T @ p, torch.eye(32), atol=1e-5, rtol=0)    # orthonormal directions
    torch.testing.assert_close(narrow.bert.embeddings.position_embeddings.weight,
                               teacher.bert.embeddings.position_embeddings.weight @ p)
    fresh, _ = fresh_student(teacher, layers=2, hidden=32, heads=2, intermediate=64, embeddings="fresh")
    assert not torch.allclose(fresh.bert.embeddings.word_embeddings.weight, narrow.bert.embeddings.word_embeddings.weight)


# ---------------------------------------------------------------------------------------------
# The streamed corpus
# ---------------------------------------------------------------------------------------------

def test_streamed_shuffle_is_seeded_and_covers_every_line_once(tmp_path: Path) -> None:
    from confdistill.data.corpus import buffered_shuffle, scan_corpus

    assert sorted(buffered_shuffle(range(100), 7, random.Random(0))) == list(range(100))
    a = tmp_path / "a.txt"
    a.write_text("".join(f"a{i}\n" for i in range(40)) + "\n  \n", encoding="utf-8")   # blank lines skipped
    b = tmp_path / "b.csv"
    b.write_text("id,text\n" + "".join(f'{i},"b{i}, quoted"\n' for i in range(25)), encoding="utf-8")
    c = tmp_path / "c.jsonl"
    c.write_text("".join(json.dumps({"text": f"c{i}"}) + "\n" for i in range(15)), encoding="utf-8")
    plain = scan_corpus([a])
    assert plain.rows == 40 and len(plain.files[0].sha256) == 64
    tables = scan_corpus([b, c], "text")
    assert tables.rows == 40
    for corpus in (plain, tables):
        e0 = list(corpus.epoch(seed=1, epoch=0, buffer_size=8))
        assert sorted(e0) == sorted(corpus.texts()) and len(set(e0)) == corpus.rows   # each once
        assert e0 == list(corpus.epoch(seed=1, epoch=0, buffer_size=8))              # same seed, same order
        assert e0 != list(corpus.epoch(seed=1, epoch=1, buffer_size=8))              # a new order per epoch
        assert e0 != list(corpus.texts())
        batches = list(corpus.batches(seed=1, epoch=0, batch_size=6, buffer_size=8))
        assert [len(x) for x in batches] == [6] * 6 + [4] and [t for x in batches for t in x] == e0
        assert list(corpus.batches(seed=1, epoch=0, batch_size=6, buffer_size=8, skip=4)) == batches[4:]
    assert "b3, quoted" in tables.texts()


@pytest.mark.parametrize("case", ["empty", "utf8", "csv_column", "jsonl_column", "heads", "out_not_empty"])
def test_bad_input_is_one_line_exit_2(case: str, tiny_bert: Callable[..., Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from confdistill.cli.main import main

    teacher = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)
    corpus = _corpus(tmp_path / "c.txt", 20)
    out = tmp_path / "out"
    hidden, expected = "32", ""
    if case == "empty":
        corpus.write_text("\n \n", encoding="utf-8")
        expected = "holds no text"
    elif case == "utf8":
        corpus.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
        expected = f"{corpus}: line 3 is not UTF-8"
    elif case == "csv_column":
        corpus = tmp_path / "c.csv"
        corpus.write_text("sentence,label\nok,1\n", encoding="utf-8")
        expected = "no column 'text'"
    elif case == "jsonl_column":
        corpus = tmp_path / "c.jsonl"
        corpus.write_text('{"text": "ok"}\n{"sentence": "no"}\n', encoding="utf-8")
        expected = "line 2 has no key 'text'"
    elif case == "heads":
        hidden, expected = "33", "--hidden 33 is not divisible by --heads 2"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        expected = "--out"
    column = ["--text-column", "text"] if case in ("csv_column", "jsonl_column") else []
    code = main(["general-distill", "--teacher", str(teacher), "--corpus", str(corpus), *column, "--layers", "2",
                 "--hidden", hidden, "--heads", "2", "--intermediate", "64", "--out", str(out), "--device", "cpu",
                 "--batch-size", "8", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    if case == "out_not_empty":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    else:
        assert not (out / "run.json").exists()


# ---------------------------------------------------------------------------------------------
# Runs: the loss falls, resume is exact, distill continues from OUT/final
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder_init", ["fresh", "sliced"])  # sliced: the fitted fit_dense start is redone
def test_resume_reaches_the_same_weights(tiny_bert: Callable[..., Path], tmp_path: Path, encoder_init: str) -> None:
    from confdistill.distillation.general import general_distill
    from confdistill.distillation.general_config import StudentShape
    from confdistill.distillation.trainer import TrainingInterrupted
    from confdistill.errors import InputError

    teacher = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)   # dropout 0.1: RNG state matters
    corpus = _corpus(tmp_path / "c.txt", 52)
    common = dict(num_train_epochs=2.0, checkpoint_steps=4, shuffle_buffer=16,   # 7 steps per epoch
                  student=StudentShape(layers=2, hidden=32, heads=2, intermediate=64, encoder_init=encoder_init))
    whole = general_distill(_config(teacher, [corpus], tmp_path / "a", **common))
    assert whole["status"] == "complete" and whole["steps"] == 14 and whole["rows_seen"] == 104
    with pytest.raises(TrainingInterrupted):
        general_distill(_config(teacher, [corpus], tmp_path / "b", **common), stop_after_steps=10)
    with pytest.raises(InputError, match="different settings"):
        general_distill(_config(teacher, [corpus], tmp_path / "b", resume=True, **{**common, "seed": 7}))
    resumed = general_distill(_config(teacher, [corpus], tmp_path / "b", resume=True, **common))
    assert resumed["status"] == "complete"
    a, b = weights(tmp_path / "a" / "final"), weights(tmp_path / "b" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(*(torch.load(tmp_path / d / "final" / "fit_denses.pt")["0.weight"] for d in ("a", "b")))
    assert metrics_log(tmp_path / "a") == metrics_log(tmp_path / "b")   # no line lost or repeated
    losses = [e["loss"] for e in step_entries(tmp_path / "a")]
    assert sum(losses[-3:]) < sum(losses[:3])                          # the loss falls
    assert {"att_loss", "rep_loss", "lr"} <= set(step_entries(tmp_path / "a")[0])
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["corpus"][0]["rows"] == 52 and run["versions"]["torch"] and (tmp_path / "a" / "loss_curves.png").is_file()
    # Resuming a finished run returns it unchanged.
    assert general_distill(_config(teacher, [corpus], tmp_path / "a", resume=True, **common)) == run


def test_distill_continues_from_the_general_student(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.cli.main import main
    from confdistill.distillation.checkpoint import load_fit_denses
    from confdistill.distillation.losses import make_fit_denses

    teacher = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)
    corpus = _corpus(tmp_path / "c.txt", 24)
    out = tmp_path / "general"
    assert main(["general-distill", "--teacher", str(teacher), "--corpus", str(corpus), "--layers", "2",
                 "--hidden", "32", "--heads", "2", "--intermediate", "64", "--out", str(out), "--device", "cpu",
                 "--batch-size", "8", "--epochs", "1", "--learning-rate", "1e-3"]) == 0
    final = out / "final"
    assert (final / "fit_denses.pt").is_file() and (final / "vocab.txt").is_file()
    fit = make_fit_denses(32, 64, 2)
    assert load_fit_denses(final, fit)                                  # stage 1 starts from these
    saved = torch.load(final / "fit_denses.pt")
    assert torch.equal(fit[2].weight, saved["0.weight"])
    data = write_sst2(tmp_path, 24, 8, real=False)
    code = main(["distill", "--stage", "both", "--teacher", str(teacher), "--student", str(final), "--task", "sst2",
                 "--data-dir", str(data), "--out", str(tmp_path / "task"), "--batch-size", "8",
                 "--intermediate-epochs", "1", "--prediction-epochs", "1", "--device", "cpu"])
    assert code == 0
    run = json.loads((tmp_path / "task" / "run.json").read_text())
    assert run["status"] == "complete" and run["intermediate"]["status"] == "complete"
    cfg = json.loads((tmp_path / "task" / "final" / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"]) == (32, 2)


@pytest.mark.slow
@pytest.mark.parametrize("encoder_init", ["fresh", "sliced"])  # sliced: the least-squares fit_dense start too
def test_two_processes_match_one(tiny_bert: Callable[..., Path], tmp_path: Path, encoder_init: str) -> None:
    from distill_helpers import copy_model

    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed beside this python")
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    teacher = copy_model(tiny_bert(layers=4, hidden=64, heads=2, intermediate=128), tmp_path / "t", **no_dropout)
    corpus = _corpus(tmp_path / "c.txt", 45)
    args = ["general-distill", "--teacher", str(teacher), "--corpus", str(corpus), "--layers", "2", "--hidden", "32",
            "--heads", "2", "--intermediate", "64", "--batch-size", "11", "--epochs", "1", "--learning-rate", "1e-3",
            "--device", "cpu", "--checkpoint-steps", "2", "--encoder-init", encoder_init]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for cmd in ([sys.executable, "-m", "confdistill", *args, "--out", str(tmp_path / "one")],
                [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "confdistill", *args,
                 "--out", str(tmp_path / "two")]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    a, b = weights(tmp_path / "one" / "final"), weights(tmp_path / "two" / "final")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
