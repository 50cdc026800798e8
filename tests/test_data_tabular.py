"""Users' own CSV/TSV/JSONL data and the shared CLI data options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from confdistill.data import (
    TableColumns,
    add_data_arguments,
    load_examples,
    load_examples_from_args,
    read_table,
)
from confdistill.errors import InputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    return parser


def test_csv_with_quotes_pairs_and_inferred_labels(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(
        'id,text,other,label\n1,"hello, ""world""",x,spam\n2,"two\nlines",y,ham\n3,plain,z,spam\n',
        encoding="utf-8")
    (tmp_path / "dev.csv").write_text("id,text,other,label\n9,only spam here,w,spam\n", encoding="utf-8")
    cols = TableColumns(text="text", label="label", text_pair="other")
    train = load_examples("custom", tmp_path, "train", columns=cols)
    assert train.task.label_names == ("ham", "spam") and train.task.num_labels == 2
    assert [(e.text_a, e.text_b, e.label, e.line) for e in train.examples] == [
        ('hello, "world"', "x", 1, 2), ("two\nlines", "y", 0, 3), ("plain", "z", 1, 5)]
    # dev has one class only: indices still come from train
    dev = load_examples("custom", tmp_path, "dev", columns=cols)
    assert dev.task.label_names == ("ham", "spam") and dev.examples[0].label == 1


def test_tsv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text('sentence\ty\n"no quoting\t10\nb\t2\n', encoding="utf-8")
    examples, spec = read_table(tmp_path / "a.tsv", TableColumns(text="sentence", label="y"))
    assert spec.label_names == ("2", "10")  # integer labels sorted numerically
    assert [(e.text_a, e.label) for e in examples] == [('"no quoting', 1), ("b", 0)]
    lines = [{"t": "x", "s": 1.5}, {"t": "y", "s": 0}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    split = load_examples("custom", tmp_path, "train", columns={"text": "t", "label": "s", "regression": True})
    assert split.task.is_regression and [e.label for e in split.examples] == [1.5, 0.0]
    assert split.task.num_labels == 1


def test_cli_arguments(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text("q,lab\nhi,neg\nho,pos\n", encoding="utf-8")
    args = _parser().parse_args(["--task", "custom", "--data-dir", str(tmp_path), "--text-column", "q",
                                 "--label-column", "lab", "--label-names", "pos,neg"])
    split = load_examples_from_args(args, "dev")
    assert split.task.label_names == ("pos", "neg") and [e.label for e in split.examples] == [1, 0]
    assert split.path == tmp_path / "dev.csv"
    args = _parser().parse_args(["--task", "SST-2", "--data-dir", str(tmp_path), "--text-column", "q"])
    with pytest.raises(InputError, match="--text-column apply to --task custom only"):
        load_examples_from_args(args, "dev")
    args = _parser().parse_args(["--task", "custom", "--data-dir", str(tmp_path)])
    with pytest.raises(InputError, match="needs --text-column and --label-column"):
        load_examples_from_args(args, "dev")


@pytest.mark.parametrize("name,content,expect", [
    ("dev.csv", "text,label\na,x\nb\n", "row 3: expected 2 columns"),
    ("dev.csv", "text,label\n", "split is empty"),
    ("dev.csv", "words,label\na,x\n", "missing column(s) 'text'"),
    ("dev.jsonl", '{"text": "a", "label": "x"}\n[1]\n', "row 2: expected a JSON object"),
    ("dev.jsonl", '{"text": "a", "label": "x"}\n{oops\n', "row 2: invalid JSON"),
])
def test_bad_tables(tmp_path: Path, name: str, content: str, expect: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_examples("custom", tmp_path, "dev", columns=TableColumns(text="text", label="label"))
    assert expect in str(err.value) and name in str(err.value)


def test_unknown_label_against_train(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,x\nb,y\n", encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,label\na,x\nb,z\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dev\.csv, row 3: unknown label 'z'"):
        load_examples("custom", tmp_path, "dev", columns=TableColumns(text="text", label="label"))
    with pytest.raises(InputError, match=r"no test\.csv"):
        load_examples("custom", tmp_path, "test", columns=TableColumns(text="text", label="label"))


def test_imports_stay_light() -> None:
    # The CLI imports these at start-up: torch/transformers/numpy must load only when a command runs.
    import subprocess
    import sys

    code = ("import sys, confdistill.data, confdistill.models, confdistill.cli.predict, "
            "confdistill.cli.make_student; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
