"""A tiny OpenAI-compatible chat server for tests (stdlib only, 127.0.0.1, ephemeral port).

    with FakeOpenAIServer(responder) as srv:      # srv.base_url == "http://127.0.0.1:<port>/v1"
        ...
    srv.requests                                   # every POST /v1/chat/completions body, in order

``responder(body, n) -> Reply`` decides each answer (``n`` = 0-based request count): a 200 with
``content``, an HTTP error ``status`` (e.g. 429, 500), a ``delay`` before answering (to provoke a
client timeout), or ``raw`` bytes sent as the body. The default answers ``"A"``. ``shown_pair(body)`` reads the two
responses of a pairwise judge prompt, ``shown_candidates(body)`` the labelled candidates of a listwise
one (``is_listwise(body)`` tells them apart).

Standalone, for trying the winrate tasks by hand with no real API::

    python tests/fake_openai_server.py --port 8011 --reply A        # or --reply longer (see --help)
    export OPENAI_API_KEY=x OPENAI_BASE_URL=http://127.0.0.1:8011/v1
    lm_eval --model icdpo --tasks hh_harmless_mini_winrate --limit 4
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = "A"
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None
    headers: dict[str, str] | None = None


Responder = Callable[[dict[str, Any], int], Reply]

_PAIR = re.compile(r"\[Response A\]\n(.*?)\n\n\[Response B\]\n(.*?)\n\nWhich response", re.S)


def shown_pair(body: dict[str, Any]) -> tuple[str, str]:
    """(response shown as A, response shown as B) of a judge request (its first user message)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    m = _PAIR.search(user)
    if m is None:
        raise ValueError("not a pairwise judge prompt")
    return m.group(1), m.group(2)


_LIST_MARK = "\n\nRank the responses"
_CANDIDATE = re.compile(r"\n\n\[(\d+)\]\n(.*?)(?=\n\n\[\d+\]\n|" + re.escape(_LIST_MARK) + ")", re.S)


def _user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def is_listwise(body: dict[str, Any]) -> bool:
    """Whether the request is a listwise ranking prompt (icdpo_eval.judges.listwise)."""
    return _LIST_MARK in _user(body)


def shown_candidates(body: dict[str, Any]) -> list[str]:
    """The candidates of a listwise judge request, in label order ([1], [2], ...)."""
    user = _user(body)
    if _LIST_MARK not in user:
        raise ValueError("not a listwise judge prompt")
    found = _CANDIDATE.findall(user[user.index("[Dialogue]"):])
    if [int(k) for k, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"unexpected candidate labels {[k for k, _ in found]}")
    return [c for _, c in found]


def longest_first(body: dict[str, Any]) -> str:
    """A listwise answer ranking the longer candidates first (ties: lower label first), e.g. ``2 > 1 > 3``."""
    cs = shown_candidates(body)
    return " > ".join(str(k + 1) for k in sorted(range(len(cs)), key=lambda k: (-len(cs[k]), k)))


def completion_json(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class FakeOpenAIServer:
    def __init__(self, responder: Responder | None = None, port: int = 0) -> None:
        self.responder: Responder = responder or (lambda body, n: Reply())
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                reply = server.responder(body, n)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    data = reply.raw
                elif reply.status != 200:
                    data = json.dumps({"error": {"message": f"scripted {reply.status}", "type": "fake",
                                                 "code": reply.status}}).encode()
                else:
                    data = json.dumps(completion_json(reply.content, body.get("model", ""))).encode()
                self._send(reply.status, data, reply.headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--reply", default="A",
                    help='the answer to every request ("A", "B", "tie", ...), or "longer": the longer response '
                    '(a listwise ranking request gets the candidates longest first)')
    args = ap.parse_args()

    def respond(body: dict[str, Any], n: int) -> Reply:
        if args.reply != "longer":
            return Reply(args.reply)
        if is_listwise(body):
            return Reply(longest_first(body))
        a, b = shown_pair(body)
        return Reply("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")

    srv = FakeOpenAIServer(respond, port=args.port).start()
    print(f"fake OpenAI server at {srv.base_url} answering {args.reply!r}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
