"""Every committed leaderboard spec parses and validates: a spec a reader is told to run must not fail on a typo.

The offline specs (embedded models) are validated exactly as ``icdpo-eval leaderboard`` validates them before
any cell runs (models, model_args, tasks, task settings, each cell's preflight on the tokenizer). The hub specs
(``paper_table2.yaml``, ``scorers_paper.yaml``, ``scaling.yaml``) name models this machine cannot download:
everything but the per-cell preflight (which reads the hub models' tokenizers) is checked, and the preflight is asked
for every row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icdpo_eval import leaderboard as lb
from icdpo_eval.config import preflight

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "leaderboards").glob("*.yaml"))
HUB = {"paper_table2.yaml", "scorers_paper.yaml", "scaling.yaml"}


def test_the_committed_specs_are_the_ones_checked_here():
    assert {p.name for p in SPECS} >= {"mini.yaml", "scorers_mini.yaml", "scaling_mini.yaml", *HUB}


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_committed_spec_validates(path, monkeypatch):
    spec = lb.load_spec(path)
    assert spec.rows and spec.tasks
    if path.name in HUB:
        asked: list[str] = []
        monkeypatch.setattr(preflight, "check_run", lambda model, *a, **k: asked.append(model))
        lb.validate_spec(spec, path)
        plain = [r for r in spec.rows if not any(str(v).startswith(lb.TRAINED_PREFIX) for v in r.model_args.values())]
        assert asked == [r.model for r in plain]
    else:
        lb.validate_spec(spec, path)


def test_a_typo_in_a_committed_spec_is_caught(tmp_path):
    """Seen red: the validation this file runs rejects a misspelt model_arg in a copy of mini.yaml."""
    text = (ROOT / "leaderboards" / "mini.yaml").read_text().replace("{scorer: s_hat}", "{scorr: s_hat}", 1)
    bad = tmp_path / "mini.yaml"
    bad.write_text(text)
    with pytest.raises(lb.SpecError, match="scorr"):
        lb.validate_spec(lb.load_spec(bad), bad)
