"""What every method's lm-eval wrapper shares: model_arg checks, request batching, demo retrieval.

A method subclasses :class:`MethodLM`, sets ``self.engine`` / ``self.scorer`` and the generation
attributes in ``__init__`` (after ``super().__init__()``) and implements ``_generate_batch``. lm-eval's
``generate_until`` requests are grouped by (task, generation kwargs) and handed over ``batch_size``
documents at a time; ``loglikelihood`` returns ``self.scorer``'s value of each (context, continuation),
each context's candidates scored together, with the demos ``demos_for`` gives (none by default;
:class:`DemoRetrieval` retrieves them from the task's pool).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

from lm_eval.api.model import LM
from tqdm import tqdm

from icdpo_eval.data import embedded
from icdpo_eval.engine import Engine, SamplingParams
from icdpo_eval.method.best_of_n import Choice
from icdpo_eval.method.presets import CHOICES, Settings, settings_for
from icdpo_eval.method.prompts import TURN_MARKERS, Template, template_for
from icdpo_eval.method.retrieval import KINDS as RETRIEVERS
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.models.args import as_bool, as_float, as_int, check_model_path, check_unknown, choice
from icdpo_eval.models.journal import Journal
from icdpo_eval.models.parallel import DataParallel


def task_of(req) -> str | None:
    """The task whose demo pool serves this request: a rank-set row names its ``source_task``."""
    doc = getattr(req, "doc", None)
    source = doc.get("source_task") if isinstance(doc, dict) else None
    return source or req.task_name


def _freeze(d: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


class MethodLM(DataParallel, LM):
    """generate_until / loglikelihood plumbing; subclasses implement :meth:`_generate_batch`."""

    method = "method"
    pretrained: str = embedded.BASE_ALIAS
    engine: Any
    scorer: Any
    batch_size: int = 1
    n: int = 1  # candidates sampled per prompt
    max_new_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    temperature: float | None = None
    settings: Settings = settings_for("paper")
    resume: bool = True  # the per-document journal (models/journal.py)
    seed: int = 1234

    def take_common_args(self, unknown: dict[str, Any]) -> None:
        """The model_args every method accepts beyond its own (``resume``), then reject any other unknown one."""
        self.resume = as_bool("resume", unknown.pop("resume", True))
        check_unknown(self.method, unknown)

    @property
    def device(self):
        return self.engine.device

    def load_engine(self, pretrained: str | None, *, device: str | None, dtype: str, max_length: Any = None,
                    revision: str | None = None, trust_remote_code: Any = False, adapter: str | None = None) -> Engine:
        """The base model's engine, the one construction path of every method (``embedded:*`` aliases resolved;
        ``adapter`` = a peft LoRA folder); room for ``n`` candidates of ``batch_size`` prompts per pass."""
        check_model_path("pretrained", pretrained)
        device = self.setup_parallel(device)  # under `accelerate launch`: this rank's device
        self.engine = Engine.load(
            embedded.resolve(pretrained, embedded.BASE_ALIAS), device=device, dtype=dtype, revision=revision,
            trust_remote_code=as_bool("trust_remote_code", trust_remote_code), adapter=adapter,
            max_length=None if max_length is None else as_int("max_length", max_length, 16),
            max_rows=max(24, self.n * self.batch_size))
        return self.engine

    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    def set_generation_args(self, top_p: Any, temperature: Any, max_new_tokens: Any, top_k: Any = None) -> None:
        """model_args that override the task's generation kwargs / the model's generation_config (None = not
        given: see :meth:`sampling_params`)."""
        self.top_p = None if top_p is None else as_float("top_p", top_p, 0.0, 1.0)
        self.temperature = None if temperature is None else as_float("temperature", temperature, 0.0, 100.0)
        self.max_new_tokens = None if max_new_tokens is None else as_int("max_new_tokens", max_new_tokens, 1)
        self.top_k = None if top_k is None else as_int("top_k", top_k, 0)

    def set_settings(self, preset: Any = "paper", *, template: Any = None, score_eos: Any = None,
                     empty: Any = None, bm25_tokens: Any = None) -> None:
        """The preset (``paper`` / ``legacy``) and the model_args that override single settings of it."""
        self.settings = settings_for(
            str(preset or "paper"),
            template=None if template is None else choice("template", template, CHOICES["template"]),
            score_eos=None if score_eos is None else as_bool("score_eos", score_eos),
            empty=None if empty is None else choice("empty", empty, CHOICES["empty"]),
            bm25_tokens=None if bm25_tokens is None else choice("bm25_tokens", bm25_tokens, CHOICES["bm25_tokens"]))

    def template(self, task: str | None) -> Template:
        return template_for(task, self.settings.template)

    def sampling_info(self) -> dict[str, Any]:
        """The effective settings for the results' config (``"task"`` = the task's generation kwargs)."""
        info: dict[str, Any] = {**self.settings.as_dict()}
        if self.settings.sampling == "model":
            temp, top_k = self.engine.generation_defaults()
            info["temperature"] = self.temperature if self.temperature is not None else temp
            info["top_k"] = self.top_k if self.top_k is not None else top_k
        else:
            info["temperature"] = self.temperature if self.temperature is not None else "task"
            info["top_k"] = self.top_k or 0
        info["top_p"] = self.top_p if self.top_p is not None else "task"
        info["max_new_tokens"] = self.max_new_tokens if self.max_new_tokens is not None else "task"
        return info

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str] | list[Choice]:
        """The responses to ``reqs`` (texts, or :class:`Choice` records with every candidate and its score)."""
        raise NotImplementedError

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        """Demonstrations for each prompt (none unless the method retrieves some); ``exclude_self``: never a pool
        row with the prompt itself (scoring a labelled pair must not see its own label)."""
        return [[] for _ in prompts]

    def sampling_params(self, gk: dict) -> SamplingParams:
        """The request's sampling settings. model_args win; then, with ``sampling="model"`` (preset paper, as
        the released code), temperature and top_k come from the base model's generation_config (transformers'
        defaults 1.0 / 50 where it sets none) while max_new_tokens / top_p / do_sample come from the task;
        with ``sampling="task"`` (legacy) the task's temperature applies and there is no top-k."""
        until = gk.get("until") or []
        if isinstance(until, str):
            until = [until]
        max_new = self.max_new_tokens or int(gk.get("max_gen_toks", 128))
        top_p = self.top_p if self.top_p is not None else float(gk.get("top_p", 0.8))
        if self.settings.sampling == "model":
            temp0, top_k0 = self.engine.generation_defaults()
            temp = self.temperature if self.temperature is not None else temp0
            top_k = self.top_k if self.top_k is not None else top_k0
        else:
            temp = self.temperature if self.temperature is not None else float(gk.get("temperature", 1.0))
            top_k = self.top_k or 0
        do_sample = bool(gk.get("do_sample", True)) and temp > 0
        return SamplingParams(max_new_tokens=max_new, top_p=top_p, top_k=top_k, temperature=temp, do_sample=do_sample,
                              stop=(*TURN_MARKERS, *until))

    def journal(self) -> Journal | None:
        """This config's result journal (None with ``resume=false``)."""
        if not self.resume:
            return None
        if getattr(self, "_journal", None) is None:
            self._journal = Journal({"class": type(self).__qualname__, **self.get_model_info()}, rank=self.rank)
        return self._journal

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
            else:
                by_task[(task_of(req), _freeze(dict(req.args[1] or {})))].append(i)
        todo = sum(map(len, by_task.values()))
        if journal is not None:  # one line on stderr (lm-eval's CLI shows only its own loggers)
            print(f"{self.method} (rank {self.rank}): journal {journal.dir}: {len(requests) - todo} of "
                  f"{len(requests)} documents resumed, {todo} to generate", file=sys.stderr)
        bar = tqdm(total=todo, desc=f"{self.method} generate", disable=disable_tqdm)
        for (task, frozen), idxs in by_task.items():
            for s in range(0, len(idxs), self.batch_size):
                chunk = idxs[s:s + self.batch_size]
                results = self._generate_batch(task, [requests[i] for i in chunk], dict(frozen))
                records = []
                for i, res in zip(chunk, results, strict=True):
                    out[i] = res if isinstance(res, str) else res.text
                    records.append({"key": keys[i], "task": task, "doc_id": requests[i].doc_id, "response": out[i],
                                    **({} if isinstance(res, str) else res.record())})
                if journal is not None:
                    journal.add(records)
                bar.update(len(chunk))
        bar.close()
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """The scorer's value of each continuation given its context (each context encoded once)."""
        groups_idx: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups_idx[(task_of(req), req.args[0])].append(i)
        keys = list(groups_idx)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        bar = tqdm(total=len(requests), desc=f"{self.method} score", disable=disable_tqdm)
        step = max(1, self.batch_size)
        for s in range(0, len(keys), step):
            by_task: dict[str | None, list[tuple]] = defaultdict(list)
            for key in keys[s:s + step]:
                by_task[key[0]].append(key)
            for task, tkeys in by_task.items():
                demos = self.demos_for(task, [ctx for _, ctx in tkeys], exclude_self=True)
                tpl = self.template(task)
                groups = [[Candidate(ctx, requests[i].args[1], d, template=tpl) for i in groups_idx[(t, ctx)]]
                          for (t, ctx), d in zip(tkeys, demos)]
                for key, sc in zip(tkeys, self.scorer.score(groups)):
                    for i, v in zip(groups_idx[key], sc):
                        out[i] = (v, False)
                    bar.update(len(sc))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(f"--model {self.method} scores responses given a prompt; perplexity tasks "
                                  "(loglikelihood_rolling) are not meaningful for it. Use --model hf for those.")


