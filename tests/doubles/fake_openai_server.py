"""A local OpenAI-compatible ``/v1/chat/completions`` server for tests and benchmarks (a test double: the product
never uses it).

Use in-process::

    with FakeOpenAIServer(latency_s=0.2) as srv:
        backend = OpenAIBackend(srv.url, model=srv.model)
        ...
        srv.set(mode="fail_500", fail_times=2)   # change behaviour at runtime
        srv.requests                             # what arrived (bodies, headers, times)

or as a process: ``python tests/doubles/fake_openai_server.py --port 8765 --mode normal --latency 0.2``
(``--port 0`` picks a free port and prints the URL); ``POST /_control`` with a JSON object changes the same
attributes at runtime (``{"reset_stats": true}`` clears the counters), ``GET /_stats`` returns counters.

Modes (``mode``):

* ``normal`` — deterministic answers. Filter prompts (they ask for "Yes" or "No") get "Yes, ..." or "No, ..."
  (``filter_answer``: "yes", "no" or "hash" = by a hash of the prompt) and, when asked, ``top_logprobs`` with
  P(Yes)=0.8 / P(No)=0.15 (or the reverse for "No"); intention prompts (they say ``begin your answer with "X"``) get
  text beginning with X — or, when the request ends with an assistant message and ``continue_final_message``, only
  the continuation; multiple-choice prompts (they end "Answer A or B or C or D only ...", IntentionQA) get
  ``mcq_answer`` ("hash": one of the offered letters by a hash of the prompt, followed by "."; any other string is
  returned verbatim); other prompts get a short description.
* ``fail_500`` / ``fail_429`` / ``malformed_json`` — the first ``fail_times`` requests (all when None) fail with
  HTTP 500, HTTP 429 + ``Retry-After: retry_after`` or a 200 whose body is not JSON; later ones are normal.
* ``slow`` — sleeps ``slow_s`` before answering (longer than a client's read timeout).
* ``garbage`` — answers neither yes nor no ("Perhaps. It depends ..."), with no yes/no in the logprobs.
* ``401`` / ``404`` / ``400`` — that HTTP error with an OpenAI-style error body (``404``: only the first
  ``fail_times`` chat requests when set, like a server restarting behind its address).
* ``reject_logprobs`` — HTTP 400 "logprobs are not supported" when a request asks for logprobs, else normal.

Other knobs: ``latency_s`` (added to every answer), ``logprobs`` (False: never return logprobs, like servers that
ignore the field), ``intention_style`` ("opening" or "free": ignore the requested opening), ``api_key`` (when set,
requests without ``Authorization: Bearer <api_key>`` get 401).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SETTABLE = {
    "mode",
    "latency_s",
    "fail_times",
    "retry_after",
    "slow_s",
    "filter_answer",
    "logprobs",
    "intention_style",
    "api_key",
    "model",
    "mcq_answer",
}


def _top(first: str, pairs: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": first,
        "logprob": math.log(dict(pairs)[first]) if first in dict(pairs) else -0.1,
        "bytes": list(first.encode()),
        "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in pairs],
    }


class FakeOpenAIServer:
    def __init__(
        self,
        *,
        mode: str = "normal",
        latency_s: float = 0.0,
        fail_times: int | None = None,
        retry_after: float = 1.0,
        slow_s: float = 5.0,
        filter_answer: str = "hash",
        logprobs: bool = True,
        intention_style: str = "opening",
        api_key: str | None = None,
        model: str = "fake-vlm",
        mcq_answer: str = "hash",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.mode, self.latency_s, self.fail_times = mode, latency_s, fail_times
        self.retry_after, self.slow_s, self.filter_answer = retry_after, slow_s, filter_answer
        self.logprobs, self.intention_style, self.api_key, self.model = logprobs, intention_style, api_key, model
        self.mcq_answer = mcq_answer
        self.requests: list[dict[str, Any]] = []
        self.failures_served = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-openai-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def set(self, **kwargs: Any) -> None:
        """Change behaviour at runtime; also resets the failure counter."""
        bad = set(kwargs) - _SETTABLE
        if bad:
            raise ValueError(f"unknown setting(s) {sorted(bad)}; settable: {sorted(_SETTABLE)}")
        with self._lock:
            for k, v in kwargs.items():
                setattr(self, k, v)
            self.failures_served = 0

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures_served = 0
            self.max_active = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": len(self.requests),
                "max_active": self.max_active,
                "failures_served": self.failures_served,
                "mode": self.mode,
            }

    # --- answers --------------------------------------------------------------------------------------------------
    def _should_fail(self) -> bool:
        with self._lock:
            if self.fail_times is None or self.failures_served < self.fail_times:
                self.failures_served += 1
                return True
            return False

    def answer(self, body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """(content, logprobs object or None) for a well-formed request in normal/garbage mode."""
        messages = body.get("messages") or []
        user_text = ""
        for m in messages:
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, str):
                    user_text = c
                elif isinstance(c, list):
                    user_text = "\n".join(
                        p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"
                    )
        continuing = bool(messages and messages[-1].get("role") == "assistant" and body.get("continue_final_message"))
        want_lp = bool(body.get("logprobs")) and self.logprobs
        if self.mode == "garbage":
            lp = {"content": [_top("Perhaps", [("Perhaps", 0.6), ("Maybe", 0.3), ("It", 0.1)])]} if want_lp else None
            return "Perhaps. It depends on the weather and on what the shopper already owns.", lp
        if '"Yes" or "No"' in user_text or "Yes or No" in user_text:
            choice = self.filter_answer
            if choice == "hash":
                choice = "yes" if int(hashlib.sha1(user_text.encode()).hexdigest(), 16) % 2 == 0 else "no"
            if choice == "yes":
                text = "Yes, the intention is specific and explains why I would buy both together."
                lp = _top("Yes", [("Yes", 0.8), ("No", 0.15), ("The", 0.05)])
            else:
                text = "No, the two products serve unrelated needs, so I would buy them separately."
                lp = _top("No", [("No", 0.8), ("Yes", 0.15), ("The", 0.05)])
            return text, ({"content": [lp]} if want_lp else None)
        mcq = re.search(r"Answer ([A-Z](?: or [A-Z])+) only", user_text)
        if mcq:
            if self.mcq_answer != "hash":
                return self.mcq_answer, None
            letters = mcq.group(1).split(" or ")
            return letters[int(hashlib.sha1(user_text.encode()).hexdigest(), 16) % len(letters)] + ".", None
        m = re.search(r'begin your answer with "([^"]+)"', user_text, flags=re.IGNORECASE)
        if m:
            tail = "outdoor activities, because the shopper wants to stay warm and dry on long hikes."
            if self.intention_style == "free":
                return "Because the shopper " + tail, None
            if continuing:
                return " " + tail, None
            return f"{m.group(1)} {tail}", None
        return "A sturdy everyday product with a simple design.", None

    # --- HTTP -----------------------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def _send(
                self, code: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
            ) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(code, {"error": {"message": message, "type": "fake_error", "code": code}}, headers)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/_stats"):
                    return self._send(200, server.stats())
                if self.path.rstrip("/") == "/v1/models":
                    if server.mode == "401" or (server.api_key and not self._authorised()):
                        return self._error(401, "invalid api key")
                    return self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                return self._error(404, f"no route {self.path}")

            def _authorised(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {server.api_key}"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/").endswith("/_control"):
                    try:
                        settings = json.loads(raw or b"{}")
                        if settings.pop("reset_stats", False):
                            server.reset_stats()
                        server.set(**settings)
                    except (ValueError, TypeError) as err:
                        return self._error(400, str(err))
                    return self._send(200, server.stats())
                t0 = time.time()
                with server._lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    self._chat(raw, t0)
                finally:
                    with server._lock:
                        server.active -= 1

            def _chat(self, raw: bytes, t0: float) -> None:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                record = {
                    "path": self.path,
                    "body": body,
                    "t_start": t0,
                    "authorization": self.headers.get("Authorization"),
                    "mode": server.mode,
                }
                with server._lock:
                    server.requests.append(record)
                wrong_path = self.path.rstrip("/") != "/v1/chat/completions"
                if wrong_path or (server.mode == "404" and server._should_fail()):
                    record["failed"] = "404"
                    return self._error(
                        404, f"The model `{(body or {}).get('model')}` does not exist or route {self.path} is unknown"
                    )
                if server.mode == "401" or (server.api_key and not self._authorised()):
                    return self._error(401, "Incorrect API key provided")
                if not isinstance(body, dict) or "messages" not in body:
                    return self._error(400, "request body must be a JSON object with messages")
                if server.mode == "400":
                    return self._error(400, "This model's maximum context length is 4096 tokens")
                if server.mode == "reject_logprobs" and body.get("logprobs"):
                    return self._error(400, "logprobs are not supported by this server")
                if server.latency_s:
                    time.sleep(server.latency_s)
                mode = server.mode
                if mode == "slow":
                    time.sleep(server.slow_s)
                elif mode in ("fail_500", "fail_429", "malformed_json") and server._should_fail():
                    record["failed"] = mode
                    if mode == "fail_500":
                        return self._error(500, "internal server error (fake)")
                    if mode == "fail_429":
                        return self._error(429, "rate limited (fake)", {"Retry-After": f"{server.retry_after:g}"})
                    return self._send(200, None, raw=b'{"choices": [{"message": {"content": "trunc')
                content, logprobs = server.answer(body)
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
                if logprobs is not None:
                    choice["logprobs"] = logprobs
                record["t_end"] = time.time()
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-fake-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": int(t0),
                        "model": body.get("model", server.model),
                        "choices": [choice],
                        "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(content) // 4},
                    },
                )

        return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="normal")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    ap.add_argument("--fail-times", type=int, default=None)
    args = ap.parse_args(argv)
    srv = FakeOpenAIServer(mode=args.mode, latency_s=args.latency, fail_times=args.fail_times, port=args.port)
    print(f"fake OpenAI-compatible server on {srv.url} (mode={srv.mode}, latency={srv.latency_s}s)", flush=True)
    try:
        srv._httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()


if __name__ == "__main__":
    main()
