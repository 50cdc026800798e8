"""The bad-input matrix (issue 10, docs/reliability.md): for every command that writes, each bad
input is one line on stderr naming what is wrong, exit 2, no traceback, no "internal error", and
nothing written where the output would have gone.

(``analyze`` has its own matrix in its tests.) Each case is ``(command, what, argv builder, needle)``;
the builder gets the prepared inputs (tiny models, data, an existing non-empty folder, a file…).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confdistill.cli.main import main
from confdistill.delimited import FIELD_LIMIT
from distill_helpers import write_sst2
from input_helpers import ONE_EPOCH, occupied_places, other_vocab_copy, tiny_experiment


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Callable[..., Path]) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad_inputs")
    data = write_sst2(root, 24, 12, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    other = other_vocab_copy(t, root / "other_vocab")
    bad_data = root / "bad_glue"
    shutil.copytree(data, bad_data)
    dev = bad_data / "SST-2" / "dev.tsv"
    dev.write_text(dev.read_text() + "odd row\t7\n")

    def toml(name: str, *, stage2: str = ONE_EPOCH, extra: str = "", teacher: Path = t,
             kappa: str = "kappa = 0.05") -> Path:
        return tiny_experiment(root / f"{name}.toml", out=root / ("exp-" + name), data=data, teacher=teacher,
                               stage1=None, stage2=stage2, kappa=kappa, extra=extra)

    tomls = {
        "good": toml("good"),
        "nokappa": toml("nokappa", kappa=""),
        "bs0": toml("bs0", stage2="num_train_epochs = 1.0, train_batch_size = 0"),
        "neg": toml("neg", stage2="num_train_epochs = -1.0, train_batch_size = 8"),
        "unknown_key": toml("unknown_key", stage2="num_train_epochs = 1.0, learning_rat = 1e-4"),
        "bad_type": toml("bad_type", stage2="num_train_epochs = \"three\""),
        "no_teacher": toml("no_teacher", teacher=root / "nowhere"),
        "bad_max_length": toml("bad_max_length", extra="[analysis]\nn_bootstrap = -5"),
    }
    broken = root / "broken.toml"
    broken.write_text("[experiment\nname = ")
    tomls["broken"] = broken
    return {"root": root, "data": data, "bad_data": bad_data, "t": t, "t3": tiny_bert(num_labels=3),
            "other": other, "toml": tomls, "nowhere": root / "nowhere", **_damaged_inputs(root, data, t)}


def _damaged_inputs(root: Path, data: Path, t: Path) -> dict[str, Path]:
    """A model whose config.json has a wrong type, one whose weights are garbled, softmax files (one
    with a 1,000,000-character garbage line) and GLUE data whose dev split has a field beyond the limit."""
    bad_config, garbled = root / "bad_config", root / "garbled"
    for folder in (bad_config, garbled):
        shutil.copytree(t, folder)
    config = json.loads((bad_config / "config.json").read_text())
    (bad_config / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "one"}))
    (garbled / "model.safetensors").write_bytes(b"\xff" * 64)
    preds, long_line = root / "preds.csv", root / "long_line.csv"
    preds.write_text("pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n")
    long_line.write_text(preds.read_text() + "x" * 1_000_000 + "\n")
    huge = root / "huge_field"
    shutil.copytree(data, huge)
    with open(huge / "SST-2" / "dev.tsv", "a") as fh:
        fh.write("a" * (FIELD_LIMIT + 1) + "\t1\n")
    return {"bad_config": bad_config, "garbled": garbled, "preds": preds, "long_line": long_line, "huge_field": huge}


#: Python's own limit on a CSV field. The csv module's limit is process-wide state that one reader
#: may raise for the rest of the process (general-distill's corpus reader does): each case starts
#: from the default, as a fresh process would.
CSV_DEFAULT_FIELD_LIMIT = 131_072


@pytest.fixture(autouse=True)
def fresh_csv_limit() -> None:
    csv.field_size_limit(CSV_DEFAULT_FIELD_LIMIT)


@pytest.fixture
def case_env(env: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Per case: a fresh non-empty folder, file, existing prediction file and folder named like a file."""
    places = occupied_places(tmp_path)
    (tmp_path / "existing.csv").write_text("pred,p0,p1,label\n0,0.9,0.1,0\n")
    (tmp_path / "folder.csv").mkdir()
    return {**env, **places, "here": tmp_path, "outs": tmp_path / "outs"}


