"""Every option of icdpo-eval, declared once: the model_args of each lm-eval model and the task settings.

One :class:`Option` per setting: its name, kind, default, allowed values or range, a one-line doc and whether
it changes results. Options shared by several models (``pretrained``, ``seed``, the sampling and the
retrieval options, ...) are declared once below and mean the same everywhere. From these declarations, and
only from them, come:

* parsing and validation (:meth:`Options.parse`): an unknown key, a wrong type or a value out of range is one
  line naming the option and what is allowed, raised before any weights load;
* what a run records (``get_model_info()`` -> the results' ``config``) and the result journal's config hash
  (the options that change results);
* the option tables of ``docs/options.md`` and the README (:func:`markdown_table`; ``tests/test_options.py``
  fails when a table and its declaration differ);
* the leaderboard's spec validation and ``show-prompt``'s ``--model_args``.

Task settings (:data:`TASK_SETTINGS`: the reward model behind ``rm_reward``, the judge, the win-rate sample,
the rank set) are lm-eval task metadata: a task YAML's ``metadata:`` or ``--metadata '{"rm": "proxy"}'``.

Imports nothing heavy (no torch, no lm_eval).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from icdpo_eval.errors import OptionError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Option:
    """One setting. ``kind``: str | int | float | bool | choice | model | batch | device. ``default`` None means
    "not set: derived" (``shown`` says from what). ``results``: whether the value can change a number (such
    options are recorded and hashed into the journal key; the others only in the results' config)."""

    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    synonyms: Mapping[str, str] = field(default_factory=dict)  # other spellings of a choice
    lo: float | None = None
    hi: float | None = None
    results: bool = True
    aliases: tuple[str, ...] = ()  # other names of the option (e.g. lm-eval's peft= for adapter=)
    shown: str | None = None  # the default as the docs show it
    check: Callable[[Any], None] | None = None  # extra validation of a parsed, non-None value
    auto: Any = None  # what the value "auto" means, where the kind allows it (batch_size=auto)

    def with_default(self, default: Any, shown: str | None = None, doc: str | None = None) -> Option:
        return replace(self, default=default, shown=shown, doc=doc or self.doc)

    def allowed(self) -> str:
        """What the option accepts, in words (for errors and the docs)."""
        if self.kind == "choice":
            return " | ".join(self.choices)
        if self.kind == "bool":
            return "true | false"
        if self.kind in ("int", "float"):
            lo = "" if self.lo is None else f"{self.lo:g}"
            hi = "" if self.hi is None else f"{self.hi:g}"
            what = "integer" if self.kind == "int" else "number"
            if lo and hi:
                return f"{what} in [{lo}, {hi}]"
            return f"{what} >= {lo}" if lo else what
        if self.kind == "batch":
            return "integer >= 1 | auto"
        if self.kind == "device":
            return "auto | cpu | cuda[:N] | mps"
        if self.kind == "model":
            return "hub name | local folder | embedded:base|teacher|sbert"
        return "text"

    def parse(self, value: Any, where: str) -> Any:
        """The checked value (None stays None: not set)."""
        if value is None:
            return None
        out = self._convert(value, where)
        if self.check is not None:
            self.check(out)
        return out

    def _fail(self, value: Any, where: str) -> OptionError:
        return OptionError(f"{where} {self.name}={value!r}: must be {self.allowed()}")

    def _convert(self, value: Any, where: str) -> Any:
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            v = str(value).strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            raise self._fail(value, where)
        if kind in ("int", "float"):
            if isinstance(value, bool):
                raise self._fail(value, where)
            if kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)  # lm-eval's parser reads "-1" as -1.0
            try:
                num = int(str(value).strip()) if kind == "int" and not isinstance(value, int) else (
                    value if kind == "int" else float(value))
            except (TypeError, ValueError):
                raise self._fail(value, where) from None
            if kind == "float" and num != num:  # NaN
                raise self._fail(value, where)
            if (self.lo is not None and num < self.lo) or (self.hi is not None and num > self.hi):
                raise self._fail(value, where)
            return num
        if kind == "choice":
            v = str(value).strip()
            v = self.synonyms.get(v, self.synonyms.get(v.lower(), v))
            if v not in self.choices:
                raise self._fail(value, where)
            return v
        if kind == "batch":
            v = str(value).strip().lower()
            if v.startswith("auto"):
                return "auto"
            try:
                n = int(v)
            except ValueError:
                raise self._fail(value, where) from None
            if n < 1:
                raise self._fail(value, where)
            return n
        if kind == "device":
            v = str(value).strip()
            if not _DEVICE.match(v):
                raise self._fail(value, where)
            return v
        v = str(value).strip()
        if kind == "model":
            from icdpo_eval.config.names import check_model_name

            check_model_name(f"{where} {self.name}", v)
        return v


