"""ARGS (Khanov et al., ICLR 2024): reward-guided decoding, token by token.

At each step of the engine's one decode loop, the base model's top-k next tokens ``v`` are scored as

    score(v) = logit(v | x, y) + w · RM(x, y + v)

and the next token is the best (``greedy``) or drawn from softmax(score / temperature) over the k (``sample``).
The LM term is the raw logit, as released (``argsearch.py``); a per-row constant, so a log-probability would pick
the same token. The k reward calls of a step, for every row of the batch, go to the reward model as ONE batch.

Differences from the released code (docs/args.md): the reward model reads the response *text* (prompt, decoded
response so far + the candidate token) in its own format, so any sequence-classification RM (or the offline proxy)
guides any base model; the released code feeds the base model's token ids to an RM that must share its tokenizer.
A response ends at EOS or a turn marker like every method's here; the released loop always decodes the full
token budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from icdpo_eval.engine import Choose, Engine

Reward = Callable[[Sequence[str], Sequence[str]], Sequence[float]]  # (prompts, responses) -> one reward each


@dataclass
class Trace:
    """Per row, per step: the k candidate tokens, their LM and RM terms and the one taken (the report shows it)."""

    steps: list[list[dict]] = field(default_factory=list)

    def record(self, row: int) -> dict:
        return {"internals": {"method": "args", "steps": self.steps[row]}}


def reward_guided(engine: Engine, reward: Reward, prompts: Sequence[str], *, k: int = 10, w: float = 1.5,
                  greedy: bool = True, temperature: float = 0.7, trace: Trace | None = None) -> Choose:
    """The engine's ``choose`` rule of ARGS for rows whose prompt is ``prompts[row]`` (see the module docstring)."""
    if k < 1:
        raise ValueError(f"args_k={k}: must be >= 1")
    if trace is not None:
        trace.steps = [[] for _ in prompts]

    def choose(logits: torch.Tensor, active: list[int], toks: list[list[int]], gens: list[torch.Generator]
               ) -> torch.Tensor:
        top, idx = logits.float().topk(min(k, logits.shape[-1]), dim=-1)
        ids = idx.tolist()
        texts = [engine.decode(toks[s] + [v]).strip() for s in range(len(active)) for v in ids[s]]
        asked = [prompts[active[s]] for s in range(len(active)) for _ in ids[s]]
        rm = torch.tensor([float(x) for x in reward(asked, texts)], device=top.device).view_as(top)
        score = top + w * rm
        if greedy:
            pick = score.argmax(-1)
        else:
            probs = torch.softmax(score / temperature, -1)
            pick = torch.stack([torch.multinomial(probs[s].cpu(), 1, generator=gens[active[s]])[0]
                                for s in range(len(active))]).to(top.device)
        if trace is not None:
            for s, r in enumerate(active):
                trace.steps[r].append({"tokens": [engine.decode([v]) for v in ids[s]], "lm": top[s].tolist(),
                                       "rm": rm[s].tolist(), "chosen": int(pick[s])})
        return idx.gather(-1, pick[:, None]).squeeze(-1)

    return choose
