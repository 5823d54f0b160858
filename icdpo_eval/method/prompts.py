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

The instruction lines are ours by default; ``instructions=released`` (or a file) replaces them
(:mod:`icdpo_eval.method.instructions`, :meth:`Template.with_instructions`): only then are the contexts the
released code's byte for byte. :func:`prepare_dialogue` is the released code's reading of an HH dialogue
(``dialogue=pro``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

# turn markers at which a sampled candidate is cut (the released post-processing, same order)
TURN_MARKERS: tuple[str, ...] = ("##", "Human:", "human:", "Assistant:", "assistant:")
ASSISTANT = "\n\nAssistant:"
POSITIVE_TRAITS = "**polite/harmless/helpful/honest**"
NEGATIVE_TRAITS = "**offensive/harmful/helpless/misleading**"
# the generation cue of every block (released bytes: "###Generate a/an <traits> response:")
POSITIVE_CUE = f"###Generate a {POSITIVE_TRAITS} response:"
NEGATIVE_CUE = f"###Generate an {NEGATIVE_TRAITS} response:"


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

    def with_instructions(self, positive: str, negative: str) -> Template:
        """The same template with other instruction lines (``instructions=released`` or a file)."""
        return replace(self, positive_instruction=positive, negative_instruction=negative)

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


def family_of(task: str | None) -> str:
    """``"synthetic"`` for SyntheticGPT tasks, ``"hh"`` for HH-RLHF tasks, ``"other"`` for a foreign task."""
    from icdpo_eval.data.datasets import TASK_DEFAULTS
    from icdpo_eval.method.demos import base_task

    t = TASK_DEFAULTS.get(base_task(task))
    if t is None:
        return "other"
    return "synthetic" if t.dataset == "synthetic-gpt" else "hh"


def template_for(task: str | None) -> Template:
    """The template of ``task``'s requests: :data:`SYNTHETIC` for SyntheticGPT tasks, :data:`HH` for the
    others (HH-RLHF and any foreign task)."""
    return SYNTHETIC if family_of(task) == "synthetic" else HH


def build_context(prompt: str, demos: Sequence[tuple[str, str]], *, negative: bool = False,
                  template: Template = HH) -> str:
    """The in-context prompt for ``prompt`` given ``demos`` as (dialogue prompt, response) pairs, in order."""
    return template.context(prompt, demos, negative=negative)


def zero_shot_context(prompt: str, template: Template = HH) -> str:
    """The reference policy's context for S (see :meth:`Template.zero_shot`)."""
    return template.zero_shot(prompt)


def cut_at_markers(text: str, stops: Sequence[str] = TURN_MARKERS) -> tuple[str, bool]:
    """``text`` up to the first of ``stops`` (the turn markers by default), and whether one was found."""
    cut = min((i for i in (text.find(m) for m in stops if m) if i != -1), default=-1)
    return (text, False) if cut == -1 else (text[:cut], True)


def postprocess(text: str, extra_stops: Sequence[str] = ()) -> str:
    """Cut a sampled candidate at the first turn marker (or extra stop string) and strip it, as the released
    ``early_truncation(...).strip()`` does."""
    return cut_at_markers(text, (*TURN_MARKERS, *extra_stops))[0].strip()


def as_continuation(response: str) -> str:
    """How a response follows a context that ends in ``:`` (one separating space, as released)."""
    return " " + response.lstrip()
