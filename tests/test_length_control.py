"""Length control: on synthetic verdicts and rewards with a known length effect (docs/length.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icdpo_eval.stats import lc_reward, lc_winrate


def lengths(n: int, shift: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ref = rng.integers(20, 120, n).astype(float)
    return ref + shift + rng.normal(0, 30, n), ref


def test_a_judge_that_only_likes_length_is_neutral_once_length_is_controlled():
    rng = np.random.default_rng(1)
    model, ref = lengths(300, 40.0, rng)  # the model answers longer, nothing else differs
    pref = (model > ref).astype(float)
    raw = pref.mean()
    lc = lc_winrate(pref, model, ref, n_boot=200)
    assert raw > 0.8
    assert abs(lc.value - 0.5) < 0.1 and lc.low < 0.5 < lc.high


def test_a_judge_that_ignores_length_gives_the_same_rate():
    rng = np.random.default_rng(2)
    model, ref = lengths(300, 40.0, rng)
    pref = (rng.random(300) < 0.7).astype(float)  # better 70% of the time, whatever the length
    lc = lc_winrate(pref, model, ref, n_boot=200)
    assert lc.value == pytest.approx(pref.mean(), abs=0.05)
    assert lc.low <= lc.value <= lc.high and lc.n == 300


def test_ties_count_half_and_degenerate_samples():
    assert lc_winrate([], [], []).n == 0 and math.isnan(lc_winrate([], [], []).value)
    assert lc_winrate([1, 1, 1], [5, 6, 7], [1, 2, 3], n_boot=10).value == 1.0  # all won: the GLM's limit
    half = lc_winrate([0.5] * 40, list(range(40)), [20] * 40, n_boot=20)
    assert half.value == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        lc_winrate([2.0], [1], [1])


def test_lc_reward_removes_a_pure_length_gain_and_keeps_a_real_one():
    rng = np.random.default_rng(3)
    n = 400
    ref_len = rng.integers(20, 120, n).astype(float)
    row_len = ref_len + 50 + rng.normal(0, 30, n)

    def reward(length: np.ndarray, quality: float) -> np.ndarray:
        return 0.01 * length + quality + rng.normal(0, 0.1, n)

    ref = reward(ref_len, 0.0)
    longer = reward(row_len, 0.0)  # +0.5 reward from length alone
    assert 100 * (longer.mean() - ref.mean()) > 40
    lc = lc_reward(longer, ref, row_len, ref_len)
    assert lc.low < 100 * ref.mean() < lc.high  # no gain at equal length
    better = reward(ref_len + rng.normal(0, 30, n), 0.3)
    lc2 = lc_reward(better, ref, ref_len + 0, ref_len)
    assert lc2.value - 100 * ref.mean() == pytest.approx(100 * (better - ref).mean(), abs=3)
    assert lc2.low > 100 * ref.mean() + 20
