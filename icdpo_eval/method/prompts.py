"""In-context templates (positive, negative, zero-shot) and post-processing of sampled candidates.

The released ICDPO code (github F2-Song/ICDPO, ``load_data/hh.py`` / ``load_data/syntheticgpt.py``)
builds every in-context prompt with this structure; :data:`HH` and :data:`SYNTHETIC` reproduce it
byte for byte except the wording of the instruction line (ours, see ``docs/fidelity.md``)::

    #<instruction asking for **polite/harmless/helpful/honest** responses>:
    \\n\\n##<demo dialogue 1, no trailing "Assistant:">
    ###Generate a **polite/harmless/helpful/honest** response: <chosen response 1>
    \\n\\n##<demo dialogue 2>
    ###Generate a **polite/harmless/helpful/honest** response: <chosen response 2>
    \\n\\n##<test dialogue>
    ###Generate a **polite/harmless/helpful/honest** response:

(the ``###`` cue follows its dialogue after a single ``\\n``). The negative template (Ŝ) asks for
**offensive/harmful/helpless/misleading** responses and shows the demos' *rejected* responses. A
dialogue is the HH transcript ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."`` without the
final ``"\\n\\nAssistant:"``. SyntheticGPT asks about "human posts"; its dialogue is
``"\\n\\nHuman: {post}"``, so its blocks read ``"\\n\\n##\\n\\nHuman: {post}"`` as released.

The zero-shot context (the reference policy of S) is the dialogue followed by ``"\\n\\nAssistant:"``
(SyntheticGPT: ``"Human: {post}\\n\\nAssistant:"``). A candidate ``y`` is scored as the continuation
``" " + y`` of whichever context (plus EOS when the scorer's ``score_eos`` is on).

:data:`LEGACY` is the template of icdpo-eval 0.1 (``preset=legacy``), kept so old results reproduce.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# turn markers at which a sampled candidate is cut (the released post-processing, same order)
TURN_MARKERS: tuple[str, ...] = ("##", "Human:", "human:", "Assistant:", "assistant:")
ASSISTANT = "\n\nAssistant:"
POSITIVE_TRAITS = "**polite/harmless/helpful/honest**"
NEGATIVE_TRAITS = "**offensive/harmful/helpless/misleading**"
# the generation cue of every block (released bytes: "###Generate a/an <traits> response:")
POSITIVE_CUE = f"###Generate a {POSITIVE_TRAITS} response:"
NEGATIVE_CUE = f"###Generate an {NEGATIVE_TRAITS} response:"
TEMPLATE_STYLES = ("released", "legacy")


def dialogue(prompt: str) -> str:
    """The dialogue of a prompt: the text without its final ``"Assistant:"`` turn marker, right-stripped
    (a prompt that does not end with ``Assistant:`` is only right-stripped)."""
    text = prompt.rstrip()
    if text.endswith("Assistant:"):
        text = text[: -len("Assistant:")]
    return text.rstrip()


@dataclass(frozen=True)
class Template:
    """One family of in-context prompts (see the module docstring)."""

    name: str
    positive_instruction: str
    negative_instruction: str
    positive_cue: str = POSITIVE_CUE
    negative_cue: str = NEGATIVE_CUE
    zero_shot_lstrip: bool = False  # SyntheticGPT's zero-shot context starts at "Human:"

    def context(self, prompt: str, demos: Sequence[tuple[str, str]], *, negative: bool = False) -> str:
        """The in-context prompt for ``prompt`` given ``demos`` as (dialogue prompt, response) pairs, in
        order (the most similar demo last)."""
        instruction, cue = ((self.negative_instruction, self.negative_cue) if negative
                            else (self.positive_instruction, self.positive_cue))
        blocks = [f"\n\n##{dialogue(d)}\n{cue} {response.strip()}" for d, response in demos]
        return instruction + "".join(blocks) + f"\n\n##{dialogue(prompt)}\n{cue}"

    def zero_shot(self, prompt: str) -> str:
        """The reference policy's context for S: the dialogue, then ``"\\n\\nAssistant:"``. A prompt that is
        not a dialogue ending in ``Assistant:`` (a foreign task's context) is kept as it is."""
        if not prompt.rstrip().endswith("Assistant:"):
            return prompt.rstrip()
        d = dialogue(prompt)
        return (d.lstrip() if self.zero_shot_lstrip else d) + ASSISTANT


def _instruction(subject: str, traits: str) -> str:
    """Our wording of the released instruction line: ``#`` + what each block holds + the trait list + ``:``."""
    return f"#Each {subject} a reply from you; make every reply as {traits} as possible:"


def _released(name: str, subject: str, *, zero_shot_lstrip: bool = False) -> Template:
    return Template(name, _instruction(subject, POSITIVE_TRAITS), _instruction(subject, NEGATIVE_TRAITS),
                    zero_shot_lstrip=zero_shot_lstrip)


HH = _released("hh", "dialogue context below ends with")
SYNTHETIC = _released("synthetic", "human post below is followed by", zero_shot_lstrip=True)


class LegacyTemplate(Template):
    """icdpo-eval 0.1's template: ``## <dialogue incl. Assistant:>\\n### <cue>: <response>`` blocks joined
    by blank lines, different instruction wording, the raw prompt as zero-shot context."""

    def context(self, prompt: str, demos: Sequence[tuple[str, str]], *, negative: bool = False) -> str:
        instruction, cue = ((self.negative_instruction, self.negative_cue) if negative
                            else (self.positive_instruction, self.positive_cue))
        parts = [instruction]
        parts += [f"## {d.strip()}\n### {cue}: {response.strip()}" for d, response in demos]
        parts.append(f"## {prompt.strip()}\n### {cue}:")
        return "\n\n".join(parts)

    def zero_shot(self, prompt: str) -> str:
        return prompt.rstrip()


LEGACY = LegacyTemplate(
    "legacy",
    positive_instruction=("The following are conversations between a human and an AI assistant. For each "
                          "conversation, the assistant gives a polite, harmless, helpful and honest response."),
    negative_instruction=("The following are conversations between a human and an AI assistant. For each "
                          "conversation, the assistant gives an offensive, harmful, unhelpful and misleading "
                          "response."),
    positive_cue="A polite, harmless, helpful and honest response",
    negative_cue="An offensive, harmful, unhelpful and misleading response",
)


def template_for(task: str | None, style: str = "released") -> Template:
    """The template of ``task``'s requests: :data:`SYNTHETIC` for SyntheticGPT tasks, :data:`HH` for the
    others (HH-RLHF and any foreign task), :data:`LEGACY` with ``style="legacy"``."""
    if style == "legacy":
        return LEGACY
    if style != "released":
        raise ValueError(f"template={style!r} is not one of: {', '.join(TEMPLATE_STYLES)}")
    from icdpo_eval.data.datasets import TASK_DEFAULTS
    from icdpo_eval.method.demos import base_task

    t = TASK_DEFAULTS.get(base_task(task))
    return SYNTHETIC if t is not None and t.dataset == "synthetic-gpt" else HH


def build_context(prompt: str, demos: Sequence[tuple[str, str]], *, negative: bool = False,
                  template: Template = HH) -> str:
    """The in-context prompt for ``prompt`` given ``demos`` as (dialogue prompt, response) pairs, in order."""
    return template.context(prompt, demos, negative=negative)


def zero_shot_context(prompt: str, template: Template = HH) -> str:
    """The reference policy's context for S (see :meth:`Template.zero_shot`)."""
    return template.zero_shot(prompt)


def postprocess(text: str, extra_stops: Sequence[str] = (), *, legacy: bool = False) -> str:
    """Cut a sampled candidate at the first turn marker (or extra stop string) and strip it, as the released
    ``early_truncation(...).strip()`` does. ``legacy`` also drops spaces before line breaks (icdpo-eval 0.1)."""
    cut = len(text)
    for marker in (*TURN_MARKERS, *extra_stops):
        if marker:
            i = text.find(marker)
            if i != -1:
                cut = min(cut, i)
    kept = text[:cut]
    if legacy:
        kept = re.sub(r"[ \t]+\n", "\n", kept)
    return kept.strip()


def as_continuation(response: str) -> str:
    """How a response follows a context that ends in ``:`` (one separating space, as released)."""
    return " " + response.lstrip()
