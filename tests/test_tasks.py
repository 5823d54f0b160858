from __future__ import annotations

import shutil

import pytest

from icdpo_eval.data import datasets as D
from icdpo_eval.method.prompts import TURN_MARKERS

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
        "until": list(TURN_MARKERS),  # the one list of turn markers, in its order
        "do_sample": True,
        "top_p": 0.8,
        "temperature": 1.0,
        "max_gen_toks": 128,
    }
    assert [m["metric"] for m in cfg.metric_list] == ["rm_reward", "rm", "length"]
    # task metadata: YAML defaults, overridden/extended by the runtime metadata (= --model_args)
    assert cfg.metadata["version"] == 1.0
    assert cfg.metadata["rm"] == "my-rm" and cfg.metadata["pretrained"] == "some/model"
    assert "rm" not in _build("hh_harmless_mini").config.metadata
    # each row names the task settings it was loaded with (the metrics read the RM from them)
    from icdpo_eval.tasks.settings import settings_of

    assert {settings_of(d).rm for d in docs} == {"my-rm"}
    assert {settings_of(d).rm for d in _build("hh_harmless_mini").test_docs()} == {"auto"}


def test_turn_markers_are_one_list():
    """The YAMLs' `until` lists (lm-eval needs them literally) equal icdpo_eval.method.prompts.TURN_MARKERS."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval.config.options import tasks_dir

    for name in ("_icdpo_template.yaml", "synthetic_gpt.yaml"):
        cfg = load_yaml(tasks_dir() / name, resolve_func=False, recursive=False)
        assert cfg["generation_kwargs"]["until"] == list(TURN_MARKERS), name


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


def test_our_yaml_reader_reads_every_task_as_lm_eval_does():
    """preflight reads our task YAMLs without lm-eval's private loader; lm-eval's own (the reference, used here
    only) reads every file the same way: includes merged, local keys winning, ``!function`` names kept."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval._lm_eval_hook import tasks_dir
    from icdpo_eval.config.preflight import read_task_yaml

    def plain(v):  # lm-eval prefixes an unresolved function's name with the file's folder
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v.removeprefix(f"{tasks_dir()}/") if isinstance(v, str) else v

    paths = sorted(tasks_dir().glob("*.yaml"))
    assert len(paths) > 10
    for path in paths:
        ours, theirs = read_task_yaml(path), plain(load_yaml(path, resolve_func=False))
        theirs.pop("include", None)
        assert ours == theirs, path.name


