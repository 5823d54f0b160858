"""In-context templates (positive, negative, zero-shot) and post-processing of sampled candidates.

Structure (DESIGN.md, the paper's Appendix F; our own wording):

    <instruction line>
    ## <demo dialogue 1>
    ### <generate-instruction>: <demo response 1>
    ...
    ## <test dialogue>
    ### <generate-instruction>:

The positive template asks for polite, harmless, helpful and honest responses and shows the demos'
*chosen* responses; the negative template asks for the opposite and shows their *rejected* ones.
The zero-shot context is the raw dialogue, ending in ``Assistant:``. A candidate ``y`` is always
scored as the continuation ``" " + y`` of whichever context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

POSITIVE_INSTRUCTION = (
    "The following are conversations between a human and an AI assistant. For each conversation, "
    "the assistant gives a polite, harmless, helpful and honest response."
)
POSITIVE_GENERATE = "A polite, harmless, helpful and honest response"
NEGATIVE_INSTRUCTION = (
    "The following are conversations between a human and an AI assistant. For each conversation, "
    "the assistant gives an offensive, harmful, unhelpful and misleading response."
)
NEGATIVE_GENERATE = "An offensive, harmful, unhelpful and misleading response"

# turn markers at which a sampled candidate is cut (the paper's post-processing)
TURN_MARKERS: tuple[str, ...] = ("Human:", "Assistant:", "##", "human:", "assistant:")


def _dialogue(prompt: str) -> str:
    return prompt.strip()


def build_context(prompt: str, demos: Sequence[tuple[str, str]], *, negative: bool = False) -> str:
    """The in-context prompt for ``prompt`` given ``demos`` as (dialogue, response) pairs, in order."""
    instruction, generate = (NEGATIVE_INSTRUCTION, NEGATIVE_GENERATE) if negative else (
        POSITIVE_INSTRUCTION, POSITIVE_GENERATE)
    parts = [instruction]
    for dialogue, response in demos:
        parts.append(f"## {_dialogue(dialogue)}\n### {generate}: {response.strip()}")
    parts.append(f"## {_dialogue(prompt)}\n### {generate}:")
    return "\n\n".join(parts)


def zero_shot_context(prompt: str) -> str:
    """The raw dialogue, ending in ``Assistant:`` (the reference policy's context for S)."""
    return prompt.rstrip()


def postprocess(text: str, extra_stops: Sequence[str] = ()) -> str:
    """Cut a sampled candidate at the first turn marker (or extra stop string) and strip it."""
    cut = len(text)
    for marker in (*TURN_MARKERS, *extra_stops):
        if marker:
            i = text.find(marker)
            if i != -1:
                cut = min(cut, i)
    return re.sub(r"[ \t]+\n", "\n", text[:cut]).strip()


def as_continuation(response: str) -> str:
    """How a response follows a context that ends in ``:`` (one separating space)."""
    return " " + response
