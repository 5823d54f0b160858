"""The one ``custom_dataset`` loader of the icdpo-eval lm-eval tasks.

Every generation task's YAML names this function and says, in ``dataset_kwargs``, which rows it
evaluates::

    custom_dataset: !function icdpo_eval.tasks.utils.load
    dataset_kwargs:
      data: hh_harmless      # a key of icdpo_eval.data.datasets.TASK_DEFAULTS
      sample: winrate        # optional: only the winrate tasks' fixed-seed sample (tasks/winrate.py)

lm-eval 0.4.13 calls ``custom_dataset(**task_metadata, **dataset_kwargs)``; the task metadata is the YAML's
``metadata:`` merged with ``--metadata`` and, from the CLI and ``simple_evaluate``, every ``--model_args``
key. The loader reads the task settings from it (:data:`icdpo_eval.config.options.TASK_SETTINGS`: the reward
model, the judge, the win-rate sample, ...) and ignores any other keyword; every row carries the key of
its settings (column ``task_settings``), which the metric functions read back
(:mod:`icdpo_eval.tasks.settings`). The
``dataset_kwargs`` keys are chosen not to clash with a ``--model_args`` key (a clash would be a duplicate
keyword argument).

**One import route.** The YAMLs name their functions by absolute module path
(``!function icdpo_eval.tasks.<module>.<function>``): lm-eval finds no ``icdpo_eval/tasks/...py``
file beside the YAML and imports the package module instead, so every module of ``tasks/`` exists
once, as ``icdpo_eval.tasks.<module>``, whether lm-eval or our own code uses it.
"""

from __future__ import annotations

from typing import Any

import datasets

from icdpo_eval.data.datasets import HUB_REVISIONS, TASK_DEFAULTS, eval_rows
from icdpo_eval.errors import OptionError
from icdpo_eval.tasks.settings import task_settings, with_settings

FIELDS = ("prompt", "chosen", "rejected", "id")
SAMPLES = ("winrate",)  # the values of dataset_kwargs ``sample``
def task_dataset(data: str, dialogue: str = "pro") -> datasets.DatasetDict:
    """The evaluation rows of ``data`` (a key of ``icdpo_eval.data.datasets.TASK_DEFAULTS``) as split "test"
    (length-filtered on the text ``dialogue`` reads; the rows keep the dataset's text)."""
    rows = eval_rows(data, dialogue)
    features = datasets.Features({k: datasets.Value("string") for k in FIELDS})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows, features=features)})


def load(data: str, sample: str | None = None, hh_rlhf_revision: str | None = None, **metadata: Any
         ) -> datasets.DatasetDict:
    """``custom_dataset`` of every generation and pairs task: the rows of ``data``, each naming its task
    settings (:func:`icdpo_eval.tasks.settings.settings_of`); with ``sample="winrate"``, after checking that the
    judge's API key is set (before any data or model work), only the winrate sample. ``hh_rlhf_revision`` (the
    template's metadata) must be the commit the data module pins."""
    pinned = HUB_REVISIONS["Anthropic/hh-rlhf"]
    if hh_rlhf_revision is not None and hh_rlhf_revision != pinned:
        raise OptionError(f"task metadata hh_rlhf_revision={hh_rlhf_revision!r} differs from the pinned hub commit "
                          f"{pinned} (icdpo_eval.data.datasets.HUB_REVISIONS); make them agree")
    if data not in TASK_DEFAULTS:
        raise OptionError(f"dataset_kwargs data={data!r} is not one of: {', '.join(TASK_DEFAULTS)}")
    if sample is not None and sample not in SAMPLES:
        raise OptionError(f"dataset_kwargs sample={sample!r} is not one of: {', '.join(SAMPLES)}")
    cfg = task_settings(metadata)
    if sample == "winrate":
        from icdpo_eval.judges.pairwise import require_api_key
        from icdpo_eval.tasks.winrate import sampled

        require_api_key()  # a clear error now instead of a failure after generation
        return with_settings(sampled(task_dataset(data, cfg.dialogue), cfg.winrate_n, cfg.winrate_seed), cfg)
    return with_settings(task_dataset(data, cfg.dialogue), cfg)
