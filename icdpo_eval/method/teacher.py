"""Teacher LLMs: the scorer of the RM-BoN / RM-Aug baselines and the writer of borrowed demos.

``load_teacher(name)``:

* a local Hugging Face causal LM (hub name, path, or the embedded default
  ``embedded:teacher``; the paper uses LLaMA2-7B-chat) over an :class:`~icdpo_eval.engine.Engine`.
  Its chat template turns an HH dialogue (``hh_to_turns``) into messages; :meth:`HFTeacher.context` is that
  chat, as text, ending with the generation prompt. A response is scored GPTScore-style as the teacher's
  log-probability of the response given that context (sum of token log-probs, or per token with
  ``normalize``); a tokenizer without a chat template gets the raw HH dialogue and ``" " + response``.
* ``openai:<model>``: an OpenAI-compatible chat API (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` from the
  environment) for GENERATION ONLY (borrowing): chat APIs return no log-probs of given text, so using
  one as a scorer raises :class:`TeacherError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from icdpo_eval.config import names
from icdpo_eval.data.hh import hh_to_turns
from icdpo_eval.engine import Engine, Session, stable_seed
from icdpo_eval.errors import UserError
from icdpo_eval.method.prompts import TURN_MARKERS, postprocess, zero_shot_context
from icdpo_eval.method.scorers import Candidate, LogProbScorer, Term

log = logging.getLogger(__name__)

API_PREFIX = "openai:"


class TeacherError(UserError):
    pass


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """An HH dialogue as chat messages (a prompt with no ``Human:`` turn becomes one user message)."""
    try:
        turns = hh_to_turns(prompt)
    except ValueError:
        turns = [("user", prompt.strip())]
    return [{"role": role, "content": text} for role, text in turns]


class HFTeacher:
    """A local causal LM teacher: scores (prompt, response) pairs and generates responses."""

    is_api = False

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.chat = bool(getattr(engine.tok, "chat_template", None))

    @classmethod
    def load(cls, name: str = names.TEACHER, *, device: str | None = None, dtype: str | None = "auto",
             max_rows: int = 24, kernels: str = "auto") -> HFTeacher:
        path = names.resolve(name, names.TEACHER)
        return cls(Engine.load(path, device=device, dtype=dtype, max_rows=max_rows, kernels=kernels), name)

    def context(self, prompt: str) -> str:
        """The teacher's context for a response to ``prompt``: its chat, ending with the generation prompt."""
        if not self.chat:
            return zero_shot_context(prompt)
        return self.engine.tok.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)

    def as_continuation(self, response: str) -> str:
        """How a (stripped) response follows :meth:`context`."""
        return response if self.chat else " " + response

    def score(self, prompts: Sequence[str], responses: Sequence[Sequence[str]], *,
              normalize: bool = False) -> list[list[float]]:
        """log p_teacher(response | context(prompt)) for every response of every prompt (each context is encoded
        once); per token with ``normalize``; an empty response scores -inf."""
        groups = [[Candidate(p, r) for r in rs] for p, rs in zip(prompts, responses)]
        return TeacherScorer(self, normalize).score(groups)

    def session(self, prompt: str) -> Session:
        """A cached session over :meth:`context` (RM-Aug appends accepted blocks to it)."""
        return self.engine.session(self.context(prompt))

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 128, do_sample: bool = False,
                 top_p: float = 1.0, temperature: float = 1.0, seed: int = 1234) -> list[str]:
        """One response per prompt (greedy by default), cut at turn markers and stripped."""
        samples = self.engine.sample([self.context(p) for p in prompts], 1, max_new_tokens=max_new_tokens,
                                     top_p=top_p, temperature=temperature, do_sample=do_sample,
                                     seeds=[stable_seed(seed, p) for p in prompts], stop=TURN_MARKERS,
                                     docs_per_batch=len(prompts))
        return [postprocess(s[0].text) for s in samples]


class APITeacher:
    """An OpenAI-compatible chat model (``openai:<model>``): generation only."""

    is_api = True

    def __init__(self, model: str, *, timeout: float = 120.0, max_retries: int = 5, workers: int = 4) -> None:
        self.model = model
        self.name = API_PREFIX + model
        self.timeout, self.max_retries, self.workers = timeout, max_retries, workers
        self._client = None

    def _no_logprobs(self, *_args, **_kwargs):
        raise TeacherError(
            f"teacher {self.name!r} is an API model: OpenAI-compatible chat APIs give no log-probabilities of "
            "given (prompt) tokens, so it cannot score responses (RM-BoN / RM-Aug / MRR). Use it for borrowing "
            "demos only (icdpo-eval borrow --teacher ...), and a local Hugging Face model as the scoring teacher.")

    score = session = context = _no_logprobs

    def client(self):
        """The OpenAI-compatible client, with the judges' retry policy (:mod:`icdpo_eval.api_client`)."""
        if self._client is None:
            from icdpo_eval import api_client

            if api_client.env_api_key() is None:
                raise TeacherError(f"teacher {self.name!r} needs OPENAI_API_KEY (any non-empty string for a local "
                                   "server) and, for a server other than api.openai.com, OPENAI_BASE_URL")
            self._client = api_client.make_client(timeout=self.timeout,
                                                  retry=api_client.RetryPolicy(max_tries=self.max_retries + 1))
        return self._client

    def _one(self, prompt: str, max_new_tokens: int, do_sample: bool, top_p: float, temperature: float) -> str:
        kwargs = {"temperature": temperature, "top_p": top_p} if do_sample else {"temperature": 0}
        resp = self.client().chat.completions.create(model=self.model, messages=chat_messages(prompt),
                                                     max_tokens=max_new_tokens, **kwargs)
        return postprocess(resp.choices[0].message.content or "")

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 128, do_sample: bool = False,
                 top_p: float = 1.0, temperature: float = 1.0, seed: int = 1234) -> list[str]:
        self.client()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda p: self._one(p, max_new_tokens, do_sample, top_p, temperature), prompts))


Teacher = HFTeacher | APITeacher


def load_teacher(name: str | None = None, *, device: str | None = None, dtype: str | None = "auto",
                 max_rows: int = 24, kernels: str = "auto") -> Teacher:
    name = names.canonical(name) or names.TEACHER
    if name.startswith(API_PREFIX):
        if not name[len(API_PREFIX):]:
            raise TeacherError("teacher 'openai:' needs a model name, e.g. openai:gpt-3.5-turbo")
        return APITeacher(name[len(API_PREFIX):])
    return HFTeacher.load(name, device=device, dtype=dtype, max_rows=max_rows, kernels=kernels)


def require_scorer(name: str | None) -> None:
    """Fail early (before loading anything) when ``name`` cannot score responses."""
    if (name or "").startswith(API_PREFIX):
        APITeacher(name[len(API_PREFIX):])._no_logprobs()  # type: ignore[index]


class TeacherScorer(LogProbScorer):
    """The teacher as a scorer: log p_teacher(y | chat(x)) (GPTScore style), one :class:`LogProbScorer` term on
    the teacher's engine; per teacher token with ``normalize``; a blank response scores -inf."""

    def __init__(self, teacher: Teacher, normalize: bool = False) -> None:
        if teacher.is_api:
            teacher._no_logprobs()  # type: ignore[union-attr]
        self.teacher = teacher
        term = Term(lambda c: teacher.context(c.prompt), label="log p_teacher(y | chat(x))")  # type: ignore[union-attr]
        super().__init__(teacher.engine, term, empty="skip",  # type: ignore[union-attr]
                         normalize=normalize, continuation=lambda c: teacher.as_continuation(c.continuation.strip()))
