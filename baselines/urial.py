"""``lm_eval --model urial``: URIAL (Lin et al., ICLR 2024), the base model under one fixed alignment prefix.

generate_until: each prompt follows the prefix (:mod:`icdpo_eval.method.urial`: ours by default, ``released`` or a
file), and the base model answers with the paper's decoding (temperature 0.3, top-p 1.0, repetition penalty 1.1;
the task's token limit). The prefix is prefilled ONCE per process (:meth:`Engine.prefix`) and its cache copied under
every document, candidate and scoring pass; ``config.icdpo_eval`` records the count (``prefix_prefills``).
loglikelihood: log π(y | prefix, x), the response's log-likelihood under the prefix (on the same cached prefix).
Algorithm, settings and our choices: docs/urial.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from icdpo_eval.config import names
from icdpo_eval.config.options import URIAL
from icdpo_eval.engine import Engine, Prefix, stable_seed
from icdpo_eval.errors import OptionError
from icdpo_eval.method import urial
from icdpo_eval.method.best_of_n import Answer
from icdpo_eval.method.prompts import postprocess
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.models.base import MethodLM


class PrefixScorer:
    """log π(y | prefix, x): the continuation scored after a copy of the prefix's cache (the scorer interface)."""

    def __init__(self, engine: Engine, prefix: Prefix, align: urial.AlignmentPrefix) -> None:
        self.engine, self.prefix, self.align = engine, prefix, align

    def score(self, groups: list[list[Candidate]]) -> list[list[float]]:
        eng = self.engine
        ctx = [eng.encode_continuation(self.align.follow(g[0].prompt, g[0].template)) if g else [] for g in groups]
        conts = [[eng.encode_continuation(self.align.continuation(c.continuation)) for c in g] for g in groups]
        return eng.logprobs_ids(ctx, conts, prefix=self.prefix)


class URIALLM(MethodLM):
    """The base model under URIAL's fixed prefix. Options: docs/options.md."""

    method = "urial"
    OPTIONS = URIAL

    def validate(self) -> None:
        self.align = urial.load(self.cfg.urial_prompt, self.cfg.urial_format)
        # the prefix must fit the length limit with room to answer: checked on the tokenizer alone
        tok = Engine.tokenizer_only(names.resolve(self.pretrained), revision=self.cfg.revision,
                                    trust_remote_code=self.cfg.trust_remote_code, max_length=self.cfg.max_length,
                                    fast=True)
        n = len(tok.encode_context(self.align.text))
        if n >= tok.max_length:
            raise OptionError(f"--model urial model_arg urial_prompt={self.cfg.urial_prompt}: the prefix is {n} "
                              f"tokens, not under max_length={tok.max_length}; raise max_length or pass a shorter "
                              "prefix")

    def load(self) -> None:
        self.load_engine()
        self.prefix = self.engine.prefix(self.align.text)  # once per process
        self.scorer = PrefixScorer(self.engine, self.prefix, self.align)

    def contexts_of(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[str]]:
        tpl = self.template(task)
        return [[self.align.text + self.align.follow(p, tpl)] for p in prompts]

    def model_info(self) -> dict[str, Any]:
        return {**self.align.info, "prefix_tokens": len(self.prefix.ids),
                "prefix_prefills": self.engine.counts["prefix_prefills"]}

    def resolved(self) -> dict[str, Any]:
        return {**super().resolved(), "urial_prefix_sha256": self.align.sha256, "urial_format": self.align.format}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        params = self.sampling_params(gk, task)
        params = replace(params, stop=(*params.stop, *self.align.stops()),
                         repetition_penalty=self.cfg.repetition_penalty)
        tpl = self.template(task)
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        suffixes = [self.engine.encode_continuation(self.align.follow(p, tpl)) for p in prompts]
        samples = self.engine.sample_ids(suffixes, 1, params, [stable_seed(self.seed, p) for p in prompts],
                                         docs_per_batch=len(prompts), prefix=self.prefix,
                                         names=[f"{task} doc {r.doc_id}" for r in reqs])
        info = {"method": "urial", "prefix_sha256": self.align.sha256, "prefix_tokens": len(self.prefix.ids),
                "format": self.align.format, "source": self.align.source}
        return [Answer(self.align.clean(postprocess(s.text, params.stop)), info) for (s,) in samples]
