from __future__ import annotations

import os
from pathlib import Path

import pytest

# Data that is too big to vendor: the HH-RLHF harmless-base test file, laid out as
# ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz beside the repository.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_HH_TEST = SHARED_DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"


def pytest_addoption(parser):
    parser.addoption("--report-page", default=None, metavar="DIR",
                     help="tests/test_report.py: open DIR/index.html (a finished leaderboard) instead of running one")
    parser.addoption("--screenshots", default=None, metavar="DIR",
                     help="tests/test_report.py: save a screenshot of each view of the page under DIR")


@pytest.fixture(scope="session")
def twins_dir(tmp_path_factory) -> Path:
    """Tiny random twins of the embedded models (real configs, tokenizers and chat template; 2 layers, hidden 64),
    built once per session (:mod:`icdpo_eval.data.twins`, a few seconds)."""
    from icdpo_eval.data import twins

    return twins.build_all(tmp_path_factory.mktemp("twins"))


@pytest.fixture(autouse=True)
def _embedded_models(request, twins_dir, monkeypatch):
    """``embedded:base`` / ``teacher`` / ``sbert`` resolve to the tiny twins (the declared setting
    ``ICDPO_EMBEDDED_DIR``), except in tests marked ``real``, which get the real models."""
    if request.node.get_closest_marker("real"):
        monkeypatch.delenv("ICDPO_EMBEDDED_DIR", raising=False)
    else:
        monkeypatch.setenv("ICDPO_EMBEDDED_DIR", str(twins_dir))


@pytest.fixture(autouse=True)
def _own_journal(tmp_path_factory, monkeypatch):
    """Every test gets its own result journal (models/journal.py): no test resumes another's documents, and
    nothing is written to the user's cache. A test that needs two runs to share or not share one sets
    ``ICDPO_JOURNAL_DIR`` itself."""
    monkeypatch.setenv("ICDPO_JOURNAL_DIR", str(tmp_path_factory.mktemp("journal")))


def in_ci() -> bool:
    """The ``CI`` environment variable is set (GitHub Actions, GitLab, ... set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_shared(path: Path = SHARED_HH_TEST) -> Path:
    """``path`` when it exists. When it is missing: skip with the reason outside CI, FAIL in CI, so that
    a CI without ``../shared`` cannot pass while silently skipping these tests."""
    if path.exists():
        return path
    what = ("the HH-RLHF harmless-base test file as ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz beside the "
            "repository (Anthropic/hh-rlhf on the Hugging Face hub)") if path == SHARED_HH_TEST else \
        f"{path.name} under ../shared beside the repository"
    msg = f"{path} is missing: this test needs {what}"
    if in_ci():
        pytest.fail(f"{msg}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(f"{msg} (skipped outside CI; fails when CI is set)")


@pytest.fixture
def shared_hh_test() -> Path:
    """Path of ``hh-rlhf/harmless-base/test.jsonl.gz`` under ../shared/data (see :func:`require_shared`)."""
    return require_shared(SHARED_HH_TEST)


@pytest.fixture(scope="session")
def base_engine(twins_dir):
    """The tiny twin of the embedded Gemma-3-270M base model (fp32, CPU): one sliding-window layer with a 16-token
    window and one full-attention layer, the real tokenizer."""
    from icdpo_eval.engine import Engine

    return Engine.load(str(twins_dir / "base"), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def real_base_engine():
    """The REAL embedded Gemma-3-270M base model in fp32 on CPU (converted once, cached): for tests marked ``real``."""
    from icdpo_eval.data.embedded import base_model_path
    from icdpo_eval.engine import Engine

    return Engine.load(str(base_model_path(real=True)), device="cpu", dtype="float32")


@pytest.fixture
def serve():
    """``serve(responder=None)`` starts a local fake OpenAI-compatible server (tests/fake_openai_server.py);
    every server started in the test is stopped after it."""
    from fake_openai_server import FakeOpenAIServer

    servers: list = []

    def start(responder=None):
        servers.append(FakeOpenAIServer(responder).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, twins_dir):
    """``pipeline(name)``: the one in-process run of a named lm_eval pipeline on the tiny twins
    (``tests/_inproc.py::PIPELINES``), shared by every test that asks for it (:class:`_inproc.Run`)."""
    from _inproc import pipeline as run

    root = tmp_path_factory.mktemp("pipelines")
    return lambda name: run(name, root, twins_dir)
