"""``lm_eval --model icdpo``: ICDPO and its ICL-only ablations as an lm-eval model.

generate_until: retrieve K demos for the request's dialogue, sample N candidates from the base model
under the positive in-context prompt, cut them at turn markers, score them with S / Ŝ / ICL, return
the best (or, for the ablations, a random one / the single sample). ``preset=paper`` (default) is the
released code's behaviour, ``preset=legacy`` icdpo-eval 0.1's (:mod:`icdpo_eval.method.presets`).
loglikelihood: the configured scorer's value of (context, continuation), so any multiple-choice task
ranks its choices by S / Ŝ / ICL.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from icdpo_eval.data import embedded
from icdpo_eval.method.best_of_n import SELECTS, sample_and_select
from icdpo_eval.method.scorers import SCORERS, ContrastiveScorer, positive_context
from icdpo_eval.models.args import as_batch_size, as_int, choice
from icdpo_eval.models.base import DemoRetrieval, MethodLM

log = logging.getLogger(__name__)


class ICDPOLM(DemoRetrieval, MethodLM):
    """ICDPO over one base model. See the README's options table for every model_arg."""

    method = "icdpo"

    def __init__(
        self,
        pretrained: str | None = None,
        scorer: str = "s",
        select: str = "score",
        retriever: str = "random",
        sbert: str | None = None,
        n: int | str = 3,
        k: int | str = 2,
        preset: str = "paper",
        template: str | None = None,
        score_eos: bool | str | None = None,
        empty: str | None = None,
        bm25_tokens: str | None = None,
        top_p: float | str | None = None,
        top_k: int | str | None = None,
        temperature: float | str | None = None,
        max_new_tokens: int | str | None = None,
        bm25_window: int | str = 30,
        bm25_top: int | str = 20,
        demo_pool: str | None = None,
        demo_source: str = "raw",
        seed: int | str = 1234,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        max_length: int | str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | str = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        self.take_common_args(unknown)
        self.scorer_kind = choice("scorer", scorer, SCORERS)
        self.select = choice("select", select, SELECTS)
        self.n = 1 if self.select == "single" else as_int("n", n, 1)
        self.set_settings(preset, template=template, score_eos=score_eos, empty=empty, bm25_tokens=bm25_tokens)
        self.set_generation_args(top_p, temperature, max_new_tokens, top_k)
        self.seed = as_int("seed", seed)
        self.batch_size = as_batch_size(batch_size, auto=4)
        self.setup_retrieval(k=k, retriever=retriever, sbert=sbert, bm25_window=bm25_window, bm25_top=bm25_top,
                             demo_pool=demo_pool, demo_source=demo_source)
        self.pretrained = pretrained or embedded.BASE_ALIAS
        self.load_engine(self.pretrained, device=device, dtype=dtype, max_length=max_length, revision=revision,
                         trust_remote_code=trust_remote_code)
        self.scorer = ContrastiveScorer(self.engine, self.scorer_kind, score_eos=self.settings.score_eos,
                                        empty=self.settings.empty)
        self.stats: dict[str, int] = defaultdict(int)

    def get_model_info(self) -> dict:
        return {"method": self.method, "pretrained": self.pretrained, "scorer": self.scorer_kind,
                "select": self.select, "n": self.n, **self.retrieval_info(), **self.sampling_info(),
                "seed": self.seed, "dtype": str(self.engine.model.dtype)}

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        return self.retrieve(task, prompts, exclude_self)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = super().generate_until(requests, disable_tqdm)
        if self.stats["empty"]:
            log.warning("icdpo: %d of %d documents returned an empty response", self.stats["empty"], len(requests))
        return out

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        params = self.sampling_params(gk)
        prompts = [r.args[0] for r in reqs]
        demos = self.retrieve(task, prompts)
        tpl = self.template(task)
        choices = sample_and_select(
            self.engine, self.scorer, prompts, [positive_context(p, d, tpl) for p, d in zip(prompts, demos)], demos,
            n=self.n, params=params, select=self.select, seed=self.seed, empty=self.settings.empty,
            legacy_postprocess=self.settings.postprocess == "legacy", template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs])
        self.stats["empty"] += sum(not c.text for c in choices)
        return choices