class Config(Mapping[str, Any]):
    """The parsed options of one model (attribute or key access); ``explicit``: the names the user gave."""

    def __init__(self, options: Options, values: dict[str, Any], explicit: Iterable[str]) -> None:
        self._options = options
        self._values = dict(values)
        self.explicit = frozenset(explicit)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def given(self, name: str) -> bool:
        return name in self.explicit

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def results_dict(self) -> dict[str, Any]:
        """The values of the options that change results (the journal's config hash)."""
        return {o.name: self._values[o.name] for o in self._options if o.results}


class Options:
    """The ordered options of one model (or of the task settings), and their parser."""

    def __init__(self, owner: str, *parts: Option | Iterable[Option]) -> None:
        self.owner = owner
        self._by_name: dict[str, Option] = {}
        for part in parts:
            for opt in ([part] if isinstance(part, Option) else part):
                if opt.name in self._by_name:
                    raise AssertionError(f"{owner}: option {opt.name} declared twice")
                self._by_name[opt.name] = opt
        self._alias = {a: o.name for o in self._by_name.values() for a in o.aliases}

    def __iter__(self) -> Iterator[Option]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._alias

    def __getitem__(self, name: str) -> Option:
        return self._by_name[self._alias.get(name, name)]

    def names(self) -> list[str]:
        return list(self._by_name)

    def parse(self, args: Mapping[str, Any], *, where: str | None = None, ignore_unknown: bool = False) -> Config:
        """Every option's value: the given one (checked), else the default. Unknown keys are an error naming the
        allowed ones (or skipped with ``ignore_unknown``, e.g. task metadata, which lm-eval fills with the
        model_args too)."""
        where = where or f"--model {self.owner} model_arg"
        given: dict[str, Any] = {}
        unknown = []
        for key, value in args.items():
            name = self._alias.get(key, key)
            if name not in self._by_name:
                unknown.append(key)
                continue
            if name in given and given[name] != value:
                raise OptionError(f"{where}s {name} and its alias {key} are both given, with different values")
            given[name] = value
        if unknown and not ignore_unknown:
            raise OptionError(f"unknown {where}(s) {', '.join(sorted(unknown))}; --model {self.owner} takes: "
                              f"{', '.join(self.names())} (docs/options.md)")
        values = {}
        for name, opt in self._by_name.items():
            values[name] = opt.parse(given[name], where) if name in given else opt.default
        return Config(self, values, [k for k, v in given.items() if v is not None])


