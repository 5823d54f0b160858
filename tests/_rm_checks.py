"""Checks of an ``rm_reward`` result that a NaN, an infinity, a wrong scale or a constant RM cannot pass.

``rm_reward`` is 100 x the mean per-document reward (``tasks/metrics.py``); ``--log_samples`` records each
document's ``reward`` and ``rm`` in its ``rm_reward`` item. For the offline proxy RM the reward is bounded
(:func:`proxy_rm_bound`), so the metric is too.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import pytest

_BOUND: dict[str | None, tuple[str, float]] = {}  # encoder identity (None: the real MiniLM) -> (name, B)
_SEEN: dict[tuple[str, str], dict[str, float]] = {}  # (rm, prompt) -> {response: reward}, over this session


def proxy_rm_bound() -> tuple[str, float]:
    """(name, B) of the cached proxy RM of the current embedded SBERT (the real MiniLM, or the tiny twin under
    ``ICDPO_EMBEDDED_DIR``): |r(x, y)| <= B for every prompt and response.

    r = w . f - b with f = [e(y), e(h) * e(y)] and e(.) unit vectors: |e(y)| = 1 and the elementwise product
    of two unit vectors has norm <= 1, so |f| <= sqrt(2) and |r| <= sqrt(2) |w| + |b|. Read from the fitted
    head in the cache (written by the run under test); the encoder is not loaded."""
    from icdpo_eval.judges.proxy_rm import encoder_identity

    key = encoder_identity()
    if key not in _BOUND:
        import numpy as np

        from icdpo_eval.data.datasets import load_pairs
        from icdpo_eval.judges.proxy_rm import ProxyRewardModel, _training_hash

        rm = ProxyRewardModel.__new__(ProxyRewardModel)
        rm.digest = _training_hash(load_pairs("hh-rlhf-mini", None, "pool"))
        head = np.load(rm.cache_path())
        bound = math.sqrt(2.0) * float(np.linalg.norm(head["w"])) + abs(float(head["b"]))
        label = "minilm" if key is None else "embedded-dir"
        _BOUND[key] = (f"proxy:bt-{label}@{rm.digest[:8]}", bound)
    return _BOUND[key]


def check_rm_reward(result: dict[str, Any], items: list[dict[str, Any]], n_docs: int) -> list[float]:
    """``result`` = ``results[task]`` of an lm-eval results JSON, ``items`` = the ``rm_reward`` records of its
    samples. Asserts a finite metric on the paper's x100 scale of the per-document rewards, from one RM,
    within the proxy RM's range when the proxy scored it, different rewards for different responses (in this
    result and against every result checked before it in this session) and the same reward for the same
    response. Returns the per-document rewards."""
    value = result["rm_reward,none"]
    assert isinstance(value, float) and math.isfinite(value), value
    assert len(items) == n_docs, (len(items), n_docs)
    rewards = [float(it["reward"]) for it in items]
    assert all(math.isfinite(r) for r in rewards), rewards
    assert value == pytest.approx(100.0 * sum(rewards) / n_docs, abs=1e-6), (value, rewards)
    assert {it["rm"] for it in items} == {result["rm,none"]}, (result["rm,none"], [it["rm"] for it in items])
    if result["rm,none"].startswith("proxy"):
        name, bound = proxy_rm_bound()
        assert result["rm,none"] == name, (result["rm,none"], name)
        assert all(abs(r) <= bound for r in rewards), (rewards, bound)
        assert abs(value) <= 100.0 * bound, (value, bound)
    # the documents' responses differ, so must their rewards (a constant or mis-indexed RM would not)
    responses = [it["response"] for it in items]
    assert len(set(responses)) == n_docs, responses
    for (ra, a), (rb, b) in combinations(zip(responses, rewards), 2):
        assert a != b, (ra, rb, a)
    # across the runs checked in this session (other methods, other rows): one RM gives one (prompt, response)
    # one reward, and a different response to the same prompt a different reward
    for it, r in zip(items, rewards):
        seen = _SEEN.setdefault((it["rm"], it["prompt"]), {})
        for response, earlier in seen.items():
            if response == it["response"]:
                assert r == pytest.approx(earlier, abs=1e-5), (response, r, earlier)
            else:
                assert r != earlier, (response, it["response"], r)
        seen[it["response"]] = r
    return rewards


def rm_items(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``rm_reward`` records of one task's logged samples, in document order."""
    return [s["rm_reward"] for s in sorted(samples, key=lambda s: s["doc_id"])]
