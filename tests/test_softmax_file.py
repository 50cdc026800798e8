"""Softmax output files: round trips, the research format, and every bad-input case."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from confdistill.errors import InputError
from confdistill.prediction.softmax_file import (
    SoftmaxFormatWarning,
    read_softmax,
    sidecar_path,
    write_softmax,
)

GOOD = "pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n1,0.4,0.6,0\n"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _random_probs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs.astype(np.float32), rng.integers(0, k, size=n)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("k", [2, 3])
def test_round_trip(tmp_path: Path, ext: str, k: int) -> None:
    probs, labels = _random_probs(50, k)
    ids = [f"ex-{i}" for i in range(50)]
    meta = {"model": "m", "task": "SST-2", "split": "train"}
    path = write_softmax(tmp_path / f"out{ext}", probs, labels, ids=ids, meta=meta)
    out = read_softmax(path)
    # float32 outputs are stored exactly (widened to float64, shortest round-trip text).
    assert np.array_equal(out.probs, probs.astype(np.float64))
    assert out.probs.dtype == np.float64 and out.pred.dtype == np.int64 and out.label.dtype == np.int64
    assert np.array_equal(out.pred, np.argmax(probs, axis=1))
    assert np.array_equal(out.label, labels)
    assert list(out.ids) == ids
    assert out.meta["task"] == "SST-2" and out.meta["n_rows"] == 50 and out.meta["k"] == k
    assert sidecar_path(path) == tmp_path / f"out{ext}.meta.json"


def test_written_csv_is_the_research_format(tmp_path: Path) -> None:
    probs = np.array([[0.75, 0.25], [0.125, 0.875]])
    path = write_softmax(tmp_path / "eval_results.csv", probs, np.array([0, 1]))
    assert path.read_text() == "pred,p0,p1,label\n0,0.75,0.25,0\n1,0.125,0.875,1\n"
    assert not sidecar_path(path).exists()


def test_stale_sidecar_removed_and_failed_write_keeps_old_file(tmp_path: Path) -> None:
    path = write_softmax(tmp_path / "a.csv", np.array([[0.5, 0.5]]), np.array([0]), meta={"model": "old"})
    before = path.read_bytes()
    with pytest.raises(InputError, match="non-finite"):
        write_softmax(path, np.array([[np.nan, 0.5]]), np.array([0]))
    assert path.read_bytes() == before and sidecar_path(path).exists()
    write_softmax(path, np.array([[0.25, 0.75]]), np.array([1]))
    assert not sidecar_path(path).exists()  # described the old data
    assert read_softmax(path).probs.tolist() == [[0.25, 0.75]]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    plain = read_softmax(_write(tmp_path / "a.csv", GOOD))
    bom = read_softmax(_write(tmp_path / "b.csv", "\ufeff" + GOOD))
    assert np.array_equal(plain.probs, bom.probs) and np.array_equal(plain.label, bom.label)


def test_tsv_and_id_column(tmp_path: Path) -> None:
    out = read_softmax(_write(tmp_path / "a.tsv", "id\tpred\tp0\tp1\tlabel\nx\t0\t0.9\t0.1\t0\ny\t1\t0.3\t0.7\t0\n"))
    assert list(out.ids) == ["x", "y"] and out.label.tolist() == [0, 0]


def test_pred_not_argmax_warns_but_near_tie_does_not(tmp_path: Path) -> None:
    with pytest.warns(SoftmaxFormatWarning, match="row 2"):
        out = read_softmax(_write(tmp_path / "a.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n0,0.2,0.8,1\n"))
    assert out.pred.tolist() == [0, 0]  # pred is kept as written
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_softmax(_write(tmp_path / "b.csv", "pred,p0,p1,label\n1,0.5,0.5,1\n0,0.50000001,0.49999999,0\n"
                            "1,0.5000000298023224,0.4999999701976776,1\n"))


def test_paper_file_matches_python_float_parsing(paper_outputs: Path) -> None:
    import csv

    path = paper_outputs / "bert-base-uncased-rte" / "RTE_on_train" / "eval_results.csv"
    out = read_softmax(path)
    with open(path, newline="") as fh:  # reference: Python's own correctly rounded float()
        rows = list(csv.reader(fh))[1:]
    assert out.n == len(rows) == 2490
    assert np.array_equal(out.probs, np.array([[float(r[1]), float(r[2])] for r in rows]))
    assert out.pred.tolist() == [int(r[0]) for r in rows] and out.label.tolist() == [int(r[3]) for r in rows]


# Each case: file name, content, (regex the message must match), expected row (None = no row).
BAD = [
    ("empty.csv", "", "empty file", None),
    ("header_only.csv", "pred,p0,p1,label\n", "no data rows", None),
    ("missing_col.csv", "p0,p1,label\n0.9,0.1,0\n", "missing column.*pred", None),
    ("label_not_last.csv", "pred,label,p0,p1\n0,0,0.9,0.1\n", "columns out of order", None),
    ("extra_col.csv", "pred,p0,p1,label,score\n0,0.9,0.1,0,3\n", "unexpected column.*'score'", None),
    ("one_prob.csv", "pred,p0,label\n0,1.0,0\n", "k >= 2", None),
    ("semicolon.csv", "pred;p0;p1;label\n0;0.9;0.1;0\n", "semicolon-separated", None),
    ("comma.tsv", GOOD, "comma-separated", None),
    ("nan.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,nan,0.8,1\n", "non-finite", 2),
    ("inf.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n0,0.1,0.9,1\n1,0.2,inf,1\n", "non-finite", 3),
    ("above_one.csv", "pred,p0,p1,label\n0,1.2,-0.2,0\n", r"outside \[0, 1\]", 1),
    ("negative.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,-0.1,1.1,1\n", r"outside \[0, 1\]", 2),
    ("sum.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,0.3,0.6,1\n", "sum to 0.9", 2),
    ("text.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,abc,0.8,1\n", "expected a number, got 'abc'", 2),
    ("float_pred.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1.5,0.2,0.8,1\n", "expected an integer", 2),
    ("float_label.csv", "pred,p0,p1,label\n0,0.9,0.1,0.25\n", "'label': expected an integer", 1),
    ("blank.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,,0.8,1\n", "missing value", 2),
    ("short_row.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n0,0.1,0.9,1\n1,0.2,0.8\n", "expected 4 fields", 3),
    ("label_range.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,2\n", r"label 2 is not a class index", 2),
    ("dup_id.csv", "id,pred,p0,p1,label\na,0,0.9,0.1,0\nb,0,0.9,0.1,0\na,1,0.2,0.8,1\n", "duplicate id 'a'", 1),
]


@pytest.mark.parametrize(("name", "content", "pattern", "row"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(tmp_path: Path, name: str, content: str, pattern: str, row: int | None) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError, match=pattern) as info:
        read_softmax(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if row is not None:
        assert f"row {row}:" in message


def test_unlabelled_log_reads_without_label(tmp_path: Path) -> None:
    out = read_softmax(_write(tmp_path / "log.csv", "pred,p0,p1\n0,0.9,0.1\n1,0.25,0.75\n"))
    assert out.label is None and out.pred.tolist() == [0, 1]
    assert out.probs.tolist() == [[0.9, 0.1], [0.25, 0.75]]


def test_shards_read_in_name_order_and_errors_name_the_shard(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    _write(d / "part-1.csv", "pred,p0,p1,label\n1,0.2,0.8,1\n")
    _write(d / "part-0.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n0,0.6,0.4,1\n")
    out = read_softmax(d)
    assert out.pred.tolist() == [0, 0, 1] and out.label.tolist() == [0, 1, 1]
    assert read_softmax(str(d / "part-*.csv")).n == 3
    _write(d / "part-2.csv", "pred,p0,p1,label\n0,0.9,0.1,0\n1,0.3,0.6,1\n")
    with pytest.raises(InputError, match=r"part-2\.csv, row 2: probabilities sum to 0\.9"):
        read_softmax(d)
    with pytest.raises(InputError, match="glob matches no file"):
        read_softmax(str(d / "nothing-*.csv"))


def test_missing_file_and_bad_sidecar(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_softmax(tmp_path / "nope.csv")
    path = _write(tmp_path / "a.csv", GOOD)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(InputError, match=r"a\.csv\.meta\.json: sidecar is not valid JSON"):
        read_softmax(path)
    sidecar_path(path).write_text(json.dumps({"n_rows": 7}))
    with pytest.warns(SoftmaxFormatWarning, match="n_rows 7"):
        read_softmax(path)


def test_parquet_bad_types(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"pred": [0.0], "p0": [0.9], "p1": [0.1], "label": [0]}), path)
    with pytest.raises(InputError, match="'pred' must hold integer"):
        read_softmax(path)
    pq.write_table(pa.table({"pred": [0, 1], "p0": [0.9, None], "p1": [0.1, 0.8], "label": [0, 1]}), path)
    with pytest.raises(InputError, match="row 2: missing value in column 'p0'"):
        read_softmax(path)


def test_a_sidecar_of_other_predictions_is_ignored(tmp_path: Path) -> None:
    """The file and its sidecar are one unit: a sidecar whose file_sha256 is not the file's is not trusted."""
    probs, labels = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1])
    path = write_softmax(tmp_path / "a.csv", probs, labels, meta={"split": "train", "model": "m1"})
    assert json.loads(sidecar_path(path).read_text())["file_sha256"]
    assert read_softmax(path).meta["split"] == "train"
    path.write_text("pred,p0,p1,label\n0,0.7,0.3,0\n1,0.4,0.6,1\n")  # other predictions, old sidecar left
    with pytest.warns(SoftmaxFormatWarning, match="describes another file"):
        out = read_softmax(path)
    assert out.meta == {}
