"""Reward-model judge: the paper's metric (1), mean RM reward of the responses.

``RewardModelJudge(name)`` scores (prompt, response) pairs with

* the paper's RM ``OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1`` or any Hugging Face
  ``AutoModelForSequenceClassification`` (hub name or local path); the reward is the logit of a
  single-logit head (or ``logits[label_index]``);
* ``"proxy"``: the offline Bradley-Terry proxy of :mod:`icdpo_eval.judges.proxy_rm`;
* ``"auto"``: see :func:`resolve_rm_name`; ``embedded:*`` names as everywhere (:mod:`icdpo_eval.config.names`).

Input formats: OpenAssistant RMs (tokenizer with a ``<|prompter|>`` token, or "oasst" in the
name) get ``<|prompter|>turn<|endoftext|><|assistant|>turn<|endoftext|>...`` ending with the
response turn; other RMs get their chat template when the tokenizer has one, else the raw HH
text ``"\\n\\nHuman: ...\\n\\nAssistant: response"``. Inputs longer than ``max_length`` tokens
(1024, as in the ICDPO release) are truncated from the left (the end of the dialogue and the response
are kept); batches are padded on the right.

OpenAssistant's ``gpt_neox_reward_model`` checkpoints (the paper's RM) load through
:mod:`icdpo_eval.judges.oasst_rm`, registered before any Hugging Face RM is loaded.

Precision: Hugging Face RMs load in **float32** on every device, as the ICDPO release scores them;
``RewardModelJudge(..., dtype="bf16")`` (or ``"fp16"``) trades exactness for memory. The ``rm_reward`` metric
takes the name and the dtype from the task settings ``rm`` and ``rm_dtype`` (``--metadata``, see
:data:`icdpo_eval.config.options.TASK_SETTINGS`); ``judge.dtype_name`` records the effective one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icdpo_eval.config.names import canonical, check_model_name, is_embedded, looks_local, resolve
from icdpo_eval.data.hh import hh_to_turns
from icdpo_eval.errors import OptionError
from icdpo_eval.runtime import METER, canonical_dtype, count_forwards, hub_model_available, resolve_device

log = logging.getLogger(__name__)

PAPER_RM = "OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1"
_warned_proxy = False


def oasst_format(prompt: str, response: str) -> str:
    """``<|prompter|>...<|endoftext|><|assistant|>...<|endoftext|>`` ending with ``response``."""
    tags = {"user": "<|prompter|>", "assistant": "<|assistant|>"}
    turns = [*hh_to_turns(prompt), ("assistant", response.strip())]
    return "".join(f"{tags[role]}{text}<|endoftext|>" for role, text in turns)


def hh_format(prompt: str, response: str) -> str:
    """The raw HH transcript ``"\\n\\nHuman: ...\\n\\nAssistant: response"``."""
    names = {"user": "Human", "assistant": "Assistant"}
    turns = [*hh_to_turns(prompt), ("assistant", response.strip())]
    return "".join(f"\n\n{names[role]}: {text}" for role, text in turns)


def paper_rm_available(timeout: float = 5.0) -> bool:
    """Whether the paper's RM can be loaded: in the local HF cache, or (when not offline) on the hub."""
    return hub_model_available(PAPER_RM, timeout)


def resolve_rm_name(name: str | None = "auto") -> str:
    """Resolve ``"auto"``: the paper's RM if loadable, else ``"proxy"`` (with a warning, once); an embedded name
    to its folder; any other name unchanged."""
    global _warned_proxy
    name = canonical((name or "auto").strip()) or "auto"
    if name != "auto":
        return resolve(name, name) if is_embedded(name) else name
    if paper_rm_available():
        return PAPER_RM
    if not _warned_proxy:
        from icdpo_eval.judges.proxy_rm import PROXY_HELDOUT_ACCURACY

        _warned_proxy = True
        log.warning(
            "icdpo-eval: the paper's reward model %s is neither in the HF cache nor reachable; rm_reward "
            "uses the offline PROXY reward model (MiniLM Bradley-Terry head, %s pairwise accuracy on "
            "held-out HH pairs). Its numbers are not comparable to the paper's; pass --metadata "
            "'{\"rm\": \"NAME\"}' to choose.",
            PAPER_RM, PROXY_HELDOUT_ACCURACY.all,
        )
    return "proxy"


