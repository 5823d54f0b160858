"""``lm_eval --model rm``: a reward model as an lm-eval scorer (for the MRR task).

``loglikelihood(context, continuation)`` returns the reward of the response ``continuation`` to the
dialogue ``context``, so a multiple-choice task (e.g. ``hh_harmless_rank``) ranks choices by the RM.
model_args: ``rm`` (``auto`` = ``$ICDPO_RM`` / the paper's OpenAssistant RM / the offline proxy;
or any HF sequence-classification RM name or path), ``batch_size``, ``device``, ``dtype`` (the RM's
precision: ``float32`` by default, or ``bf16``/``fp16``; see :mod:`icdpo_eval.judges.reward_model`).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM

from icdpo_eval.models.parallel import DataParallel


class RMScorerLM(DataParallel, LM):
    def __init__(self, rm: str = "auto", batch_size: int | str = 8, device: str | None = None,
                 dtype: str = "float32", max_batch_size: Any = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"unknown model_arg(s) for --model rm: {', '.join(sorted(unknown))} "
                             "(known: rm, batch_size, device, dtype)")
        from icdpo_eval.engine import resolve_device
        from icdpo_eval.judges.reward_model import RewardModelJudge

        bs = str(batch_size)
        from icdpo_eval.models.args import check_model_path

        if not str(rm).startswith(("auto", "proxy")):
            check_model_path("rm", rm)  # a missing local RM folder fails before anything loads
        device = self.setup_parallel(device)  # under `accelerate launch`: this rank's device
        self.judge = RewardModelJudge(rm, device=str(resolve_device(device)),
                                      batch_size=8 if bs.startswith("auto") else int(bs), dtype=dtype)

    @property
    def device(self):
        import torch

        return torch.device(self.judge.device)

    def get_model_info(self) -> dict:
        return {"method": "rm", "rm": self.judge.resolved_name, "rm_dtype": self.judge.dtype_name}

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        rewards = self.judge.score([r.args[0] for r in requests], [r.args[1].strip() for r in requests])
        return [(float(x), False) for x in rewards]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("--model rm only scores (context, response) pairs")

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("--model rm is a scorer, not a generator: use it with multiple-choice / "
                                  "ranking tasks such as hh_harmless_rank")
