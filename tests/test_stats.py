"""The one statistics module (icdpo_eval/stats.py) against hand computations."""

from __future__ import annotations

import math

import pytest

from icdpo_eval import stats


def test_paired_wilcoxon_matches_the_exact_distribution():
    # n differences all of one sign: the exact one-sided p is 2^-n, the two-sided 2^(1-n)
    a = {str(i): 1.0 + i for i in range(6)}
    b = {str(i): 0.0 for i in range(6)}
    assert stats.paired_wilcoxon(b, a, alternative="less") == (pytest.approx(2 ** -6), 6)
    assert stats.paired_wilcoxon(a, b)[0] == pytest.approx(2 ** -5)
    p, n = stats.paired_wilcoxon(a, {"x": 1.0})
    assert math.isnan(p) and n == 0


def test_float_noise_is_a_tie_not_a_difference():
    """The leaderboard's paired p once flagged rounding noise (only the gate's test had tie handling): twelve
    documents that differ by 1e-7 of one sign are p = 2^-11 without a tie tolerance, 1.0 with the gates' one."""
    base = {str(i): 0.1 * i for i in range(12)}
    noisy = {k: v - 1e-7 for k, v in base.items()}
    assert stats.paired_wilcoxon(noisy, base)[0] < 0.01  # seen red: noise alone looks significant
    assert stats.paired_wilcoxon(noisy, base, tie=stats.TIE) == (1.0, 12)
    # a real difference beyond the tie still counts
    moved = {**noisy, "0": -1.0, "1": -1.0}
    assert stats.paired_wilcoxon(moved, base, tie=stats.TIE)[1] == 12
    assert stats.paired_wilcoxon(moved, base, tie=stats.TIE)[0] < 1.0


def test_wilson_and_mdd_by_hand():
    lo, hi = stats.wilson(8, 10)
    # Wilson 95%: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10), half-width by the textbook formula
    z = 1.96
    d = 1 + z * z / 10
    c = (0.8 + z * z / 20) / d
    w = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / d
    assert (lo, hi) == pytest.approx((c - w, c + w))
    assert stats.minimum_detectable_drop(0.0, 2 * 1.959964) == pytest.approx(1.959964 + 0.841621)
    assert stats.minimum_detectable_drop(None, 1.0) is None


def test_bootstrap_ci_brackets_the_mean_and_needs_two_values():
    lo, hi = stats.bootstrap_ci([[1.0, 2.0, 3.0, 4.0, 5.0]], seed=0)
    assert lo < 3.0 < hi and 1.0 <= lo and hi <= 5.0
    assert all(math.isnan(x) for x in stats.bootstrap_ci([[1.0]]))
