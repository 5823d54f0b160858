"""The statistics of the tables and the gates, in one place: the bootstrap CI of a mean, the Wilson interval of a
proportion, the one paired test (Wilcoxon signed-rank, with float noise as ties) and the minimum detectable drop.

The leaderboard (its CIs and its paired p against the reference row), the statistical gate (``compare --ci
--paired``) and the proxy reward model's accuracy bound all read these; a fix made here reaches all of them.
Imports only numpy and scipy (lazily).
"""

from __future__ import annotations

import math
from typing import Any

TIE = 1e-6  # raw reward units: two per-document rewards closer than this are float noise (the exactness gate's atol)
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided alpha = 0.05, power 0.8


def bootstrap_ci(samples: list[list[float]], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean (of the per-sample means, for several samples; the leaderboard passes
    one sample, the pooled documents of a column). NaNs with fewer than two values in a sample."""
    import numpy as np
    from scipy.stats import bootstrap

    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan
    arrays = tuple(np.asarray(s, dtype=float) for s in samples)

    def stat(*xs: Any, axis: int = -1) -> Any:
        return sum(x.mean(axis=axis) for x in xs) / len(xs)

    r = bootstrap(arrays, stat, n_resamples=2000, confidence_level=0.95, method="percentile",
                  vectorized=True, rng=np.random.default_rng(seed))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% for z=1.96)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    w = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - w, c + w


def paired_wilcoxon(a: dict[str, float], b: dict[str, float], *, tie: float = 0.0,
                    alternative: str = "two-sided") -> tuple[float, int]:
    """Wilcoxon signed-rank p-value of ``a - b`` over the ids both hold, and how many they share. A difference
    within ``tie`` (float noise, on the values' own scale) is a tie and dropped (``zero_method="wilcox"``);
    1.0 when no difference is larger, NaN when they share no id. ``alternative="less"``: that ``a`` is lower."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return math.nan, 0
    diffs = [a[i] - b[i] for i in ids]
    diffs = [0.0 if abs(x) <= max(tie, 1e-12) else x for x in diffs]
    if not any(diffs):
        return 1.0, len(ids)
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs, alternative=alternative, zero_method="wilcox").pvalue), len(ids)


def minimum_detectable_drop(ci_low: float | None, ci_high: float | None) -> float | None:
    """``(z_0.975 + z_0.8) x SE``, SE read off a 95% CI: the drop a two-sided test at alpha = 0.05 detects with 80%
    power (None without a CI)."""
    if ci_low is None or ci_high is None:
        return None
    return (Z_ALPHA + Z_POWER) * (ci_high - ci_low) / (2 * Z_ALPHA)
