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


def test_steps_aside_when_lm_eval_discovers_entry_points(tmp_path):
    from icdpo_eval import _lm_eval_hook as hook

    fake = tmp_path / "registry.py"
    fake.write_text('for ep in md.entry_points(group="lm_eval.models"): ...\n')

    class Reg:
        __file__ = str(fake)

    assert hook._native_entry_point_support(Reg)
    Reg.__file__ = __import__("lm_eval.api.registry", fromlist=["x"]).__file__
    assert not hook._native_entry_point_support(Reg)  # 0.4.13 has no such discovery


def test_entry_point_declared():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    from icdpo_eval._lm_eval_hook import MODELS

    for name, target in MODELS.items():
        assert eps.get(name) == target


@pytest.mark.slow
def test_task_folder_visible_to_task_manager():
    out = _py("from lm_eval.tasks import TaskManager; tm = TaskManager();"
              "print(all(t in tm.all_tasks for t in ['hh_harmless','hh_helpful','synthetic_gpt','hh_harmless_mini']))")
    assert out == "True"
