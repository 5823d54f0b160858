"""The HH-RLHF transcript format, parsed in one place: ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``.

Two views of one transcript, both from the same markers:

* :func:`split_dialogue`: (prompt up to and including the last ``"\\n\\nAssistant:"``, verbatim; the
  stripped response after it), how the datasets split a chosen/rejected transcript;
* :func:`hh_to_turns`: ``[("user" | "assistant", text), ...]``, how chat models (reward models, teachers)
  see a dialogue.
"""

from __future__ import annotations

import re

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
# a turn marker: "Human:" / "Assistant:" at the start of the text or after a blank line, one optional space
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


class DataError(ValueError):
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
