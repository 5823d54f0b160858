"""Length-controlled comparisons: how much of a win rate or a reward gain is length alone.

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

import numpy as np


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