def test_generation_lengths_as_released():
    """Released scripts: 128 new tokens for HH-RLHF, 200 for SyntheticGPT; the rest of the kwargs shared."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval._lm_eval_hook import tasks_dir

    def gen(name):  # lm-eval's own loader: includes merged, local keys win
        return load_yaml(tasks_dir() / f"{name}.yaml", resolve_func=False)["generation_kwargs"]

    syn, hh = gen("synthetic_gpt"), gen("hh_harmless")
    assert syn["max_gen_toks"] == 200 and hh["max_gen_toks"] == 128 and gen("hh_helpful")["max_gen_toks"] == 128
    assert {k: v for k, v in syn.items() if k != "max_gen_toks"} == {k: v for k, v in hh.items() if k != "max_gen_toks"}
    # the one place the code reads them from (preflight, borrowing, rank sets) agrees with every task's YAML
    for name in GENERATION_TASKS:
        limits = D.task_limits(name)
        assert (gen(name)["max_gen_toks"], gen(name)["top_p"]) == (limits.max_gen_toks, limits.top_p), name


# -- the task folder reads like lm-eval's: one loader, one winrate template, one import route ----------------------
GENERATION_TASKS = (*TASKS, "hh_harmless_winrate", "hh_helpful_winrate", "hh_harmless_mini_winrate")


def _yaml(name: str, resolve_func: bool = False) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval._lm_eval_hook import tasks_dir

    return load_yaml(tasks_dir() / f"{name}.yaml", resolve_func=resolve_func)


def test_one_loader_parameterised_by_the_yaml():
    from icdpo_eval.tasks import utils

    for name in GENERATION_TASKS:
        cfg = _yaml(name, resolve_func=True)
        assert cfg["custom_dataset"] is utils.load
        kwargs = cfg["dataset_kwargs"]
        winrate = name.endswith("_winrate")
        assert kwargs == {"data": name.removesuffix("_winrate"), **({"sample": "winrate"} if winrate else {})}
        assert kwargs["data"] in D.TASK_DEFAULTS
    with pytest.raises(ValueError, match="not one of"):
        utils.load(data="hh_nope")
    with pytest.raises(ValueError, match="not one of"):
        utils.load(data="hh_harmless_mini", sample="nope")


def test_winrate_tasks_share_one_template():
    from icdpo_eval._lm_eval_hook import tasks_dir

    raw = {p.stem: p.read_text() for p in tasks_dir().glob("*_winrate.yaml")}
    assert set(raw) == {"hh_harmless_winrate", "hh_helpful_winrate", "hh_harmless_mini_winrate"}
    assert all("include: _winrate_template.yaml" in text and "metric_list" not in text for text in raw.values())
    template = _yaml("_winrate_template")
    assert "task" not in template and [m["metric"] for m in template["metric_list"]] == [
        "winrate", "winrate_n", "winrate_lc", "winrate_lc_low", "winrate_lc_high", "length", "winrate_failed"]
    # everything but the task's own keys comes from the templates, as in the files before the template
    for name in raw:
        cfg = _yaml(name)
        assert cfg["generation_kwargs"] == _yaml("hh_harmless")["generation_kwargs"]
        assert cfg["process_results"].endswith("icdpo_eval.tasks.winrate.process_results")


def test_task_functions_imported_by_one_route():
    """Every `!function` names an icdpo_eval.tasks module, so lm-eval imports the package module (the one the
    rest of the code imports) and never a second copy of the file by path."""
    import sys

    from icdpo_eval._lm_eval_hook import tasks_dir
    from icdpo_eval.tasks import metrics, utils

    for path in tasks_dir().glob("*.yaml"):
        for line in path.read_text().splitlines():
            if "!function" in line:
                assert "!function icdpo_eval.tasks." in line, f"{path.name}: {line.strip()}"
    task = _build("hh_harmless_mini")
    assert task.config.custom_dataset is utils.load
    assert task.config.process_results is metrics.process_results
    assert not [m for m in sys.modules if m.startswith(str(tasks_dir()))]


def test_results_config_records_the_data():
    cfg = _build("hh_harmless_mini").dump_config()
    assert cfg["dataset_kwargs"] == {"data": "hh_harmless_mini"}
    assert cfg["custom_dataset"] and cfg["metadata"]["version"] == 1.0


def test_hub_revision_is_pinned_and_recorded(monkeypatch):
    from icdpo_eval.tasks import utils

    pinned = D.HUB_REVISIONS["Anthropic/hh-rlhf"]
    assert len(pinned) == 40
    assert _build("hh_harmless_mini").dump_config()["metadata"]["hh_rlhf_revision"] == pinned
    with pytest.raises(ValueError, match="hh_rlhf_revision='abc' differs from the pinned hub commit"):
        utils.load(data="hh_harmless_mini", hh_rlhf_revision="abc")
    seen = {}

    class FakeDatasets:
        @staticmethod
        def load_dataset(repo, **kw):
            seen.update(kw, repo=repo)
            return []

    monkeypatch.delenv(D.DATA_ENV, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "datasets", FakeDatasets)
    list(D._hub("Anthropic/hh-rlhf", data_dir="harmless-base", split="test"))
    assert seen == {"repo": "Anthropic/hh-rlhf", "revision": pinned, "data_dir": "harmless-base", "split": "test"}
