"""The hot path: prefix-cached sampling and scoring on a Hugging Face causal LM.

Every method in icdpo-eval (ICDPO, its ablations and the baselines) is "generate candidates, then
score them" over this one class. What it guarantees:

* each distinct context is encoded ONCE (one prefill); its KV cache is expanded across the N samples
  drawn from it, or across all the continuations scored under it;
* the logits over the vocabulary are computed only where they are needed: the last position of a
  prefill, one position per row and decode step, the continuation positions of a scoring pass;
* rows of several documents are decoded together (left-padded), finished rows are dropped from the
  batch as they stop;
* log-probs equal a plain full forward pass of context + continuation (tested to 1e-4 in fp32);
* sampling applies temperature, then top-k, then top-p, as transformers' warpers do (HF ``generate``
  is what the released ICDPO code samples with); top-p is exact but avoids the full-vocabulary sort
  (top-k prefilter, falls back to a full sort for the rare rows whose top-k mass is below p); each row
  draws from its own seeded generator, so a document's samples do not depend on how requests were
  batched;
* each sampling step also records log p(EOS | context, tokens so far), so a candidate scored with its
  EOS appended (as the released scorer does) still reuses the sampling pass;
* a :class:`Prefix` (text every context of a run starts with, e.g. URIAL's alignment prefix) is prefilled once and its
  cache copied under each context that extends it: ``sample_ids`` / ``logprobs_ids`` take the suffixes;
* a ``choose`` callback may replace the sampler's draw (reward-guided decoding: ARGS) in the same loop;
* every forward call, the positions it processed (prefill, decode, scoring; padding apart), the context positions
  served from a copied or expanded KV cache and the tokens drawn are counted here, in :attr:`Engine.counts` and the
  process's :data:`icdpo_eval.runtime.METER` under the engine's :attr:`Engine.label` (one place, for every method);
* :class:`Session` keeps ONE growing sequence's cache for blockwise methods (RM-Aug): sample N blocks from
  it, score blocks over it, continue with the chosen one, never re-encoding the prefix.

Loading the weights, tokenizing and the plain forward pass the cached log-probs are tested against live in
:class:`~icdpo_eval.engine.loading.LoadedLM` (the base class); what a draw returns, and how it draws, in
:mod:`.sampling`; the decode step's kernels in :mod:`.kernels`.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from icdpo_eval.engine.kernels import DecodeKernels
from icdpo_eval.engine.loading import CACHE_ARG, LoadedLM, cache_of, merge_left_padded, model_label
from icdpo_eval.engine.sampling import Sample, SamplingParams, row_generator, stable_seed, top_p_choice
from icdpo_eval.runtime import METER, run_engine

log = logging.getLogger(__name__)


class Prefix(NamedTuple):
    """Token ids every context of a run starts with, prefilled once (:meth:`Engine.prefix`): its cache (one row)
    and the next-token logits after it. Copied, never changed, by each prefill that extends it."""

    ids: list[int]
    cache: Any
    logits: torch.Tensor


class Rows(NamedTuple):
    """Batch rows over one KV cache: next-token logits [B, V], the cache, the attention mask [B, T] (left
    padding = 0) and each row's next position [B]. What a prefill returns and decoding / scoring consume."""

    logits: torch.Tensor
    cache: Any
    mask: torch.Tensor
    next_pos: torch.Tensor

    def repeat(self, n: int) -> Rows:
        """Each row ``n`` times in place (row r becomes rows r*n .. r*n+n-1); the cache is expanded, not copied."""
        if n == 1:
            return self
        self.cache.batch_repeat_interleave(n)
        return Rows(self.logits.repeat_interleave(n, 0), self.cache, self.mask.repeat_interleave(n, 0),
                    self.next_pos.repeat_interleave(n, 0))

    def select(self, sel: torch.Tensor) -> Rows:
        """The rows ``sel`` (indices, repeats allowed); the cache is narrowed in place."""
        self.cache.batch_select_indices(sel)
        return Rows(self.logits[sel], self.cache, self.mask[sel], self.next_pos[sel])


