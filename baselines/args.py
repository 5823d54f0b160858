"""``lm_eval --model args``: ARGS (Khanov et al., ICLR 2024), reward-guided decoding token by token on the engine.

generate_until: at each step the base model's top ``args_k`` next tokens are scored as logit + ``args_w`` · RM(x, y + v)
and the best is taken (``args_mode=sample``: drawn from softmax(score / temperature)), in the engine's one decode
loop (:mod:`icdpo_eval.method.reward_guided`; the k rewards of a step in one batch). Algorithm, settings and our
choices: docs/args.md.
loglikelihood: the RM term, RM(x, y) of the whole response.

The guiding RM (``guide_rm``) is by default the task's ``rm`` setting, the very RM that ``rm_reward`` reports: such a
row optimises against its own metric, and ``config.icdpo_eval`` / the leaderboard mark it (``guided_by_metric_rm``).
"""

from __future__ import annotations

from typing import Any

from icdpo_eval import runtime
from icdpo_eval.config.options import ARGS
from icdpo_eval.engine import stable_seed
from icdpo_eval.method.best_of_n import Answer
from icdpo_eval.method.prompts import postprocess
from icdpo_eval.method.reward_guided import Trace, reward_guided
from icdpo_eval.models.base import MethodLM


class _RMScorer:
    """RM(x, y) of each candidate (the scorer interface), for ``loglikelihood``."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge

    def score(self, groups) -> list[list[float]]:
        return [[float(x) for x in self.judge.score([c.prompt for c in g], [c.continuation.strip() for c in g])]
                for g in groups]


class ARGSLM(MethodLM):
    """ARGS over one base model and one reward model. Options: docs/options.md."""

    method = "args"
    OPTIONS = ARGS

    def validate(self) -> None:
        from icdpo_eval.judges.reward_model import check_rm

        if self.cfg.guide_rm != "task":
            check_rm(self.cfg.guide_rm)  # a missing folder / unreachable hub name: one line, before any weights
        self._judges: dict[str, Any] = {}
        self.guided: dict[str, dict[str, Any]] = {}  # task -> the guiding RM and whether rm_reward uses the same

    def load(self) -> None:
        self.load_engine()

    def scorer_for(self, task: str | None) -> Any:
        return _RMScorer(self.judge(task))

    def task_setting(self, task: str | None, name: str) -> Any:
        """A task setting of this run: the task YAML's metadata, the model_args, then --metadata (lm-eval's order)."""
        from icdpo_eval.config.options import task_settings

        return task_settings(str(task), self.cfg.as_dict(), runtime.run_metadata())[name]

    def rm_setting(self, task: str | None) -> tuple[str, str]:
        """(the guiding RM's setting, the task's rm setting) for ``task`` (the run's --metadata, then the YAML)."""
        task_rm = self.task_setting(task, "rm")
        return (task_rm if self.cfg.guide_rm == "task" else self.cfg.guide_rm), task_rm

    def judge(self, task: str | None):
        from icdpo_eval.judges.reward_model import get_judge, resolve_rm_name

        setting, task_rm = self.rm_setting(task)
        if setting not in self._judges:
            self._judges[setting] = get_judge(setting, self.task_setting(task, "rm_dtype"),
                                              self.task_setting(task, "rm_batch_size"))
        judge = self._judges[setting]
        self.guided[str(task)] = {"guide_rm": judge.resolved_name,
                                  "guided_by_metric_rm": resolve_rm_name(task_rm) == resolve_rm_name(setting)}
        return judge

    def model_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"args": self.guided}
        if any(g["guided_by_metric_rm"] for g in self.guided.values()):
            info["guided_by_metric_rm"] = True
        return info

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        cfg = self.cfg
        params = self.sampling_params(gk, task)
        judge = self.judge(task)
        tpl = self.template(task)
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        trace = Trace()
        choose = reward_guided(self.engine, judge.score, [r.args[0] for r in reqs], k=cfg.args_k, w=cfg.args_w,
                               greedy=cfg.args_mode == "greedy", temperature=params.temperature or 0.7, trace=trace)
        samples = self.engine.sample_ids([self.engine.encode_context(tpl.zero_shot(p)) for p in prompts], 1, params,
                                         [stable_seed(self.seed, p) for p in prompts], docs_per_batch=len(prompts),
                                         choose=choose, names=[f"{task} doc {r.doc_id}" for r in reqs])
        guide = self.guided[str(task)]
        return [Answer(postprocess(s.text, params.stop), {**trace.record(i)["internals"], **guide})
                for i, ((s,), _) in enumerate(zip(samples, reqs))]
