"""Offline proxy reward model: a Bradley-Terry head on frozen MiniLM sentence embeddings.

Used when the paper's reward model (OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1) cannot be
loaded. Features of a (prompt, response) pair, all from the embedded all-MiniLM-L6-v2 encoder
(unit-normalised):

    f(x, y) = [ e(y), e(h) * e(y) ]     h = the last human turn of x

The reward is ``r(x, y) = w . f(x, y) - b``. ``w`` is fitted by L2-regularised pairwise logistic
regression (Bradley-Terry: ``P(chosen > rejected) = sigmoid(r(x, y_c) - r(x, y_r))``) on the
chosen/rejected pairs of the vendored demo pool (``hh-rlhf-mini`` split ``pool``, 1000 pairs);
the L2 strength is chosen by 5-fold cross-validation on the pool only. ``b`` centres the reward
on the pool (mean of chosen and rejected rewards = 0), so 0 means "a typical dataset response"
and the value is a BT logit, comparable in spirit to an RM logit.

Measured pairwise accuracy on held-out harmless-base test pairs: :data:`PROXY_HELDOUT_ACCURACY`
(produced by ``benchmarks/proxy_rm_accuracy.py``, the README's table): a weak but real signal. It is
a *proxy*; numbers produced with it are not comparable to the paper's.

The fit (about a minute on 2 CPU cores, mostly encoding) is cached in
``cache_dir()/proxy_rm/<hash>.npz``; the hash covers the training rows, the features and the
hyper-parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from icdpo_eval.config import settings
from icdpo_eval.runtime import atomic_write, locked
from icdpo_eval.stats import wilson

log = logging.getLogger(__name__)

# a seeded sample of 200 held-out pairs, vendored (with its licence) so that the accuracy check runs
# without the HH-RLHF test file
HELDOUT_SAMPLE_FILE = Path(__file__).resolve().parents[1] / "data" / "hh_harmless_heldout" / "sample200.jsonl.gz"


class PairAccuracy(NamedTuple):
    """k of n preference pairs ranked correctly (reward(chosen) > reward(rejected))."""

    k: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.k / self.n

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def __str__(self) -> str:
        lo, hi = self.ci95
        return f"{self.accuracy:.1%} (n={self.n}, 95% CI {lo:.1%}-{hi:.1%})"


class HeldoutAccuracy(NamedTuple):
    all: PairAccuracy  # all held-out pairs (harmless-base test rows in neither mini split, no length filter)
    sample: PairAccuracy  # the vendored seeded sample of them (HELDOUT_SAMPLE_FILE)
    command: str


# The shipped proxy's measured pairwise accuracy: the one source of the number in log messages and docs.
# `command` prints it (as the README's table); tests/test_reward_model.py re-measures `sample` through the
# benchmark and checks it against this, so a change to the proxy that moves its accuracy must update it.
PROXY_HELDOUT_ACCURACY = HeldoutAccuracy(
    all=PairAccuracy(k=732, n=1203),
    sample=PairAccuracy(k=123, n=200),
    command="python benchmarks/proxy_rm_accuracy.py --data-dir ../shared/data --lm-judge",
)

FEATURES_VERSION = "bt-minilm-v1"
L2_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
N_FOLDS = 5
SEED = 0


def last_human_turn(prompt: str) -> str:
    from icdpo_eval.data.hh import hh_to_turns

    humans = [text for role, text in hh_to_turns(prompt) if role == "user"]
    return humans[-1]


def _bt_loss(w: np.ndarray, d: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """Pairwise logistic loss sum(log(1 + exp(-d w))) + lam/2 |w|^2 and its gradient."""
    z = d @ w
    loss = float(np.logaddexp(0.0, -z).sum() + 0.5 * lam * w @ w)
    p = 0.5 * (1.0 + np.tanh(-0.5 * z))  # sigmoid(-z), overflow-free
    grad = -(d.T @ p) + lam * w
    return loss, grad


def fit_bt(d: np.ndarray, lam: float) -> np.ndarray:
    """Weights of a Bradley-Terry model on feature differences ``d = f(chosen) - f(rejected)``."""
    from scipy.optimize import minimize

    res = minimize(_bt_loss, np.zeros(d.shape[1]), args=(d, lam), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})
    return res.x


def cv_select_l2(d: np.ndarray, grid: Sequence[float] = L2_GRID, folds: int = N_FOLDS,
                 seed: int = SEED) -> tuple[float, dict[float, float]]:
    """Pick the L2 strength with the best k-fold pairwise accuracy (ties -> stronger penalty)."""
    order = np.random.default_rng(seed).permutation(len(d))
    parts = np.array_split(order, folds)
    scores: dict[float, float] = {}
    for lam in grid:
        correct = 0
        for k in range(folds):
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            w = fit_bt(d[train], lam)
            correct += int((d[parts[k]] @ w > 0).sum())
        scores[lam] = correct / len(d)
    best = max(grid, key=lambda lam: (scores[lam], lam))
    return best, scores


class Encoder:
    """all-MiniLM-L6-v2 sentence embeddings (embedded package, no hub access)."""

    def __init__(self, device: str | None = None, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        from icdpo_eval.config.names import SBERT, resolve

        self.model = SentenceTransformer(resolve(SBERT), device=device or "cpu")
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress).astype(np.float64)


def features(enc: Encoder, prompts: Sequence[str], responses: Sequence[str],
             progress: bool = False) -> np.ndarray:
    humans = [last_human_turn(p) for p in prompts]
    uniq = sorted(set(humans))
    e_h = enc(uniq, progress=False)
    idx = {h: i for i, h in enumerate(uniq)}
    e_h = e_h[[idx[h] for h in humans]]
    e_y = enc(responses, progress=progress)
    return np.hstack([e_y, e_h * e_y])


def encoder_identity() -> str | None:
    """None for the real all-MiniLM-L6-v2; the twin's folder and weights hash under ``$ICDPO_EMBEDDED_DIR``."""
    from icdpo_eval.data.embedded import identity

    return identity("sbert")


