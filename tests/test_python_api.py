"""The Python API: the names ``confdistill`` exports (imported on first use, so ``import confdistill``
stays light), settings taking ``pathlib.Path``, errors naming fields from Python and options from the
command line (one wording), and the README's "From Python" snippet, run as written."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from confdistill.errors import InputError, option_names
from distill_helpers import one_thread, write_sst2

ROOT = Path(__file__).resolve().parent.parent
API = ("DistillConfig", "FinetuneConfig", "analyze_pair", "distill", "export_onnx", "finetune", "make_student",
       "predict_split")


def test_api_names_are_exported_lazily() -> None:
    code = ("import sys, confdistill; heavy = [m for m in ('torch', 'pydantic', 'numpy', 'typing') if m in sys.modules];"
            " import json; print(json.dumps([heavy, sorted(confdistill.__all__), dir(confdistill)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")}).stdout
    heavy, names, listed = json.loads(out)
    assert heavy == []  # importing the package loads none of them; the CLI starts as fast as before
    assert set(API) <= set(names) and set(API) <= set(listed)
    import confdistill
    from confdistill.distillation import config, trainer
    from confdistill.models.onnx_export import export_onnx
    from confdistill.models.student import make_student
    from confdistill.prediction.predict import predict_split
    from confdistill.properties.stream_analysis import analyze_pair

    expected = {"DistillConfig": config.DistillConfig, "FinetuneConfig": config.FinetuneConfig,
                "distill": trainer.distill, "finetune": trainer.finetune, "make_student": make_student,
                "predict_split": predict_split, "export_onnx": export_onnx, "analyze_pair": analyze_pair}
    for name, obj in expected.items():
        assert getattr(confdistill, name) is obj and obj.__doc__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        confdistill.nope  # noqa: B018


def test_settings_take_paths(tmp_path: Path) -> None:
    from confdistill import DistillConfig, FinetuneConfig
    from confdistill.distillation.general_config import GeneralConfig

    d = DistillConfig(teacher=tmp_path / "t", student=Path("s"), data_dir=tmp_path, out=tmp_path / "o",
                      aug_train=tmp_path / "aug.tsv")
    assert (d.teacher, d.student, d.data_dir, d.out, d.aug_train) == (
        str(tmp_path / "t"), "s", str(tmp_path), str(tmp_path / "o"), str(tmp_path / "aug.tsv"))
    assert DistillConfig.from_dict(d.to_dict()) == d == DistillConfig(**{**d.to_dict(), "out": str(tmp_path / "o")})
    assert FinetuneConfig(model=tmp_path / "m").model == str(tmp_path / "m")
    g = GeneralConfig(teacher=tmp_path / "t", corpus=[tmp_path / "a.txt", "b.txt"], out=tmp_path / "o")
    assert g.corpus == [str(tmp_path / "a.txt"), "b.txt"] and g.teacher == str(tmp_path / "t")
    json.dumps(d.to_dict())  # run.json stores them: plain text


def test_errors_name_fields_from_python_and_options_from_the_cli() -> None:
    from confdistill import DistillConfig
    from confdistill.distillation.general_config import StudentShape

    def message(build: Callable[[], object]) -> str:
        with pytest.raises(InputError) as err:
            build()
        return str(err.value)

    cases = [
        (lambda: DistillConfig(temperature=0.5), "temperature: must be >= 1"),
        (lambda: DistillConfig(temprature=2.0), "temprature: unknown key"),
        (lambda: DistillConfig(num_train_epochs=0), "num_train_epochs: must be > 0"),
        (lambda: DistillConfig(layer_mapping="middle"), "layer_mapping: expected one of"),
        (lambda: DistillConfig(task="sst2", data_dir="d", out="o", student="s").validate(), "teacher is required"),
        (lambda: StudentShape(layers=1, hidden=16, heads=3, intermediate=8), "hidden 16 is not divisible by heads 3"),
    ]
    for build, python in cases:
        from_python = message(build)
        assert from_python.startswith(python) and "--" not in from_python, from_python
        with option_names():
            from_cli = message(build)
        # the same wording, each setting named as the command line spells it
        flag = re.sub(r"\b([a-z]+(?:_[a-z]+)*)\b(?=(:| is required| 16| 3))",
                      lambda m: "--" + m.group(1).replace("_", "-"), python)
        assert from_cli.startswith(flag), (from_cli, flag)


def test_cli_error_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from confdistill.cli.main import main

    code = main(["distill", "--teacher", "t", "--student", "s", "--task", "sst2", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--temperature", "0.5"])
    assert code == 2 and "--temperature: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


@pytest.mark.usefixtures(one_thread.__name__)
def test_readme_snippet_runs(tiny_bert: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's snippet as written, its four settings (TEACHER, DATA, OUT, LAYERS) pointed at a
    tiny teacher and a tiny SST-2: a 1-layer student is distilled, both models predict dev, the pair
    is analysed."""
    code = readme_snippet()
    assert len(code.splitlines()) <= 14
    teacher, data = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64), write_sst2(tmp_path, 24, 12, real=False)
    given = {"TEACHER": f"Path({str(teacher)!r})", "DATA": f"Path({str(data)!r})", "OUT": "Path('runs/sst2')",
             "LAYERS": "1"}
    for name, value in given.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", code, flags=re.M)
        assert n == 1, f"the snippet no longer sets {name} on a line of its own"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
    out = tmp_path / "runs" / "sst2"
    run = json.loads((out / "student" / "run.json").read_text())
    assert run["status"] == "complete"
    assert json.loads((out / "student" / "final" / "config.json").read_text())["num_hidden_layers"] == 1
    dev_rows = len((data / "SST-2" / "dev.tsv").read_text().splitlines()) - 1
    for name in ("teacher", "student"):
        with open(out / f"{name}.csv", newline="") as fh:
            assert len(list(csv.DictReader(fh))) == dev_rows
    result = namespace["result"]
    assert result.verdict in ("holds", "fails", "no verdict", "not informative")  # type: ignore[attr-defined]
    assert 0.0 <= result.sigma <= 1.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("option", "value"), [
    ("learning_rate", "x"), ("train_batch_size", "2.5"), ("mixed_precision", "fp8"), ("layer_mapping", "middle"),
    ("temperature", "x"),
])
def test_a_bad_value_reads_the_same_from_python_and_the_cli(option: str, value: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The command line's parsers word a value of the wrong kind as the settings models do."""
    from confdistill import DistillConfig
    from confdistill.cli.main import main

    python_value: object = 2.5 if option == "train_batch_size" else value
    with pytest.raises(InputError) as err:
        DistillConfig(**{option: python_value})
    wording = str(err.value).removeprefix(f"{option}: ").replace("2.5", "'2.5'")
    flag = "--" + option.replace("_", "-")
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main(["distill", "--teacher", "t", "--student", "s", "--task", "sst2", "--data-dir", str(tmp_path),
              "--out", str(tmp_path / "o"), flag, value])
    assert usage.value.code == 2
    assert re.search(rf"argument {re.escape(flag)}(/--\S+)?: {re.escape(wording)}", capsys.readouterr().err)