def check_rm(name: str) -> None:
    """The ``rm`` setting can be loaded, checked without loading weights: ``auto`` / ``proxy``; a local folder that
    holds a loadable config; a hub name that is cached or reachable. Else one line naming the setting."""
    name = canonical(name.strip()) or "auto"
    if name in ("auto", "proxy") or is_embedded(name):
        check_model_name("task setting rm", name)
        return
    where = f"task setting rm={name!r}"
    check_model_name(where, name)
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        from transformers import AutoConfig

        from icdpo_eval.judges.oasst_rm import register

        register()
        try:
            AutoConfig.from_pretrained(str(path))
        except Exception as e:  # noqa: BLE001 - any config problem is this setting's fault
            raise OptionError(f"{where}: the folder's config.json does not load ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); point at a sequence-classification "
                              "reward model folder") from None
        return
    if path.exists() or looks_local(name):
        raise OptionError(f"{where}: no such model folder; give a folder with config.json, a hub name, proxy or "
                          "auto")
    if not hub_model_available(name):
        raise OptionError(f"{where}: not in the local Hugging Face cache and the hub is unreachable (or offline); "
                          "download it first, pass a local folder, or use rm=proxy (offline proxy RM)")


class RewardModelJudge:
    """Scores (prompt, response) pairs with a reward model; ``resolved_name`` says which one."""

    def __init__(self, name: str = "auto", device: str | None = None, batch_size: int = 8,
                 max_length: int = 1024, label_index: int | None = None,
                 trust_remote_code: bool = False, dtype: str | None = "float32") -> None:

        self.requested = name
        self.dtype_name = canonical_dtype(dtype)
        resolved_device = resolve_device(device)
        self.device = str(resolved_device)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.label_index = label_index
        self.proxy: Any = None
        resolved = resolve_rm_name(name)
        if resolved == "proxy":
            from icdpo_eval.judges.proxy_rm import ProxyRewardModel

            self.proxy = ProxyRewardModel(device=self.device)
            self.resolved_name = self.proxy.name
            self.dtype_name = "float32"  # dtype is for HF RMs; the proxy embeds in fp32 (numpy head)
        else:
            self._load_hf(resolved, trust_remote_code)
            self.resolved_name = resolved
        # its forward passes in the meter, as the engine counts the policy's (ARGS's guide: compute per document)
        count_forwards(self.proxy.encoder.model[0] if self.proxy is not None else self.model,
                       f"rm:{self.resolved_name}")

    def _load_hf(self, name: str, trust_remote_code: bool) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from icdpo_eval.judges.oasst_rm import register

        register()  # OpenAssistant's gpt_neox_reward_model (the paper's RM)
        path = resolve(name, name)
        try:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            dtype = getattr(torch, self.dtype_name)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=dtype, trust_remote_code=trust_remote_code)
        except Exception as e:
            raise OptionError(
                f"could not load reward model {name!r} as a Hugging Face sequence-classification model "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Pass a hub name or a "
                "local path of an AutoModelForSequenceClassification, 'proxy' (offline proxy RM) or 'auto'."
            ) from e
        n = int(model.config.num_labels)
        if self.label_index is None and n != 1:
            raise OptionError(f"reward model {name!r} has {n} output labels, not a single reward logit; "
                             "pass label_index=<i> to use logits[i] as the reward")
        if self.label_index is not None and not 0 <= self.label_index < n:
            raise OptionError(f"label_index {self.label_index} out of range for {n} labels of {name!r}")
        tok.truncation_side = "left"
        tok.padding_side = "right"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tok.pad_token_id
        self.tokenizer, self.model = tok, model.to(self.device).eval()
        vocab = tok.get_vocab()
        if "<|prompter|>" in vocab or "oasst" in name.lower():
            self.style = "oasst"
        elif getattr(tok, "chat_template", None):
            self.style = "chat"
        else:
            self.style = "hh"

    def format(self, prompt: str, response: str) -> str:
        """The RM input text for one pair (before tokenization and truncation)."""
        if self.style == "oasst":
            return oasst_format(prompt, response)
        if self.style == "chat":
            turns = [*hh_to_turns(prompt), ("assistant", response.strip())]
            msgs = [{"role": r, "content": t} for r, t in turns]
            return self.tokenizer.apply_chat_template(msgs, tokenize=False)
        return hh_format(prompt, response)

    def encode(self, texts: Sequence[str]) -> dict[str, Any]:
        # chat templates already contain the special tokens they need
        return self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_length, add_special_tokens=self.style != "chat")

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        progress = len(prompts) > 4 * self.batch_size
        METER.add(f"rm:{self.resolved_name}", rm_calls=len(responses))
        if self.proxy is not None:
            return self.proxy.score(prompts, responses, progress=progress)
        import torch
        from tqdm.auto import tqdm

        texts = [self.format(p, r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        idx = self.label_index or 0
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc=f"rm_reward ({self.resolved_name})", disable=not progress):
            enc = self.encode(texts[s:s + self.batch_size]).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits
            out.extend(float(v) for v in logits[:, idx].float().cpu())
        return out


def rm_identity(name: str, dtype: str | None = "float32", max_length: int = 1024) -> str:
    """What a reward model's scores depend on, known WITHOUT loading it (the score cache's key): the resolved name and,
    for the proxy, the embedded encoder it is fitted on; for a hub model its cached snapshot; for a local folder its
    files' sizes and times; the dtype, the input length limit, torch's and transformers' versions and the scoring
    code (this module, the proxy's, OpenAssistant's class)."""
    import hashlib
    import json

    import torch
    import transformers

    from icdpo_eval.data.embedded import identity

    resolved = resolve_rm_name(name)
    what: dict[str, Any] = {"rm": resolved, "dtype": canonical_dtype(dtype), "max_length": int(max_length),
                            "torch": torch.__version__, "transformers": transformers.__version__}
    if resolved == "proxy":  # its fit: the encoder (a twin's weights under ICDPO_EMBEDDED_DIR) and its training rows
        what["fit"] = _proxy_fit(identity("sbert"))
    elif Path(os.path.expanduser(resolved)).is_dir():
        folder = Path(os.path.expanduser(resolved))
        what["files"] = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()
                               if f.is_file())
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            got = try_to_load_from_cache(resolved, "config.json")
            what["snapshot"] = Path(got).parent.name if isinstance(got, str) else None
        except Exception:  # noqa: BLE001 - no cache: keyed by the name alone
            what["snapshot"] = None
    from icdpo_eval.judges import oasst_rm, proxy_rm

    code = hashlib.sha256()
    for mod in (proxy_rm, oasst_rm):
        code.update(Path(mod.__file__).read_bytes())
    code.update(Path(__file__).read_bytes())
    what["code"] = code.hexdigest()[:16]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


