"""Data parallel on lm-eval's own mechanism (``accelerate launch -m lm_eval --model <ours> ...``).

As lm-eval's HF model does: when launched with more than one process, an :class:`accelerate.Accelerator`
gives this process its rank, the world size and its device (``cuda:<local rank>``, or CPU with ``--cpu``);
lm-eval's evaluator then hands each rank its shard of the documents, gathers the per-document metrics with
:meth:`gather_object` and aggregates (reward model, judge) on rank 0 only, which writes the one results file.
"""

from __future__ import annotations

from typing import Any

from icdpo_eval.config import settings


def _on_cpu() -> bool:
    """Without CUDA (or when asked) the processes join a gloo group on CPU; accelerate only does so when told."""
    import torch

    return not torch.cuda.is_available() or settings.accelerate_cpu()


def process_state() -> Any:
    """accelerate's process state when ``accelerate launch`` started several processes (the group joined once, with
    a timeout long enough for a rank that waits while another scores), else None. The one entry to the process group
    for the lm-eval models (:class:`DataParallel`) and the leaderboard's cells."""
    if settings.world_size() <= 1:
        return None
    from datetime import timedelta

    from accelerate import PartialState

    state = PartialState(cpu=_on_cpu(), timeout=timedelta(weeks=52))
    return state if state.num_processes > 1 else None


class DataParallel:
    """Mixin for an lm-eval ``LM``: rank / world size / gathering from accelerate when launched by it."""

    accelerator: Any = None

    def setup_parallel(self, device: str | None) -> str | None:
        """Join the process group when ``WORLD_SIZE`` > 1; the device this rank should use (else ``device``)."""
        if process_state() is None:
            return device
        from accelerate import Accelerator

        acc = Accelerator(cpu=_on_cpu())  # over the process state joined above
        self.accelerator = acc
        self._rank = acc.process_index  # global rank: correct on several nodes too
        self._world_size = acc.num_processes
        return str(acc.device)

    def all_gather(self, tensor):
        return tensor if self.accelerator is None else self.accelerator.gather(tensor)

    def gather_object(self, obj, dst: int = 0):
        if self.accelerator is None:
            return [obj]
        import torch.distributed as dist

        result = [None] * self._world_size if self._rank == dst else None
        dist.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