# ------------------------------------------------------------------------------------------ shared options
def _nonempty(what: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if not str(v).strip():
            raise OptionError(f"{what} must not be empty")
    return check


PRETRAINED = Option("pretrained", "model", "embedded:base", "base model: hub name, local folder, or "
                    "embedded:base (Gemma-3-270M from a PyPI package, offline)")
REVISION = Option("revision", "str", None, "hub revision (branch, tag or commit) of `pretrained`", shown="main")
TRUST_REMOTE_CODE = Option("trust_remote_code", "bool", False, "passed to `from_pretrained`; never on by default")
DTYPE = Option("dtype", "choice", "auto", "weights dtype: auto = float32 on CPU, bfloat16 on CUDA",
               choices=("auto", "float32", "bfloat16", "float16"),
               synonyms={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "torch.float32": "float32",
                         "torch.bfloat16": "bfloat16", "torch.float16": "float16"})
DEVICE = Option("device", "device", "auto", "auto = cuda when present, else cpu; lm-eval's default cuda:0 falls "
                "back to CPU without CUDA", results=False)
BATCH_SIZE = Option("batch_size", "batch", 1, "documents decoded together (their N candidates each); lm-eval's "
                    "--batch_size sets it; a document's samples do not depend on it", results=False,
                    shown="1 (auto: 4)", auto=4)
# the baselines that decode one document's N candidates at a time keep auto at 1 (their per-row paths are not batched)
BATCH_SIZE_AUTO_1 = replace(BATCH_SIZE, shown="1 (auto: 1)", auto=1)
MAX_BATCH_SIZE = Option("max_batch_size", "int", None, "lm-eval's --max_batch_size: accepted, unused", lo=1,
                        results=False, shown="–")
SEED = Option("seed", "int", 1234, "seeds retrieval and each document's samples", lo=0)
RESUME = Option("resume", "bool", True, "the per-document result journal: a rerun after a kill generates only "
                "the missing documents", results=False)
MAX_LENGTH = Option("max_length", "int", None, "context + new tokens limit, checked for every document before any "
                    "sampling (an error names the first document over it)", lo=16, results=False,
                    shown="model's max_position_embeddings")
DECODE_KERNELS = Option("decode_kernels", "choice", "auto", "the decode step's kernels: auto = on the CPU in fp32, the "
                        "exact layout / kernel measured fastest on this machine per row count (saved, reused; recorded "
                        "in the results); onednn = oneDNN's kernel always, nothing measured (the same last bits on "
                        "every machine of one kind: regression baselines); off = transformers' own forward (may "
                        "differ in the last float bits)", choices=("auto", "off", "onednn"))
COMMON = (PRETRAINED, REVISION, TRUST_REMOTE_CODE, DTYPE, DEVICE, BATCH_SIZE, MAX_BATCH_SIZE, SEED, RESUME,
          MAX_LENGTH, DECODE_KERNELS)
COMMON_AUTO_1 = tuple(BATCH_SIZE_AUTO_1 if o is BATCH_SIZE else o for o in COMMON)

N = Option("n", "int", 3, "candidates sampled per prompt", lo=1)
REUSE_CANDIDATES = Option("reuse_candidates", "bool", True, "reuse the candidates another row or run already drew "
                          "under the same model, context, N, seed and sampling settings (then only score them); "
                          "false: always sample", results=False)
TOP_P = Option("top_p", "float", None, "nucleus sampling; beats the task's generation_kwargs", lo=0.0, hi=1.0,
               shown="task's (0.8)")
TOP_K = Option("top_k", "int", None, "top-k before top-p; 0 = off", lo=0,
               shown="--gen_kwargs, else the model's generation_config (50 when unset)")
TEMPERATURE = Option("temperature", "float", None, "sampling temperature; 0 = greedy", lo=0.0, hi=100.0,
                     shown="--gen_kwargs, else the model's generation_config (1.0 when unset)")
MAX_NEW_TOKENS = Option("max_new_tokens", "int", None, "longest candidate, in tokens; beats the task's "
                        "max_gen_toks", lo=1, shown="task's (HH 128, SyntheticGPT 200)")
SAMPLING = (TOP_P, TOP_K, TEMPERATURE, MAX_NEW_TOKENS, REUSE_CANDIDATES)

DIALOGUE = Option("dialogue", "choice", "pro", "how HH dialogues are read: pro = as the released code reads them "
                  "(each turn's first paragraph, stripped, consecutive turns of one speaker merged); verbatim = "
                  "the dataset's text", choices=("pro", "verbatim"))

PRESET = Option("preset", "choice", "paper", "the released code's settings (the only preset; `legacy` was "
                "removed, docs/fidelity.md says which commit reproduces it)", choices=("paper",))
SCORE_EOS = Option("score_eos", "bool", True, "score `\" \" + y` followed by the EOS token, as released")
EMPTY = Option("empty", "choice", "score", "score: an empty candidate is a real sample (released); skip: never "
               "chosen while a non-empty one exists", choices=("score", "skip"))
INSTRUCTIONS = Option("instructions", "str", "ours", "the instruction lines of the in-context template: ours, "
                      "released (fetched from the authors' repository at the pinned commit, cached), or a JSON "
                      "file {\"positive\": ..., \"negative\": ...}", check=_nonempty("instructions"))
CONTRASTIVE = (PRESET, SCORE_EOS, EMPTY, INSTRUCTIONS)

K = Option("k", "int", 2, "demonstrations per prompt (the most similar placed last)", lo=0)
RETRIEVER = Option("retriever", "choice", "random", "random | bm25 (BM25 over the last bm25_window tokens of each "
                   "pool dialogue) | bm25_sbert (the paper's R)", choices=("random", "bm25", "bm25_sbert"))
SBERT = Option("sbert", "model", "auto", "re-ranker of bm25_sbert: auto = the paper's all-mpnet-base-v2 when "
               "cached or reachable, else embedded:sbert (recorded)")
BM25_WINDOW = Option("bm25_window", "int", 30, "tokens at the end of each pool dialogue that BM25 indexes", lo=1)
BM25_TOP = Option("bm25_top", "int", 20, "BM25 candidates re-ranked by SBERT", lo=1)
DEMO_POOL = Option("demo_pool", "str", None, "JSONL (prompt/chosen/rejected or HH transcripts) or a dataset spec "
                   "such as hh-rlhf:harmless-base:train", shown="the task's pool")
DEMO_SOURCE = Option("demo_source", "str", "raw", "raw (the dataset's chosen responses) or a JSONL of "
                     "teacher-borrowed chosen responses (`icdpo-eval borrow`)", check=_nonempty("demo_source"))
RETRIEVAL = (K, RETRIEVER, SBERT, BM25_WINDOW, BM25_TOP, DEMO_POOL, DEMO_SOURCE)

# ------------------------------------------------------------------------------------------ per model
ICDPO = Options(
    "icdpo",
    Option("scorer", "choice", "s", "s (S), s_hat (Ŝ: negative template + rejected demos), icl (log π(y|d+,x) "
           "only)", choices=("s", "s_hat", "icl")),
    Option("select", "choice", "score", "score (best by scorer) | random (one of N) | single (sample one): the "
           "ICL-only ablations", choices=("score", "random", "single")),
    N, *RETRIEVAL, *CONTRASTIVE, DIALOGUE, *SAMPLING, *COMMON,
)

TEACHER = Option("teacher", "model", "embedded:teacher", "the teacher LLM whose log-prob scores a response "
                 "(embedded:teacher = SmolLM2-135M-Instruct)")
NORMALIZE = Option("normalize", "bool", False, "divide the teacher's log-prob by the response's teacher tokens")
RM_BON = Options("rm_bon", TEACHER, NORMALIZE, N, DIALOGUE, *SAMPLING, *COMMON_AUTO_1)
RM_AUG = Options("rm_aug", TEACHER, NORMALIZE,
                 Option("block_size", "int", 16, "tokens per block of blockwise controlled decoding", lo=1),
                 N, DIALOGUE, *SAMPLING[:-1], *COMMON_AUTO_1)  # blockwise decoding draws per block: nothing to reuse
LENGTH_BON = Options("length_bon", Option("pick", "choice", "longest", "which of the N base samples to return",
                                          choices=("longest", "shortest")),
                     N, DIALOGUE, *SAMPLING, *COMMON_AUTO_1)
ADAPTER = Option("adapter", "str", None, "LoRA adapter folder (`icdpo-eval train sft|dpo --out DIR`)",
                 aliases=("peft",), shown="required")
_ADAPTER_BASE = PRETRAINED.with_default(None, shown="the adapter's base")
SFT_LORA = Options("sft_lora", ADAPTER, DIALOGUE, *SAMPLING, _ADAPTER_BASE, *COMMON_AUTO_1[1:])
DPO = Options("dpo", ADAPTER,
              Option("rescore", "choice", "none", "none (one sample of the DPO policy) | implicit (best of N by the "
                     "DPO implicit reward) | s_hat (best of N by Ŝ on the DPO policy)",
                     choices=("none", "implicit", "s_hat")),
              N, *RETRIEVAL, *CONTRASTIVE, DIALOGUE, *SAMPLING, _ADAPTER_BASE, *COMMON_AUTO_1[1:])
# ---- the inference-time alignment methods ICDPO is compared with today (docs/w2s.md, docs/urial.md, docs/args.md)
W2S = Options(
    "w2s",
    Option("tuned", "str", None, "the tuned half of the guide: a LoRA adapter folder (`icdpo-eval train dpo|sft`, "
           "`trained:NAME` in a spec) or a hub name / local model folder", shown="required"),
    Option("untuned", "model", None, "the untuned half: a hub name / local model folder", shown="the adapter's base "
           "(its adapter disabled)"),
    Option("beam_width", "int", 2, "W: partial responses kept after each chunk", lo=1),
    Option("successors", "int", 2, "K: chunks sampled from each kept partial response", lo=1),
    Option("chunk_length", "int", 30, "L: tokens per chunk (L >= max_new_tokens with W = 1: best-of-K under the "
           "guide)", lo=1),
    DIALOGUE,
    TOP_P.with_default(1.0, shown="1.0 (released)"),
    TOP_K.with_default(50, shown="50 (released)"),
    TEMPERATURE.with_default(0.7, shown="0.7 (paper)"),
    MAX_NEW_TOKENS, *COMMON_AUTO_1,
)
URIAL = Options(
    "urial",
    Option("urial_prompt", "str", "ours", "the alignment prefix: ours (our system text and 3 examples), released "
           "(the authors' inst_1k_v4.help at the pinned commit, fetched and sha-checked at run time, cached) or a "
           "UTF-8 text file", check=_nonempty("urial_prompt")),
    Option("urial_format", "choice", "auto", "how a prompt follows the prefix: dialogue (the task's "
           "Human:/Assistant: turns) | query (the query/answer blocks of the authors' prompt files) | auto (query "
           "when the prefix has `# Query:` blocks, else dialogue)", choices=("auto", "dialogue", "query")),
    Option("repetition_penalty", "float", 1.1, "HF's repetition penalty over the context and the response (paper: "
           "1.1)", lo=1.0, hi=10.0),
    DIALOGUE,
    TOP_P.with_default(1.0, shown="1.0 (paper)"),
    TOP_K.with_default(0, shown="0 (off, paper)"),
    TEMPERATURE.with_default(0.3, shown="0.3 (paper)"),
    MAX_NEW_TOKENS, *COMMON_AUTO_1,
)
ARGS = Options(
    "args",
    Option("guide_rm", "model", "task", "the reward model that guides decoding: task (the task's `rm` setting, "
           "the one rm_reward uses: the row is then marked), proxy, or a sequence-classification RM name / "
           "folder"),
    Option("args_k", "int", 10, "k: the base model's top-k next tokens scored at each step", lo=1),
    Option("args_w", "float", 1.5, "w: weight of the reward term (released runs: 1.5)", lo=0.0),
    Option("args_mode", "choice", "greedy", "greedy (the best of the k) | sample (softmax of the k scores / "
           "temperature)", choices=("greedy", "sample")),
    DIALOGUE,
    TEMPERATURE.with_default(0.7, shown="0.7 (released; args_mode=sample only)"),
    MAX_NEW_TOKENS, *COMMON_AUTO_1,
)

# options of dpo that only mean something with rescore=s_hat
DPO_S_HAT_ONLY = tuple(o.name for o in (*RETRIEVAL, *CONTRASTIVE) if o.name != "preset")
RM = Options("rm",
             Option("rm", "model", "auto", "the reward model: auto (the paper's OpenAssistant RM when cached or "
                    "reachable, else the offline proxy), proxy, a hub name or a local folder",
                    aliases=("pretrained",)),
             DTYPE.with_default("float32", doc="the reward model's precision (float32 as released)"),
             DEVICE, replace(BATCH_SIZE, default=8, shown="8 (auto: 8)", auto=8,
                             doc="(context, response) pairs scored at once"),
             MAX_BATCH_SIZE, TRUST_REMOTE_CODE)

MODELS: dict[str, Options] = {o.owner: o for o in (ICDPO, RM_BON, RM_AUG, LENGTH_BON, SFT_LORA, DPO, W2S, URIAL,
                                                    ARGS, RM)}
# lm-eval model name -> "module:Class" (the registration hook's lazy placeholders; kept equal to
# [project.entry-points."lm_eval.models"] in pyproject.toml, tests/test_registration.py checks it)
TARGETS: dict[str, str] = {
    "icdpo": "icdpo_eval.models.icdpo:ICDPOLM",
    "rm_bon": "icdpo_eval.baselines.rm_bon:RMBoNLM",
    "length_bon": "icdpo_eval.baselines.length_bon:LengthBoNLM",
    "rm_aug": "icdpo_eval.baselines.rm_aug:RMAugLM",
    "sft_lora": "icdpo_eval.baselines.sft_lora:SFTLoRALM",
    "dpo": "icdpo_eval.baselines.dpo:DPOLM",
    "w2s": "icdpo_eval.baselines.w2s:WeakToStrongLM",
    "urial": "icdpo_eval.baselines.urial:URIALLM",
    "args": "icdpo_eval.baselines.args:ARGSLM",
    "rm": "icdpo_eval.models.rm:RMScorerLM",
}


def model_class(name: str) -> Any:
    """The class of one of our lm-eval models (imported on demand)."""
    import importlib

    module, _, cls = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def tasks_dir() -> Any:
    """The folder of our task YAMLs (``icdpo_eval.tasks``; in an editable install, the repo's tasks/), found
    without importing it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("icdpo_eval.tasks")
    assert spec is not None and spec.submodule_search_locations, "icdpo_eval.tasks is not installed"
    return Path(list(spec.submodule_search_locations)[0]).resolve()

# lm-eval generation kwargs our models read (--gen_kwargs, a task's generation_kwargs); any other key (e.g.
# repetition_penalty) is an error, never ignored silently
GEN_KWARGS = ("until", "do_sample", "temperature", "top_p", "top_k", "max_gen_toks")


def check_gen_kwargs(model: str, gen_kwargs: Mapping[str, Any]) -> None:
    bad = sorted(set(gen_kwargs) - set(GEN_KWARGS))
    if bad:
        raise OptionError(f"--model {model}: generation kwarg(s) {', '.join(bad)} are not supported (supported: "
                          f"{', '.join(GEN_KWARGS)})")


# ------------------------------------------------------------------------------------------ task settings
TASK_SETTINGS = Options(
    "task",
    Option("rm", "model", "auto", "reward model behind rm_reward: auto (the paper's "
           "OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1 when cached or reachable, else the offline proxy), proxy, "
           "a hub name or a local folder of a sequence-classification RM"),
    Option("rm_dtype", "choice", "float32", "the reward model's precision (float32 as released)",
           choices=("float32", "bfloat16", "float16"), synonyms=DTYPE.synonyms),
    Option("rm_batch_size", "int", 8, "(prompt, response) pairs per reward-model batch", lo=1, results=False),
    Option("rm_cache", "bool", True, "reuse reward-model scores stored on disk by (RM, prompt, response) "
           "(<cache dir>/rm_scores.sqlite, or $ICDPO_RM_CACHE): a rescore pays only what is new", results=False),
    Option("judge_model", "str", "gpt-4", "model name of the OpenAI-compatible pairwise judge (winrate tasks)",
           check=_nonempty("judge_model")),
    Option("judge_protocol", "choice", "both", "both: every pair judged in both orders; paper: one order per pair "
           "(the paper's uni-directional tests)", choices=("both", "paper")),
    Option("judge_workers", "int", 8, "concurrent judge requests", lo=1, results=False),
    Option("judge_max_tries", "int", 5, "tries per judge request (retries with backoff) before failing loudly",
           lo=1, results=False),
    Option("winrate_n", "int", 200, "documents judged per winrate task (a fixed-seed sample)", lo=1),
    Option("winrate_seed", "int", 1234, "seed of the winrate sample", lo=0),
    Option("rank_set", "str", None, "rank set of the MRR task hh_harmless_rank (`icdpo-eval build-rank-set`)",
           shown="required by hh_harmless_rank"),
    DIALOGUE.with_default("pro", doc="how the evaluation rows are length-filtered (the model's own `dialogue` "
                          "model_arg, which lm-eval passes to the task too)"),
)


def read_task_yaml(path: Path) -> dict[str, Any]:
    """One of our task YAMLs as lm-eval reads it, without lm-eval's private loader: ``include:`` files (relative to
    the file; a list: later ones win) under the file's own keys, ``!function`` tags kept as their dotted names."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}  # noqa: S506 - a SafeLoader subclass
    includes = cfg.pop("include", None)
    merged: dict[str, Any] = {}
    for inc in [includes] if isinstance(includes, str) else includes or []:
        merged.update(read_task_yaml(path.parent / inc))
    return {**merged, **cfg}


