"""The statistics of the tables and the gates, in one place: the bootstrap CI of a mean, the Wilson interval of a
proportion, the one paired test (Wilcoxon signed-rank, with float noise as ties), the minimum detectable drop and the
length-controlled comparisons (below).

The leaderboard (its CIs, its paired p against the reference row, its LC reward), the statistical gate (``compare
--ci --paired``), the win-rate task's LC win rate and the proxy reward model's accuracy bound all read these; a fix
made here reaches all of them. Imports only numpy, scipy and scikit-learn.

**Length control**: how much of a win rate or a reward gain is length alone.

**LC win rate** (Dubois et al. 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic
Evaluators", arXiv 2404.04475; AlpacaEval's ``glm_winrate``, GLM ``length_controlled_minimal``). The judge's
preference p_i in [0, 1] for the model's response over the reference (win 1, tie 0.5, loss 0) is fitted by
a logistic GLM on the standardised length difference::

    logit P(model preferred | i) = theta + phi * tanh(delta_i / std(delta)),   delta_i = len_model_i - len_ref_i

and the LC win rate is the prediction at zero length difference, sigmoid(theta). AlpacaEval's full model
also has an instruction-difficulty term fitted across many models; with one model against one reference
per run we use their minimal formula (the one without it). Soft preferences are fitted as AlpacaEval does,
each item twice (label 1 with weight p_i, label 0 with weight 1 - p_i), with scikit-learn's
``LogisticRegression`` (a weak L2 penalty, C=100, keeps a perfectly separated sample finite). The 95% CI is
a percentile bootstrap over items.

**LC reward** (``rm_reward_lc``, this project's extension, not the paper's metric): per document, the
reward difference of a row to the reference row is regressed on their length difference (ordinary least
squares, ``scipy.stats.linregress``); the intercept is the reward gain at zero length difference, reported
in the table's units (100 x reward) as reference + gain, with the intercept's 95% t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


# ------------------------------------------------------------------------------------ length control


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int


def _standardised(delta: np.ndarray) -> np.ndarray:
    sd = float(delta.std())
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta, dtype=float)


def _fit_theta(pref: np.ndarray, feat: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    n = len(pref)
    x = np.column_stack([np.ones(n), feat])
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(n), np.zeros(n)])
    w = np.concatenate([pref, 1.0 - pref])
    if w[:n].sum() == 0 or w[n:].sum() == 0:  # every item lost / won: no fit needed, the limit of the GLM
        return -math.inf if w[:n].sum() == 0 else math.inf
    model = LogisticRegression(fit_intercept=False, C=100.0, max_iter=1000)
    model.fit(xx, yy, sample_weight=w)
    return float(model.coef_[0][0])


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t)) if t > -700 else 0.0


def lc_winrate(preferences: Sequence[float], model_lengths: Sequence[float], reference_lengths: Sequence[float],
               *, n_boot: int = 500, seed: int = 0) -> Estimate:
    """The length-controlled win rate of the items (see the module docstring) with a bootstrap 95% CI."""
    pref = np.asarray(preferences, dtype=float)
    delta = np.asarray(model_lengths, dtype=float) - np.asarray(reference_lengths, dtype=float)
    if not (len(pref) == len(delta)):
        raise ValueError(f"{len(pref)} preferences but {len(delta)} length pairs")
    if len(pref) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if ((pref < 0) | (pref > 1)).any():
        raise ValueError("preferences must lie in [0, 1] (win 1, tie 0.5, loss 0)")
    value = _sigmoid(_fit_theta(pref, _standardised(delta)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(pref), len(pref))
        boots.append(_sigmoid(_fit_theta(pref[idx], _standardised(delta[idx]))))
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
    return Estimate(value, float(low), float(high), len(pref))


def lc_reward(rewards: Sequence[float], reference_rewards: Sequence[float], lengths: Sequence[float],
              reference_lengths: Sequence[float], *, scale: float = 100.0) -> Estimate:
    """Reference mean reward + the reward gain at zero length difference (OLS intercept), x ``scale``."""
    from scipy import stats

    r = np.asarray(rewards, dtype=float)
    r0 = np.asarray(reference_rewards, dtype=float)
    d_len = np.asarray(lengths, dtype=float) - np.asarray(reference_lengths, dtype=float)
    if not (len(r) == len(r0) == len(d_len)):
        raise ValueError("rewards, reference rewards and lengths must be paired per document")
    n = len(r)
    if n < 3:
        return Estimate(math.nan, math.nan, math.nan, n)
    base = scale * float(r0.mean())
    diff = r - r0
    if float(d_len.std()) == 0:  # no length variation: the plain paired mean difference
        gain, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    else:
        fit = stats.linregress(d_len, diff)
        gain, se = float(fit.intercept), float(fit.intercept_stderr)
    t = float(stats.t.ppf(0.975, n - 2))
    return Estimate(base + scale * gain, base + scale * (gain - t * se), base + scale * (gain + t * se), n)
