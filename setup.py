"""Adds ``icdpo_eval_lm_eval_hook.pth`` to the install so lm-eval finds our models and tasks.

The ``.pth`` line only installs a tiny ``sys.meta_path`` finder (see ``icdpo_eval/_lm_eval_hook.py``);
nothing heavy is imported at interpreter start. Works for ``pip install .`` and ``pip install -e .``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "icdpo_eval_lm_eval_hook.pth"
PTH_LINE = "import icdpo_eval._lm_eval_hook as _h; _h.install()\n"


class build_py_with_pth(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / PTH_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH_NAME)]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy to also write our ``.pth`` into the editable wheel."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.inner.__exit__(*exc)

    def __call__(self, wheel, files, mapping) -> None:
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH_NAME, PTH_LINE)


class editable_wheel_with_pth(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
