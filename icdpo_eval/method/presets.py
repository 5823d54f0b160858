"""Presets: every setting in which icdpo-eval may differ from the released ICDPO code, in one place.

``--model_args preset=paper`` (the default) is the released code's behaviour (``docs/fidelity.md``
lists each setting with its source); ``preset=legacy`` is icdpo-eval 0.1's, so results made with 0.1
reproduce. Individual model_args (``template``, ``score_eos``, ``empty``, ``bm25_tokens``, ``temperature``,
``top_k``) override the preset's value; the effective values are recorded in the results' config.

| setting | paper | legacy |
|---|---|---|
| ``template`` | released structure (``##`` blocks, ``###Generate ...:`` cue) | 0.1's |
| ``score_eos`` | true: ``" " + y`` + EOS is scored | false |
| ``empty`` | ``score``: an empty candidate is a real sample | ``skip``: never chosen |
| ``sampling`` | ``model``: temperature / top_k of the model's generation_config | ``task``: the task's, no top-k |
| ``postprocess`` | ``released``: cut at turn markers, strip | ``legacy``: also drop spaces before line breaks |
| ``retrieval_text`` | ``dialogue`` (without the final ``Assistant:``) | ``prompt`` |
| ``bm25_tokens`` | ``subword`` (base tokenizer, case-sensitive) | ``word`` (lower-cased words) |
| ``sbert`` | ``auto``: all-mpnet-base-v2 when loadable, else the embedded MiniLM | the embedded MiniLM |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PRESETS = ("paper", "legacy")
CHOICES: dict[str, tuple[str, ...]] = {
    "template": ("released", "legacy"),
    "empty": ("score", "skip"),
    "bm25_tokens": ("subword", "word"),
}


@dataclass(frozen=True)
class Settings:
    preset: str
    template: str
    score_eos: bool
    empty: str
    sampling: str
    postprocess: str
    retrieval_text: str
    bm25_tokens: str
    sbert: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_PRESETS = {
    "paper": Settings("paper", template="released", score_eos=True, empty="score", sampling="model",
                      postprocess="released", retrieval_text="dialogue", bm25_tokens="subword", sbert="auto"),
    "legacy": Settings("legacy", template="legacy", score_eos=False, empty="skip", sampling="task",
                       postprocess="legacy", retrieval_text="prompt", bm25_tokens="word",
                       sbert="embedded:all-minilm-l6-v2"),
}


def settings_for(preset: str | None = "paper", **overrides: Any) -> Settings:
    """The preset's settings with the given (non-None, already validated) overrides applied."""
    name = str(preset or "paper")
    if name not in _PRESETS:
        raise ValueError(f"model_arg preset={preset!r} is not one of: {', '.join(PRESETS)}")
    return replace(_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
