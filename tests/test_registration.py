"""The stock lm-eval CLI finds our models and tasks by itself, lazily.

Only test_interpreter_start_stays_clean starts an interpreter; the others replay the ``.pth`` file and import
lm-eval's registry afresh in this process (:func:`_fresh_modules`)."""

from __future__ import annotations

import contextlib
import importlib
import os
import site
import subprocess
import sys
from pathlib import Path

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


def _pth_file() -> Path:
    """The installed ``.pth`` file that installs the hook at interpreter start."""
    found = [p for d in site.getsitepackages() for p in sorted(Path(d).glob("*.pth"))
             if "_lm_eval_hook" in p.read_text()]
    assert len(found) == 1, found
    return found[0]


def _replay_interpreter_start(monkeypatch) -> tuple[list, list[str]]:
    """Process the installed ``.pth`` file as ``site`` does at interpreter start, on a ``sys.meta_path`` without
    our finder (restored after the test). Returns the finders it installed and the lm-eval modules, already
    imported here, that ``install`` applied its patches to (recorded: ``_AFTER`` is replaced by recorders, so
    nothing is patched twice)."""
    from icdpo_eval import _lm_eval_hook as hook

    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, hook._Finder)])
    applied: list[str] = []
    monkeypatch.setattr(hook, "_AFTER", {name: (lambda mod, name=name: applied.append(name)) for name in hook._AFTER})
    pth = _pth_file()
    site.addpackage(str(pth.parent), pth.name, set())
    return [f for f in sys.meta_path if isinstance(f, hook._Finder)], applied


def test_hook_is_installed_by_the_pth_file(monkeypatch):
    from icdpo_eval import _lm_eval_hook as hook

    monkeypatch.delenv("ICDPO_EVAL_NO_HOOK", raising=False)
    imported = [name for name in hook._AFTER if name in sys.modules]
    finders, applied = _replay_interpreter_start(monkeypatch)
    assert len(finders) == 1 and sys.meta_path[0] is finders[0]  # first: it sees lm-eval's modules before anyone
    assert applied == imported  # lm-eval modules imported before the hook: patched at once