def _out(e: dict[str, Any], name: str) -> Path:
    return e["outs"] / name


_MS = ["make-student", "--from"]
_D = ["distill", "--task", "sst2"]
_F = ["finetune", "--task", "sst2"]
_P = ["predict", "--no-progress"]


def _d(e: dict[str, Any], *extra: Any, out: str = "d") -> list[Any]:
    return [*_D, "--teacher", e["t"], "--student", e["t"], "--data-dir", e["data"], "--out", _out(e, out), *extra]


def _f(e: dict[str, Any], *extra: Any, out: str = "f") -> list[Any]:
    return [*_F, "--model", e["t"], "--data-dir", e["data"], "--out", _out(e, out), *extra]


def _p(e: dict[str, Any], *extra: Any, out: str = "p.csv", task: str = "SST-2") -> list[Any]:
    return [*_P, "--model", e["t"], "--task", task, "--data-dir", e["data"], "--out", _out(e, out), *extra]


def _a(e: dict[str, Any], *extra: Any) -> list[Any]:
    return ["augment", "--task", "SST-2", "--data-dir", e["data"], "--model", e["t"], "--out",
            _out(e, "a.tsv"), *extra]


def _table(e: dict[str, Any], *extra: Any) -> list[Any]:
    return ["table", "--root", e["here"], "--teacher", "A=T", "--student", "S", "--out", _out(e, "rq1"), *extra]


def _g(e: dict[str, Any], *shape: Any) -> list[Any]:
    return ["general-distill", "--teacher", e["t"], "--corpus", e["data"] / "SST-2" / "train.tsv", "--text-column",
            "sentence", "--out", _out(e, "g"), *shape]


def _an(e: dict[str, Any], *extra: Any, teacher: str = "preds") -> list[Any]:
    return ["analyze", "--teacher", e[teacher], "--student", e["preds"], "--kappa", "0.05", "--out", _out(e, "an"),
            *extra]


def _tune(e: dict[str, Any], toml: str = "good", *extra: Any) -> list[Any]:
    return ["tune", e["toml"][toml], "--trials", "1", "--out", _out(e, "tune"), *extra]


