"""The conversion lock of icdpo_eval.data.embedded (filelock): a second holder waits for the first."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from icdpo_eval.data.embedded import _lock


def test_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "gemma-3-270m"  # the parent is made on first use
    order: list[str] = []
    with _lock(out):
        assert (tmp_path / "cache" / "gemma-3-270m.lock").exists()
        with pytest.raises(Timeout):  # another process (or lock object) cannot take it meanwhile
            FileLock(tmp_path / "cache" / "gemma-3-270m.lock").acquire(timeout=0.1)

        def second() -> None:
            with _lock(out):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first released")
    t.join(timeout=5)
    assert order == ["first released", "second"]
