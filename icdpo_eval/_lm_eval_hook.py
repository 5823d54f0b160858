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
* ``lm_eval.evaluator``: ``simple_evaluate`` is wrapped (bound the same way) so that a run is checked before
  any weights load (:func:`icdpo_eval.config.preflight.check_run`: options, task settings, what aggregation will
  use, context lengths), embedded model names reach a foreign model (``--model hf``) as local folders, the
  user's explicit ``--gen_kwargs`` are known to our models (an explicit setting always wins), and the
  results' ``config`` records the effective task settings (``config.icdpo_eval``).

* ``lm_eval.tasks._index`` (private): the task index lm-eval builds on every command (it parses all ~14,000 task
  YAMLs, ~13 s here) is memoised on disk, keyed by the lm-eval release and every YAML file's path, size and mtime;
  only where ``TaskIndex.build`` has the signature and the entries the shape it knows
  (:func:`index_internals_match`), else lm-eval builds it as always (tests/test_task_index.py forces each case).

* ``lm_eval.__main__``: our user errors end ``lm_eval`` with one line and exit status 2 (``--verbosity DEBUG``
  shows the traceback).

Set ``ICDPO_EVAL_NO_HOOK=1`` to disable all five.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

from icdpo_eval.config import settings

ENTRY_POINT_GROUP = "lm_eval.models"
_PROBE = "__icdpo_eval_probe__"  # a model name no registry holds: looking it up shows where lm-eval looks


def _models() -> dict[str, str]:
    """Our lm-eval names -> "module:Class" (:data:`icdpo_eval.config.options.TARGETS`; imported when lm-eval is)."""
    from icdpo_eval.config.options import TARGETS

    return TARGETS


def tasks_dir() -> Path:
    from icdpo_eval.config.options import tasks_dir

    return tasks_dir()


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
    if any(isinstance(dict(reg.items()).get(name), importlib.metadata.EntryPoint) for name in _models()):
        return True
    return _asks_entry_points(registry_module)


def register_models(registry_module) -> None:
    if _native_entry_point_support(registry_module):
        return
    reg = registry_module.model_registry
    for name, target in _models().items():
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


def patch_evaluator(evaluator_module) -> None:
    import functools
    import inspect

    original = evaluator_module.simple_evaluate
    if getattr(original, "_icdpo_eval_wrapped", False):
        return
    signature = inspect.signature(original)
    if not {"model", "model_args", "tasks"} <= set(signature.parameters):  # an API we do not know
        return

    @functools.wraps(original)
    def simple_evaluate(*args, **kwargs):
        from icdpo_eval.config import preflight
        from icdpo_eval.errors import UserError

        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            return preflight.run_checked(original, bound.arguments)
        except UserError as exc:
            if _lm_eval_module_is_the_program():  # `python -m lm_eval`: the same one line as `lm_eval`
                _exit_one_line(exc)
            raise

    simple_evaluate._icdpo_eval_wrapped = True  # type: ignore[attr-defined]
    evaluator_module.simple_evaluate = simple_evaluate


_ROOT_DIGESTS: dict[Path, str] = {}  # lm-eval's own task folder -> its digest, once per process
_INDEXES: dict[str, dict] = {}  # index key -> the index, once per process


def _root_digest(root: Path) -> str:
    """Every YAML file's path, size and modification time under ``root`` (the files ``TaskIndex`` reads). The
    installed lm-eval's own task folder (about 14,000 files) is walked once per process: it does not change under a
    running command; any other folder (ours, a user's ``--include_path``) on every call."""
    if root in _ROOT_DIGESTS:
        return _ROOT_DIGESTS[root]
    import hashlib

    import lm_eval

    h = hashlib.sha256(str(root).encode() + b"\0")
    for f in sorted(root.glob("**/*.yaml")):
        if "__pycache__" in f.parts or ".ipynb_checkpoints" in f.parts:
            continue
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    digest = h.hexdigest()
    installed = Path(lm_eval.__file__).resolve().parent
    if root == installed or installed in root.parents:
        _ROOT_DIGESTS[root] = digest
    return digest


def _index_key(paths: list, resolve_includes: bool, extra: dict) -> str:
    """What lm-eval's task index of ``paths`` depends on: the lm-eval release and every YAML file's path, size and
    modification time (the same files ``TaskIndex._iter_yaml_files`` reads)."""
    import hashlib
    import importlib.metadata

    h = hashlib.sha256(repr((importlib.metadata.version("lm_eval"), resolve_includes, sorted(extra.items())))
                       .encode())
    for root in paths:
        h.update(_root_digest(Path(root).resolve()).encode())
    return h.hexdigest()[:24]


def index_internals_match(index_module) -> bool:
    """The internals of lm-eval's private task index that the cache relies on: ``TaskIndex.build(paths, *,
    resolve_includes=..., ...)`` (a static method over folders) returning a dict of entries that carry a
    ``yaml_path``. Anything else (another release): no cache, lm-eval builds its index as it always does."""
    import inspect

    build = getattr(getattr(index_module, "TaskIndex", None), "build", None)
    if build is None or not callable(build):
        return False
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        return False
    first = next(iter(params.values()), None)
    return (first is not None and first.name == "paths" and "resolve_includes" in params
            and params["resolve_includes"].kind is inspect.Parameter.KEYWORD_ONLY)


