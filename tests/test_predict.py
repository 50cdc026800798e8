"""predict: one row per example in file order, probabilities from an independent computation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.cli.main import main
from confdistill.io import sha256_file
from confdistill.prediction.predict import predict_split
from confdistill.prediction.softmax_file import read_softmax, sidecar_path

WORDS = ["good", "bad", "movie", "the", "plot", "is", "not", "very", "fun", "actors", "charming", "dull"]


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


@pytest.fixture
def sst_dir(tmp_path: Path) -> Path:
    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True)
    rows = [f"{s}\t{i % 2}" for i, s in enumerate(_sentences(45))]
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def _reference_probs(model_dir: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """One example at a time, no padding, no sorting: plain transformers."""
    from transformers import BertForSequenceClassification, BertTokenizerFast

    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = BertTokenizerFast(vocab=str(model_dir / "vocab.txt"), do_lower_case=True)
    out = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            enc = tok(text, pairs[i] if pairs else None, truncation=True, max_length=128, return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits.double(), -1)[0].numpy())
    return np.stack(out)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_predict_rows_in_file_order(tiny_bert: Callable[..., Path], sst_dir: Path, tmp_path: Path) -> None:
    model_dir = tiny_bert()
    out = predict_split(model_dir, "SST-2", sst_dir, "dev", tmp_path / "preds.csv", batch_size=8, progress=False)
    got = read_softmax(out)
    lines = (sst_dir / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [ln.split("\t")[0] for ln in lines]
    assert got.n == len(lines) == 45 and got.k == 2
    assert got.label.tolist() == [int(ln.split("\t")[1]) for ln in lines]
    np.testing.assert_allclose(got.probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got.probs, _reference_probs(model_dir, texts), atol=2e-5)
    assert got.pred.tolist() == got.probs.argmax(1).tolist()
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["task"] == "SST-2" and meta["split"] == "dev" and meta["n_rows"] == 45
    assert meta["data_sha256"] == sha256_file(sst_dir / "SST-2" / "dev.tsv")
    assert meta["label_names"] == ["0", "1"]
    assert meta["metrics"]["accuracy"] == pytest.approx(np.mean(got.pred == got.label))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_predict_regression_and_custom(tiny_bert: Callable[..., Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    stsb = tmp_path / "STS-B"
    stsb.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    pairs = list(zip(_sentences(12, 1), _sentences(12, 2), strict=True))
    rows = "".join(f"{i}\tg\tf\ty\t{i}\tn\tn\t{a}\t{b}\t{i % 6:.3f}\n" for i, (a, b) in enumerate(pairs))
    (stsb / "dev.tsv").write_text(header + rows, encoding="utf-8")
    model_dir = tiny_bert(num_labels=1)
    out = predict_split(model_dir, "STS-B", stsb, "dev", tmp_path / "stsb.csv", progress=False)
    lines = out.read_text().splitlines()
    assert lines[0] == "pred,label" and len(lines) == 13
    assert [float(ln.split(",")[1]) for ln in lines[1:]] == [float(i % 6) for i in range(12)]
    from transformers import BertForSequenceClassification, BertTokenizerFast

    ref = BertForSequenceClassification.from_pretrained(model_dir).eval()
    tok = BertTokenizerFast(vocab=str(model_dir / "vocab.txt"))
    with torch.no_grad():
        score = ref(**tok(pairs[3][0], pairs[3][1], return_tensors="pt")).logits[0, 0].item()
    assert float(lines[4].split(",")[0]) == pytest.approx(score, abs=1e-5)

    data = tmp_path / "mine"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(json.dumps({"t": s, "y": ["neg", "pos", "mid"][i % 3]}) + "\n"
                                             for i, s in enumerate(_sentences(10, 3))), encoding="utf-8")
    code = main(["predict", "--model", str(tiny_bert(num_labels=3)), "--task", "custom", "--data-dir", str(data),
                 "--text-column", "t", "--label-column", "y", "--split", "test", "--out",
                 str(tmp_path / "mine.tsv"), "--no-progress"])
    assert code == 0 and "wrote 10 rows" in capsys.readouterr().err
    got = read_softmax(tmp_path / "mine.tsv")
    assert got.k == 3 and got.label.tolist() == [[1, 2, 0][i % 3] for i in range(10)]  # sorted names
    assert got.meta["label_names"] == ["mid", "neg", "pos"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_predict_bad_input(tiny_bert: Callable[..., Path], sst_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    model = str(tiny_bert())
    out = tmp_path / "p.csv"
    base = ["predict", "--model", model, "--data-dir", str(sst_dir), "--out", str(out), "--no-progress"]
    assert main([*base, "--task", "SST-2"]) == 0
    before = out.read_bytes()
    capsys.readouterr()

    def fails(argv: list[str], expect: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expect in err and len(err.strip().splitlines()) == 1, err

    # An existing prediction file is never replaced without --overwrite; with it, a failing run
    # still leaves the earlier result alone (checked at the end).
    fails([*base, "--task", "SST-2"], f"{out}: --out already exists: use --overwrite")
    base.append("--overwrite")
    fails([*base, "--task", "SST-3"], "unknown task 'SST-3'")
    fails([*base, "--task", "MNLI"], "no dev_matched.tsv for task MNLI")
    fails([*base, "--task", "SST-2", "--split", "train"], "no train.tsv")
    fails(["predict", "--model", model, "--data-dir", str(sst_dir), "--task", "SST-2", "--out",
           str(tmp_path / "p.txt")], "--out must end in .csv, .tsv or .parquet")
    fails([*base[:2], str(tmp_path / "nope"), *base[3:], "--task", "SST-2"], "model directory does not exist")
    # a 3-label head cannot serve a 2-label task
    fails(["predict", "--model", str(tiny_bert(num_labels=3)), *base[3:], "--task", "SST-2"],
          "classifier has 3 output(s) but the task needs 2")
    bad = sst_dir / "SST-2" / "dev.tsv"
    bad.write_text(bad.read_text(encoding="utf-8") + "odd row\t7\n", encoding="utf-8")
    fails([*base, "--task", "SST-2"], f"{bad}, row 47: unknown label '7'")
    assert out.read_bytes() == before  # failed runs left the earlier result alone
