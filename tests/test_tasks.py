from __future__ import annotations

import shutil

import pytest

from icdpo_eval.data import datasets as D

TASKS = ("hh_harmless", "hh_helpful", "synthetic_gpt", "hh_harmless_mini")


def _manager(**metadata):
    """Only our task folder (scanning lm-eval's own ~10k YAMLs takes 5 s per manager)."""
    from lm_eval.tasks import TaskManager

    from icdpo_eval._lm_eval_hook import tasks_dir

    return TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=metadata or None)


def _build(name: str, **metadata):
    loaded = _manager(**metadata).load([name])["tasks"]
    tasks = list(loaded.values()) if isinstance(loaded, dict) else list(loaded)
    assert len(tasks) == 1
    return tasks[0]


def test_tasks_listed():
    from lm_eval.tasks import TaskManager

    tm = TaskManager()  # the installed hook adds our folder to lm-eval's defaults
    for name in TASKS:
        assert name in tm.all_tasks
    assert not any(t.startswith("_icdpo") for t in tm.all_tasks)


def test_mini_task_builds():
    task = _build("hh_harmless_mini", pretrained="some/model", rm="my-rm")
    docs = list(task.test_docs())
    assert len(docs) == 100
    assert {d["id"] for d in docs} == {r["id"] for r in D.load_pairs("hh-rlhf-mini", None, "eval")}
    for doc in docs:
        ctx = task.fewshot_context(doc, 0)
        assert ctx == doc["prompt"] and ctx.endswith("Assistant:")
        assert task.doc_to_target(doc) == doc["chosen"]
    cfg = task.config
    assert cfg.output_type == "generate_until" and cfg.num_fewshot == 0
    assert cfg.generation_kwargs == {
        "until": ["Human:", "Assistant:", "##", "human:", "assistant:"],
        "do_sample": True,
        "top_p": 0.8,
        "temperature": 1.0,
        "max_gen_toks": 128,
    }
    assert [m["metric"] for m in cfg.metric_list] == ["rm_reward", "rm"]
    # task metadata: YAML defaults, overridden/extended by the runtime metadata (= --model_args)
    assert cfg.metadata["version"] == 1.0
    assert cfg.metadata["rm"] == "my-rm" and cfg.metadata["pretrained"] == "some/model"
    assert "rm" not in _build("hh_harmless_mini").config.metadata


def test_hh_harmless_builds_from_local_dir(tmp_path, monkeypatch, shared_hh_test):
    target = tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    target.parent.mkdir(parents=True)
    shutil.copyfile(shared_hh_test, target)
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    docs = list(_build("hh_harmless").test_docs())
    assert 1900 < len(docs) < 2312
    assert all(d["prompt"].endswith("\n\nAssistant:") for d in docs)


def test_hh_helpful_missing_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="helpful-base"):
        _build("hh_helpful").test_docs()


def test_generation_lengths_as_released():
    """Released scripts: 128 new tokens for HH-RLHF, 200 for SyntheticGPT; the rest of the kwargs shared."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval._lm_eval_hook import tasks_dir

    def gen(name):  # lm-eval's own loader: includes merged, local keys win
        return load_yaml(tasks_dir() / f"{name}.yaml", resolve_func=False)["generation_kwargs"]

    syn, hh = gen("synthetic_gpt"), gen("hh_harmless")
    assert syn["max_gen_toks"] == 200 and hh["max_gen_toks"] == 128 and gen("hh_helpful")["max_gen_toks"] == 128
    assert {k: v for k, v in syn.items() if k != "max_gen_toks"} == {k: v for k, v in hh.items() if k != "max_gen_toks"}
