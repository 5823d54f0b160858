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

from icdpo_eval.baselines.rm_bon import RMBoNLM
from icdpo_eval.config.options import RM_AUG
from icdpo_eval.engine import Engine, Sample, SamplingParams, stable_seed
from icdpo_eval.method.prompts import HH, Template, cut_at_markers, postprocess
from icdpo_eval.method.teacher import HFTeacher


@dataclass
class Decoded:
    text: str
    blocks: int = 0
    rescored: int = 0  # candidates scored by a full teacher pass (see the module docstring)
    scores: list[list[float]] = field(default_factory=list)  # per block, per candidate


@dataclass
class _Block:
    """One sampled candidate block, read as the response it would make if chosen."""

    token_ids: list[int]
    text: str  # the response so far with this block ("" when empty): post-processed if ``finished``
    finished: bool  # the response ends with this block (a stop marker, EOS or the token budget)


def _read_block(base: Engine, accepted_ids: list[int], sample: Sample, stops: tuple[str, ...],
                max_new_tokens: int) -> _Block:
    full = base.decode(accepted_ids + sample.token_ids)
    cut, marker = cut_at_markers(full, stops)
    finished = (marker or sample.stop_reason != "length"
                or len(accepted_ids) + len(sample.token_ids) >= max_new_tokens)
    text = postprocess(full, stops) if finished else cut.lstrip()
    return _Block(sample.token_ids, text, finished)


@dataclass
class _TeacherScores:
    """The teacher's view of one step's candidates (indexed as sampled; empty candidates are absent)."""

    totals: dict[int, tuple[float, int]]  # log p_teacher(whole response | chat context), its teacher token count
    extensions: dict[int, list[int]]  # teacher tokens that extend the accepted text, where the candidate does
    rescored: int  # candidates scored by a full teacher pass instead

    def ranking(self, n: int, normalize: bool) -> list[float]:
        """Per candidate: the total (per teacher token with ``normalize``), ``-inf`` for an empty one."""
        scores = [-math.inf] * n
        for j, (lp, n_tokens) in self.totals.items():
            scores[j] = lp / max(n_tokens, 1) if normalize else lp
        return scores


class _AcceptedPrefix:
    """The response accepted so far, on both sides: the base model's token ids and the teacher's text, with
    the teacher's log-prob and token count of that text and a teacher session holding chat context + text."""

    def __init__(self, teacher: HFTeacher, prompt: str) -> None:
        self.teacher, self.prompt = teacher, prompt
        self.session = teacher.session(prompt)
        self.base_ids: list[int] = []
        self.text = ""  # teacher-side text (what ``session`` holds after the chat context)
        self.logprob, self.n_tokens = 0.0, 0

    def score(self, texts: list[str]) -> _TeacherScores:
        """Teacher scores of the candidate responses ``texts`` (teacher-side, "" for an empty candidate):
        one batched pass over the session for those that extend the accepted text, a full pass for the rest."""
        encode = self.teacher.engine.encode_continuation
        extending = [j for j, t in enumerate(texts) if t and t.startswith(self.text)]
        ext = {j: encode(texts[j][len(self.text):]) for j in extending}
        lps = dict(zip(extending, self.session.logprobs([ext[j] for j in extending])))
        totals = {j: (self.logprob + lps[j], self.n_tokens + len(ext[j])) for j in extending}
        redo = [j for j, t in enumerate(texts) if t and j not in lps]
        if redo:  # rare: exact full-pass scores of the whole response
            full = self.teacher.engine.logprobs([self.teacher.context(self.prompt)], [[texts[j] for j in redo]])[0]
            for j, lp in zip(redo, full):
                totals[j] = (lp, len(encode(texts[j])))
        return _TeacherScores(totals, ext, len(redo))

    def accept(self, block: _Block, text: str, scores: _TeacherScores, j: int) -> None:
        """Append candidate ``j`` (``block``, teacher-side response ``text``) to the accepted response."""
        self.base_ids += block.token_ids
        if j in scores.extensions:
            self.session.append(scores.extensions[j])
        else:  # the teacher's accepted text was rewritten: rebuild its session (rare)
            self.session = self.teacher.session(self.prompt)
            self.session.append(self.teacher.engine.encode_continuation(text))
        self.text = text
        self.logprob, self.n_tokens = scores.totals[j]


def blockwise_decode(base: Engine, teacher: HFTeacher, prompt: str, *, params: SamplingParams, n: int = 3,
                     block_size: int = 16, seed: int = 1234, normalize: bool = False,
                     template: Template = HH) -> Decoded:
    """RM-Aug's response to one HH ``prompt`` (see the module docstring)."""
    stops = tuple(params.stop)
    session = base.session(template.zero_shot(prompt), seed=stable_seed(seed, prompt))
    accepted = _AcceptedPrefix(teacher, prompt)
    out = Decoded("")
    while True:
        k = min(block_size, params.max_new_tokens - len(accepted.base_ids))
        samples = session.sample(n, k, top_p=params.top_p, top_k=params.top_k, temperature=params.temperature,
                                 do_sample=params.do_sample, stop=stops)
        out.blocks += 1
        blocks = [_read_block(base, accepted.base_ids, s, stops, params.max_new_tokens)
                  for s in samples]
        teacher_texts = [teacher.as_continuation(b.text) if b.text else "" for b in blocks]
        scored = accepted.score(teacher_texts)
        out.rescored += scored.rescored
        scores = scored.ranking(n, normalize)
        out.scores.append(scores)
        nonempty = [j for j in range(n) if blocks[j].text]
        if not nonempty:
            out.text = postprocess(base.decode(accepted.base_ids), stops)
            return out
        best = max(nonempty, key=lambda j: scores[j])
        if blocks[best].finished:
            out.text = blocks[best].text
            return out
        session.accept(best)
        accepted.accept(blocks[best], teacher_texts[best], scored, best)


class RMAugLM(RMBoNLM):
    """RM-Aug: rm_bon's options plus ``block_size`` (default 16 tokens)."""

    method = "rm_aug"
    OPTIONS = RM_AUG

    def validate(self) -> None:
        self.block_size = self.cfg.block_size
        super().validate()

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str]:
        params, tpl = self.sampling_params(gk, task), self.template(task)
        return [blockwise_decode(self.engine, self.teacher, self.prepare(task, r.args[0]), params=params, n=self.n,
                                 block_size=self.block_size, seed=self.seed, normalize=self.normalize,
                                 template=tpl).text
                for r in reqs]
