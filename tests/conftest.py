from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def base_engine():
    """The embedded Gemma-3-270M base model in fp32 on CPU (converted once, cached)."""
    from icdpo_eval.embedded import base_model_path
    from icdpo_eval.engine import Engine

    return Engine.load(str(base_model_path()), device="cpu", dtype="float32")