def _training_hash(rows: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    encoder = encoder_identity()
    h.update(json.dumps({"features": FEATURES_VERSION, "l2_grid": L2_GRID, "folds": N_FOLDS,
                         "seed": SEED, "encoder": "all-MiniLM-L6-v2"}, sort_keys=True).encode())
    if encoder is not None:  # a twin (or the user's own model) under ICDPO_EMBEDDED_DIR: its own fit
        h.update(b"encoder\0" + encoder.encode())
    for r in rows:
        h.update(json.dumps([r["prompt"], r["chosen"], r["rejected"]]).encode())
    return h.hexdigest()


class ProxyRewardModel:
    """``score(prompts, responses)`` -> BT logits; ``name`` = ``proxy:bt-minilm@<hash8>`` (``proxy:bt-embedded-dir@``
    when the encoder is ``$ICDPO_EMBEDDED_DIR``'s, e.g. the tests' tiny twin)."""

    def __init__(self, rows: Sequence[dict[str, Any]] | None = None, device: str | None = None,
                 cache: bool = True) -> None:
        if rows is None:
            from icdpo_eval.data.datasets import load_pairs

            rows = load_pairs("hh-rlhf-mini", None, "pool")
        self.digest = _training_hash(rows)
        label = "minilm" if encoder_identity() is None else "embedded-dir"
        self.name = f"proxy:bt-{label}@{self.digest[:8]}"
        self.encoder = Encoder(device)
        self.info: dict[str, Any] = {}
        if not cache:
            self._fit(rows)
            return
        path = self.cache_path()
        with locked(path):  # one process fits, the others read its file
            if path.exists():
                data = np.load(path)
                self.w, self.b = data["w"], float(data["b"])
                self.info = json.loads(str(data["info"]))
                return
            self._fit(rows)
            atomic_write(path, lambda fh: np.savez(fh, w=self.w, b=self.b, info=json.dumps(self.info)), binary=True)

    def cache_path(self) -> Path:
        return settings.cache_dir() / "proxy_rm" / f"{FEATURES_VERSION}-{self.digest[:16]}.npz"

    def _fit(self, rows: Sequence[dict[str, Any]]) -> None:
        import time

        t0 = time.perf_counter()
        log.warning("icdpo-eval: fitting the proxy reward model on %d pairs (once, cached)", len(rows))
        prompts = [r["prompt"] for r in rows]
        fc = features(self.encoder, prompts, [r["chosen"] for r in rows])
        fr = features(self.encoder, prompts, [r["rejected"] for r in rows])
        d = fc - fr
        lam, cv = cv_select_l2(d)
        self.w = fit_bt(d, lam)
        self.b = float(0.5 * (fc @ self.w + fr @ self.w).mean())
        self.info = {"n_pairs": len(rows), "l2": lam, "cv_accuracy": cv[lam],
                     "train_accuracy": float((d @ self.w > 0).mean()),
                     "fit_seconds": round(time.perf_counter() - t0, 1)}
        log.info("proxy RM fitted: %s", self.info)

    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: bool = False) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        f = features(self.encoder, prompts, responses, progress=progress)
        return [float(v) for v in f @ self.w - self.b]
