"""Metric functions of the icdpo-eval lm-eval tasks: ``rm_reward`` (paper metric 1).

The task YAMLs use::

    process_results: !function icdpo_eval.tasks.metrics.process_results
    metric_list:
      - metric: rm_reward
        aggregation: !function icdpo_eval.tasks.metrics.rm_reward_aggregate
        higher_is_better: true
      - metric: rm
        aggregation: !function icdpo_eval.tasks.metrics.rm_name_aggregate
        higher_is_better: true
      - metric: length
        aggregation: mean
        higher_is_better: false

``process_results`` does no model call: it returns an :class:`RMItem` holding the prompt and the
response. ``rm_reward_aggregate`` scores all items of the task in batches with one cached
:class:`~icdpo_eval.judges.reward_model.RewardModelJudge` (the task settings ``rm`` / ``rm_dtype`` /
``rm_batch_size``: a YAML's ``metadata:`` or ``--metadata '{"rm": "proxy"}'``, default ``auto``) and
returns 100 x the mean reward, as in the paper's tables. It also writes each
item's ``reward`` and ``rm`` into the item in place; lm-eval's ``--log_samples`` records hold the
same objects and are written after aggregation, so the per-document reward and the RM name
appear in the samples file with no per-document model call.

Empty responses are kept, scored as the empty string (a model that says nothing is judged on
that, dropping them would flatter it), and counted: a warning names each doc id, and the
aggregate logs the count.

lm-eval imports this module by its package name (the YAML's ``!function`` names are absolute, see
:mod:`icdpo_eval.tasks.utils`); it keeps no state between runs (the judge cache lives in
:mod:`icdpo_eval.judges.reward_model`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("icdpo_eval.tasks.metrics")

class RMItem(dict):
    """``{"prompt", "response", "reward", "rm", "task_settings"}``; ``reward``/``rm`` are filled by the
    aggregation, ``task_settings`` names the row's settings (:func:`icdpo_eval.tasks.settings.settings_of`)."""


def response_length(response: str) -> int:
    """The response's length in tokens of ONE fixed tokenizer, whatever model produced it (the embedded
    Gemma-3 tokenizer that the length filters use, :func:`icdpo_eval.data.datasets.count_tokens`), so the
    lengths of different methods and base models are comparable."""
    from icdpo_eval.data.datasets import count_tokens

    return count_tokens([response])[0] if response else 0


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    response = str(results[0] if results else "").strip()
    if not response:
        log.warning("rm_reward: empty response for doc %s; scored as the empty string", doc.get("id", "?"))
    from icdpo_eval.tasks.settings import SETTINGS_FIELD

    item = RMItem(prompt=doc["prompt"], response=response, reward=None, rm=None,
                  **{SETTINGS_FIELD: doc.get(SETTINGS_FIELD)})
    return {"rm_reward": item, "rm": item, "length": response_length(response)}


def score_items(items: Sequence[dict[str, Any]], name: str | None = None) -> str:
    """Fill ``reward``/``rm`` of every unscored item in one batched judge call; return the RM name. The reward
    model is ``name``, else the items' task setting ``rm``."""
    from icdpo_eval.judges.reward_model import get_judge
    from icdpo_eval.tasks.settings import settings_of

    cfg = settings_of(items[0]) if items else settings_of({})
    rm = name or cfg.rm
    todo = [it for it in items if it.get("reward") is None or it.get("rm_setting") != rm]
    cache, ident, keys, hits = None, "", [], {}
    if todo and cfg.rm_cache:  # scores already on disk, by (RM, prompt, response): the RM need not even load
        from icdpo_eval.judges.reward_model import rm_identity, score_cache

        cache, ident = score_cache(), rm_identity(rm, cfg.rm_dtype)
        keys = [cache.key(ident, it["prompt"], it["response"]) for it in todo]
        hits = cache.get(keys)
        for it, k in zip(todo, keys):
            if k in hits:
                it["rm"], it["reward"] = hits[k]
                it["rm_setting"] = rm
                SCORED[(it["prompt"], it["response"])] = hits[k]
        if hits:  # one line on stderr (lm-eval's CLI shows only its own loggers)
            print(f"rm_reward ({rm}): {len(hits)} of {len(todo)} scores cached; the task setting rm_cache=false "
                  "recomputes them", file=sys.stderr)
        CACHED.append((len(hits), len(todo)))
    fresh = [(it, k) for it, k in zip(todo, keys or [None] * len(todo)) if k not in hits]
    # one canonical order, so the same documents get the same batches (and bitwise the same rewards) however a
    # data-parallel run gathered them
    fresh.sort(key=lambda p: (p[0]["prompt"], p[0]["response"]))
    if fresh:
        from icdpo_eval.runtime import release_policy

        release_policy()  # the run's requests are answered: its policy goes before the reward model loads
        judge = get_judge(rm, cfg.rm_dtype, cfg.rm_batch_size)
        rewards = judge.score([it["prompt"] for it, _ in fresh], [it["response"] for it, _ in fresh])
        for (it, _), r in zip(fresh, rewards, strict=True):
            it["reward"], it["rm"], it["rm_setting"] = float(r), judge.resolved_name, rm
            SCORED[(it["prompt"], it["response"])] = (judge.resolved_name, float(r))
        if cache is not None:
            cache.put([(k, judge.resolved_name, float(r)) for (_, k), r in zip(fresh, rewards, strict=True)])
    names = sorted({str(it["rm"]) for it in items if it.get("rm")})
    return names[0] if len(names) == 1 else ";".join(names)


# (prompt, response) -> (rm, reward) of this run's aggregations (the evaluator hook clears it per run): under
# data parallel lm-eval gathers the samples and the metric items as separate copies, so rank 0 fills the
# samples of the other ranks from here
SCORED: dict[tuple[str, str], tuple[str, float]] = {}
# (served from the score cache, looked up) per aggregation of this process (the log line; tests read it)
CACHED: list[tuple[int, int]] = []


def fill_samples(results: Any) -> None:
    """Give every logged sample's RM item the reward its aggregation computed (no model call)."""
    if not isinstance(results, dict):
        return
    for samples in (results.get("samples") or {}).values():
        for smp in samples:
            for v in smp.values():
                if isinstance(v, dict) and v.get("reward", 0) is None:
                    got = SCORED.get((v.get("prompt"), v.get("response")))
                    if got is not None:
                        v["rm"], v["reward"] = got


def rm_reward_aggregate(items: Sequence[dict[str, Any]]) -> float:
    """100 x mean reward of the items (the paper's "RM x100")."""
    if not items:
        return float("nan")
    rm = score_items(items)
    value = 100.0 * math.fsum(float(it["reward"]) for it in items) / len(items)
    empty = sum(1 for it in items if not it["response"])
    level = logging.WARNING if rm.startswith("proxy") else logging.INFO
    log.log(level, "rm_reward = %.2f over %d responses (%d empty), scored by %s%s", value, len(items),
            empty, rm, " (offline PROXY, not the paper's RM)" if rm.startswith("proxy") else "")
    return value


def rm_name_aggregate(items: Sequence[dict[str, Any]]) -> str:
    """The metric ``rm``: the name of the reward model that produced ``rm_reward`` (a string in the
    results JSON, so every results file says which RM its number comes from)."""
    return score_items(items) if items else ""
