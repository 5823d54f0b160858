"""What every method's lm-eval wrapper shares: options, the one engine construction path, prompts, sampling
settings, request batching, the length check and demo retrieval.

A method subclasses :class:`MethodLM`, names its options (:data:`OPTIONS`, a declaration of
:mod:`icdpo_eval.config.options`) and implements :meth:`validate` (files, adapters: no weights), :meth:`load`
(``self.engine``, ``self.scorer``) and ``_generate_batch``. The constructor takes the model_args as keywords,
parses them with the declaration (an unknown key, a wrong type or a value out of range is one line naming the
option), validates, then loads; :meth:`MethodLM.preview` stops before the weights (a tokenizer only).
lm-eval's ``generate_until`` requests are grouped by (task, generation kwargs), every context a request will be
sampled and scored under is checked against ``max_length`` before the first sample, and ``batch_size``
documents at a time are handed to ``_generate_batch``; ``loglikelihood`` returns ``self.scorer``'s value of each
(context, continuation), each context's candidates scored together, with the demos ``demos_for`` gives (none by
default; :class:`DemoRetrieval` retrieves them from the task's pool).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from lm_eval.api.model import LM
from tqdm import tqdm

from icdpo_eval import runtime
from icdpo_eval.config import names
from icdpo_eval.config.options import DIALOGUE, Config, Options, check_gen_kwargs
from icdpo_eval.data.datasets import task_limits
from icdpo_eval.data.hh import prepare_dialogue
from icdpo_eval.engine import Engine, SamplingParams
from icdpo_eval.errors import OptionError
from icdpo_eval.method import instructions as instructions_mod
from icdpo_eval.method.best_of_n import Choice, sample_and_select
from icdpo_eval.method.prompts import TURN_MARKERS, Template, family_of, template_for
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.models import compute, details
from icdpo_eval.models.journal import Journal
from icdpo_eval.models.parallel import DataParallel


def task_of(req) -> str | None:
    """The task whose demo pool serves this request: a rank-set row names its ``source_task``."""
    doc = getattr(req, "doc", None)
    source = doc.get("source_task") if isinstance(doc, dict) else None
    return source or req.task_name


def _freeze(d: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)


class OptionsLM(DataParallel, LM):
    """An lm-eval model whose model_args are one declaration (:attr:`OPTIONS`), parsed before anything loads."""

    method = "model"
    OPTIONS: Options

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.cfg: Config = self.OPTIONS.parse(model_args)

    # lm-eval passes --batch_size / --device beside the model_args; an explicit model_arg wins
    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None):
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)


class MethodLM(OptionsLM):
    """Options, engine, prompts, sampling and request plumbing; subclasses implement :meth:`validate`,
    :meth:`load` and :meth:`_generate_batch`."""

    method = "method"
    engine: Any
    scorer: Any

    def __init__(self, **model_args: Any) -> None:
        super().__init__(**model_args)
        self._configure()
        self.validate()  # files, adapters, instructions: before any weights load
        self.load()

    @classmethod
    def preview(cls, *, fast_tokenizer: bool = False, **model_args: Any) -> MethodLM:
        """The model with its options parsed and checked, its demos and templates ready, and the base model's
        tokenizer instead of its weights (``show-prompt``, the run's checks before anything loads;
        ``fast_tokenizer``: :meth:`Engine.tokenizer_only` ``fast``)."""
        self = cls.__new__(cls)
        LM.__init__(self)
        self.cfg = self.OPTIONS.parse(model_args)
        self._configure()
        self.validate()
        self.engine = Engine.tokenizer_only(names.resolve(self.pretrained), revision=self.cfg.revision,
                                            trust_remote_code=self.cfg.trust_remote_code,
                                            max_length=self.cfg.max_length, fast=fast_tokenizer)
        return self

    @classmethod
    def weight_keys(cls, model_args: dict[str, Any], device: str | None = None) -> list[tuple]:
        """The weights this model would load (keys of :data:`icdpo_eval.engine.WEIGHTS`), from its options alone:
        what a leaderboard plans with (which cells share a model, when one can be freed)."""
        cfg = cls.OPTIONS.parse(model_args)
        return [cls._engine_key(cfg, cls._base_name(cfg), device)]

    @classmethod
    def _base_name(cls, cfg: Config) -> str:
        return names.resolve(cfg.pretrained)

    @staticmethod
    def _engine_key(cfg: Config, pretrained: str, device: str | None, adapter: str | None = None,
                    merge: bool = False) -> tuple:
        from icdpo_eval.engine import weights_key

        dev = cfg.device if cfg.given("device") or device is None else device
        return weights_key(pretrained, device=dev, dtype=cfg.dtype, revision=cfg.revision,
                           trust_remote_code=cfg.trust_remote_code, adapter=adapter, merge_adapter=merge)

    def _configure(self) -> None:
        # every method model declares these (options.py): read as declared, no second default here
        self.seed = self.cfg["seed"]
        self.resume = self.cfg["resume"]
        batch = self.cfg["batch_size"]
        self.batch_size = self.OPTIONS["batch_size"].auto if batch == "auto" else batch
        # one rule for how HH dialogues are read: the declared option, or its declared default (`pro`, the released
        # reading) for a model that does not take it
        self.dialogue = self.cfg["dialogue"] if "dialogue" in self.OPTIONS else DIALOGUE.default
        # a model without `n` (sft_lora) decodes one response per document
        self.n = self.cfg["n"] if "n" in self.OPTIONS else 1
        self.pretrained = names.canonical(self.cfg["pretrained"] if "pretrained" in self.OPTIONS else None)
        self.stats: Counter[str] = Counter()
        self.sampling_used: dict[str, dict[str, list]] = {}
        self.instructions = instructions_mod.OURS
        self._prepared: dict[str, str] = {}  # prompt -> as read with dialogue=pro

    def validate(self) -> None:
        """Check what the options name (files, adapters, instructions) and prepare what needs no weights."""

    def load(self) -> None:
        """Load the engine (and the scorer's models)."""
        raise NotImplementedError

    @property
    def device(self):
        return self.engine.device

    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    # ------------------------------------------------------------------------------------------ loading
    def load_engine(self, pretrained: str | None = None, *, adapter: str | None = None,
                    merge_adapter: bool = False) -> Engine:
        """The base model's engine, the one construction path of every method (embedded names resolved;
        ``adapter`` = a peft LoRA folder, folded into the weights with ``merge_adapter``); room for ``n``
        candidates of ``batch_size`` prompts per pass. Weights already loaded in this process are reused."""
        cfg = self.cfg
        device = self.setup_parallel(cfg.device)  # under `accelerate launch`: this rank's device
        self.engine = Engine.load(
            names.resolve(pretrained or self.pretrained), device=device, dtype=cfg.dtype, revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code, adapter=adapter, merge_adapter=merge_adapter,
            max_length=cfg.max_length, max_rows=max(24, self.n * self.batch_size), kernels=cfg.decode_kernels)
        return self.engine

    # ------------------------------------------------------------------------------------------ prompts
    def template(self, task: str | None) -> Template:
        tpl = template_for(task)
        lines = self.instructions.for_family(family_of(task))
        return tpl.with_instructions(*lines) if lines else tpl

    def prepare(self, task: str | None, prompt: str) -> str:
        """The request's prompt as the method reads it: ``dialogue=pro`` reads an HH dialogue as the released
        code does (:func:`icdpo_eval.data.hh.prepare_dialogue`); other tasks' prompts are never changed."""
        if self.dialogue != "pro" or family_of(task) != "hh":
            return prompt
        if prompt not in self._prepared:
            self._prepared[prompt] = prepare_dialogue(prompt)
        return self._prepared[prompt]

    # ------------------------------------------------------------------------------------------ sampling
    def sampling_params(self, gk: dict, task: str | None = None) -> SamplingParams:
        """The request's sampling settings and where each comes from (recorded per task in ``sampling``). An
        explicit user setting always wins: a model_arg, then lm-eval's ``--gen_kwargs``; then the method's declared
        default where it declares one (w2s, URIAL, ARGS: their papers' settings); then, as the released
        code samples (HF ``generate``), temperature and top_k come from the base model's generation_config
        (transformers' defaults 1.0 / 50 where it sets none) while top_p / max_gen_toks / do_sample come from
        the task's generation_kwargs."""
        check_gen_kwargs(self.method, gk)
        cfg = self.cfg
        explicit = runtime.explicit_gen_kwargs()  # the user's --gen_kwargs of this run (lm-eval merged them into gk)
        temp0, top_k0 = self.engine.generation_defaults()
        used: dict[str, list] = {}

        def pick(option: str, gen_key: str, conv: Any, fallback: Any, fallback_from: str, task_ok: bool) -> Any:
            declared = cfg[option] if option in self.OPTIONS else None
            if declared is not None and cfg.given(option):
                used[option] = [declared, "model_args"]
            elif gen_key in explicit and gen_key in gk:
                used[option] = [conv(gk[gen_key]), "--gen_kwargs"]
            elif declared is not None:  # the method's own declared default (its paper's setting)
                used[option] = [declared, f"{self.method} default"]
            elif task_ok and gen_key in gk:
                used[option] = [conv(gk[gen_key]), "task"]
            else:
                used[option] = [fallback, fallback_from]
            return used[option][0]

        # the task's own temperature / top_k never apply (as released: the model's generation_config does)
        temperature = pick("temperature", "temperature", float, temp0, "generation_config", False)
        top_k = pick("top_k", "top_k", int, top_k0, "generation_config", False)
        top_p = pick("top_p", "top_p", float, 1.0, "default", True)
        max_new = pick("max_new_tokens", "max_gen_toks", int, task_limits(task).max_gen_toks, "default", True)
        until = gk.get("until") or []
        if isinstance(until, str):
            until = [until]
        do_sample = bool(gk.get("do_sample", True)) and temperature > 0
        used["do_sample"] = [do_sample, "task" if "do_sample" in gk else "default"]
        self.sampling_used[str(task)] = used
        return SamplingParams(max_new_tokens=max_new, top_p=top_p, top_k=top_k, temperature=temperature,
                              do_sample=do_sample, stop=(*TURN_MARKERS, *until))

    def candidate_store(self) -> Any:
        """Where candidates are reused from (None with ``reuse_candidates=false``, or for a model without it)."""
        if "reuse_candidates" not in self.OPTIONS or not self.cfg.reuse_candidates:
            return None
        from icdpo_eval.method.candidates import default_store

        return default_store()

    # ------------------------------------------------------------------------------------------ records
    def model_info(self) -> dict[str, Any]:
        """What a subclass adds to the results' config beyond its options (resolved names, provenance)."""
        return {}

    def resolved(self) -> dict[str, Any]:
        """Resolved values that change results but are not options (hashed into the journal key): the instruction
        lines and, when ``ICDPO_EMBEDDED_DIR`` replaces the embedded models (the tests' twins), which models."""
        out: dict[str, Any] = {"instructions_sha256": self.instructions.info["instructions_sha256"]}
        engine = getattr(self, "engine", None)
        if getattr(engine, "kernels", None) is not None:  # the machine's saved kernel choices (engine/kernels.py)
            out["decode_kernels"] = engine.kernels.key()
        from icdpo_eval.config import settings

        if settings.embedded_dir() is not None:
            from icdpo_eval.data.embedded import identity

            out["embedded"] = {kind: identity(kind) for kind in ("base", "teacher", "sbert")
                               if (settings.embedded_dir() / kind).is_dir()}
        return out

    def get_model_info(self) -> dict:
        info: dict[str, Any] = {"method": self.method}
        info.update({k: _jsonable(v) for k, v in self.cfg.as_dict().items()})
        info["pretrained"] = self.pretrained
        engine = getattr(self, "engine", None)
        if engine is not None and getattr(engine, "model", None) is not None:
            info["dtype"] = str(engine.model.dtype)
            info["decode_kernels_used"] = engine.kernels.record()
        elif getattr(engine, "kernels_record", None) is not None:  # released before the scorer loaded
            info["dtype"] = engine.dtype
            info["decode_kernels_used"] = engine.kernels_record
        if "instructions" in self.OPTIONS:
            info.update(self.instructions.info)
        if self.sampling_used:
            info["sampling"] = self.sampling_used
        if "candidates_reused" in self.stats or "candidates_sampled" in self.stats:
            info["candidates"] = {"reused": self.stats["candidates_reused"],
                                  "sampled": self.stats["candidates_sampled"]}
        if self._prepared:
            changed = sum(a != b for a, b in self._prepared.items())
            info["dialogue_changed"] = f"{changed} of {len(self._prepared)} prompts read differently (dialogue=pro)"
        info.update(self.model_info())
        return info

    def journal(self) -> Journal | None:
        """This config's result journal (None with ``resume=false``): keyed by the options that change results
        and the resolved values (:meth:`resolved`)."""
        if not self.resume:
            return None
        if getattr(self, "_journal", None) is None:
            config = {"class": type(self).__qualname__, "options": self.cfg.results_dict(),
                      "resolved": self.resolved()}
            self._journal = Journal(json.loads(json.dumps(config, default=str)), rank=self.rank)
        return self._journal

    # ------------------------------------------------------------------------------------------ lengths
    def contexts_of(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[str]]:
        """Every context each (prepared) prompt is sampled or scored under, for the length check; default: the
        plain prompt under the task's template."""
        tpl = self.template(task)
        return [[tpl.zero_shot(p)] for p in prompts]

    def check_lengths(self, task: str | None, reqs: Sequence, max_new: int, exclude_self: bool = False,
                      plain: bool = False, margin: int = 0) -> None:
        """Every context + ``max_new`` tokens must fit ``max_length``: else one error naming the first document
        and its token counts, before any sampling (a number computed on a truncated context is a wrong one).
        ``plain``: only the plain prompts' contexts (no demos retrieved); ``margin``: fail only when over by more
        (a quick check with another tokenizer; the exact check runs again before the first sample)."""
        limit = self.engine.max_length + margin
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        contexts = MethodLM.contexts_of(self, task, prompts) if plain else self.contexts_of(task, prompts, exclude_self)
        for req, ctxs in zip(reqs, contexts, strict=True):
            longest = max(len(self.engine.encode_context(c)) for c in ctxs)
            if longest + max_new > limit:
                doc = getattr(req, "doc", None)
                rid = f" (id {doc['id']})" if isinstance(doc, dict) and doc.get("id") else ""
                raise OptionError(
                    f"max_length={self.engine.max_length}: {task} document {req.doc_id}{rid} has a {longest}-token "
                    f"context + {max_new} new tokens = {longest + max_new} > {self.engine.max_length}; raise "
                    "model_arg max_length or lower max_new_tokens (nothing was generated)")

    # ------------------------------------------------------------------------------------------ requests
    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str] | list[Choice]:
        """The responses to ``reqs`` (texts, or :class:`Choice` records with every candidate and its score)."""
        raise NotImplementedError

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        """Demonstrations for each prompt (none unless the method retrieves some); ``exclude_self``: never a pool
        row with the prompt itself (scoring a labelled pair must not see its own label)."""
        return [[] for _ in prompts]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Requests grouped by (task, generation kwargs), ``batch_size`` documents at a time; documents already
        in the journal are not generated again, each finished batch is journaled."""
        out: list[str] = [""] * len(requests)
        journal = self.journal()
        keys = [Journal.doc_key(task_of(r), r.doc_id, r.args[0], dict(r.args[1] or {})) for r in requests]
        by_task: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            done = journal.get(keys[i]) if journal else None
            if done is not None:
                out[i] = done["response"]
                details.note(task_of(req), req.doc_id, done, resumed=True)
            else:
                by_task[(task_of(req), _freeze(dict(req.args[1] or {})))].append(i)
        for (task, frozen), idxs in by_task.items():  # every document checked before the first sample
            if getattr(self, "k", 0):  # a method with demos: the report shows the instruction lines
                details.note_template(task, self.template(task))
            params = self.sampling_params(dict(frozen), task)
            self.check_lengths(task, [requests[i] for i in idxs], params.max_new_tokens)
        todo = sum(map(len, by_task.values()))
        if journal is not None:  # one line on stderr (lm-eval's CLI shows only its own loggers)
            print(f"{self.method} (rank {self.rank}): journal {journal.dir}: {len(requests) - todo} of "
                  f"{len(requests)} documents resumed, {todo} to generate", file=sys.stderr)
        bar = tqdm(total=todo, desc=f"{self.method} generate", disable=disable_tqdm)
        for (task, frozen), idxs in by_task.items():
            for s in range(0, len(idxs), self.batch_size):
                chunk = idxs[s:s + self.batch_size]
                snap, t0 = runtime.METER.snapshot(), time.perf_counter()  # what this batch spends, every model
                results = self._generate_batch(task, [requests[i] for i in chunk], dict(frozen))
                spent = compute.record(runtime.METER.since(snap), time.perf_counter() - t0, len(chunk))
                records = []
                for i, res in zip(chunk, results, strict=True):
                    out[i] = res if isinstance(res, str) else res.text
                    records.append({"key": keys[i], "task": task, "doc_id": requests[i].doc_id, "response": out[i],
                                    **({} if isinstance(res, str) else res.record()), "compute": spent})
                    details.note(task, requests[i].doc_id, records[-1])
                if journal is not None:
                    journal.add(records)
                bar.update(len(chunk))
        bar.close()
        if self.stats.get("candidates_reused"):
            print(f"{self.method} (rank {self.rank}): candidates of {self.stats['candidates_reused']} documents reused "
                  f"(the same model, context, N, seed and sampling settings), {self.stats['candidates_sampled']} "
                  "sampled; reuse_candidates=false to sample afresh", file=sys.stderr)
        return out

    def scorer_for(self, task: str | None) -> Any:
        """What ``loglikelihood`` scores ``task``'s requests with (``self.scorer``; ARGS: the task's RM)."""
        return self.scorer

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """The scorer's value of each continuation given its context (each context encoded once)."""
        groups_idx: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups_idx[(task_of(req), req.args[0])].append(i)
        keys = list(groups_idx)
        for task in {t for t, _ in keys}:  # every context checked before the first pass
            tkeys = [k for k in keys if k[0] == task]
            longest = {k: max(len(self.engine.encode_continuation(requests[i].args[1])) for i in groups_idx[k]) + 1
                       for k in tkeys}
            self.check_lengths(task, [requests[groups_idx[k][0]] for k in tkeys], max(longest.values()),
                               exclude_self=True)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        bar = tqdm(total=len(requests), desc=f"{self.method} score", disable=disable_tqdm)
        step = max(1, self.batch_size)
        for s in range(0, len(keys), step):
            by_task: dict[str | None, list[tuple]] = defaultdict(list)
            for key in keys[s:s + step]:
                by_task[key[0]].append(key)
            for task, tkeys in by_task.items():
                prompts = [self.prepare(task, ctx) for _, ctx in tkeys]
                demos = self.demos_for(task, prompts, exclude_self=True)
                tpl = self.template(task)
                groups = [[Candidate(p, requests[i].args[1], d, template=tpl) for i in groups_idx[key]]
                          for key, p, d in zip(tkeys, prompts, demos)]
                for key, sc in zip(tkeys, self.scorer_for(task).score(groups)):
                    for i, v in zip(groups_idx[key], sc):
                        out[i] = (v, False)
                    bar.update(len(sc))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(f"--model {self.method} scores responses given a prompt; perplexity tasks "
                                  "(loglikelihood_rolling) are not meaningful for it. Use --model hf for those.")