CASES: list[tuple[str, str, Callable[[dict[str, Any]], list[Any]], str]] = [
    # make-student
    ("make-student", "source missing", lambda e: [*_MS, e["nowhere"], "--layers", "1", "--out", _out(e, "s")],
     "does not exist"),
    ("make-student", "source is a file", lambda e: [*_MS, e["file"], "--layers", "1", "--out", _out(e, "s")], "afile"),
    ("make-student", "0 layers", lambda e: [*_MS, e["t"], "--layers", "0", "--out", _out(e, "s")], "--layers"),
    ("make-student", "deeper than source", lambda e: [*_MS, e["t"], "--layers", "9", "--out", _out(e, "s")],
     "exceeds"),
    ("make-student", "heads not dividing", lambda e: [*_MS, e["t"], "--layers", "1", "--hidden", "30", "--heads", "4",
                                                      "--out", _out(e, "s")], "must divide"),
    ("make-student", "negative hidden", lambda e: [*_MS, e["t"], "--layers", "1", "--hidden", "-4", "--out",
                                                   _out(e, "s")], "positive"),
    ("make-student", "0 labels", lambda e: [*_MS, e["t"], "--layers", "1", "--num-labels", "0", "--out",
                                            _out(e, "s")], "--num-labels"),
    ("make-student", "--out non-empty", lambda e: [*_MS, e["t"], "--layers", "1", "--out", e["full"]], "--overwrite"),
    ("make-student", "--out a file", lambda e: [*_MS, e["t"], "--layers", "1", "--out", e["file"]], "is a file"),
    ("make-student", "--out inside a file", lambda e: [*_MS, e["t"], "--layers", "1", "--out", e["file"] / "x"],
     "is a file"),
    ("make-student", "--out is --from", lambda e: [*_MS, e["t"], "--layers", "1", "--out", e["t"]], "must differ"),
    ("make-student", "--layers not a number", lambda e: [*_MS, e["t"], "--layers", "two", "--out", _out(e, "s")],
     "invalid int"),
    ("make-student", "a billion labels", lambda e: [*_MS, e["t"], "--layers", "1", "--num-labels", "1000000000",
                                                    "--out", _out(e, "s")], "--num-labels 1,000,000,000 exceeds the bound 10,000"),
    ("make-student", "a wrong type in config.json", lambda e: [*_MS, e["bad_config"], "--layers", "1", "--out",
                                                               _out(e, "s")], "config.json: invalid model configuration: Field 'num_hidden_layers'"),
    # general-distill (the teacher: 2 layers, width 32, 2 heads, feed-forward 64)
    ("general-distill", "wider than the teacher", lambda e: _g(e, "--layers", "1", "--hidden", "64", "--heads", "2",
                                                               "--intermediate", "64"), "--hidden 64 exceeds the teacher's 32"),
    ("general-distill", "other heads", lambda e: _g(e, "--layers", "1", "--hidden", "32", "--heads", "4",
                                                    "--intermediate", "64"), "--heads 4"),
    ("general-distill", "sliced, feed-forward wider", lambda e: _g(e, "--layers", "1", "--hidden", "32", "--heads", "2",
                                                                   "--intermediate", "128", "--encoder-init", "sliced"),
     "--intermediate 128 exceeds the teacher's 64"),
    ("general-distill", "feed-forward beyond the bound", lambda e: _g(e, "--layers", "1", "--hidden", "32", "--heads",
                                                                      "2", "--intermediate", "1000000"),
     "--intermediate 1,000,000 exceeds the bound"),
    # distill
    ("distill", "teacher missing", lambda e: [*_D, "--teacher", e["nowhere"], "--student", e["t"], "--data-dir",
                                              e["data"], "--out", _out(e, "d")], "does not exist"),
    ("distill", "student missing", lambda e: [*_D, "--teacher", e["t"], "--student", e["nowhere"], "--data-dir",
                                              e["data"], "--out", _out(e, "d")], "does not exist"),
    ("distill", "unknown task", lambda e: ["distill", "--task", "SST-3", "--teacher", e["t"], "--student", e["t"],
                                           "--data-dir", e["data"], "--out", _out(e, "d")], "unknown task"),
    ("distill", "data dir missing", lambda e: [*_D, "--teacher", e["t"], "--student", e["t"], "--data-dir",
                                               e["nowhere"], "--out", _out(e, "d")], "nowhere"),
    ("distill", "bad row in dev", lambda e: [*_D, "--teacher", e["t"], "--student", e["t"], "--data-dir",
                                             e["bad_data"], "--out", _out(e, "d")], "unknown label '7'"),
    ("distill", "negative epochs", lambda e: _d(e, "--epochs", "-1"), "must be > 0"),
    ("distill", "batch size 0", lambda e: _d(e, "--batch-size", "0"), "--train-batch-size: must be >= 1"),
    ("distill", "temperature 0", lambda e: _d(e, "--temperature", "0"), "--temperature"),
    ("distill", "alpha 2", lambda e: _d(e, "--alpha", "2"), "--alpha"),
    ("distill", "lambda -1", lambda e: _d(e, "--lambda-conf", "-1"), "--lambda-conf"),
    ("distill", "unknown mapping", lambda e: _d(e, "--layer-mapping", "middle"), "argument --layer-mapping: expected one of 'uniform', 'top' or 'bottom', got 'middle'"),
    ("distill", "max length 1000", lambda e: _d(e, "--max-seq-length", "1000"), "--max-seq-length"),
    ("distill", "warm-up 1.5", lambda e: _d(e, "--warmup-proportion", "1.5"), "--warmup-proportion"),
    ("distill", "eval step 0", lambda e: _d(e, "--eval-step", "0"), "--eval-step"),
    ("distill", "aug-train missing", lambda e: _d(e, "--aug-train", e["nowhere"]), "--aug-train"),
    ("distill", "vocabularies differ", lambda e: [*_D, "--teacher", e["t"], "--student", e["other"], "--data-dir",
                                                  e["data"], "--out", _out(e, "d")], "different vocabularies"),
    ("distill", "--out non-empty", lambda e: [*_d(e)[:-1], e["full"]], "--resume to continue it"),
    ("distill", "--out a file", lambda e: [*_d(e)[:-1], e["file"]], "is a file"),
    ("distill", "--resume and --overwrite", lambda e: _d(e, "--resume", "--overwrite"), "not both"),
    # finetune
    ("finetune", "model missing", lambda e: [*_F, "--model", e["nowhere"], "--data-dir", e["data"], "--out",
                                             _out(e, "f")], "does not exist"),
    ("finetune", "unknown task", lambda e: ["finetune", "--task", "XNLI", "--model", e["t"], "--data-dir", e["data"],
                                            "--out", _out(e, "f")], "unknown task"),
    ("finetune", "data dir missing", lambda e: [*_F, "--model", e["t"], "--data-dir", e["nowhere"], "--out",
                                                _out(e, "f")], "nowhere"),
    ("finetune", "learning rate 0", lambda e: _f(e, "--learning-rate", "0"), "--learning-rate"),
    ("finetune", "epochs 0", lambda e: _f(e, "--epochs", "0"), "--num-train-epochs: must be > 0"),
    ("finetune", "checkpoint steps 0", lambda e: _f(e, "--checkpoint-steps", "0"), "--checkpoint-steps"),
    ("finetune", "3-label head, 2-label task", lambda e: [*_F, "--model", e["t3"], "--data-dir", e["data"], "--out",
                                                          _out(e, "f")], "3 output(s)"),
    ("finetune", "--out non-empty", lambda e: [*_f(e)[:-1], e["full"]], "--overwrite"),
    ("finetune", "--out a file", lambda e: [*_f(e)[:-1], e["file"]], "is a file"),
    ("finetune", "unknown --best-metric", lambda e: _f(e, "--best-metric", "nosuch"),
     "--best-metric must be one of accuracy"),
    # predict
    ("predict", "unknown task", lambda e: _p(e, task="SST-3"), "unknown task"),
    ("predict", "split missing", lambda e: _p(e, "--split", "test"), "no test"),
    ("predict", "bad extension", lambda e: _p(e, out="p.txt"), "must end in"),
    ("predict", "model missing", lambda e: [*_P, "--model", e["nowhere"], "--task", "SST-2", "--data-dir", e["data"],
                                            "--out", _out(e, "p.csv")], "does not exist"),
    ("predict", "3-label head", lambda e: [*_P, "--model", e["t3"], "--task", "SST-2", "--data-dir", e["data"],
                                           "--out", _out(e, "p.csv")], "3 output(s)"),
    ("predict", "bad row", lambda e: [*_P, "--model", e["t"], "--task", "SST-2", "--data-dir", e["bad_data"],
                                      "--out", _out(e, "p.csv")], "unknown label '7'"),
    ("predict", "batch size 0", lambda e: _p(e, "--eval-batch-size", "0"), "--eval-batch-size"),
    ("predict", "max length 2", lambda e: _p(e, "--max-seq-length", "2"), "--max-seq-length"),
    ("predict", "max length beyond the model", lambda e: _p(e, "--max-seq-length", "4096"), "position embeddings"),
    ("predict", "--out a folder", lambda e: [*_p(e)[:-1], e["here"] / "folder.csv"], "is a directory"),
    ("predict", "--out exists", lambda e: [*_p(e)[:-1], e["here"] / "existing.csv"], "--overwrite"),
    ("predict", "custom without columns", lambda e: _p(e, task="custom"), "--text-column"),
    ("predict", "--out ''", lambda e: [*_p(e)[:-1], ""], "argument --out: expected a path, got an empty string"),
    ("predict", "a wrong type in config.json", lambda e: [*_P, "--model", e["bad_config"], "--task", "SST-2",
                                                          "--data-dir", e["data"], "--out", _out(e, "p.csv")],
     "config.json: invalid model configuration: Field 'num_hidden_layers'"),
    ("predict", "a field beyond 16 MiB", lambda e: [*_P, "--model", e["t"], "--task", "SST-2", "--data-dir",
                                                    e["huge_field"], "--out", _out(e, "p.csv")],
     "dev.tsv: a field longer than 16,777,216 characters, the limit per field (line 14)"),
    # augment
    ("augment", "negative variants", lambda e: _a(e, "--n-aug", "-1"), "--n-aug"),
    ("augment", "probability 1.5", lambda e: _a(e, "--p", "1.5"), "--p"),
    ("augment", "top-k 0", lambda e: _a(e, "--top-k", "0"), "--top-k"),
    ("augment", "unknown task", lambda e: ["augment", "--task", "SST-3", "--data-dir", e["data"], "--model", e["t"]],
     "unknown task"),
    ("augment", "data dir missing", lambda e: ["augment", "--task", "SST-2", "--data-dir", e["nowhere"], "--model",
                                               e["t"]], "nowhere"),
    ("augment", "model missing", lambda e: ["augment", "--task", "SST-2", "--data-dir", e["data"], "--model",
                                            e["nowhere"], "--out", _out(e, "a.tsv")], "nowhere"),
    ("augment", "--out is the train file", lambda e: [*_a(e)[:-1], e["data"] / "SST-2" / "train.tsv"],
     "original train file"),
    ("augment", "--out exists", lambda e: [*_a(e)[:-1], e["file"]], "--overwrite"),
    ("augment", "--out a folder", lambda e: [*_a(e)[:-1], e["full"]], "is a folder"),
    ("augment", "garbled model.safetensors", lambda e: ["augment", "--task", "SST-2", "--data-dir", e["data"],
                                                        "--model", e["garbled"], "--out", _out(e, "a.tsv")],
     "model.safetensors: unreadable weights file"),
    # table
    ("table", "root missing", lambda e: ["table", "--root", e["nowhere"], "--teacher", "A=T", "--student", "S",
                                         "--out", _out(e, "rq1")], "--root"),
    ("table", "teacher not TASK=MODEL", lambda e: ["table", "--root", e["here"], "--teacher", "A", "--student", "S",
                                                   "--out", _out(e, "rq1")], "TASK=MODEL"),
    ("table", "negative kappa", lambda e: _table(e, "--kappa", "-1"), "--kappa"),
    ("table", "negative bootstrap", lambda e: _table(e, "--bootstrap", "-1"), "--bootstrap"),
    ("table", "temperature below 1", lambda e: _table(e, "--temperature", "0.5"), "--temperature"),
    ("table", "--out a file", lambda e: [*_table(e)[:-1], e["file"]], "is a file"),
    ("table", "--out non-empty", lambda e: [*_table(e)[:-1], e["full"]], "--overwrite"),
    ("table", "threshold 1.5", lambda e: _table(e, "--threshold", "1.5"), "--threshold: expected a probability"),
    # analyze (more cases in test_cli_analyze.py)
    ("analyze", "--worst 1e20", lambda e: _an(e, "--worst", str(10**20)), "--worst: expected a number of rows"),
    ("analyze", "--teacher ''", lambda e: [*_an(e)[:2], "", *_an(e)[3:]], "argument --teacher: expected a path"),
    ("analyze", "a 1,000,000-character line", lambda e: _an(e, teacher="long_line"), "long_line.csv, row 3"),
    # run
    ("run", "file missing", lambda e: ["run", e["nowhere"], "--out", _out(e, "run")], "not found"),
    ("run", "not TOML", lambda e: ["run", e["toml"]["broken"], "--out", _out(e, "run")], "not valid TOML"),
    ("run", "unknown stage key", lambda e: ["run", e["toml"]["unknown_key"], "--out", _out(e, "run")], "learning_rat"),
    ("run", "wrong type", lambda e: ["run", e["toml"]["bad_type"], "--out", _out(e, "run")], "expected a number"),
    ("run", "teacher missing", lambda e: ["run", e["toml"]["no_teacher"], "--out", _out(e, "run")], "nowhere"),
    ("run", "stage-2 batch size 0", lambda e: ["run", e["toml"]["bs0"], "--out", _out(e, "run")], "stage2.train_batch_size: must be >= 1"),
    ("run", "negative epochs", lambda e: ["run", e["toml"]["neg"], "--out", _out(e, "run")], "must be > 0"),
    ("run", "bad analysis setting", lambda e: ["run", e["toml"]["bad_max_length"], "--out", _out(e, "run")], "n_bootstrap"),
    ("run", "--out non-empty", lambda e: ["run", e["toml"]["good"], "--out", e["full"]], "--overwrite"),
    ("run", "--out a file", lambda e: ["run", e["toml"]["good"], "--out", e["file"]], "is a file"),
    # tune
    ("tune", "kappa -1", lambda e: _tune(e, "good", "--kappa", "-1"), "--kappa"),
    ("tune", "no tolerance", lambda e: _tune(e, "nokappa"), "--kappa: tune needs a tolerance"),
    ("tune", "trials 0", lambda e: ["tune", e["toml"]["good"], "--trials", "0", "--out", _out(e, "tune")], "--trials"),
    ("tune", "epsilon -0.1", lambda e: _tune(e, "good", "--epsilon", "-0.1"), "--epsilon"),
    ("tune", "epsilon 1.5", lambda e: _tune(e, "good", "--epsilon", "1.5"), "--epsilon"),
    ("tune", "negative lambda choice", lambda e: _tune(e, "good", "--lambda-choices", "0,-1"), "--lambda-choices"),
    ("tune", "negative compare-lambda", lambda e: _tune(e, "good", "--compare-lambda", "-1"), "--compare-lambda"),
    ("tune", "stage-2 batch size 0", lambda e: _tune(e, "bs0"), "stage2.train_batch_size: must be >= 1"),
    ("tune", "negative epochs", lambda e: _tune(e, "neg"), "must be > 0"),
    ("tune", "unknown task", lambda e: _tune(e, "good", "--task", "RTE"), "--task"),
    ("tune", "unknown student", lambda e: _tune(e, "good", "--student", "L9"), "--student"),
    ("tune", "aug-train missing", lambda e: _tune(e, "good", "--aug-train", e["nowhere"]), "--aug-train"),
    ("tune", "aug-train and make-aug", lambda e: _tune(e, "good", "--aug-train", e["file"], "--make-aug"), "not both"),
    ("tune", "--out a file", lambda e: ["tune", e["toml"]["good"], "--trials", "1", "--out", e["file"]], "is a file"),
    ("tune", "--out non-empty", lambda e: ["tune", e["toml"]["good"], "--trials", "1", "--out", e["full"]],
     "not empty"),
    ("tune", "--storage bogus://", lambda e: _tune(e, "good", "--storage", "bogus://x"),
     "--storage bogus://x: unsupported database 'bogus'"),
    # demo
    ("demo", "data dir without task", lambda e: ["demo", "--data-dir", e["data"], "--out", _out(e, "demo")],
     "go together"),
    ("demo", "negative max-train", lambda e: ["demo", "--max-train", "-1", "--out", _out(e, "demo")], "--max-train"),
    ("demo", "--out a file", lambda e: ["demo", "--out", e["file"]], "is a file"),
    ("demo", "--out non-empty", lambda e: ["demo", "--out", e["full"]], "--overwrite"),
    ("demo", "unknown --task", lambda e: ["demo", "--task", "FOO", "--data-dir", e["data"], "--out", _out(e, "demo")],
     "--task: unknown task 'FOO'"),
]


