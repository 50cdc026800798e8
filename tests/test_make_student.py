"""make-student: evenly spaced layer copies, fresh configurations, validation, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.models import evenly_spaced_layers, load_classifier, make_student


def test_evenly_spaced_rule() -> None:
    assert evenly_spaced_layers(12, 4) == [2, 5, 8, 11]   # TinyBERT's g(m) = 3m, 0-based
    assert evenly_spaced_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert evenly_spaced_layers(6, 4) == [0, 2, 3, 5]     # floor(m*6/4) = 1, 3, 4, 6
    assert evenly_spaced_layers(5, 5) == [0, 1, 2, 3, 4]
    assert evenly_spaced_layers(7, 1) == [6]
    with pytest.raises(InputError, match="between 1 and the source's 4 layers"):
        evenly_spaced_layers(4, 5)


def test_layer_copy(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    src_dir = tiny_bert(layers=4, num_labels=3, seed=1)
    out = make_student(src_dir, tmp_path / "student", layers=2)
    source, _ = load_classifier(src_dir)
    student, tokenizer = load_classifier(out)
    assert student.config.num_hidden_layers == 2 and student.config.num_labels == 3
    src_sd, st_sd = source.state_dict(), student.state_dict()
    for m, n in enumerate([1, 3]):  # floor(m*4/2) - 1
        for name, tensor in student.bert.encoder.layer[m].state_dict().items():
            assert torch.equal(tensor, source.bert.encoder.layer[n].state_dict()[name]), name
    for key in st_sd:
        if ".encoder.layer." not in key:  # embeddings, pooler, classifier
            assert torch.equal(st_sd[key], src_sd[key]), key
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                           source.bert.encoder.layer[0].attention.self.query.weight)
    record = json.loads((out / "student.json").read_text())
    assert record["source_layers_copied"] == [2, 4] and record["classifier_copied"]
    assert (out / "vocab.txt").read_bytes() == (src_dir / "vocab.txt").read_bytes()
    assert len(tokenizer) == 30522


def test_new_head_width_and_fresh_config(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    src_dir = tiny_bert(layers=4)
    a = make_student(src_dir, tmp_path / "a", layers=2, num_labels=3, seed=5)
    b = make_student(src_dir, tmp_path / "b", layers=2, num_labels=3, seed=5)
    ma, mb = load_classifier(a)[0], load_classifier(b)[0]
    assert ma.classifier.weight.shape == (3, 32) and torch.equal(ma.classifier.weight, mb.classifier.weight)
    fresh = make_student(src_dir, tmp_path / "fresh", layers=2, hidden=16, heads=4, seed=3)
    mf = load_classifier(fresh)[0]
    cfg = mf.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers) == (16, 4, 64, 2)
    assert cfg.vocab_size == 30522
    again = load_classifier(make_student(src_dir, tmp_path / "fresh2", layers=2, hidden=16, heads=4, seed=3))[0]
    for key, tensor in mf.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[key]), key  # seeded


def test_validation_and_cli(tiny_bert: Callable[..., Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    src_dir = tiny_bert(layers=2)
    # from Python the arguments are named as make_student's parameters, from the command line as flags
    with pytest.raises(InputError, match=r"^heads 3 must divide hidden 32"):
        make_student(src_dir, tmp_path / "x", layers=1, heads=3)
    with pytest.raises(InputError, match=r"^hidden 31 is not divisible by the source's 2 attention heads: give heads"):
        make_student(src_dir, tmp_path / "x", layers=1, hidden=31)
    with pytest.raises(InputError, match=r"^num_labels 20,000 exceeds the bound 10,000"):
        make_student(src_dir, tmp_path / "x", layers=1, num_labels=20_000)
    assert not (tmp_path / "x").exists()
    capsys.readouterr()  # drop the fixture's output
    code = main(["make-student", "--from", str(src_dir), "--layers", "3", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "exceeds the 2 layers of the source" in err and len(err.strip().splitlines()) == 1
    code = main(["make-student", "--from", str(src_dir), "--layers", "1", "--heads", "3", "--out", str(tmp_path / "s")])
    assert code == 2 and "--heads 3 must divide --hidden 32" in capsys.readouterr().err
    code = main(["make-student", "--from", str(tmp_path / "missing"), "--layers", "1", "--out", str(tmp_path / "s")])
    assert code == 2 and "model directory does not exist" in capsys.readouterr().err
    code = main(["make-student", "--from", str(src_dir), "--layers", "1", "--out", str(tmp_path / "s")])
    assert code == 0 and "source layers [2] of 2" in capsys.readouterr().err
    assert load_classifier(tmp_path / "s")[0].config.num_hidden_layers == 1


def test_parameter_bound_counts_what_transformers_allocates() -> None:
    """The bound is checked on a count made before allocating: it must equal the allocated model's."""
    from transformers import BertConfig, BertForSequenceClassification

    from confdistill.models.student import check_parameter_count

    config = BertConfig(vocab_size=1000, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=64, num_labels=5)
    allocated = sum(p.numel() for p in BertForSequenceClassification(config).parameters())
    import confdistill.models.student as student

    old = student.MAX_PARAMETERS
    try:
        student.MAX_PARAMETERS = allocated
        check_parameter_count(config)  # exactly at the bound: accepted
        student.MAX_PARAMETERS = allocated - 1
        with pytest.raises(InputError, match=f"{allocated:,} parameters"):
            check_parameter_count(config)
    finally:
        student.MAX_PARAMETERS = old
