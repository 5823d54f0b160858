"""The on-disk memo of lm-eval's task index (icdpo_eval._lm_eval_hook.patch_task_index): it answers what lm-eval's
own build answers, pays the build once, and falls back to lm-eval's own behaviour wherever the private internals it
relies on are not the ones it knows (another signature, an index of another shape, an unreadable cache file)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from icdpo_eval import _lm_eval_hook as H


def _fake_index_module(build):
    mod = types.ModuleType("fake_index")
    mod.TaskIndex = type("TaskIndex", (), {"build": staticmethod(build)})
    return mod


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(H, "_INDEXES", {})
    return tmp_path / "cache" / "lm_eval_index"


def _counting_build(calls, shape=dict):
    def build(paths, *, resolve_includes=True):
        calls.append(list(paths))
        return shape({f"task_{Path(p).name}": types.SimpleNamespace(yaml_path=str(p)) for p in paths})
    return build


def test_this_lm_eval_has_the_internals_the_cache_knows():
    import lm_eval.tasks._index as real

    assert H.index_internals_match(real)


def test_the_cache_answers_what_the_build_answers_and_builds_once(cache, tmp_path):
    calls: list = []
    mod = _fake_index_module(_counting_build(calls))
    H.patch_task_index(mod)
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "a.yaml").write_text("task: a\n")
    first = mod.TaskIndex.build([folder])
    assert {k: v.yaml_path for k, v in first.items()} == {"task_tasks": str(folder)} and len(calls) == 1
    H._INDEXES.clear()  # a new process: read from disk
    assert {k: v.yaml_path for k, v in mod.TaskIndex.build([folder]).items()} == {"task_tasks": str(folder)}
    assert len(calls) == 1 and list(cache.glob("*.pkl"))
    (folder / "b.yaml").write_text("task: b\n")  # a task added: another key, built again
    mod.TaskIndex.build([folder])
    assert len(calls) == 2


def test_another_signature_is_left_to_lm_eval(cache):
    def build(root_paths, include_meta=False):  # a release whose build we do not know
        return {}

    mod = _fake_index_module(build)
    H.patch_task_index(mod)
    assert mod.TaskIndex.build is build and not H.index_internals_match(mod)


def test_an_index_of_another_shape_is_returned_not_stored(cache, tmp_path):
    calls: list = []
    mod = _fake_index_module(_counting_build(calls, shape=list))  # entries of a shape the cache does not know
    H.patch_task_index(mod)
    got = mod.TaskIndex.build([tmp_path])
    assert isinstance(got, list) and not cache.exists()
    mod.TaskIndex.build([tmp_path])
    assert len(calls) == 2  # never served from a cache


def test_an_unreadable_cache_file_falls_back_to_the_build(cache, tmp_path):
    calls: list = []
    mod = _fake_index_module(_counting_build(calls))
    H.patch_task_index(mod)
    mod.TaskIndex.build([tmp_path])
    (pkl,) = cache.glob("*.pkl")
    pkl.write_bytes(b"not a pickle")
    H._INDEXES.clear()
    got = mod.TaskIndex.build([tmp_path])
    assert len(calls) == 2 and list(got) == [f"task_{tmp_path.name}"]
