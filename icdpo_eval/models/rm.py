"""``lm_eval --model rm``: a reward model as an lm-eval scorer (for the MRR and preference-pair tasks).

``loglikelihood(context, continuation)`` returns the reward of the response ``continuation`` to the
dialogue ``context``, so a multiple-choice task (e.g. ``hh_harmless_rank``) ranks choices by the RM.
Options (:data:`icdpo_eval.config.options.RM`, docs/options.md): ``rm`` (``auto`` = the paper's OpenAssistant RM when
cached or reachable, else the offline proxy; ``proxy``; or any HF sequence-classification RM name or path),
``dtype`` (the RM's precision, float32 as released), ``device``, ``batch_size``.
"""

from __future__ import annotations

from typing import Any

from icdpo_eval.config.options import RM
from icdpo_eval.models.base import OptionsLM


class RMScorerLM(OptionsLM):
    method = "rm"
    OPTIONS = RM

    def __init__(self, **model_args: Any) -> None:
        super().__init__(**model_args)
        from icdpo_eval.judges.reward_model import RewardModelJudge, check_rm
        from icdpo_eval.runtime import resolve_device

        check_rm(self.cfg.rm)  # a missing local RM folder or an unreachable hub name fails before anything loads
        device = self.setup_parallel(self.cfg.device)  # under `accelerate launch`: this rank's device
        bs = self.cfg.batch_size
        self.judge = RewardModelJudge(self.cfg.rm, device=str(resolve_device(device)),
                                      batch_size=self.OPTIONS["batch_size"].auto if bs == "auto" else bs,
                                      dtype=self.cfg.dtype,
                                      trust_remote_code=self.cfg.trust_remote_code)

    @property
    def device(self):
        import torch

        return torch.device(self.judge.device)

    def get_model_info(self) -> dict:
        return {"method": "rm", **self.cfg.as_dict(), "rm": self.judge.resolved_name,
                "rm_dtype": self.judge.dtype_name}

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        rewards = self.judge.score([r.args[0] for r in requests], [r.args[1].strip() for r in requests])
        return [(float(x), False) for x in rewards]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("--model rm only scores (context, response) pairs")

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("--model rm is a scorer, not a generator: use it with multiple-choice / "
                                  "ranking tasks such as hh_harmless_rank")
