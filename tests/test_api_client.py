"""icdpo_eval.api_client: the one OpenAI-compatible client and retry policy, against the local fake server."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from fake_openai_server import FakeOpenAIServer, Reply

from icdpo_eval import api_client
from icdpo_eval.api_client import RetryPolicy, describe, make_client, retryable

FAST = RetryPolicy(max_tries=4, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-client-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def ask(client: Any) -> str:
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], temperature=0)
    return str(resp.choices[0].message.content)


def test_env_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_client.env_api_key() == "sk-client-test" and api_client.env_base_url() is None
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert api_client.env_api_key() is None and api_client.env_base_url() == "http://127.0.0.1:1/v1"


def test_policy_delay_and_retryable() -> None:
    p = RetryPolicy(max_tries=5, backoff_base=1.0, backoff_cap=30.0)
    assert p.max_retries == 4
    for taken, full in ((0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)):
        assert all(full / 2 <= p.delay(taken) <= full for _ in range(20))
    assert p.delay(0, retry_after=0.0) <= 1.0  # Retry-After: 0 does not shorten the backoff
    assert p.delay(0, retry_after=12.0) == 12.0 and p.delay(0, retry_after=99.0) == 30.0  # honoured up to the cap
    with pytest.raises(ValueError, match="max_tries"):
        RetryPolicy(max_tries=0)
    assert [s for s in (200, 400, 401, 404, 408, 409, 422, 429, 500, 503) if retryable(s)] == [408, 409, 429, 500, 503]


def test_client_env_and_retries_with_our_backoff(serve: Callable[..., FakeOpenAIServer],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    script = {0: Reply(status=429, headers={"Retry-After": "0"}), 1: Reply(status=500), 2: Reply(status=503)}
    srv = serve(lambda body, n: script.get(n, Reply("ok")))
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    seen: list[tuple[int, float]] = []
    client = make_client(timeout=5.0, retry=FAST, on_retry=lambda taken, delay: seen.append((taken, delay)))
    t0 = time.monotonic()
    assert ask(client) == "ok"
    # the client's own retries, our waits (openai's default would sleep >= 0.375 + 0.75 + 1.5 s)
    assert time.monotonic() - t0 < 1.0
    assert len(srv.requests) == 4 and [t for t, _ in seen] == [0, 1, 2]
    assert all(0 < d <= 0.05 for _, d in seen)
    assert set(srv.auth) == {"Bearer sk-client-test"}


def test_tries_spent_then_last_error(serve: Callable[..., FakeOpenAIServer]) -> None:
    srv = serve(lambda body, n: Reply(status=500))
    client = make_client(base_url=srv.base_url, timeout=5.0, retry=FAST)
    with pytest.raises(openai.APIStatusError) as err:
        ask(client)
    assert len(srv.requests) == 4 and describe(err.value) == "HTTP 500"


def test_non_retryable_at_once_and_no_retry_policy(serve: Callable[..., FakeOpenAIServer]) -> None:
    srv = serve(lambda body, n: Reply(status=401))
    with pytest.raises(openai.APIStatusError):
        ask(make_client(base_url=srv.base_url, retry=FAST))
    assert len(srv.requests) == 1
    flaky = serve(lambda body, n: Reply(status=503))
    with pytest.raises(openai.APIStatusError):
        ask(make_client(base_url=flaky.base_url, retry=RetryPolicy(max_tries=1)))
    assert len(flaky.requests) == 1


def test_timeout_is_retried_and_described(serve: Callable[..., FakeOpenAIServer]) -> None:
    srv = serve(lambda body, n: Reply("late", delay=1.0) if n == 0 else Reply("ok"))
    assert ask(make_client(base_url=srv.base_url, timeout=0.3, retry=FAST)) == "ok"
    assert len(srv.requests) == 2
    slow = serve(lambda body, n: Reply("late", delay=1.0))
    with pytest.raises(openai.APITimeoutError) as err:
        ask(make_client(base_url=slow.base_url, timeout=0.3, retry=RetryPolicy(max_tries=1)))
    assert describe(err.value, 0.3) == "timeout after 0.3 s"


def test_imports_only_the_settings_errors_and_meter_of_the_package() -> None:
    import icdpo_eval.api_client as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert sorted(m for m in names if m.split(".")[0] == "icdpo_eval") == ["icdpo_eval.config.settings",
                                                                          "icdpo_eval.errors.UserError",
                                                                          "icdpo_eval.runtime.METER"]
