"""``custom_dataset`` loaders of the icdpo-eval lm-eval tasks.

lm-eval 0.4.13 calls ``custom_dataset(**task_metadata, **dataset_kwargs)``; from the CLI the task
metadata also holds every ``--model_args`` key, so the loaders accept and ignore any keyword.
lm-eval loads this file by path (not as ``icdpo_eval.tasks.utils``): use absolute imports only.
Each loader returns a ``DatasetDict`` whose ``"test"`` split is the task's evaluation set.
"""

from __future__ import annotations

from typing import Any

import datasets

from icdpo_eval.data.datasets import TASK_DEFAULTS, load_pairs

FIELDS = ("prompt", "chosen", "rejected", "id")


def task_dataset(task_name: str) -> datasets.DatasetDict:
    """The evaluation rows of ``task_name`` (see ``icdpo_eval.data.TASK_DEFAULTS``) as split "test"."""
    t = TASK_DEFAULTS[task_name]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)
    features = datasets.Features({k: datasets.Value("string") for k in FIELDS})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows, features=features)})


def hh_harmless(**_: Any) -> datasets.DatasetDict:
    return task_dataset("hh_harmless")


def hh_helpful(**_: Any) -> datasets.DatasetDict:
    return task_dataset("hh_helpful")


def synthetic_gpt(**_: Any) -> datasets.DatasetDict:
    return task_dataset("synthetic_gpt")


def hh_harmless_mini(**_: Any) -> datasets.DatasetDict:
    return task_dataset("hh_harmless_mini")