def _is_index(index: object) -> bool:
    return isinstance(index, dict) and all(isinstance(k, str) and hasattr(v, "yaml_path") for k, v in index.items())


def patch_task_index(index_module) -> None:
    """Memoise lm-eval's task index on disk (``<cache dir>/lm_eval_index/``): building it parses every task YAML
    of lm-eval (about 14,000 files, ~13 s on a 2-core CPU) on every command; the cache is keyed by the lm-eval
    release and every YAML file's path, size and mtime, so an added or edited task rebuilds it. Only where the
    internals it relies on are the ones it knows (:func:`index_internals_match`); a cached or built index of
    another shape is not used / not stored (lm-eval's own build answers)."""
    import pickle

    if not index_internals_match(index_module):
        return
    cls = index_module.TaskIndex
    build = cls.build
    if getattr(build, "_icdpo_eval_cached", False):
        return

    def cached_build(paths, *, resolve_includes=True, **kwargs):
        from icdpo_eval.runtime import atomic_write

        paths = list(paths)
        if len(paths) > 1:  # each folder's index is cached on its own; later folders override, as lm-eval does
            import logging

            index: dict = {}
            for root in paths:
                for name, entry in cached_build([root], resolve_includes=resolve_includes, **kwargs).items():
                    if name in index:
                        logging.getLogger("lm_eval.tasks._index").warning(
                            "Task '%s' from %s overrides existing task from %s", name, entry.yaml_path,
                            index[name].yaml_path)
                    index[name] = entry
            return index
        try:
            key = _index_key(paths, resolve_includes, kwargs)
            if key in _INDEXES:
                return dict(_INDEXES[key])
            path = settings.cache_dir() / "lm_eval_index" / f"{key}.pkl"
            if path.is_file():
                with path.open("rb") as fh:
                    loaded = pickle.load(fh)
                if _is_index(loaded):
                    _INDEXES[key] = loaded
                    return dict(loaded)
        except Exception:  # noqa: BLE001 - any cache problem: build it as lm-eval does
            path = key = None
        index = build(paths, resolve_includes=resolve_includes, **kwargs)
        if not _is_index(index):  # a shape this cache does not know: lm-eval's answer, not stored
            return index
        if key is not None:
            _INDEXES[key] = dict(index)
        if path is not None:
            try:
                atomic_write(path, lambda fh: pickle.dump(index, fh), binary=True)
            except Exception:  # noqa: BLE001 - an unpicklable entry: no cache, same index
                pass
        return index

    cached_build._icdpo_eval_cached = True  # type: ignore[attr-defined]
    cls.build = staticmethod(cached_build)


def _exit_one_line(exc: Exception) -> None:
    """End the ``lm_eval`` command on a user error: one line, exit status 2 (``--verbosity DEBUG``: re-raise)."""
    if "DEBUG" in sys.argv:
        raise exc
    print(f"lm_eval: error: {' '.join(str(exc).split())} (--verbosity DEBUG shows the traceback)", file=sys.stderr)
    raise SystemExit(2) from None


def _lm_eval_module_is_the_program() -> bool:
    """``python -m lm_eval`` (and ``accelerate launch -m lm_eval``, which runs it): runpy executes lm-eval's
    ``__main__`` as the program, not as an import, so :func:`patch_cli` never sees it; the program's
    ``__spec__`` names it."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) in ("lm_eval.__main__", "lm_eval")


def patch_cli(main_module) -> None:
    """``lm_eval ...``: an icdpo-eval user error (a bad option, file or setting) ends the command with one line
    ``lm_eval: error: ...`` and exit status 2, as ``icdpo-eval`` prints them (``--verbosity DEBUG``: the
    traceback); any other exception is lm-eval's to report."""
    import functools

    original = getattr(main_module, "cli_evaluate", None)
    if original is None or getattr(original, "_icdpo_eval_wrapped", False):
        return

    @functools.wraps(original)
    def cli_evaluate(*args, **kwargs):
        from icdpo_eval.errors import UserError

        try:
            return original(*args, **kwargs)
        except UserError as exc:
            _exit_one_line(exc)

    cli_evaluate._icdpo_eval_wrapped = True  # type: ignore[attr-defined]
    main_module.cli_evaluate = cli_evaluate


_AFTER = {"lm_eval.api.registry": register_models, "lm_eval.tasks.manager": patch_task_manager,
          "lm_eval.tasks._index": patch_task_index, "lm_eval.evaluator": patch_evaluator,
          "lm_eval.__main__": patch_cli}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, after) -> None:
        self.inner = inner
        self.after = after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        self.after(module)

    def __getattr__(self, name: str):  # get_code / get_source / ... (runpy's `python -m lm_eval`)
        return getattr(self.inner, name)


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
    if settings.hook_disabled():
        return
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    # already imported (e.g. the hook installed late): apply directly
    for name, after in _AFTER.items():
        if name in sys.modules:
            after(sys.modules[name])
    sys.meta_path.insert(0, _Finder())


def uninstall() -> None:
    """Take the finder out of ``sys.meta_path``: lm-eval modules imported afterwards are lm-eval's alone (those
    already imported keep what :func:`install` did). ``icdpo-eval``'s own program does this first."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
