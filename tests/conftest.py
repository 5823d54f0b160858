from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# torch's own thread count for this machine, before the workers' setting below (the real-weight tests use it)
FULL_THREADS = int(os.environ.get("OMP_NUM_THREADS") or 0) or None
if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs on one worker per core (pytest-xdist, `-n auto` in pyproject.toml): one torch thread each,
    # set before torch is imported, so that two workers on two cores do not fight over them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

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
def twins_dir(tmp_path_factory) -> Iterator[Path]:
    """Tiny random twins of the embedded models (real configs, tokenizers and chat template; 2 layers, hidden 64),
    built once per session (:mod:`icdpo_eval.data.twins`, a few seconds). ``embedded:*`` names resolve to them from
    here on, for the whole session: a module- or session-scoped fixture is set up before the per-test
    :func:`_embedded_models`, and would otherwise load the real models (seen: ``embedded:base`` in a module fixture
    resolved to the converted 270M model)."""
    from icdpo_eval.data import twins

    path = twins.build_all(tmp_path_factory.mktemp("twins"))
    before = os.environ.get("ICDPO_EMBEDDED_DIR")
    os.environ["ICDPO_EMBEDDED_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("ICDPO_EMBEDDED_DIR", None)
    else:
        os.environ["ICDPO_EMBEDDED_DIR"] = before


@pytest.fixture
def baseline_threads(request) -> None:
    """The test runs with torch's usual thread count, even on a one-thread worker: the number of threads changes the
    last float bits of a sum, and the committed CI baseline was computed by a plain process (seen: the exactness
    gate's 1e-6 failed at 1.5e-5 on one thread). Tests with looser tolerances (parity: 5e-4) do not need it."""
    import torch

    before = torch.get_num_threads()
    want = FULL_THREADS or len(os.sched_getaffinity(0))
    if want != before:
        torch.set_num_threads(want)
        request.addfinalizer(lambda: torch.set_num_threads(before))


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


@pytest.fixture(autouse=True)
def _own_score_caches(tmp_path_factory, monkeypatch):
    """Every test gets its own reward-model score cache and judge verdict cache: a score stored by one test (a fake
    judge's under a real RM's name, say) is never served to another, nor to a later run on this host, and nothing
    is written to the user's cache. A test that checks a rerun pays nothing reruns inside itself."""
    root = tmp_path_factory.mktemp("scores")
    monkeypatch.setenv("ICDPO_RM_CACHE", str(root / "rm_scores.sqlite"))
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(root / "verdicts.sqlite"))


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


@pytest.fixture(autouse=True, scope="session")
def _environment_report_once():
    """lm-eval writes torch's environment report into every results JSON (``add_env_info`` ->
    ``torch.utils.collect_env.get_pretty_env_info``, several subprocesses, ~1.5 s a run); it cannot change within
    a test session, so the session's in-process runs collect it once."""
    import functools

    from torch.utils import collect_env

    original = collect_env.get_pretty_env_info
    collect_env.get_pretty_env_info = functools.cache(original)
    yield
    collect_env.get_pretty_env_info = original


# the longest tests (seconds on a 2-core CPU, one torch thread per worker): collected first, so that the workers
# start them early and the short tests fill the tail instead of one long test running alone at the end
LONG_FIRST = ("test_parity_released.py", "test_scale_out.py", "test_doc_commands.py", "test_cells.py",
              "test_reward_model.py", "test_cli_e2e.py", "test_gate_planted.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))