_PROXY_FITS: dict[str | None, str] = {}


def _proxy_fit(encoder: str | None) -> str:
    """The digest the proxy RM's name carries (its encoder and training rows), without loading the encoder."""
    if encoder not in _PROXY_FITS:
        from icdpo_eval.data.datasets import load_pairs
        from icdpo_eval.judges.proxy_rm import _training_hash

        _PROXY_FITS[encoder] = _training_hash(load_pairs("hh-rlhf-mini", None, "pool"))
    return _PROXY_FITS[encoder]


class ScoreCache:
    """Reward-model scores on disk by (RM identity, prompt, response) (``<cache dir>/rm_scores.sqlite``, or
    ``$ICDPO_RM_CACHE``), so a rescore
    pays only what is new and a rerun nothing (the task setting ``rm_cache=false`` turns it off)."""

    def __init__(self, path: str | Path | None = None) -> None:
        from icdpo_eval.config import settings
        from icdpo_eval.runtime import SqliteStore

        self.store = SqliteStore(Path(path) if path else settings.rm_cache_path(),
                                 "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, rm TEXT, reward REAL)")

    @staticmethod
    def key(identity: str, prompt: str, response: str) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps([identity, prompt, response], ensure_ascii=False).encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, tuple[str, float]]:
        out: dict[str, tuple[str, float]] = {}
        for s in range(0, len(keys), 500):
            chunk = list(keys[s:s + 500])
            rows = self.store.query(f"SELECT key, rm, reward FROM scores WHERE key IN ({','.join('?' * len(chunk))})",
                                    tuple(chunk))
            out.update({k: (rm, float(r)) for k, rm, r in rows})
        return out

    def put(self, items: Sequence[tuple[str, str, float]]) -> None:
        for key, rm, reward in items:
            self.store.query("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", (key, rm, float(reward)))


_SCORE_CACHES: dict[str, ScoreCache] = {}


def score_cache() -> ScoreCache:
    """The process-wide score cache (``$ICDPO_RM_CACHE``, default under the cache dir; one connection per path)."""
    from icdpo_eval.config import settings

    path = str(settings.rm_cache_path())
    if path not in _SCORE_CACHES:
        _SCORE_CACHES[path] = ScoreCache(path)
    return _SCORE_CACHES[path]


_JUDGES: dict[tuple[str, str, int, str | None], RewardModelJudge] = {}
JUDGE_LOADS: list[str] = []  # every real load of a reward model, by name (the leaderboard's run log)


def get_judge(name: str = "auto", dtype: str | None = "float32", batch_size: int = 8) -> RewardModelJudge:
    """A process-wide cached judge per (name, dtype, batch size): a reward model loads once per run."""
    from icdpo_eval.data.embedded import identity

    # the proxy fits on the embedded SBERT: a twin's (ICDPO_EMBEDDED_DIR) is another judge; "auto" may resolve to it
    proxy = (canonical((name or "auto").strip()) or "auto") in ("auto", "proxy")
    key = (name, canonical_dtype(dtype), int(batch_size), identity("sbert") if proxy else None)
    if key not in _JUDGES:
        _JUDGES[key] = RewardModelJudge(name, dtype=key[1], batch_size=key[2])
        JUDGE_LOADS.append(name)
    return _JUDGES[key]


def release_judges() -> None:
    """Free every cached reward model (the leaderboard calls this when no remaining cell needs them)."""
    _JUDGES.clear()