class DemoRetrieval:
    """Demo retrieval from a task's pool (``DemoStore`` + one cached retriever per pool), configured by the
    retrieval options (:data:`icdpo_eval.config.options.RETRIEVAL`)."""

    cfg: Config
    seed: int
    engine: Any
    dialogue: str

    def setup_retrieval(self) -> None:
        """Read and check the user's pool and borrowed-demo files (before any weights load)."""
        from icdpo_eval.method.demos import DemoStore

        cfg = self.cfg
        self.k = cfg.k
        self.retriever_kind = cfg.retriever
        self.sbert = names.canonical(cfg.sbert)
        self.demos = DemoStore(demo_pool=cfg.demo_pool, demo_source=cfg.demo_source, dialogue=self.dialogue)
        # a user pool / demo_source file is read, parsed and length-filtered now, before any weights load
        self.demos.validate(self.k)
        self._retrievers: dict[str, Any] = {}
        self._retrieved: dict[tuple, list[dict]] = {}

    def retrieval_info(self) -> dict:
        info: dict[str, Any] = {"demo_pool": self.demos.demo_pool or "task default"}
        if self.retriever_kind == "bm25_sbert":
            from icdpo_eval.method.retrieval import resolve_sbert

            sbert = resolve_sbert(self.sbert)
            info["sbert"] = sbert if sbert == self.sbert else f"{sbert} ({self.sbert})"
        if self.demos.filtered:
            info["demo_pool_filtered"] = dict(self.demos.filtered)
        return info

    def retrieval_resolved(self) -> dict:
        if self.retriever_kind != "bm25_sbert":
            return {}
        from icdpo_eval.method.retrieval import resolve_sbert

        return {"sbert": resolve_sbert(self.sbert)}

    def retrieve(self, task: str | None, queries: list[str], exclude_self: bool = False) -> list[list[dict]]:
        """K demos per query from the task's pool (memoised per query); ``exclude_self`` leaves out pool rows whose
        prompt (or id) is the query (the released code does not, so generation keeps them: the paper's setting)."""
        if self.k == 0:
            return [[] for _ in queries]
        from icdpo_eval.method.retrieval import make_retriever

        pool = self.demos.pool(task)
        key = self.demos.key(task)
        todo = [q for q in dict.fromkeys(queries) if (key, q, exclude_self) not in self._retrieved]
        if todo:
            if key not in self._retrievers:
                self._retrievers[key] = make_retriever(
                    self.retriever_kind, pool, seed=self.seed, bm25_window=self.cfg.bm25_window,
                    bm25_top=self.cfg.bm25_top, sbert=self.sbert, device=str(self.engine.device),
                    tokenizer=self.engine.tok)
            exclude = list(todo) if exclude_self else None
            for q, ids in zip(todo, self._retrievers[key].retrieve_many(todo, self.k, exclude=exclude)):
                self._retrieved[(key, q, exclude_self)] = [pool[i] for i in ids]
        return [self._retrieved[(key, q, exclude_self)] for q in queries]


class PlainBestOfN:
    """The generation of the base-model best-of-N rows (``rm_bon``, ``length_bon``): N samples of the plain
    (zero-shot) prompt per document, the best by the model's ``scorer``. Mixed into a :class:`MethodLM`."""

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        tpl = self.template(task)
        return sample_and_select(
            self.engine, self.scorer, prompts, [tpl.zero_shot(p) for p in prompts], [[] for _ in prompts],
            n=self.n, params=self.sampling_params(gk, task), seed=self.seed, template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs], store=self.candidate_store(), stats=self.stats)
