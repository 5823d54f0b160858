"""The stock lm-eval CLI finds our models and tasks by itself, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _py(code: str, **env) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, **env}).stdout.strip()


HEAVY = ("torch", "transformers", "lm_eval")


def _loaded(code: str) -> list[str]:
    """The heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    return _py(f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))")


def test_interpreter_start_stays_clean():
    # the .pth hook runs at every interpreter start: it, and importing the package, load nothing heavy
    assert _loaded("pass") == "[]"
    assert _loaded("import icdpo_eval; from icdpo_eval import _lm_eval_hook") == "[]"


def test_hook_is_installed_by_the_pth_file():
    out = _py("import sys; from icdpo_eval._lm_eval_hook import _Finder;"
              "print(any(isinstance(f, _Finder) for f in sys.meta_path))")
    assert out == "True"


def test_models_registered_without_hiding_builtins():
    # registering our names (lazy "module:Class" placeholders) imports neither torch nor transformers
    out = _loaded("from lm_eval.api.registry import model_registry as reg\n"
                  "print(all(n in reg for n in ('icdpo', 'rm_bon', 'rm_aug', 'sft_lora', 'dpo', 'rm', 'hf')))")
    assert out.splitlines() == ["True", "['lm_eval']"]
    out = _py("from lm_eval.api.registry import get_model;"
              "print(get_model('icdpo').__name__, get_model('hf').__name__, get_model('dummy').__name__)")
    assert out == "ICDPOLM HFLM DummyLM"


def test_hook_can_be_disabled():
    code = ("from lm_eval.api.registry import get_model\n"
            "try:\n    get_model('icdpo'); print('found')\nexcept ValueError: print('missing')")
    assert _py(code, ICDPO_EVAL_NO_HOOK="1") == "missing"


def _fake_registry(name: str, source: str):
    """A module standing in for a later lm-eval's ``lm_eval.api.registry`` (``model_registry`` + ``get_model``)."""
    import types

    from lm_eval.api.registry import Registry

    mod = types.ModuleType(name)
    mod.model_registry = Registry("model")
    exec(source, mod.__dict__)
    return mod


# a lookup that falls back on the entry points: through the module, or through a name bound at import
LAZY_DISCOVERY = {
    "attribute": ("import importlib.metadata as md\n"
                  "def get_model(name):\n"
                  "    if name not in model_registry:\n"
                  "        for ep in md.entry_points(group='lm_eval.models'):\n"
                  "            model_registry.register(ep.name, target=ep)\n"
                  "    return model_registry.get(name)\n"),
    "bound name": ("from importlib.metadata import entry_points\n"
                   "def get_model(name):\n"
                   "    eps = entry_points().select(group='lm_eval.models')\n"
                   "    return model_registry.get(name)\n"),
}


@pytest.mark.parametrize("style", sorted(LAZY_DISCOVERY))
def test_steps_aside_when_lm_eval_discovers_entry_points(style):
    from icdpo_eval import _lm_eval_hook as hook

    fake = _fake_registry("fake_registry", LAZY_DISCOVERY[style])
    assert hook._native_entry_point_support(fake)
    hook.register_models(fake)  # steps aside: the names present are lm-eval's own entry points, not ours
    assert all(not isinstance(target, str) for _, target in fake.model_registry.items())
    import importlib.metadata

    assert importlib.metadata.entry_points.__module__ == "importlib.metadata"  # the spy is removed
    real = __import__("lm_eval.api.registry", fromlist=["x"])
    assert not hook._native_entry_point_support(real)  # 0.4.13 has no such discovery


def test_steps_aside_when_lm_eval_registers_entry_points_eagerly():
    import importlib.metadata

    from icdpo_eval import _lm_eval_hook as hook

    fake = _fake_registry("fake_registry", "def get_model(name):\n    return model_registry.get(name)\n")
    assert not hook._native_entry_point_support(fake)
    [ep] = [ep for ep in importlib.metadata.entry_points(group="lm_eval.models") if ep.name == "icdpo"]
    fake.model_registry.register("icdpo", target=ep)
    assert hook._native_entry_point_support(fake)


def _fake_manager(extra: str = ""):
    """A ``lm_eval.tasks.manager`` stand-in whose ``TaskManager`` records how it was called."""
    import types

    mod = types.ModuleType("fake_manager")
    exec("class TaskManager:\n"
         f"    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None{extra}):\n"
         "        self.seen = dict(locals()); del self.seen['self']\n", mod.__dict__)
    return mod


def test_task_manager_wrapper_binds_the_real_signature():
    import inspect

    from icdpo_eval import _lm_eval_hook as hook

    ours = hook.tasks_dir()
    mod = _fake_manager(", *, future=1")
    original = inspect.signature(mod.TaskManager.__init__)
    hook.patch_task_manager(mod)
    tm = mod.TaskManager
    assert inspect.signature(tm.__init__) == original
    assert tm().seen == {"verbosity": None, "include_path": [ours], "include_defaults": True, "metadata": None,
                         "future": 1}
    # positional and keyword calls, a user folder after ours, a parameter the wrapper does not know of
    assert tm(None, "/x", metadata={"a": 1}, future=2).seen == {
        "verbosity": None, "include_path": [ours, "/x"], "include_defaults": True, "metadata": {"a": 1},
        "future": 2}
    assert tm(include_path=["/x", ours]).seen["include_path"] == ["/x", ours]  # ours already there: kept once
    assert tm(include_path="/x", include_defaults=False).seen["include_path"] == "/x"  # untouched
    with pytest.raises(TypeError):
        tm(nope=1)  # what the real __init__ would say
    hook.patch_task_manager(mod)  # idempotent
    assert tm().seen["include_path"] == [ours]


def test_entry_point_declared():
    from importlib.metadata import entry_points

    from icdpo_eval.options import MODELS, TARGETS

    eps = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    assert eps == TARGETS  # pyproject's entry points = the hook's placeholders, name for name
    assert set(TARGETS) == set(MODELS)  # every registered model has its declaration of options


@pytest.mark.slow
def test_task_folder_visible_to_task_manager():
    out = _py("from lm_eval.tasks import TaskManager; tm = TaskManager();"
              "print(all(t in tm.all_tasks for t in ['hh_harmless','hh_helpful','synthetic_gpt','hh_harmless_mini']))")
    assert out == "True"
