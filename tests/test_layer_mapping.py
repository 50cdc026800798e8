"""Layer-mapping strategies (uniform, top, bottom) against hand-written lists, their validation,
and ``--layer-mapping`` reaching stage 1 and run.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from confdistill.cli.main import main
from confdistill.distillation import LAYER_MAPPINGS, DistillConfig
from confdistill.distillation.mapping import check_compatible, layer_mapping
from confdistill.errors import InputError
from distill_helpers import write_sst2

# Written out by hand from the rules in docs/method.md ("Layer mapping strategies"):
# uniform g(m) = floor(m·N/M + 1/2), top g(m) = N − M + m, bottom g(m) = m; g(0) = 0.
EXPECTED = {
    (3, 6): {"uniform": [0, 2, 4, 6], "top": [0, 4, 5, 6], "bottom": [0, 1, 2, 3]},
    (2, 6): {"uniform": [0, 3, 6], "top": [0, 5, 6], "bottom": [0, 1, 2]},
    (4, 12): {"uniform": [0, 3, 6, 9, 12], "top": [0, 9, 10, 11, 12], "bottom": [0, 1, 2, 3, 4]},
    (5, 6): {"uniform": [0, 1, 2, 4, 5, 6], "top": [0, 2, 3, 4, 5, 6], "bottom": [0, 1, 2, 3, 4, 5]},
}


@pytest.mark.parametrize(("m", "n"), sorted(EXPECTED))
@pytest.mark.parametrize("strategy", ["uniform", "top", "bottom"])
def test_strategies_match_hand_written_lists(m: int, n: int, strategy: str) -> None:
    assert layer_mapping(m, n, strategy) == EXPECTED[(m, n)][strategy]


def test_default_is_uniform_and_choices() -> None:
    assert LAYER_MAPPINGS == ("uniform", "top", "bottom")
    assert DistillConfig().layer_mapping == "uniform"
    for m, n in EXPECTED:
        assert layer_mapping(m, n) == EXPECTED[(m, n)]["uniform"]


def test_equal_depths_agree_and_bad_inputs() -> None:
    for strategy in LAYER_MAPPINGS:
        assert layer_mapping(4, 4, strategy) == [0, 1, 2, 3, 4]
        with pytest.raises(InputError, match="wider than allowed by the mapping"):
            layer_mapping(7, 6, strategy)
    with pytest.raises(InputError, match="--layer-mapping"):
        layer_mapping(2, 4, "middle")
    # The settings model refuses it when the settings are built, naming the field and the choices.
    with pytest.raises(InputError, match=r"^layer_mapping: expected one of 'uniform', 'top' or 'bottom'"):
        DistillConfig(teacher="t", student="s", task="sst2", data_dir="d", out="o", layer_mapping="middle")


def test_check_compatible_passes_the_strategy() -> None:
    from types import SimpleNamespace

    s = SimpleNamespace(num_hidden_layers=3, hidden_size=32, num_attention_heads=2)
    t = SimpleNamespace(num_hidden_layers=6, hidden_size=64, num_attention_heads=2)
    assert check_compatible(s, t, "top") == [0, 4, 5, 6]
    assert check_compatible(s, t, "bottom") == [0, 1, 2, 3]


def test_cli_layer_mapping_reaches_stage1_and_run_json(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 24, 8, real=False)
    t = tiny_bert(layers=4, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64, seed=1)
    out = tmp_path / "kd"
    code = main(["distill", "--stage", "intermediate", "--teacher", str(t), "--student", str(s), "--task", "sst2",
                 "--data-dir", str(data), "--out", str(out), "--num-train-epochs", "1", "--train-batch-size", "16",
                 "--layer-mapping", "top", "--checkpoint-steps", "none"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["layer_mapping"] == [0, 3, 4] and run["layer_mapping_strategy"] == "top"
    assert run["settings"]["layer_mapping"] == "top"
    # Another strategy, another set of teacher layers.
    code = main(["distill", "--stage", "intermediate", "--teacher", str(t), "--student", str(s), "--task", "sst2",
                 "--data-dir", str(data), "--out", str(tmp_path / "kd2"), "--num-train-epochs", "1",
                 "--layer-mapping", "bottom", "--checkpoint-steps", "none"])
    assert code == 0
    assert json.loads((tmp_path / "kd2" / "run.json").read_text())["layer_mapping"] == [0, 1, 2]
