"""Adds ``icdpo_eval_lm_eval_hook.pth`` to the install so lm-eval finds our models and tasks.

The ``.pth`` line only installs a tiny ``sys.meta_path`` finder (see ``icdpo_eval/_lm_eval_hook.py``);
nothing heavy is imported at interpreter start. Works for ``pip install .`` and ``pip install -e .``, through
setuptools' public command interface only:

* a regular wheel: ``build_py`` writes the file into the build folder, whose top level is the wheel's root;
* an editable wheel (PEP 660): setuptools' ``editable_wheel`` writes the wheel with its own ``.pth`` and finder;
  after its ``run`` returns, the wheel it wrote into ``--dist-dir`` gets our file at its root and a matching
  line in its ``RECORD`` (the wheel format, PEP 427 / PEP 376: ``path,sha256=<urlsafe base64, unpadded>,size``).
"""

import base64
import hashlib
import os
import zipfile
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


def add_to_wheel(wheel: Path, name: str, text: str) -> None:
    """Rewrite ``wheel`` with ``name`` (holding ``text``) at its root and its line in ``*.dist-info/RECORD``."""
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        records = [i.filename for i in src.infolist() if i.filename.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise RuntimeError(f"{wheel.name}: expected one .dist-info/RECORD, found {len(records)}")
        for info in src.infolist():
            if info.filename in (name, records[0]):
                continue
            dst.writestr(info, src.read(info))
        dst.writestr(name, data)
        rows = [line for line in src.read(records[0]).decode().splitlines()
                if line and not line.startswith((f"{name},", f"{records[0]},"))]
        dst.writestr(records[0], "\n".join([*rows, f"{name},sha256={digest},{len(data)}", f"{records[0]},,"]) + "\n")
    os.replace(tmp, wheel)


class editable_wheel_with_pth(editable_wheel):
    def run(self) -> None:
        before = {w: w.stat().st_mtime_ns for w in Path(self.dist_dir).glob("*.whl")}
        super().run()
        written = [w for w in Path(self.dist_dir).glob("*.whl") if before.get(w) != w.stat().st_mtime_ns]
        if len(written) != 1:
            raise RuntimeError(f"expected the one editable wheel setuptools wrote in {self.dist_dir}, found "
                               f"{[w.name for w in written]}")
        add_to_wheel(written[0], PTH_NAME, PTH_LINE)


if __name__ == "__main__":  # how setuptools' build backend runs this file; a test imports it for add_to_wheel
    setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
