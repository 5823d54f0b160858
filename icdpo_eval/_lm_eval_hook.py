"""Register icdpo-eval's models and task folder with the stock ``lm_eval`` CLI, lazily.

lm-eval 0.4.13 has no plugin discovery: ``lm_eval --model X`` resolves X in its own model registry
and ``TaskManager`` scans only its own task folder plus ``--include_path``. The installed
``icdpo_eval_lm_eval_hook.pth`` calls :func:`install`, which puts a tiny finder on
``sys.meta_path``. The finder costs nothing until one of two lm-eval modules is imported:

* ``lm_eval.api.registry``: right after it executes, we import ``lm_eval.models`` (whose import
  registers lm-eval's own ``MODEL_MAPPING``; registering ours first would hide the built-ins, since
  ``get_model`` loads them only when the registry is empty), then add our names as lazy
  ``"module:Class"`` placeholders. Nothing heavy (torch, transformers) is imported here.
  Newer lm-eval releases may discover the ``lm_eval.models`` entry-point group (declared in
  ``pyproject.toml``) natively; we detect that by behaviour, not by reading lm-eval's source: a
  model lookup that consults the entry points (or a registry that already holds our names after
  ``lm_eval.models`` is imported) means lm-eval does it, and we step aside.
* ``lm_eval.tasks.manager``: ``TaskManager.__init__`` is wrapped so that our task folder is scanned
  after lm-eval's own and before any ``--include_path`` (so a user's folder can still override us).
  The wrapper binds the call to the real signature (``inspect.signature``), so positional and
  keyword calls and parameters added by later releases pass through unchanged.

Set ``ICDPO_EVAL_NO_HOOK=1`` to disable both.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path

# lm-eval name -> "module:Class" (kept in sync with [project.entry-points."lm_eval.models"])
MODELS: dict[str, str] = {
    "icdpo": "icdpo_eval.models.icdpo:ICDPOLM",
    "rm_bon": "icdpo_eval.baselines.rm_bon:RMBoNLM",
    "length_bon": "icdpo_eval.baselines.length_bon:LengthBoNLM",
    "rm_aug": "icdpo_eval.baselines.rm_aug:RMAugLM",
    "sft_lora": "icdpo_eval.baselines.sft_lora:SFTLoRALM",
    "dpo": "icdpo_eval.baselines.dpo:DPOLM",
    "rm": "icdpo_eval.models.rm:RMScorerLM",
}
ENTRY_POINT_GROUP = "lm_eval.models"
_PROBE = "__icdpo_eval_probe__"  # a model name no registry holds: looking it up shows where lm-eval looks


def tasks_dir() -> Path:
    """Folder of our task YAMLs (``icdpo_eval.tasks``; in an editable install, the repo's tasks/)."""
    import importlib.util

    spec = importlib.util.find_spec("icdpo_eval.tasks")
    assert spec is not None and spec.submodule_search_locations, "icdpo_eval.tasks is not installed"
    return Path(list(spec.submodule_search_locations)[0]).resolve()


_TARGETS = ("lm_eval.api.registry", "lm_eval.tasks.manager")


def _asks_entry_points(registry_module) -> bool:
    """Look up an unknown model through the registry's own lookup, watching ``importlib.metadata.entry_points``
    (also where the registry module bound it under its own name): True if the lookup asked for our group
    (or for all entry points, to select from)."""
    import importlib.metadata

    real = importlib.metadata.entry_points
    asked: list[object] = []

    def spy(*args, **kwargs):
        asked.append(kwargs.get("group"))
        return real(*args, **kwargs)

    spots = [(importlib.metadata, "entry_points")]
    spots += [(registry_module, k) for k, v in list(vars(registry_module).items()) if v is real]
    lookup = getattr(registry_module, "get_model", None) or registry_module.model_registry.get
    for owner, attr in spots:
        setattr(owner, attr, spy)
    try:
        lookup(_PROBE)
    except Exception:  # the unknown name: KeyError / ValueError, whatever the release raises
        pass
    finally:
        for owner, attr in spots:
            setattr(owner, attr, real)
    return any(group in (ENTRY_POINT_GROUP, None) for group in asked)


def _native_entry_point_support(registry_module) -> bool:
    """True when this lm-eval release itself loads the ``lm_eval.models`` entry-point group: its registry
    holds our names as entry points once its built-in models are registered, or its lookup of an unknown
    model consults the entry points. Judged by what the registry does, not by its source text."""
    import importlib.metadata

    import lm_eval.models  # noqa: F401  (registers lm-eval's built-in models; eager discovery happens here)

    reg = registry_module.model_registry
    if any(isinstance(dict(reg.items()).get(name), importlib.metadata.EntryPoint) for name in MODELS):
        return True
    return _asks_entry_points(registry_module)


def register_models(registry_module) -> None:
    if _native_entry_point_support(registry_module):
        return
    reg = registry_module.model_registry
    for name, target in MODELS.items():
        if name not in reg:
            reg.register(name, target=target)


def _with_our_folder(include_path, ours: Path) -> list:
    paths = [] if include_path is None else (
        list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
    )
    if not any(Path(p).resolve() == ours for p in paths):
        paths.insert(0, ours)
    return paths


def patch_task_manager(manager_module) -> None:
    import functools
    import inspect

    cls = manager_module.TaskManager
    if getattr(cls, "_icdpo_eval_patched", False):
        return
    original_init = cls.__init__
    signature = inspect.signature(original_init)
    if "include_path" not in signature.parameters:  # an API we do not know: leave it alone
        return
    ours = tasks_dir()

    @functools.wraps(original_init)  # also sets __wrapped__, so inspect.signature shows the real one
    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("include_defaults", True):
            bound.arguments["include_path"] = _with_our_folder(bound.arguments.get("include_path"), ours)
        original_init(*bound.args, **bound.kwargs)

    cls.__init__ = __init__
    cls._icdpo_eval_patched = True


_AFTER = {"lm_eval.api.registry": register_models, "lm_eval.tasks.manager": patch_task_manager}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, after) -> None:
        self.inner = inner
        self.after = after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        self.after(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _AFTER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, _AFTER[fullname])
        return spec


def install() -> None:
    if os.environ.get("ICDPO_EVAL_NO_HOOK"):
        return
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    # already imported (e.g. the hook installed late): apply directly
    for name, after in _AFTER.items():
        if name in sys.modules:
            after(sys.modules[name])
    sys.meta_path.insert(0, _Finder())
