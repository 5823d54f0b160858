"""Parity with the released ICDPO scorer (github F2-Song/ICDPO), recomputed independently.

The reference below re-implements the released pipeline's scoring with nothing of ours but the
instruction sentence (our own wording, the one documented difference, ``docs/fidelity.md``):
``load_data/hh.py`` ``get_icl_context`` / ``get_base_context`` build the context strings,
``utils/scoring_utils.py`` ``tokenize_for_fair_scoring`` tokenizes ``context`` (special tokens on) and
``" " + y.lstrip()`` (no special tokens) separately and appends the EOS id, and
``scorer/*_scorer.py`` ``batch_scoring`` sums the log-softmax of a plain full forward pass over the
response tokens. ``do_scoring.py`` picks ``np.argmax(pos - neg)``. No engine, no KV cache, no reuse of
the sampling pass. Our side is the real path: ``lm_eval --model icdpo``'s retrieval, sampling (whose
log-probs S reuses) and :class:`ContrastiveScorer`.

Rows: documents 40-42 of the vendored evaluation slice, which no other test or benchmark uses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icdpo_eval.data.datasets import TASK_DEFAULTS, load_pairs
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.prompts import HH
from icdpo_eval.method.scorers import ContrastiveScorer, positive_context
from icdpo_eval.models.icdpo import ICDPOLM

pytestmark = pytest.mark.slow

TASK = "hh_harmless_mini"
DOCS = (40, 41, 42)
POS_CUE = "\n###Generate a **polite/harmless/helpful/honest** response:"
NEG_CUE = "\n###Generate an **offensive/harmful/helpless/misleading** response:"


def released_parse_prompt(prompt: str) -> str:
    """``load_data/hh.py`` ``parse``: the dialogue without its final ``Assistant:`` turn, rstripped."""
    assert prompt.endswith("\n\nAssistant:"), prompt[-40:]
    return prompt[: -len("\n\nAssistant:")].rstrip()


def released_icl_context(prompt: str, demos: list[dict], favor: str) -> str:
    """``get_icl_context``: ``demos`` are given in context order (the released code reverses its
    best-first list so that the most similar demo is last; ours are already in that order)."""
    instruction = HH.positive_instruction if favor == "pos" else HH.negative_instruction
    context = instruction
    for d in demos:
        if favor == "pos":
            context += "\n\n##" + released_parse_prompt(d["prompt"]) + POS_CUE + " " + d["chosen"]
        else:
            context += "\n\n##" + released_parse_prompt(d["prompt"]) + NEG_CUE + " " + d["rejected"]
    return context + "\n\n##" + released_parse_prompt(prompt) + (POS_CUE if favor == "pos" else NEG_CUE)


def released_base_context(prompt: str) -> str:
    return released_parse_prompt(prompt) + "\n\nAssistant:"


def released_logprob(model, tok, context: str, candidate: str) -> float:
    ctx = tok(context).input_ids
    resp = tok(" " + candidate.lstrip(), add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = torch.tensor([ctx + resp])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    labels = ids[0, 1:]
    per_token = logp.gather(-1, labels[:, None]).squeeze(-1)
    return float(per_token[len(ctx) - 1:].sum())


@pytest.fixture(scope="module")
def icdpo():
    # a shorter generation than the task's 128 tokens keeps this CPU test quick; scoring is what is compared
    return ICDPOLM(scorer="s_hat", max_new_tokens=24, dtype="float32", device="cpu")


def test_s_and_s_hat_equal_the_released_scorer(icdpo):
    t = TASK_DEFAULTS[TASK]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)
    prompts = [rows[i]["prompt"] for i in DOCS]
    demos = icdpo.retrieve(TASK, prompts)
    tpl = icdpo.template(TASK)
    params = icdpo.sampling_params({"until": [], "max_gen_toks": 128, "top_p": 0.8, "do_sample": True})
    assert params.top_k == 50 and params.top_p == 0.8  # the model's generation_config / HF default, as released
    contexts = [positive_context(p, d, tpl) for p, d in zip(prompts, demos)]
    model, tok = icdpo.engine.model, icdpo.engine.tok
    compared = 0
    for kind, favor in (("s", "base"), ("s_hat", "neg")):
        scorer = ContrastiveScorer(icdpo.engine, kind, score_eos=True, empty="score")
        choices = sample_and_select(icdpo.engine, scorer, prompts, contexts, demos, n=3, params=params,
                                    seed=icdpo.seed, template=tpl)
        assert scorer.reused > 0  # the positive term came from the sampling pass for some candidates
        for prompt, d, choice in zip(prompts, demos, choices):
            pos_ctx = released_icl_context(prompt, d, "pos")
            ref_ctx = released_base_context(prompt) if favor == "base" else released_icl_context(prompt, d, "neg")
            want = [released_logprob(model, tok, pos_ctx, y) - released_logprob(model, tok, ref_ctx, y)
                    for y in choice.candidates]
            np.testing.assert_allclose(choice.scores, want, atol=1e-4, rtol=0, err_msg=f"{kind} {prompt[-60:]!r}")
            assert choice.index == int(np.argmax(want)), (kind, choice.scores, want)
            compared += len(want)
    assert compared == 2 * len(DOCS) * 3


def test_reference_context_strings_are_ours(icdpo):
    """The reference builds its strings on its own; they must be byte-equal to what our model scores."""
    t = TASK_DEFAULTS[TASK]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)
    from icdpo_eval.method.scorers import negative_context

    for i in DOCS:
        p = rows[i]["prompt"]
        d = icdpo.retrieve(TASK, [p])[0]
        assert positive_context(p, d, HH) == released_icl_context(p, d, "pos")
        assert negative_context(p, d, HH) == released_icl_context(p, d, "neg")
        assert HH.zero_shot(p) == released_base_context(p)
