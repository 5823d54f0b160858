"""The task settings of a run (:data:`icdpo_eval.config.options.TASK_SETTINGS`), handed from the task loaders to the
metric functions: a loader registers the settings it was called with and every row carries their key (column
``task_settings``); ``process_results`` copies the key into its metric item and the aggregation reads the
settings back. (lm-eval gives an aggregation only its items, so the key travels with them.)"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import datasets

from icdpo_eval.config.options import TASK_SETTINGS, Config

SETTINGS_FIELD = "task_settings"  # the column naming a row's task settings (a key of _SETTINGS)
_SETTINGS: dict[str, Config] = {}


def task_settings(metadata: dict[str, Any]) -> Config:
    """The task settings of a run from lm-eval's task metadata (the YAML's ``metadata:``, ``--metadata`` and, as
    lm-eval merges them in, the model_args; keys that are not settings are ignored)."""
    return TASK_SETTINGS.parse(metadata, where="task setting", ignore_unknown=True)


def register_settings(cfg: Config) -> str:
    """A short key naming ``cfg``; the metrics read the settings back with :func:`settings_of`."""
    key = hashlib.sha256(json.dumps(cfg.as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    _SETTINGS[key] = cfg
    return key


def settings_of(doc_or_item: dict[str, Any]) -> Config:
    """The task settings a row (or a metric item carrying the row's key) was loaded with; the declared defaults
    for rows loaded another way."""
    key = doc_or_item.get(SETTINGS_FIELD)
    return _SETTINGS[key] if key in _SETTINGS else TASK_SETTINGS.parse({})


def with_settings(ds: datasets.DatasetDict, cfg: Config) -> datasets.DatasetDict:
    key = register_settings(cfg)
    return datasets.DatasetDict({k: v.add_column(SETTINGS_FIELD, [key] * len(v)) for k, v in ds.items()})
