"""Register icdpo-eval's models and task folder with the stock ``lm_eval`` CLI, lazily.

lm-eval 0.4.13 has no plugin discovery: ``lm_eval --model X`` resolves X in its own model registry
and ``TaskManager`` scans only its own task folder plus ``--include_path``. The installed
``icdpo_eval_lm_eval_hook.pth`` calls :func:`install`, which puts a tiny finder on
``sys.meta_path``. The finder costs nothing until one of two lm-eval modules is imported:

* ``lm_eval.api.registry``: right after it executes, we import ``lm_eval.models`` (whose import
  registers lm-eval's own ``MODEL_MAPPING``; registering ours first would hide the built-ins, since
  ``get_model`` loads them only when the registry is empty), then add our names as lazy
  ``"module:Class"`` placeholders. Nothing heavy (torch, transformers) is imported here.
  Newer lm-eval releases discover the ``lm_eval.models`` entry-point group (declared in
  ``pyproject.toml``) natively; when the registry module shows that support, we step aside.
* ``lm_eval.tasks.manager``: ``TaskManager`` is wrapped so that our task folder is scanned after
  lm-eval's own and before any ``--include_path`` (so a user's folder can still override us).

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
    "rm_aug": "icdpo_eval.baselines.rm_aug:RMAugLM",
    "sft_lora": "icdpo_eval.baselines.sft_lora:SFTLoRALM",
    "dpo": "icdpo_eval.baselines.dpo:DPOLM",
    "rm": "icdpo_eval.models.rm:RMScorerLM",
}



def tasks_dir() -> Path:
    """Folder of our task YAMLs (``icdpo_eval.tasks``; in an editable install, the repo's tasks/)."""
    import importlib.util

    spec = importlib.util.find_spec("icdpo_eval.tasks")
    assert spec is not None and spec.submodule_search_locations, "icdpo_eval.tasks is not installed"
    return Path(list(spec.submodule_search_locations)[0]).resolve()

_TARGETS = ("lm_eval.api.registry", "lm_eval.tasks.manager")


def _native_entry_point_support(registry_module) -> bool:
    """True when this lm-eval release already loads the ``lm_eval.models`` entry-point group."""
    try:
        src = Path(registry_module.__file__).read_text()
    except (OSError, TypeError):
        return False
    return "entry_points" in src and '"lm_eval.models"' in src


def register_models(registry_module) -> None:
    if _native_entry_point_support(registry_module):
        return
    import lm_eval.models  # noqa: F401  (registers lm-eval's built-in models first)

    reg = registry_module.model_registry
    for name, target in MODELS.items():
        if name not in reg:
            reg.register(name, target=target)


def patch_task_manager(manager_module) -> None:
    cls = manager_module.TaskManager
    if getattr(cls, "_icdpo_eval_patched", False):
        return
    original_init = cls.__init__
    ours = tasks_dir()

    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None, **kw):
        if include_defaults:
            paths = [] if include_path is None else (
                list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
            )
            if not any(Path(p).resolve() == ours for p in paths):
                paths.insert(0, ours)
            include_path = paths
        original_init(self, verbosity, include_path, include_defaults, metadata, **kw)

    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
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
