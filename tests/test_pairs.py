"""The *_pairs preference-accuracy tasks (tasks/pairs.py, issue 17): metrics by hand, the task in lm-eval, a
pair's own row never its demo on the loglikelihood path, and every model kind through the stock CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from lm_eval.api.model import LM

from icdpo_eval.tasks import pairs
from icdpo_eval.tasks.metrics import response_length

PAIRS_TASKS = ("hh_harmless_pairs", "hh_helpful_pairs", "synthetic_gpt_pairs", "hh_harmless_mini_pairs")


def _manager():
    from lm_eval.tasks import TaskManager

    from icdpo_eval._lm_eval_hook import tasks_dir

    return TaskManager(include_path=str(tasks_dir()), include_defaults=False)


def _mini_rows() -> list[dict]:
    from icdpo_eval.tasks.utils import task_dataset

    return list(task_dataset("hh_harmless_mini")["test"])


# ------------------------------------------------------------------------------------------------ the metrics
def test_process_results_by_hand():
    doc = {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": "Hello there, how can I help you today?",
           "rejected": "Go away."}
    cases = [  # (score chosen, score rejected) -> acc, tie_rate, margin
        ((-3.0, False), (-5.0, False), 1.0, 0.0, 2.0),
        ((-5.0, False), (-3.0, False), 0.0, 0.0, -2.0),
        ((-4.0, False), (-4.0, False), 0.5, 1.0, 0.0),
        ((-4.0, False), (-4.0 - 5e-10, False), 0.5, 1.0, 5e-10),  # within the tie tolerance 1e-9
        ((-4.0, False), (-4.0 - 1e-6, False), 1.0, 0.0, 1e-6),
        ((-math.inf, False), (-math.inf, False), 0.5, 1.0, 0.0),  # both blank for an empty-skipping scorer
        ((-math.inf, False), (-1.0, False), 0.0, 0.0, -math.inf),
    ]
    per_doc = []
    for sc, sr, acc, tie, margin in cases:
        got = pairs.process_results(doc, [sc, sr])
        assert set(got) == {"acc", "tie_rate", "margin", "len_diff"}
        assert got["acc"] == acc and got["tie_rate"] == tie
        assert got["margin"] == pytest.approx(margin, abs=1e-15) if math.isfinite(margin) else got["margin"] == margin
        per_doc.append(got)
    # a bare number is accepted as a result too
    assert pairs.process_results(doc, [1.0, 0.0])["acc"] == 1.0
    # len_diff: tokens of chosen minus rejected in the one fixed tokenizer; positive here (chosen is longer)
    want = response_length(doc["chosen"]) - response_length(doc["rejected"])
    assert per_doc[0]["len_diff"] == want and want > 0
    # the first three pairs aggregated by lm-eval's mean: acc (1 + 0 + 0.5) / 3, tie_rate 1/3, margin 0
    first = per_doc[:3]
    assert sum(d["acc"] for d in first) / 3 == pytest.approx(0.5)
    assert sum(d["tie_rate"] for d in first) / 3 == pytest.approx(1 / 3)
    assert sum(d["margin"] for d in first) / 3 == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 choices"):
        pairs.process_results(doc, [(-1.0, False)])
    with pytest.raises(ValueError, match="not a number"):
        pairs.process_results(doc, [(math.nan, False), (0.0, False)])


def test_pairs_tasks_build_as_multiple_choice():
    from icdpo_eval.tasks import utils

    tm = _manager()
    for name in PAIRS_TASKS:
        assert name in tm.all_tasks
    assert not any(t.startswith("_pairs") for t in tm.all_tasks)
    (task,) = tm.load(["hh_harmless_mini_pairs"])["tasks"].values()
    cfg = task.config
    assert cfg.output_type == "multiple_choice" and cfg.num_fewshot == 0
    assert cfg.custom_dataset is utils.load and cfg.process_results is pairs.process_results
    assert cfg.dataset_kwargs == {"data": "hh_harmless_mini"}
    assert [m["metric"] for m in cfg.metric_list] == ["acc", "tie_rate", "margin", "len_diff"]
    docs = list(task.test_docs())
    assert [d["id"] for d in docs] == [r["id"] for r in _mini_rows()]  # the generation task's rows
    doc = docs[0]
    reqs = task.construct_requests(doc, task.fewshot_context(doc, 0), metadata=("hh_harmless_mini_pairs", 0, 1))
    # context = the prompt verbatim, continuation = " " + response (as the generation path scores it)
    assert [r.args for r in reqs] == [(doc["prompt"], " " + doc["chosen"]), (doc["prompt"], " " + doc["rejected"])]
    assert task.doc_to_target(doc) == 0
    # the other tasks name their generation task's rows (not loaded here: hub data)
    from lm_eval.tasks._yaml_loader import load_yaml

    from icdpo_eval._lm_eval_hook import tasks_dir

    for name in PAIRS_TASKS:
        raw = load_yaml(tasks_dir() / f"{name}.yaml", resolve_func=False)
        assert raw["dataset_kwargs"] == {"data": name.removesuffix("_pairs")}
        assert raw["output_type"] == "multiple_choice"


class LengthLM(LM):
    """An lm-eval LM whose score is the response's token length: it always prefers the longer answer."""

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        for r in requests:
            assert r.args[1].startswith(" ") and r.args[0].endswith("Assistant:")
        return [(float(response_length(r.args[1].strip())), False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def test_length_only_scorer_reproduces_hand_count_on_mini_pairs():
    """A scorer preferring the longer answer scores exactly the length-only accuracy counted by hand."""
    import lm_eval

    rows = _mini_rows()
    diffs = [response_length(r["chosen"]) - response_length(r["rejected"]) for r in rows]
    longer, equal = sum(d > 0 for d in diffs), sum(d == 0 for d in diffs)
    # counted once by hand on the 100 vendored pairs: 45 chosen longer, 1 equal, 54 rejected longer
    assert (len(rows), longer, equal) == (100, 45, 1)
    res = lm_eval.simple_evaluate(model=LengthLM(), tasks=["hh_harmless_mini_pairs"], task_manager=_manager(),
                                  bootstrap_iters=100)["results"]["hh_harmless_mini_pairs"]
    assert res["acc,none"] == pytest.approx((longer + 0.5 * equal) / len(rows)) == pytest.approx(0.455)
    assert res["tie_rate,none"] == pytest.approx(0.01)
    assert res["len_diff,none"] == pytest.approx(sum(diffs) / len(diffs)) == pytest.approx(-7.99)
    assert res["margin,none"] == pytest.approx(res["len_diff,none"])  # the score is the length here
    # lm-eval's stderr of the mean margin (closed form for `mean`): sample sd / sqrt(n)
    sd = (sum((d - sum(diffs) / 100) ** 2 for d in diffs) / 99) ** 0.5
    assert res["margin_stderr,none"] == pytest.approx(sd / 10)


# ------------------------------------------------------------------------------ never a pair's own row as demo
class _Recorder:
    """A scorer that records each group's demos and scores every candidate 0."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[dict]]] = []

    def score(self, groups):
        for g in groups:
            self.seen.append((g[0].prompt, g[0].demos))
        return [[0.0] * len(g) for g in groups]


def _retrieving_model(retriever: str, k: int, pool_file: Path, sbert: str | None = None):
    """The icdpo model without weights (``ICDPOLM.preview``: its retrieval, templates and tokenizer), its scorer
    replaced by a recorder."""
    from icdpo_eval.models.icdpo import ICDPOLM

    lm = ICDPOLM.preview(k=k, retriever=retriever, demo_pool=str(pool_file), **({"sbert": sbert} if sbert else {}))
    lm.scorer = _Recorder()
    return lm


def _pool_with_queries(tmp_path: Path, queries: list[dict], others: list[dict]) -> Path:
    path = tmp_path / "pool.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for r in [*others, *queries]:
            fh.write(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}) + "\n")
    return path


def _requests(task: str, rows: list[dict]) -> list:
    return [SimpleNamespace(args=(r["prompt"], " " + resp), task_name=task, doc=r, doc_id=i)
            for i, r in enumerate(rows) for resp in (r["chosen"], r["rejected"])]


@pytest.mark.parametrize("retriever", ["random", "bm25"])
def test_own_row_never_retrieved_on_loglikelihood_path(tmp_path, retriever):
    rows = _mini_rows()
    queries, others = rows[:6], rows[6:9]
    pool_file = _pool_with_queries(tmp_path, queries, others)  # every query's own row is in the pool
    k = 8 if retriever == "random" else 3  # random: all pool rows but one must come back
    lm = _retrieving_model(retriever, k, pool_file)
    if retriever == "bm25":  # the check can fail: without exclude_self the own row is BM25's best match
        gen = lm.retrieve("hh_harmless_mini_pairs", [q["prompt"] for q in queries])
        assert all(q["prompt"] in [d["prompt"] for d in ds] for q, ds in zip(queries, gen))
    out = lm.loglikelihood(_requests("hh_harmless_mini_pairs", queries), disable_tqdm=True)
    assert out == [(0.0, False)] * 12
    seen = lm.scorer.seen
    assert sorted(p for p, _ in seen) == sorted(q["prompt"] for q in queries)  # one group per pair
    for prompt, demos in seen:
        assert len(demos) == k and prompt not in [d["prompt"] for d in demos]
        if retriever == "random":  # the pool minus the pair's own row, exactly
            assert sorted(d["prompt"] for d in demos) == sorted(r["prompt"] for r in rows[:9] if r["prompt"] != prompt)


def test_own_row_never_retrieved_through_lm_eval(tmp_path):
    """The real task in lm-eval with a pool that holds every evaluated pair: no pair sees its own row."""
    import lm_eval

    rows = _mini_rows()
    pool_file = _pool_with_queries(tmp_path, rows[:10], [])
    lm = _retrieving_model("bm25", 2, pool_file)
    lm_eval.simple_evaluate(model=lm, tasks=["hh_harmless_mini_pairs"], task_manager=_manager(), limit=6,
                            bootstrap_iters=0)
    seen = lm.scorer.seen
    assert len(seen) == 6
    for prompt, demos in seen:
        assert len(demos) == 2 and prompt not in [d["prompt"] for d in demos]


# ------------------------------------------------------------------------------ every model kind, on the twins
def test_bm25_sbert_never_retrieves_own_row(tmp_path):
    from icdpo_eval.data.embedded import sbert_path

    rows = _mini_rows()
    lm = _retrieving_model("bm25_sbert", 2, _pool_with_queries(tmp_path, rows[:6], rows[6:9]),
                           sbert=str(sbert_path()))
    # the check can fail: on the generation path (no exclusion) the own row is the best match
    gen = lm.retrieve("hh_harmless_mini_pairs", [q["prompt"] for q in rows[:6]])
    assert all(q["prompt"] in [d["prompt"] for d in ds] for q, ds in zip(rows[:6], gen))
    lm.loglikelihood(_requests("hh_harmless_mini_pairs", rows[:6]), disable_tqdm=True)
    assert sorted(p for p, _ in lm.scorer.seen) == sorted(q["prompt"] for q in rows[:6])
    for prompt, demos in lm.scorer.seen:
        assert len(demos) == 2 and prompt not in [d["prompt"] for d in demos]


def _check_pairs_result(res, n: int) -> list[dict]:
    r = res.results["results"]["hh_harmless_mini_pairs"]
    samples = res.samples["hh_harmless_mini_pairs"]
    assert len(samples) == n
    for key in ("acc", "tie_rate", "margin", "len_diff"):
        assert math.isfinite(r[f"{key},none"]), key
    assert 0.0 <= r["acc,none"] <= 1.0 and r["margin_stderr,none"] >= 0.0
    margins = []
    for s in samples:
        (c, _), (rj, _) = [(float(x[0]), x[1]) for x in s["filtered_resps"]]
        assert s["margin"] == pytest.approx(c - rj, abs=1e-6)
        assert s["acc"] == (0.5 if abs(c - rj) <= pairs.TIE else float(c > rj))
        assert s["len_diff"] == response_length(s["doc"]["chosen"]) - response_length(s["doc"]["rejected"])
        margins.append(c - rj)
    assert len({round(m, 6) for m in margins}) == n  # different pairs, different margins (not a constant scorer)
    assert r["margin,none"] == pytest.approx(sum(margins) / n, abs=1e-6)
    assert r["acc,none"] == pytest.approx(sum(s["acc"] for s in samples) / n)
    return samples


@pytest.mark.parametrize("kind", ["icdpo", "rm", "hf"])
def test_every_model_kind_through_the_cli(pipeline, kind):
    """icdpo (Ŝ), a reward model (proxy) and stock hf (plain log-likelihood) on mini pairs, stock lm_eval."""
    res = pipeline({"icdpo": "pairs_icdpo", "rm": "pairs_rm", "hf": "hf_base_pairs"}[kind])
    samples = _check_pairs_result(res, 2)
    assert res.results["config"]["model"] == kind
    if kind == "hf":  # plain log-likelihood: a summed log-prob, never positive
        assert all(float(x[0]) <= 0.0 for s in samples for x in s["filtered_resps"])
