"""The leaderboard's cells: nothing sampled twice (the candidate store), nothing loaded twice (the plan, shared
weights, freed when no remaining cell needs them). The same tables on one process or two:
tests/test_scale_out.py::test_a_leaderboard_on_two_processes_equals_one."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from icdpo_eval import leaderboard as lb
from icdpo_eval.engine import Engine, Sample, SamplingParams
from icdpo_eval.leaderboard import cells as C
from icdpo_eval.method.candidates import CandidateStore


def _cell(row: str, model: str, **args) -> lb.Cell:
    return lb.Cell(row, model, args, "hh_harmless_mini", 2, 1234, {"max_gen_toks": 4}, {"rm": "proxy"}, 1,
                   "rm_reward", "cpu")


def test_the_plan_groups_cells_by_shared_weights():
    cells = [_cell("Base", "hf", pretrained="embedded:base", dtype="float32"), _cell("SFT", "rm", rm="proxy"),
             _cell("S", "icdpo", scorer="s"), _cell("BoN", "rm_bon"), _cell("Long", "length_bon"),
             _cell("S32", "icdpo", dtype="bfloat16")]
    keys = {c.row: C.weight_keys(c, "cpu") for c in cells}
    assert keys["Base"] == keys["S"] == keys["Long"] == keys["BoN"][:1]  # the hf row shares our base model's weights
    from icdpo_eval.data.embedded import teacher_model_path

    assert len(keys["BoN"]) == 2 and keys["BoN"][1][0] == str(teacher_model_path())  # + the teacher
    assert keys["SFT"] == [] and keys["S32"] != keys["S"]
    order = [c.row for c in C.execution_order(cells, "cpu")]
    assert order == ["Base", "S", "Long", "BoN", "SFT", "S32"]  # the base model's cells together, teacher last


def _sample(i: int) -> Sample:
    return Sample([i, i + 1], [-0.5, -0.25], f"text {i}", "eos", [-3.0, -2.0, -1.0])


class FakeEngine:
    weights_key = ("fake", "torch.float32", "cpu")
    kernels = SimpleNamespace(key=lambda: "auto@this-machine")  # the decode kernels' choice (engine/kernels.py)

    draw_cost = staticmethod(Engine.draw_cost)

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.counted: Counter[str] = Counter()

    def encode_context(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def count(self, **n: int) -> None:
        self.counted.update(n)

    def sample(self, contexts, n, *, params, seeds, docs_per_batch=None, names=None):
        self.calls.append(list(contexts))
        return [[_sample(10 * seed + j) for j in range(n)] for seed in seeds]


def test_candidates_are_drawn_once_and_keyed_by_what_determines_them(tmp_path):
    store, eng = CandidateStore(tmp_path / "c.sqlite"), FakeEngine()
    p = SamplingParams(max_new_tokens=8, top_p=0.8, top_k=50)
    stats: dict[str, int] = {}
    first = store.sample(eng, ["a", "b"], 3, params=p, seeds=[1, 2], stats=stats)
    again = store.sample(eng, ["b", "a", "c"], 3, params=p, seeds=[2, 1, 3], stats=stats)
    assert eng.calls == [["a", "b"], ["c"]]  # only the new context is drawn
    assert again[1] == first[0] and again[0] == first[1]  # the same samples, log-probs included
    assert stats == {"candidates_reused": 2, "candidates_sampled": 3}
    # a smaller N is the first N of the stored draw (candidate j has its own generator): served, counted at its cost
    assert eng.counted["reused_calls"] > 0
    before = dict(eng.counted)
    two = store.sample(eng, ["a"], 2, params=p, seeds=[1], stats=stats)
    assert two == [first[0][:2]] and len(eng.calls) == 2 and stats["candidates_reused"] == 3
    cost = Engine.draw_cost(1, first[0][:2])
    assert {k: eng.counted[k] - before.get(k, 0) for k in eng.counted if eng.counted[k] != before.get(k, 0)} == \
        {f"reused_{k}": v for k, v in cost.items() if v}
    # a larger N is drawn afresh (and replaces the smaller draw)
    store.sample(eng, ["a"], 4, params=p, seeds=[1])
    assert eng.calls[-1] == ["a"] and len(eng.calls) == 3
    # anything else that determines the draw is part of the key: the seed, a sampling setting, the model
    for kwargs in ({"seeds": [9]}, {"params": SamplingParams(max_new_tokens=8, top_p=0.9, top_k=50)}):
        store.sample(eng, ["a"], 3, params=kwargs.get("params", p), seeds=kwargs.get("seeds", [1]))
        assert eng.calls[-1] == ["a"]
    eng.weights_key = ("another model",)
    store.sample(eng, ["a"], 3, params=p, seeds=[1])
    assert eng.calls[-1] == ["a"] and len(eng.calls) == 6
    eng.weights_key = FakeEngine.weights_key  # the same model on another machine's kernels: drawn again
    eng.kernels = SimpleNamespace(key=lambda: "auto@another-machine")
    store.sample(eng, ["a"], 3, params=p, seeds=[1])
    assert eng.calls[-1] == ["a"] and len(eng.calls) == 7
    # a second process (another connection) sees the stored candidates
    key = store.key((FakeEngine.weights_key, FakeEngine.kernels.key()), "b", 2, p)
    assert CandidateStore(tmp_path / "c.sqlite").get(key) == first[1]


def _spec(tmp_path: Path, rows: str, head: str = "") -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ntasks: [hh_harmless_mini]\nlimit: 2\nseed: 1234\ngen_kwargs: {max_gen_toks: 6}\n"
                    "metadata: {rm: proxy}\n" + head + "rows:\n" + rows)
    return spec


ROWS = ("  - {name: Base, model: hf, model_args: {pretrained: \"embedded:base\", dtype: float32}}\n"
        "  - {name: S, model: icdpo, model_args: {scorer: s}}\n"
        "  - {name: S-hat, model: icdpo, model_args: {scorer: s_hat}}\n"
        "  - {name: Longest, model: length_bon, model_args: {pick: longest}}\n"
        "  - {name: Shortest, model: length_bon, model_args: {pick: shortest}}\n")


def test_a_leaderboard_loads_and_samples_nothing_twice(tmp_path, monkeypatch):
    from icdpo_eval.engine import WEIGHTS
    from icdpo_eval.judges import reward_model
    from icdpo_eval.judges.reward_model import release_judges
    from icdpo_eval.method import candidates

    fresh = CandidateStore(tmp_path / "candidates.sqlite")  # no candidate of an earlier test or run
    monkeypatch.setattr(candidates, "default_store", lambda: fresh)
    scores = reward_model.ScoreCache(tmp_path / "rm_scores.sqlite")  # nor a stored reward: the RM must load
    monkeypatch.setattr(reward_model, "score_cache", lambda: scores)
    WEIGHTS.retain(set())  # nor weights or reward models an earlier test of this process loaded
    release_judges()
    spec = lb.load_spec(_spec(tmp_path, ROWS))
    lb.run_leaderboard(spec, tmp_path / "new")
    log = {r["row"]: r for r in json.loads((tmp_path / "new" / "run.json").read_text())}
    from icdpo_eval.data.embedded import base_model_path

    assert log["Base"]["loaded"] == [base_model_path().name, "RM proxy"]  # each loaded once, by the first cell
    assert all(log[r]["loaded"] == [] for r in ("S", "S-hat", "Longest", "Shortest"))  # then shared
    assert log["S"]["candidates"] == {"reused": 0, "sampled": 2}
    assert log["S-hat"]["candidates"] == {"reused": 2, "sampled": 0}  # the same candidates: only scored
    assert log["Longest"]["candidates"] == {"reused": 0, "sampled": 2}
    assert log["Shortest"]["candidates"] == {"reused": 2, "sampled": 0}
    # the plain path (every cell loads and samples itself, no journal) gives the same documents
    lb.run_leaderboard(spec, tmp_path / "old", isolate=True)
    old = {r["row"]: r for r in json.loads((tmp_path / "old" / "run.json").read_text())}
    assert all(old[r]["loaded"] for r in old) and old["S-hat"]["candidates"] == {"reused": 0, "sampled": 2}
    assert (tmp_path / "old" / "documents.jsonl").read_text() == (tmp_path / "new" / "documents.jsonl").read_text()