@functools.cache
def our_tasks() -> dict[str, dict[str, Any]]:
    """Our task YAMLs, by task name (includes merged, ``!function`` tags unresolved)."""
    out = {}
    for path in sorted(tasks_dir().glob("*.yaml")):
        cfg = read_task_yaml(path)
        if isinstance(cfg.get("task"), str):
            out[cfg["task"]] = cfg
    return out


def task_settings(task: str, model_args: dict[str, Any], metadata: dict[str, Any] | None) -> Config:
    """The effective task settings of ``task``: its YAML's ``metadata:``, then the model_args, then
    ``--metadata`` (lm-eval's own merge order), over the declared defaults."""
    cfg = our_tasks().get(task, {})
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    return TASK_SETTINGS.parse({**meta, **model_args, **(metadata or {})}, where="task setting",
                                       ignore_unknown=True)


def markdown_table(options: Options, skip: Iterable[str] = ()) -> str:
    """The docs' table of ``options`` (generated; tests compare the docs with it)."""
    lines = ["| option | default | allowed | changes results | meaning |", "|---|---|---|---|---|"]
    skip = set(skip)
    for o in options:
        if o.name in skip:
            continue
        default = o.shown if o.shown is not None else ("–" if o.default is None else str(o.default).lower()
                                                     if isinstance(o.default, bool) else str(o.default))
        name = f"`{o.name}`" + "".join(f" (`{a}`)" for a in o.aliases)
        doc = o.doc.replace("|", "\\|")
        lines.append(f"| {name} | {default} | {o.allowed().replace('|', chr(92) + '|')} | "
                     f"{'yes' if o.results else 'no'} | {doc} |")
    return "\n".join(lines)


def generated_blocks() -> dict[str, str]:
    """The docs' generated tables by block name (``<!-- generated: NAME -->`` ... ``<!-- end generated -->`` in
    README.md and docs/*.md; ``scripts/sync_docs.py`` writes them, ``tests/test_options.py`` checks them)."""
    from icdpo_eval.config import settings

    blocks = {f"options {name}": markdown_table(opts) for name, opts in MODELS.items()}
    blocks["options icdpo (short)"] = markdown_table(ICDPO, skip=[o.name for o in COMMON])
    blocks["task settings"] = markdown_table(TASK_SETTINGS)
    env = ["| variable | kind | default | what it is for |", "|---|---|---|---|"]
    env += [f"| `{v.name}` | {v.kind} | {v.default or '–'} | {v.doc} |" for v in settings.VARIABLES]
    blocks["environment"] = "\n".join(env)
    moved = ["| earlier variable | now |", "|---|---|"]
    moved += [f"| `{k}` | `{v}` |" for k, v in settings.MOVED.items()]
    blocks["moved variables"] = "\n".join(moved)
    return blocks
