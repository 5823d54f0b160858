"""``lm_eval --model rm_aug``: blockwise controlled decoding with a teacher as the reward (the paper's RM-Aug).

Mudgal et al. (2023), "Controlled Decoding from Language Models", blockwise best-of-N: from the plain prompt,
sample N continuations of ``block_size`` tokens from the base model, let the teacher score prefix + block,
keep the best block, append it and repeat until EOS, a turn marker or ``max_new_tokens``.

* **Scores.** The teacher's score of a candidate is log p_teacher(accepted + block | chat context): the
  accepted prefix's log-prob (kept from earlier blocks) plus the block's log-prob given teacher context +
  accepted text. The prefix term is shared by all candidates of a step, so the ranking equals ranking by
  the block's log-prob alone; with ``normalize=true`` the total is divided by the teacher token count.
* **Caches.** Neither model re-encodes the growing prefix: the base model decodes from an
  :class:`~icdpo_eval.engine.Session` (the prompt is prefilled once, its cache expanded across the N rows, the
  chosen row's cache kept); the teacher keeps its own session over its chat context + the accepted text
  and scores the N blocks in one batched pass over a copy of it.
* **Tokenization boundary (approximation).** The teacher sees the accepted text as the concatenation of
  each accepted block's text tokenized separately, which can differ from tokenizing the whole response at
  once where a block boundary falls inside a word. A candidate whose text does not extend the accepted text
  (a turn marker straddling the boundary, trailing whitespace removed at the end, a multi-byte character
  split across blocks) is scored exactly, by a full teacher pass over the whole response.
* With ``block_size >= max_new_tokens`` there is one block: the same candidates (same seeds, same sampler)
  and the same teacher scores as ``rm_bon``, hence the same answer.
* Documents are decoded one at a time (``batch_size`` only groups lm-eval's requests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from icdpo_eval.baselines.rm_bon import RMBoNLM
from icdpo_eval.engine import Engine, SamplingParams, stable_seed
from icdpo_eval.method.prompts import HH, Template, postprocess
from icdpo_eval.method.teacher import HFTeacher
from icdpo_eval.models.args import as_int


@dataclass
class Decoded:
    text: str
    blocks: int = 0
    rescored: int = 0  # candidates scored by a full teacher pass (see the module docstring)
    scores: list[list[float]] = field(default_factory=list)  # per block, per candidate


def _cut(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """``text`` up to its first stop marker, and whether there was one."""
    idx = [i for i in (text.find(m) for m in stops if m) if i != -1]
    return (text[:min(idx)], True) if idx else (text, False)


def blockwise_decode(base: Engine, teacher: HFTeacher, prompt: str, *, params: SamplingParams, n: int = 3,
                     block_size: int = 16, seed: int = 1234, normalize: bool = False,
                     legacy_postprocess: bool = False, template: Template = HH) -> Decoded:
    """RM-Aug's response to one HH ``prompt`` (see the module docstring)."""
    stops = tuple(params.stop)
    max_new_tokens = params.max_new_tokens
    bs = base.session(template.zero_shot(prompt), seed=stable_seed(seed, prompt))
    ts = teacher.session(prompt)
    tenc = teacher.engine.encode_continuation
    acc_ids: list[int] = []
    fed = ""  # the teacher-side text of the accepted response (what ts holds after its context)
    acc_lp, acc_n = 0.0, 0
    out = Decoded("")
    while True:
        k = min(block_size, max_new_tokens - len(acc_ids))
        samples = bs.sample(n, k, top_p=params.top_p, top_k=params.top_k, temperature=params.temperature,
                            do_sample=params.do_sample, stop=stops)
        out.blocks += 1
        fulls, texts, finished = [], [], []
        for s in samples:
            full = base.decode(acc_ids + s.token_ids)
            cut, marker = _cut(full, stops)
            done = marker or s.stop_reason != "length" or len(acc_ids) + len(s.token_ids) >= max_new_tokens
            fulls.append(full)
            finished.append(done)
            texts.append(postprocess(full, stops, legacy=legacy_postprocess) if done else cut.lstrip())
        tele = [teacher.as_continuation(t) if t else "" for t in texts]
        ext = [j for j, t in enumerate(tele) if t and t.startswith(fed)]  # extends the accepted text
        conts = {j: tenc(tele[j][len(fed):]) for j in ext}
        lps = dict(zip(ext, ts.logprobs([conts[j] for j in ext])))
        totals: dict[int, tuple[float, int]] = {j: (acc_lp + lps[j], acc_n + len(conts[j])) for j in ext}
        redo = [j for j, t in enumerate(tele) if t and j not in lps]
        if redo:  # rare: exact full-pass scores of the whole response
            out.rescored += len(redo)
            full_lp = teacher.engine.logprobs([teacher.context(prompt)], [[tele[j] for j in redo]])[0]
            for j, v in zip(redo, full_lp):
                totals[j] = (v, len(tenc(tele[j])))
        scores = [-math.inf] * n
        for j, (v, m) in totals.items():
            scores[j] = v / max(m, 1) if normalize else v
        out.scores.append(scores)
        nonempty = [j for j in range(n) if texts[j]]
        if not nonempty:
            out.text = postprocess(base.decode(acc_ids), stops, legacy=legacy_postprocess)
            return out
        best = max(nonempty, key=lambda j: scores[j])
        if finished[best]:
            out.text = texts[best]
            return out
        bs.accept(best)
        acc_ids += samples[best].token_ids
        if best in conts:
            ts.append(conts[best])
        else:  # the teacher's accepted text was rewritten: rebuild its session (rare)
            ts = teacher.session(prompt)
            ts.append(tenc(tele[best]))
        fed = tele[best]
        acc_lp, acc_n = totals[best]


class RMAugLM(RMBoNLM):
    """RM-Aug: rm_bon's model_args plus ``block_size`` (default 16 tokens)."""

    method = "rm_aug"

    def _extra_args(self, extra: dict[str, Any]) -> None:
        self.block_size = as_int("block_size", extra.pop("block_size", 16), 1)

    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "block_size": self.block_size}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str]:
        params, tpl = self.sampling_params(gk), self.template(task)
        return [blockwise_decode(self.engine, self.teacher, r.args[0], params=params, n=self.n,
                                 block_size=self.block_size, seed=self.seed, normalize=self.normalize,
                                 legacy_postprocess=self.settings.postprocess == "legacy", template=tpl).text
                for r in reqs]