@pytest.mark.parametrize(("command", "what", "build", "needle"), CASES,
                         ids=[f"{c}: {w}" for c, w, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        command: str, what: str, build: Callable[[dict[str, Any]], list[Any]], needle: str,
        case_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    env = case_env
    argv = [str(a) for a in build(env)]
    before = {p: p.read_bytes() for p in (env["file"], env["full"] / "notes.txt", env["here"] / "existing.csv")}
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if not x.startswith(("Writing model shards", "\r"))]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines and needle in lines[-1], (needle, err)
    assert len([x for x in lines if "error" in x]) == 1, err
    outs = env["outs"]
    assert not outs.exists() or not any(outs.iterdir()), sorted(map(str, outs.rglob("*")))
    assert {p: p.read_bytes() for p in before} == before and sorted(x.name for x in env["full"].iterdir()) == ["notes.txt"]


def _path_arguments() -> list[tuple[str, str]]:
    """(sub-command, flag) of every argument that names a file or folder."""
    import argparse

    from confdistill.cli.main import PATH_METAVARS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, (a.option_strings or [a.dest])[0]) for name, parser in sub.choices.items()
            for a in parser._actions if a.metavar in PATH_METAVARS]


def test_every_path_argument_refuses_an_empty_path(capsys: pytest.CaptureFixture[str]) -> None:
    """'' is not the current folder: each path argument of each command is a usage error naming it."""
    args = _path_arguments()
    named = {(c, f) for c, f in args}
    # the arguments the issue found, and a few of every kind, are among them
    assert {("predict", "--out"), ("analyze", "--teacher"), ("analyze", "--out"), ("run", "experiment"),
            ("augment", "--model"), ("augment", "--out"), ("distill", "--aug-train"), ("table", "--root"),
            ("general-distill", "--corpus"), ("export", "--model"), ("tune", "--data-dir")} <= named
    for command, flag in args:
        argv = [command, ""] if not flag.startswith("-") else [command, flag, ""]
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2, (command, flag, err)
        shown = "EXPERIMENT.toml" if flag == "experiment" else flag
        assert f"argument {shown}: expected a path, got an empty string" in err or f"argument {shown}/" in err, err


def test_long_fields_within_the_limit_are_read(env: dict[str, Any], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A 1,000,000-character sentence (predict) and id (analyze) are data, not errors (limit: 16 MiB)."""
    data = tmp_path / "glue"
    shutil.copytree(env["data"], data)
    long_text = "word " * 200_000
    with open(data / "SST-2" / "dev.tsv", "a") as fh:
        fh.write(f"{long_text}\t1\n")
    out = tmp_path / "p.csv"
    assert main(["predict", "--no-progress", "--model", str(env["t"]), "--task", "SST-2", "--data-dir", str(data),
                 "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 12 + 1  # header, the 12 dev rows and the long one
    ids = tmp_path / "ids.csv"
    ids.write_text("id,pred,p0,p1,label\na,0,0.9,0.1,0\n" + "i" * 1_000_000 + ",1,0.2,0.8,1\n")
    capsys.readouterr()
    assert main(["analyze", "--teacher", str(ids), "--student", str(ids), "--kappa", "0.05", "--json",
                 str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["n"] == 2
