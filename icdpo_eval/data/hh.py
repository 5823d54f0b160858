"""The HH-RLHF transcript format, parsed in one place: ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``.

Two views of one transcript, both from the same markers:

* :func:`split_dialogue`: (prompt up to and including the last ``"\\n\\nAssistant:"``, verbatim; the
  stripped response after it), how the datasets split a chosen/rejected transcript;
* :func:`hh_to_turns`: ``[("user" | "assistant", text), ...]``, how chat models (reward models, teachers)
  see a dialogue;
* :func:`split_turns` / :func:`prepare_row`: the released code's reading (``dialogue=pro``): it reads HH-RLHF
  as prepared by the PRO pipeline the paper reuses (Song et al. 2023): each turn's first paragraph, stripped,
  consecutive turns of one speaker merged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from icdpo_eval.errors import UserError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
# a turn marker: "Human:" / "Assistant:" at the start of the text or after a blank line, one optional space
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


class DataError(UserError):
    """A malformed preference row or data file, or an unknown dataset/split/task."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file that does not exist (caught by ``except DataError`` and ``except FileNotFoundError``)."""


def check_text(value: object, what: str) -> str:
    """``value`` if it is a string that can be written as UTF-8 (no lone surrogates), else DataError."""
    if not isinstance(value, str):
        raise DataError(f"{what} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{what} is not valid Unicode text (a lone surrogate escape such as \\ud800)") from None
    return value


def split_dialogue(text: str) -> tuple[str, str]:
    """Split an HH transcript into (prompt incl. the last ``"\\n\\nAssistant:"``, stripped response)."""
    text = check_text(text, "an HH transcript")
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DataError("no '\\n\\nAssistant:' turn")
    end = cut + len(ASSISTANT)
    return text[:end], text[end:].strip()


def hh_to_turns(prompt: str) -> list[tuple[str, str]]:
    """Parse an HH dialogue into ``[("user"|"assistant", text), ...]``.

    Accepts the dataset's ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` layout (the leading blank line
    is optional). Turn texts are stripped; a trailing empty ``Assistant:`` (the slot for the
    response) is dropped; text before the first ``Human:`` turn is ignored.
    """
    prompt = check_text(prompt, "an HH dialogue")
    marks = list(_TURN.finditer(prompt))
    if not any(m.group(1) == "Human" for m in marks):
        raise DataError(f"no 'Human:' turn in dialogue {prompt[:80]!r}")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(prompt)
        role = "user" if m.group(1) == "Human" else "assistant"
        turns.append((role, prompt[m.end():end].strip()))
    while turns and turns[0][0] != "user":
        turns.pop(0)
    if turns[-1] == ("assistant", ""):
        turns.pop()
    return turns


def format_instruction(prompt: str) -> str:
    """An instruction as a one-turn dialogue ending in ``"Assistant:"`` (used for SyntheticGPT)."""
    return f"{HUMAN} {prompt.strip()}{ASSISTANT}"


# ------------------------------------------------------------------------------ the released reading (PRO)
def split_turns(transcript: str) -> list[tuple[str, str]]:
    """An HH transcript as the released code reads it (the PRO pipeline's preparation, which the paper's data
    went through): the text is cut into paragraphs at blank lines; a paragraph that starts with ``Human:`` or
    ``Assistant:`` opens a turn of that speaker (the marker and the one character after it dropped, the rest
    stripped) and every other paragraph (the second and later paragraphs of a turn) is dropped; consecutive
    turns of one speaker are merged, joined by a line break. Returns ``[("Human" | "Assistant", text), ...]``."""
    turns: list[tuple[str, list[str]]] = []
    for para in transcript.split("\n\n"):
        for speaker in ("Human", "Assistant"):
            if para.startswith(speaker + ":"):
                text = para[len(speaker) + 2:].strip()
                break
        else:
            continue
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(text)
        else:
            turns.append((speaker, [text]))
    return [(speaker, "\n".join(texts)) for speaker, texts in turns]


def render_turns(turns: Sequence[tuple[str, str]]) -> str:
    """Turns as a dialogue: ``"\n\nHuman: text\n\nAssistant: text..."``."""
    return "".join(f"\n\n{speaker}: {text}" for speaker, text in turns)


def prepare_dialogue(prompt: str) -> str:
    """A prompt (a dialogue ending in ``"Assistant:"``) as the released code reads it (:func:`split_turns`);
    a text that is not an HH dialogue is returned unchanged."""
    text = prompt.rstrip()
    if not text.endswith("Assistant:"):
        return prompt
    turns = split_turns(text[: -len("Assistant:")].rstrip())
    if not turns:
        return prompt
    return render_turns(turns) + ASSISTANT


def prepare_row(row: dict) -> dict:
    """A preference row ``{prompt, chosen, rejected, ...}`` as the released code reads it: the prompt's turns and
    each response (the last turn of its transcript: its first paragraph) prepared by :func:`split_turns`."""
    chosen = split_turns(f"{row['prompt']} {row['chosen']}")
    rejected = split_turns(f"{row['prompt']} {row['rejected']}")
    if not chosen or chosen[-1][0] != "Assistant" or not rejected or rejected[-1][0] != "Assistant":
        return row
    return {**row, "prompt": render_turns(chosen[:-1]) + ASSISTANT, "chosen": chosen[-1][1].strip(),
            "rejected": rejected[-1][1].strip()}
