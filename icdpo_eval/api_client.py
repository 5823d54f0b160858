"""The package's one OpenAI-compatible chat client and its one retry policy.

:func:`make_client` builds an ``openai.OpenAI`` client: the key from ``$OPENAI_API_KEY`` (never
logged), the server from ``$OPENAI_BASE_URL`` (any OpenAI-compatible server: vLLM, a local server;
unset = api.openai.com), a per-request ``timeout``. Retrying is the client's own (its
``max_retries``): HTTP 408/409/429/5xx, timeouts and connection errors are tried again, up to
:attr:`RetryPolicy.max_tries` tries in all; anything else (e.g. 401) is raised at once. Only the wait
between tries is ours, :meth:`RetryPolicy.delay`: exponential backoff with jitter, honouring a
``Retry-After`` header up to the cap. When the tries are spent, the client raises the last error
(``openai.APIStatusError`` / ``APITimeoutError`` / ``APIConnectionError``); :func:`describe` names it
in a few words for the caller's own loud error.

Imports only :mod:`icdpo_eval.config.settings` and :mod:`icdpo_eval.errors`, so every layer may use it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from icdpo_eval.config import settings
from icdpo_eval.errors import UserError
from icdpo_eval.runtime import METER

log = logging.getLogger("icdpo_eval.api_client")

KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_TIMEOUT = 60.0
# statuses tried again (besides every 5xx): what the openai client's own retries cover
RETRY_STATUS = frozenset({408, 409, 429})

# on_retry(retries_taken, delay): called (on the requesting thread) before each retry is sent;
# retries_taken = tries already made minus one (0 before the first retry), delay = seconds to wait
RetryHook = Callable[[int, float], None]


def env_api_key() -> str | None:
    """``$OPENAI_API_KEY`` stripped (any non-empty string for a local server), or None when unset/blank."""
    return settings.api_key()


def env_base_url() -> str | None:
    """``$OPENAI_BASE_URL``, or None (api.openai.com)."""
    return settings.base_url()


def check_base_url() -> None:
    """A set ``$OPENAI_BASE_URL`` must be an http(s) URL with a host (a clear error before any request)."""
    from urllib.parse import urlparse

    url = settings.base_url()
    if url is None:
        return
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"OPENAI_BASE_URL={url!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")


def retryable(status: int) -> bool:
    """Whether an HTTP status is tried again: 408, 409, 429 and every 5xx."""
    return status in RETRY_STATUS or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """``max_tries`` tries in all (1 = no retry); before retry k (k = 1, 2, ...) a wait of
    ``backoff_base`` x 2^(k-1) seconds capped at ``backoff_cap``, half of it random; a
    ``Retry-After`` header (seconds) lengthens the wait, up to the cap."""

    max_tries: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        if int(self.max_tries) < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")

    @property
    def max_retries(self) -> int:
        return int(self.max_tries) - 1

    def delay(self, retries_taken: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the retry that follows ``retries_taken`` retries (0 for the first)."""
        d = min(self.backoff_cap, self.backoff_base * 2 ** max(0, retries_taken))
        d = d / 2 + random.uniform(0, d / 2)
        return max(d, min(self.backoff_cap, retry_after)) if retry_after is not None else d


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def make_client(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    on_retry: RetryHook | None = None,
) -> Any:
    """An ``openai.OpenAI`` client that retries by ``retry`` (default :class:`RetryPolicy()`).
    ``api_key`` / ``base_url`` default to ``$OPENAI_API_KEY`` / ``$OPENAI_BASE_URL``; a missing key is
    openai's own error (callers that want a clearer one check :func:`env_api_key` first). ``on_retry`` is
    told of every retry (see :data:`RetryHook`), e.g. to count them."""
    import openai

    policy = retry if retry is not None else RetryPolicy()

    class Client(openai.OpenAI):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # one request (its retries inside it): counted once
            METER.add(f"api:{self.base_url.host}", api_calls=1)
            return super().request(*args, **kwargs)

        # the one hook the openai client offers for the wait between its retries
        def _calculate_retry_timeout(self, remaining_retries: int, options: Any,
                                     response_headers: Any = None) -> float:
            taken = max(0, options.get_max_retries(self.max_retries) - remaining_retries)
            wait = policy.delay(taken, _retry_after(response_headers))
            if on_retry is not None:
                on_retry(taken, wait)
            return wait

    return Client(api_key=api_key if api_key is not None else env_api_key(),
                  base_url=base_url if base_url is not None else env_base_url(),
                  timeout=timeout, max_retries=policy.max_retries)


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """A few words for a failed request: ``HTTP 500``, ``timeout after 60 s``, ``connection error (...)``."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return f"timeout after {timeout:g} s" if timeout is not None else "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error ({exc.__cause__ or exc})"
    return f"{type(exc).__name__}: {exc}"