# (draw logits [B, V], row index of each batch slot, each row's tokens so far, every row's generator) -> next token
# per slot [B]: a decoding rule that replaces the sampler's draw inside the one decode loop (ARGS)
Choose = Callable[[torch.Tensor, list[int], list[list[int]], list[torch.Generator]], torch.Tensor]


class Engine(LoadedLM):
    """Prefix-cached sampler/scorer over one causal LM (see module docstring)."""

    def __init__(self, model, tokenizer, *, device: torch.device, max_rows: int = 24,
                 max_length: int | None = None, weights_key: tuple | None = None, kernels: str = "auto") -> None:
        self.model = model.eval()
        self.device = device
        self.kernels = DecodeKernels.for_model(model, device, kernels)  # the decode step's kernels (kernels.py)
        # what determines the weights (name, dtype, device, revision, adapter): names stored candidates
        self.weights_key = weights_key or (str(getattr(model.config, "_name_or_path", "")), str(model.dtype),
                                           str(device))
        self.max_rows = max_rows
        # forward calls and positions fed (padding included), prefix prefills: what the model spent (also in METER)
        self.counts: Counter[str] = Counter()
        self.label = model_label(self.weights_key)
        self.dtype = str(model.dtype)
        run_engine(self)  # the current lm-eval run's (freed before its scorer loads, where the run allows it)
        self._init_tokens(tokenizer, max_length or getattr(model.config, "max_position_embeddings", None))
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    # ----------------------------------------------------------------- model calls
    def count(self, **n: int) -> None:
        """Add to this engine's counts and the process's :data:`~icdpo_eval.runtime.METER` (see :class:`Meter`)."""
        self.counts.update({k: v for k, v in n.items() if v})
        METER.add(self.label, **n)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache, keep: int, *,
                 kind: str = "prefill", padding: int = 0):
        """Logits at the last ``keep`` positions (all with 0) and the updated cache. A decode step (one position
        per row) runs the trunk and the vocabulary projection in the kernels :attr:`kernels` chose for that many
        rows; anything else is the model's forward. ``kind`` (prefill | decode | score) and ``padding`` (positions
        of ``ids`` that are padding) are what the call is counted as."""
        if self.model is None:
            raise RuntimeError(f"engine {self.label}: its weights were released after the run's requests (a model "
                               "call after scoring began)")
        self.counts["forward_calls"] += 1
        self.counts["forward_tokens"] += ids.numel()
        METER.add(self.label, calls=1, **{f"{kind}_tokens": ids.numel()}, padding_tokens=padding)
        if self.kernels.active and keep == 1:
            out = self.trunk_step(ids, mask, pos, cache)
            return self.kernels.head(out.last_hidden_state[:, -1:, :]), cache_of(out)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=keep,
                         **{CACHE_ARG: cache})
        return out.logits, cache_of(out)

    def trunk_step(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> Any:
        """The trunk (no head) on one decode step, in the kernels chosen for the row count."""
        with self.kernels.decode(ids.shape[0]):
            return self.kernels.trunk(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                                      **{CACHE_ARG: cache})

    def prefix(self, text_or_ids: str | Sequence[int]) -> Prefix:
        """Prefill the run's shared prefix once (text encoded like :meth:`encode_context`, or token ids)."""
        ids = self.encode_context(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
        self._check_length(len(ids), 0, "prefix")
        with torch.inference_mode():
            logits, cache = self._prefill_padded([ids])
        self.counts["prefix_prefills"] += 1
        return Prefix(ids, cache, logits)

    def _extend(self, prefix: Prefix, suffix: list[int]) -> tuple[torch.Tensor, Any]:
        """One row: a copy of ``prefix``'s cache with ``suffix`` fed after it (next-token logits, cache)."""
        cache = copy.deepcopy(prefix.cache)
        self.count(cached_tokens=len(prefix.ids))
        if not suffix:
            return prefix.logits, cache
        n0, total = len(prefix.ids), len(prefix.ids) + len(suffix)
        mask = torch.ones((1, total), dtype=torch.long, device=self.device)
        pos = torch.arange(n0, total, device=self.device)[None, :]
        logits, cache = self._forward(torch.tensor([suffix], device=self.device), mask, pos, cache, keep=1)
        return logits[:, -1, :], cache

    def _prefill(self, contexts: list[list[int]], prefix: Prefix | None = None) -> Rows:
        """Prefill of several contexts as one left-padded batch (:class:`Rows`). Contexts of different lengths
        are encoded one by one (no compute spent on padding: prefill is compute-bound) and their caches merged,
        left-padded, when the cache layout allows it. With ``prefix``, ``contexts`` are what follows it: each row
        starts from a copy of the prefix's cache."""
        full = [len(c) for c in contexts] if prefix is None else [len(prefix.ids) + len(c) for c in contexts]
        width = max(full)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for r, n in enumerate(full):
            mask[r, width - n:] = 1
        mask = mask.to(self.device)
        lengths = torch.tensor(full, device=self.device)
        if prefix is not None:
            parts = [self._extend(prefix, c) for c in contexts]
            merged = parts[0][1] if len(parts) == 1 else merge_left_padded([p[1] for p in parts], width)
            if merged is not None:
                return Rows(torch.cat([p[0] for p in parts]), merged, mask, lengths)
            contexts = [prefix.ids + c for c in contexts]  # a cache layout we cannot merge: encode in full
        elif len(contexts) > 1 and len(set(full)) > 1:
            parts = [self._prefill_padded([c]) for c in contexts]
            merged = merge_left_padded([p[1] for p in parts], width)
            if merged is not None:
                return Rows(torch.cat([p[0] for p in parts]), merged, mask, lengths)
        logits, cache = self._prefill_padded(contexts)
        return Rows(logits, cache, mask, lengths)

    def _prefill_padded(self, contexts: list[list[int]]):
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for r, c in enumerate(contexts):
            ids[r, width - len(c):] = torch.tensor(c)
            mask[r, width - len(c):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        ids, mask, pos = ids.to(self.device), mask.to(self.device), pos.to(self.device)
        logits, cache = self._forward(ids, mask, pos, None, keep=1, padding=int(ids.numel() - mask.sum()))
        return logits[:, -1, :], cache

    def _check_length(self, n_ctx: int, n_new: int, what: str) -> None:
        if n_ctx + n_new > self.max_length:
            raise ValueError(f"{what}: {n_ctx} context tokens + {n_new} new tokens exceed the model's "
                             f"max length {self.max_length}")

    # ----------------------------------------------------------------- sampling
    @torch.inference_mode()
    def sample(self, contexts: list[str], n: int, *, max_new_tokens: int = 128, top_p: float = 1.0,
               top_k: int = 0, temperature: float = 1.0, do_sample: bool = True,
               seeds: Sequence[int] | None = None, stop: Sequence[str] = (), docs_per_batch: int | None = None,
               names: Sequence[str] | None = None, params: SamplingParams | None = None,
               forced: Sequence[Sequence[int]] | None = None) -> list[list[Sample]]:
        """``n`` continuations of each context. Each context is prefilled once; rows of up to
        ``docs_per_batch`` contexts decode together. ``seeds[i]`` seeds context i's rows. ``params``, when
        given, replaces the individual sampling keywords. ``forced[i * n + j]``: row j of context i takes these
        tokens instead of drawing (then EOS), with every log-prob computed as in sampling (a replay: tests, and
        scoring given candidates exactly as the generation path does)."""
        p = params or SamplingParams(max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k,
                                    temperature=temperature, do_sample=do_sample, stop=tuple(stop))
        seeds = list(seeds) if seeds is not None else [stable_seed(c) for c in contexts]
        return self.sample_ids([self.encode_context(c) for c in contexts], n, p, seeds, docs_per_batch=docs_per_batch,
                               names=names, forced=forced)

    @torch.inference_mode()
    def sample_ids(self, ctx_ids: list[list[int]], n: int, p: SamplingParams, seeds: Sequence[int], *,
                   docs_per_batch: int | None = None, names: Sequence[str] | None = None,
                   forced: Sequence[Sequence[int]] | None = None, prefix: Prefix | None = None,
                   choose: Choose | None = None) -> list[list[Sample]]:
        """:meth:`sample` on token ids (``prefix``: the ids follow this prefilled :class:`Prefix`); ``choose``
        replaces the draw (see :data:`Choose`)."""
        n0 = len(prefix.ids) if prefix is not None else 0
        for i, c in enumerate(ctx_ids):
            self._check_length(n0 + len(c), p.max_new_tokens, names[i] if names else f"context {i}")
        per = docs_per_batch or max(1, self.max_rows // max(n, 1))
        out: list[list[Sample]] = []
        for s in range(0, len(ctx_ids), per):
            batch = ctx_ids[s:s + per]
            rows = self._prefill(batch, prefix).repeat(n)
            self.count(cached_tokens=(n - 1) * sum(n0 + len(c) for c in batch))
            gens = [row_generator(seed, j) for seed in seeds[s:s + per] for j in range(n)]
            seen = None
            if p.repetition_penalty != 1.0:  # every token of the row's context counts as seen (as in HF)
                seen = [(prefix.ids if prefix is not None else []) + c for c in batch for _ in range(n)]
            samples, _ = self._decode(rows, gens, p, None if forced is None else forced[s * n:(s + per) * n],
                                      choose=choose, seen=seen)
            out += [samples[d * n:(d + 1) * n] for d in range(len(batch))]
        return out

    @staticmethod
    def draw_cost(ctx_len: int, samples: Sequence[Sample]) -> dict[str, int]:
        """What :meth:`sample_ids` spends drawing ``samples`` from one context of ``ctx_len`` tokens, as the decode
        loop below counts it: one prefill of the context, its cache expanded over the rows, then one decode position
        per row and step for every drawn token that is fed back (a row ending with EOS feeds all its tokens; one
        stopped by a stop string or the token limit, all but its last). What a reused draw is counted at
        (:mod:`icdpo_eval.method.candidates`)."""
        fed = [len(x.token_ids) if x.stop_reason == "eos" else max(0, len(x.token_ids) - 1) for x in samples]
        return {"calls": 1 + max(fed, default=0), "prefill_tokens": ctx_len, "decode_tokens": sum(fed),
                "cached_tokens": (len(samples) - 1) * ctx_len,
                "generated_tokens": sum(len(x.token_ids) + (x.stop_reason == "eos") for x in samples)}

    def _decode(self, start: Rows, gens: list[torch.Generator], p: SamplingParams,
                forced: Sequence[Sequence[int]] | None = None, *, choose: Choose | None = None,
                seen: list[list[int]] | None = None):
        """The decode loop shared by :meth:`sample` and :class:`Session`: row r starts in batch slot r of
        ``start`` and draws from ``gens[r]`` (or takes ``choose``'s token); finished rows leave the batch.
        ``seen[r]``: row r's context ids, for ``p.repetition_penalty`` (applied to the draw only: the recorded
        log-probs stay the model's).

        Returns the samples and ``(cache, active)``: the cache of the rows still in the batch at the end
        (``active[slot]`` = row), holding each such row's tokens except the last one sampled (never fed).
        """
        logits, cache, mask, next_pos = start
        rows = len(gens)
        stop = list(p.stop)
        toks: list[list[int]] = [[] for _ in range(rows)]
        lps: list[list[float]] = [[] for _ in range(rows)]
        eos_lps: list[list[float]] = [[] for _ in range(rows)]
        reason = ["length"] * rows
        active = list(range(rows))  # row index of each batch slot
        penalised = None
        if seen is not None:  # [rows, V]: tokens already in the row (HF's RepetitionPenaltyLogitsProcessor)
            penalised = torch.zeros((rows, logits.shape[-1]), dtype=torch.bool, device=logits.device)
            for r, ids in enumerate(seen):
                penalised[r, ids] = True
        for step in range(p.max_new_tokens):
            if step < p.min_new_tokens and self.eos_ids:
                logits = logits.clone()
                logits[:, list(self.eos_ids)] = -torch.inf
            logp = torch.log_softmax(logits.float(), dim=-1)
            if forced is not None:
                eos_id = min(self.eos_ids)
                nxt = torch.tensor([forced[r][step] if step < len(forced[r]) else eos_id for r in active],
                                   device=logits.device)
            else:
                draw = logits
                if penalised is not None:
                    pen = penalised[active]
                    draw = torch.where(pen, torch.where(logits > 0, logits / p.repetition_penalty,
                                                        logits * p.repetition_penalty), logits)
                if choose is not None:
                    nxt = choose(draw, active, [toks[r] for r in active], gens)
                elif not p.greedy:
                    u = torch.stack([torch.rand((), generator=gens[r]) for r in active])
                    scaled = draw if p.temperature == 1.0 else draw.float() / p.temperature
                    nxt = top_p_choice(scaled, p.top_p, u.to(logits.device), p.top_k)
                else:
                    nxt = draw.argmax(-1)
                if penalised is not None:
                    penalised[torch.tensor(active, device=logits.device), nxt] = True
            self.count(generated_tokens=len(active))
            chosen_lp = logp.gather(-1, nxt[:, None]).squeeze(-1).tolist()
            eos_lp = logp[:, self.score_eos_id].tolist() if self.score_eos_id is not None else None
            nxt_list = nxt.tolist()
            keep_slots = []
            for slot, r in enumerate(active):
                t = nxt_list[slot]
                if eos_lp is not None:
                    eos_lps[r].append(eos_lp[slot])
                if t in self.eos_ids:
                    reason[r] = "eos"
                    continue
                toks[r].append(t)
                lps[r].append(chosen_lp[slot])
                if stop and any(sw in self.decode(toks[r][-12:]) for sw in stop):
                    reason[r] = "stop"
                    continue
                keep_slots.append(slot)
            if not keep_slots or step == p.max_new_tokens - 1:
                break
            if len(keep_slots) < len(active):
                sel = torch.tensor(keep_slots, device=self.device)
                cache.batch_select_indices(sel)
                mask, next_pos, nxt = mask[sel], next_pos[sel], nxt[sel]
                active = [active[s] for s in keep_slots]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            logits, cache = self._forward(nxt[:, None], mask, next_pos[:, None], cache, keep=1, kind="decode")
            logits = logits[:, -1, :]
            next_pos = next_pos + 1
        samples = [Sample(toks[r], lps[r], self.decode(toks[r]), reason[r], eos_lps[r]) for r in range(rows)]
        return samples, (cache, active)

    # ----------------------------------------------------------------- scoring
    @torch.inference_mode()
    def logprobs(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                 names: Sequence[str] | None = None) -> list[list[float]]:
        """Sum of token log-probs of each continuation given its context.

        ``continuations[i]`` are all scored under ``contexts[i]`` (prefilled once, cache expanded
        across them, one batched pass over the cached prefix). Contexts are batched together while
        their continuations fit in ``max_rows`` rows. Empty continuations score 0.0.
        """
        ctx_ids = [self.encode_context(c) for c in contexts]
        cont_ids = [[self.encode_continuation(t) for t in conts] for conts in continuations]
        return self.logprobs_ids(ctx_ids, cont_ids, names=names)

    @torch.inference_mode()
    def logprobs_ids(self, ctx_ids: list[list[int]], cont_ids: list[list[list[int]]],
                     names: Sequence[str] | None = None, prefix: Prefix | None = None) -> list[list[float]]:
        """:meth:`logprobs` on token ids (``prefix``: the contexts follow this prefilled :class:`Prefix`)."""
        n0 = len(prefix.ids) if prefix is not None else 0
        for i, (c, conts) in enumerate(zip(ctx_ids, cont_ids)):
            longest = max((len(x) for x in conts), default=0)
            self._check_length(n0 + len(c), longest, names[i] if names else f"context {i}")
        results: list[list[float]] = [[0.0] * len(conts) for conts in cont_ids]
        # group contexts so that one pass holds at most max_rows continuation rows
        group: list[int] = []
        rows = 0
        for i, conts in enumerate(cont_ids):
            m = sum(1 for x in conts if x)
            if group and rows + m > self.max_rows:
                self._score_group(group, ctx_ids, cont_ids, results, prefix)
                group, rows = [], 0
            group.append(i)
            rows += m
        if group:
            self._score_group(group, ctx_ids, cont_ids, results, prefix)
        return results

    def _score_group(self, group, ctx_ids, cont_ids, results, prefix: Prefix | None = None) -> None:
        items = [(gi, j, cont_ids[i][j]) for gi, i in enumerate(group) for j in range(len(cont_ids[i]))
                 if cont_ids[i][j]]
        if not items:
            return
        for s in range(0, len(items), self.max_rows):
            chunk = items[s:s + self.max_rows]
            sel = torch.tensor([gi for gi, _, _ in chunk], device=self.device)
            rows = self._prefill([ctx_ids[i] for i in group], prefix).select(sel)
            n0 = len(prefix.ids) if prefix is not None else 0
            firsts = {gi for gi, _, _ in chunk}  # each context's first row reads its own prefill; the others copies
            self.count(cached_tokens=sum(n0 + len(ctx_ids[group[gi]]) for gi, _, _ in chunk)
                       - sum(n0 + len(ctx_ids[group[gi]]) for gi in firsts))
            tot = self._score_cached(rows, [c for _, _, c in chunk])
            for r, (gi, j, _) in enumerate(chunk):
                results[group[gi]][j] = float(tot[r])

    def _score_cached(self, rows: Rows, conts: list[list[int]]) -> torch.Tensor:
        """Sum of log-probs of each (non-empty) ``conts[r]`` in one pass over ``rows``, whose row r already holds
        its context."""
        first_logits, cache, mask, next_pos = rows
        first_logp = torch.log_softmax(first_logits.float(), -1)
        width = max(len(c) for c in conts)
        # token log-probs summed in float32, as a plain forward pass (and the released scorer) sums them
        tot = first_logp.gather(-1, torch.tensor([[c[0]] for c in conts], device=self.device)).squeeze(-1)
        if width > 1:
            inp = torch.full((len(conts), width - 1), self.pad_id, dtype=torch.long)
            tgt = torch.zeros((len(conts), width - 1), dtype=torch.long)
            valid = torch.zeros((len(conts), width - 1), dtype=torch.bool)
            for r, c in enumerate(conts):
                inp[r, :len(c) - 1] = torch.tensor(c[:-1])
                tgt[r, :len(c) - 1] = torch.tensor(c[1:])
                valid[r, :len(c) - 1] = True
            inp, tgt, valid = inp.to(self.device), tgt.to(self.device), valid.to(self.device)
            m = torch.cat([mask, valid.long()], dim=-1)
            pos = next_pos[:, None] + torch.arange(width - 1, device=self.device)[None, :]
            lg, _ = self._forward(inp, m, pos, cache, keep=0, kind="score", padding=int(valid.numel() - valid.sum()))
            lp = torch.log_softmax(lg.float(), -1).gather(-1, tgt[..., None]).squeeze(-1)
            tot = tot + (lp * valid).sum(-1)
        return tot

    def session(self, context: str | Sequence[int], *, seed: int = 0) -> Session:
        """A :class:`Session` over ``context`` (text, encoded like :meth:`encode_context`, or token ids)."""
        ids = self.encode_context(context) if isinstance(context, str) else list(context)
        return Session(self, ids, seed=seed)

class Session:
    """One growing token sequence and its KV cache (blockwise decoding, e.g. RM-Aug).

    Only tokens never seen by the model are ever fed to it: the prefix is encoded once, then

    * :meth:`append` adds tokens (fed lazily, in one pass, by the next :meth:`sample` / :meth:`logprobs`);
    * :meth:`sample` draws ``n`` continuations: the cache is expanded across the ``n`` rows and decoded like
      :meth:`Engine.sample` (row j draws from ``row_generator(seed, j)``, so a first block equals
      ``Engine.sample(..., seeds=[seed])``; each row's generator persists, later blocks draw fresh numbers);
    * :meth:`accept` continues with one sampled row: its branch of the cache is kept (select, no crop, which
      would break on full sliding-window layers), the other rows are dropped;
    * :meth:`logprobs` scores continuations of the current sequence in one batched pass over a copy of the
      cache (equal to a plain full forward pass of sequence + continuation).
    """

    def __init__(self, engine: Engine, ctx_ids: Sequence[int], *, seed: int = 0) -> None:
        if not ctx_ids:
            raise ValueError("a Session needs a non-empty context")
        self.engine = engine
        self.ids: list[int] = list(ctx_ids)  # the whole sequence
        self.seed = seed
        self._fed = 0  # tokens of self.ids already in the cache
        self._cache = None
        self._logits: torch.Tensor | None = None  # [1, V] next-token logits after the fed tokens
        self._branch: tuple | None = None  # (cache, active, samples) of the last sample() until accept()
        self._gens: list[torch.Generator] = []

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: Sequence[int]) -> None:
        self._check_open()
        self.ids += list(ids)

    def _check_open(self) -> None:
        if self._branch is not None:
            raise RuntimeError("Session: accept() one of the sampled rows before appending, sampling or scoring")

    def _flush(self) -> None:
        """Feed the tokens appended since the last call (one row, one pass)."""
        if self._fed == len(self.ids):
            return
        eng = self.engine
        eng._check_length(len(self.ids), 0, "session")
        new = torch.tensor([self.ids[self._fed:]], device=eng.device)
        mask = torch.ones((1, len(self.ids)), dtype=torch.long, device=eng.device)
        pos = torch.arange(self._fed, len(self.ids), device=eng.device)[None, :]
        logits, self._cache = eng._forward(new, mask, pos, self._cache, keep=1)
        self._logits = logits[:, -1, :]
        self._fed = len(self.ids)

    @torch.inference_mode()
    def sample(self, n: int, max_new_tokens: int, *, top_p: float = 1.0, top_k: int = 0, temperature: float = 1.0,
               do_sample: bool = True, stop: Sequence[str] = ()) -> list[Sample]:
        """``n`` continuations of the current sequence (then :meth:`accept` one of them to continue)."""
        self._check_open()
        self._flush()
        eng = self.engine
        p = SamplingParams(max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k,
                                    temperature=temperature, do_sample=do_sample, stop=tuple(stop))
        eng._check_length(len(self.ids), max_new_tokens, "session")
        while len(self._gens) < n:
            self._gens.append(row_generator(self.seed, len(self._gens)))
        cache, logits = self._cache, self._logits
        self._cache = None  # the rows' branches replace it (accept() keeps one)
        one = Rows(logits, cache, torch.ones((1, len(self.ids)), dtype=torch.long, device=eng.device),
                   torch.full((1,), len(self.ids), dtype=torch.long, device=eng.device))
        eng.count(cached_tokens=(n - 1) * len(self.ids))
        samples, (cache, active) = eng._decode(one.repeat(n), self._gens[:n], p)
        self._branch = (cache, active, samples)
        return samples

    @torch.inference_mode()
    def accept(self, row: int) -> None:
        """Continue with sampled row ``row`` (its tokens join the sequence)."""
        if self._branch is None:
            raise RuntimeError("Session.accept() without a preceding sample()")
        cache, active, samples = self._branch
        self._branch = None
        toks = samples[row].token_ids
        if row in active and samples[row].stop_reason != "eos":
            cache.batch_select_indices(torch.tensor([active.index(row)], device=self.engine.device))
            self._cache = cache
            self._fed = cache.get_seq_length()  # the row's tokens but the last one sampled are cached
            self._logits = None  # set by the next _flush (the last token is never fed during sampling)
        else:  # the row ended (EOS, or left the batch early): rare, the next call re-encodes the sequence
            self._cache, self._logits, self._fed = None, None, 0
        self.ids += toks

    @torch.inference_mode()
    def logprobs(self, conts: Sequence[Sequence[int]]) -> list[float]:
        """log p(cont | sequence) of each token list (empty -> 0.0), one batched pass per max_rows chunk."""
        self._check_open()
        self._flush()
        eng = self.engine
        out = [0.0] * len(conts)
        todo = [i for i, c in enumerate(conts) if c]
        if todo:
            eng._check_length(len(self.ids), max(len(conts[i]) for i in todo), "session")
        for s in range(0, len(todo), eng.max_rows):
            chunk = todo[s:s + eng.max_rows]
            cache = copy.deepcopy(self._cache)
            cache.batch_select_indices(torch.zeros(len(chunk), dtype=torch.long, device=eng.device))
            eng.count(cached_tokens=len(chunk) * len(self.ids))
            rows = Rows(self._logits.expand(len(chunk), -1), cache,
                        torch.ones((len(chunk), len(self.ids)), dtype=torch.long, device=eng.device),
                        torch.full((len(chunk),), len(self.ids), dtype=torch.long, device=eng.device))
            tot = eng._score_cached(rows, [list(conts[i]) for i in chunk])
            for r, i in enumerate(chunk):
                out[i] = float(tot[r])
        return out
