"""The leaderboard: a spec of rows x tasks (:mod:`.spec`), its trained adapters (:mod:`.adapters`), its cells run as
lm-eval runs (:mod:`.run`) that share loaded weights (:mod:`.cells`), its statistics and tables (:mod:`.tables`), and
``icdpo-eval leaderboard`` (:mod:`.board`). May import every layer, the gates' document format and the report page;
only ``cli.py`` and the report's page command import it."""

from icdpo_eval.leaderboard.adapters import prepare_adapters, with_adapters
from icdpo_eval.leaderboard.board import run_leaderboard
from icdpo_eval.leaderboard.run import CellResult, doc_lengths, per_doc_scores
from icdpo_eval.leaderboard.spec import (
    TRAINED_PREFIX,
    Cell,
    Row,
    Spec,
    SpecError,
    cells_of,
    kv_string,
    load_spec,
    validate_spec,
)
from icdpo_eval.leaderboard.tables import CSV_FIELDS, Entry, build_entries, columns_of, write_page

__all__ = ["CSV_FIELDS", "TRAINED_PREFIX", "Cell", "CellResult", "Entry", "Row", "Spec", "SpecError", "build_entries",
           "cells_of", "columns_of", "doc_lengths", "kv_string", "load_spec", "per_doc_scores", "prepare_adapters",
           "run_leaderboard", "validate_spec", "with_adapters", "write_page"]