class DemoRetrieval:
    """Demo retrieval from a task's pool (``DemoStore`` + one cached retriever per pool)."""

    k: int
    seed: int
    engine: Any

    settings: Settings

    def setup_retrieval(self, *, k: Any = 2, retriever: str = "random", sbert: str | None = None,
                        bm25_window: Any = 30, bm25_top: Any = 20, demo_pool: str | None = None,
                        demo_source: str = "raw") -> None:
        """Call after :meth:`MethodLM.set_settings` (``sbert=None`` = the preset's)."""
        from icdpo_eval.method.demos import DemoStore

        self.k = as_int("k", k, 0)
        self.retriever_kind = choice("retriever", retriever, RETRIEVERS)
        self.sbert = sbert or self.settings.sbert
        if self.sbert != "auto":
            check_model_path("sbert", self.sbert)
        self.bm25_window = as_int("bm25_window", bm25_window, 1)
        self.bm25_top = as_int("bm25_top", bm25_top, 1)
        self.demos = DemoStore(demo_pool=demo_pool, demo_source=demo_source)
        # a user pool / demo_source file is read, parsed and length-filtered now, before any weights load
        self.demos.validate(self.k)
        self._retrievers: dict[str, Any] = {}

    def retrieval_info(self) -> dict:
        sbert = None
        if self.retriever_kind == "bm25_sbert":
            from icdpo_eval.method.retrieval import resolve_sbert

            sbert = resolve_sbert(self.sbert)
            if sbert != self.sbert:
                sbert = f"{sbert} ({self.sbert})"
        return {"retriever": self.retriever_kind, "k": self.k, "sbert": sbert,
                "bm25_window": self.bm25_window if self.retriever_kind != "random" else None,
                "demo_pool": self.demos.demo_pool or "task default", "demo_source": self.demos.demo_source,
                **({"demo_pool_filtered": dict(self.demos.filtered)} if self.demos.filtered else {})}

    def retrieve(self, task: str | None, queries: list[str], exclude_self: bool = False) -> list[list[dict]]:
        """K demos per query from the task's pool; ``exclude_self`` leaves out pool rows whose prompt (or id) is
        the query (the released code does not, so generation keeps them: the paper's setting)."""
        if self.k == 0:
            return [[] for _ in queries]
        from icdpo_eval.method.retrieval import make_retriever

        pool = self.demos.pool(task)
        key = self.demos.key(task)
        if key not in self._retrievers:
            subword = self.settings.bm25_tokens == "subword"
            self._retrievers[key] = make_retriever(
                self.retriever_kind, pool, seed=self.seed, bm25_window=self.bm25_window,
                bm25_top=self.bm25_top, sbert=self.sbert, device=str(self.engine.device),
                tokenizer=self.engine.tok if subword else None, text=self.settings.retrieval_text)
        exclude = list(queries) if exclude_self else None
        return [[pool[i] for i in ids] for ids in self._retrievers[key].retrieve_many(queries, self.k, exclude=exclude)]
