"""icdpo_eval.runtime: the one lock + atomic write every on-disk cache uses, device/dtype resolution."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from icdpo_eval.runtime import atomic_write, atomic_write_dir, canonical_dtype, locked, resolve_device


def test_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "gemma-3-270m"  # the parent is made on first use
    order: list[str] = []
    with locked(out):
        assert (tmp_path / "cache" / "gemma-3-270m.lock").exists()
        with pytest.raises(Timeout):  # another process (or lock object) cannot take it meanwhile
            FileLock(tmp_path / "cache" / "gemma-3-270m.lock").acquire(timeout=0.1)

        def second() -> None:
            with locked(out):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first released")
    t.join(timeout=5)
    assert order == ["first released", "second"]


def test_atomic_write_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "x" / "cache.json"
    atomic_write(path, lambda fh: fh.write("old"))
    assert path.read_text() == "old"

    def boom(fh) -> None:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"  # the old file stands, whole
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]  # no temporary file is left
    atomic_write(path, lambda fh: fh.write(b"\x00\x01"), binary=True)
    assert path.read_bytes() == b"\x00\x01"


def test_atomic_write_dir_renames_a_complete_folder(tmp_path: Path) -> None:
    out = tmp_path / "model"

    def fail(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        atomic_write_dir(out, fail)
    assert not out.exists()

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")

    atomic_write_dir(out, build)
    assert (out / "config.json").read_text() == "{}"


def test_dtype_and_device_resolution() -> None:
    assert canonical_dtype("bf16") == "bfloat16" and canonical_dtype("torch.float16") == "float16"
    assert canonical_dtype("auto", auto="bfloat16") == "bfloat16" and canonical_dtype(None) == "float32"
    with pytest.raises(ValueError, match="dtype='fp8'"):
        canonical_dtype("fp8")
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("cuda:0").type == "cpu"  # lm-eval's default device falls back
    assert resolve_device("cpu").type == "cpu"
