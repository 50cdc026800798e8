"""Bad inputs of ``export`` and ONNX directories where a PyTorch model is needed (issue 12): one line
on stderr naming what is wrong, exit 2, no traceback, nothing written where the output would have
gone, and neither the source model nor the ONNX directory changed (the matrix of
``test_bad_inputs.py``, for the commands and inputs this issue adds)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.models import export_onnx, load_classifier
from distill_helpers import write_sst2
from input_helpers import occupied_places

TRAINING_NEEDS = "is an ONNX export; training needs a PyTorch model directory"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Callable[..., Path], minilm_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("onnx_bad")
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    no_tok = root / "no_tokenizer"
    shutil.copytree(t, no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (no_tok / name).unlink(missing_ok=True)
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"a plain sentence number {i} for the corpus.\n" for i in range(20)))
    return {"t": t, "onnx": export_onnx(t, root / "tiny-onnx"), "corpus": corpus, "no_tok": no_tok, "bare": minilm_dir,
            "data": write_sst2(root, 24, 12, real=False), "nowhere": root / "nowhere"}


@pytest.fixture
def case_env(env: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {**env, **occupied_places(tmp_path), "outs": tmp_path / "outs"}


def _x(e: dict[str, Any], *extra: Any, model: str = "t", out: Any = None) -> list[Any]:
    return ["export", "--model", e[model], "--out", out if out is not None else e["outs"] / "x", *extra]


CASES: list[tuple[str, Callable[[dict[str, Any]], list[Any]], str]] = [
    ("export: model missing", lambda e: _x(e, model="nowhere"), "does not exist"),
    ("export: no tokenizer", lambda e: _x(e, model="no_tok"), "no tokenizer"),
    ("export: unknown --quantize", lambda e: _x(e, "--quantize", "int4"), "--quantize must be int8"),
    ("export: --quantize fp16", lambda e: _x(e, "--quantize", "fp16"), "got 'fp16'"),
    ("export: unknown --format", lambda e: _x(e, "--format", "tflite"), "--format must be onnx, got 'tflite'"),
    ("export: --out non-empty", lambda e: _x(e, out=e["full"]), "--overwrite"),
    ("export: --out a file", lambda e: _x(e, out=e["file"]), "is a file"),
    ("export: source is an ONNX export", lambda e: _x(e, model="onnx"), "already an ONNX export"),
    ("export: bare encoder", lambda e: _x(e, model="bare"), "no trained classifier head"),
    ("finetune: ONNX model", lambda e: ["finetune", "--task", "sst2", "--model", e["onnx"], "--data-dir", e["data"],
                                        "--out", e["outs"] / "f"], TRAINING_NEEDS),
    ("distill: ONNX student", lambda e: ["distill", "--task", "sst2", "--teacher", e["t"], "--student", e["onnx"],
                                         "--data-dir", e["data"], "--out", e["outs"] / "d"], TRAINING_NEEDS),
    ("distill: ONNX teacher", lambda e: ["distill", "--task", "sst2", "--teacher", e["onnx"], "--student", e["t"],
                                         "--data-dir", e["data"], "--out", e["outs"] / "d"], TRAINING_NEEDS),
    ("general-distill: ONNX teacher", lambda e: ["general-distill", "--teacher", e["onnx"], "--corpus", e["corpus"],
                                                 "--layers", "1", "--hidden", "32", "--heads", "2", "--intermediate",
                                                 "64", "--device", "cpu", "--out", e["outs"] / "g"], TRAINING_NEEDS),
    ("make-student: ONNX source", lambda e: ["make-student", "--from", e["onnx"], "--layers", "1", "--out",
                                             e["outs"] / "s"], TRAINING_NEEDS),
    ("predict: ONNX on cuda", lambda e: ["predict", "--no-progress", "--model", e["onnx"], "--task", "SST-2",
                                         "--data-dir", e["data"], "--device", "cuda", "--out", e["outs"] / "p.csv"],
     "run on the CPU"),
]


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("what", "build", "needle"), CASES, ids=[w for w, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        what: str, build: Callable[[dict[str, Any]], list[Any]], needle: str, case_env: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    e = case_env
    before = _snapshot(e["onnx"], e["t"], e["full"], e["file"].parent)
    capsys.readouterr()
    try:
        rc = main([str(a) for a in build(e)])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if not x.startswith(("Writing model shards", "\r"))]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines and needle in lines[-1], (needle, err)
    assert len([x for x in lines if "error" in x]) == 1, err
    assert not e["outs"].exists() or not any(e["outs"].iterdir()), sorted(map(str, e["outs"].rglob("*")))
    assert _snapshot(e["onnx"], e["t"], e["full"], e["file"].parent) == before


def test_load_classifier_refuses_an_onnx_dir_in_one_line(env: dict[str, Any]) -> None:
    with pytest.raises(InputError) as info:
        load_classifier(env["onnx"])
    assert str(info.value) == f"{env['onnx']} {TRAINING_NEEDS} (the one it was exported from)"
    assert "\n" not in str(info.value)