@contextlib.contextmanager
def _fresh_modules(monkeypatch, hook_installed: bool = True):
    """Inside the block, lm-eval's modules and ours (all but what the ``.pth`` file imports) import afresh, as in
    a new interpreter: they are hidden from ``sys.modules`` and restored after. Yields the set of top-level names
    of every ``import`` executed in the block (an already imported module counts too: every import statement
    goes through ``builtins.__import__``)."""
    import builtins

    from icdpo_eval import _lm_eval_hook as hook

    if not hook_installed:
        monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, hook._Finder)])
    start = {"icdpo_eval", "icdpo_eval._lm_eval_hook", "icdpo_eval.config.settings", "icdpo_eval.errors"}
    saved = dict(sys.modules)
    hidden = [k for k in saved if k.split(".")[0] in ("lm_eval", "icdpo_eval") and k not in start]
    asked: set[str] = set()
    real_import = builtins.__import__

    def spy(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            asked.add(name.partition(".")[0])
        return real_import(name, globals, locals, fromlist, level)

    try:
        for k in hidden:
            del sys.modules[k]
        builtins.__import__ = spy
        yield asked
    finally:
        builtins.__import__ = real_import
        for k in [k for k in sys.modules if k not in saved]:
            del sys.modules[k]
        sys.modules.update(saved)
        for k in hidden:  # a fresh submodule was bound on its (old) parent package: bind the old one back
            parent, _, child = k.rpartition(".")
            if parent in saved and hasattr(saved[parent], child):
                setattr(saved[parent], child, saved[k])


OURS = ("icdpo", "rm_bon", "rm_aug", "sft_lora", "dpo", "rm")


def test_models_registered_without_hiding_builtins(monkeypatch):
    # registering our names (lazy "module:Class" placeholders) imports neither torch nor transformers: importing
    # lm-eval's registry afresh imports the standard library, lm-eval and our option declarations only
    with _fresh_modules(monkeypatch) as asked:
        fresh = importlib.import_module("lm_eval.api.registry")
        reg = dict(fresh.model_registry.items())
    assert not asked & {"torch", "transformers"}, asked
    assert asked - set(sys.stdlib_module_names) <= {"lm_eval", "icdpo_eval"}, asked
    assert all(isinstance(reg.get(n), str) for n in OURS), {n: reg.get(n) for n in OURS}  # placeholders
    assert "hf" in reg and "dummy" in reg  # lm-eval's own names are still there
    from lm_eval.api.registry import get_model

    assert (get_model("icdpo").__name__, get_model("hf").__name__, get_model("dummy").__name__) == (
        "ICDPOLM", "HFLM", "DummyLM")


def test_hook_can_be_disabled(monkeypatch):
    monkeypatch.setenv("ICDPO_EVAL_NO_HOOK", "1")
    finders, applied = _replay_interpreter_start(monkeypatch)
    assert finders == [] and applied == []  # no finder, and nothing applied to lm-eval's imported modules
    with _fresh_modules(monkeypatch, hook_installed=False):  # lm-eval as it is without the hook
        fresh = importlib.import_module("lm_eval.api.registry")
        with pytest.raises(ValueError, match="no model for this name"):
            fresh.get_model("icdpo")  # what the stock lm_eval CLI then says to --model icdpo
        assert fresh.get_model("dummy").__name__ == "DummyLM"
        assert not any(n in fresh.model_registry for n in OURS)


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

    from icdpo_eval.config.options import MODELS, TARGETS

    eps = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    assert eps == TARGETS  # pyproject's entry points = the hook's placeholders, name for name
    assert set(TARGETS) == set(MODELS)  # every registered model has its declaration of options


def test_task_folder_visible_to_task_manager():
    from lm_eval.tasks import TaskManager

    tm = TaskManager()  # the stock class, as lm-eval's CLI makes it: the hook added our folder
    assert {"hh_harmless", "hh_helpful", "synthetic_gpt", "hh_harmless_mini"} <= set(tm.all_tasks)


# `lm_eval` itself is covered in-process (tests/test_reliability.py, the `# fails:` lines of the doc commands);
# these two start the interpreter the way a user does, since runpy's `-m` is what they are about
ERROR_RUN = ["-m", "lm_eval", "--model", "icdpo", "--model_args", "scorrer=s", "--tasks", "hh_harmless_mini",
             "--limit", "1"]


@pytest.mark.parametrize("launcher", ["python", "accelerate"])
def test_a_user_error_is_one_line_under_python_m_and_accelerate(launcher, tmp_path):
    """`python -m lm_eval` and `accelerate launch -m lm_eval` (the README's scale-out commands) end a user error with
    the one line `lm_eval` prints and exit status 2, no traceback (seen red: runpy runs lm-eval's __main__ as the
    program, which the import hook never sees, and a traceback came out)."""
    accelerate = Path(sys.executable).parent / "accelerate"
    if launcher == "accelerate" and not accelerate.exists():
        pytest.skip("accelerate CLI")
    argv = [sys.executable, *ERROR_RUN] if launcher == "python" else \
        [str(accelerate), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", *ERROR_RUN]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    err = run.stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("lm_eval: error:")]
    assert lines and "scorrer" in lines[0], err[-3000:]
    assert "/icdpo_eval/" not in err and "preflight" not in err, err[-3000:]  # no traceback through our code
    if launcher == "python":
        assert len(lines) == 1 and "Traceback" not in err and run.returncode == 2, (run.returncode, err[-2000:])
    else:
        # accelerate echoes its child's stderr and reports the child's status with a traceback of its own
        assert set(lines) == {lines[0]} and "returned non-zero exit status 2" in err, err[-2000:]


def test_the_editable_wheel_gets_the_pth_with_its_record_line(tmp_path):
    """setup.py adds the ``.pth`` to the editable wheel setuptools wrote (``pip install -e .``, the README's install;
    CI's install runs it end to end): the file at the wheel's root, one RECORD line whose hash and size are the
    file's, every other entry unchanged; adding it again replaces the line instead of repeating it."""
    import base64
    import hashlib
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("icdpo_setup", Path(__file__).resolve().parents[1] / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # not as __main__: setup() does not run
    wheel = tmp_path / "x-0.1-0.editable-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("__editable__.x-0.1.pth", "/src\n")
        z.writestr("x-0.1.dist-info/METADATA", "Name: x\n")
        z.writestr("x-0.1.dist-info/RECORD", "__editable__.x-0.1.pth,sha256=abc,5\nx-0.1.dist-info/METADATA,"
                                             "sha256=def,8\nx-0.1.dist-info/RECORD,,\n")
    for _ in range(2):
        setup_py.add_to_wheel(wheel, setup_py.PTH_NAME, setup_py.PTH_LINE)
    with zipfile.ZipFile(wheel) as z:
        assert z.read(setup_py.PTH_NAME).decode() == setup_py.PTH_LINE
        assert z.read("__editable__.x-0.1.pth") == b"/src\n"
        assert sorted(z.namelist()) == sorted(["__editable__.x-0.1.pth", "x-0.1.dist-info/METADATA",
                                               "x-0.1.dist-info/RECORD", setup_py.PTH_NAME])
        record = z.read("x-0.1.dist-info/RECORD").decode().splitlines()
    data = setup_py.PTH_LINE.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert record == ["__editable__.x-0.1.pth,sha256=abc,5", "x-0.1.dist-info/METADATA,sha256=def,8",
                      f"{setup_py.PTH_NAME},sha256={digest},{len(data)}", "x-0.1.dist-info/RECORD,,"]
