"""A loopback OpenAI-compatible server with scripted behaviour, for tests and benchmarks.

Real HTTP on 127.0.0.1 (HTTP/1.1 keep-alive, one thread per connection), so
the client is exercised exactly as against vLLM. Behaviour per request, in
order of precedence:

1. a marker in the student's answer, e.g. ``[[fake:malformed]]`` — stable
   whatever order concurrent requests arrive in;
2. the next entry of `script` (a list consumed in order);
3. `default` ("valid").

Modes: valid, malformed, missing_criterion, out_of_range, error500, rate_limited
(429 + Retry-After), slow (sleeps `slow_seconds`), context_length (400),
unauthorized (401), flags_clean (valid, every flag false), error502 and error503
(a proxy in front of a restarting server), loading (503 "Loading model", as
llama.cpp answers while it loads), truncated (cut off at max_tokens,
finish_reason "length"), control_chars (valid, but with raw control characters
inside the JSON strings, as vLLM's JSON grammar allows). Like vLLM under load,
at most `capacity` requests are served at once, each holding its slot for
`latency` seconds.

Like a vLLM restart, `stop()` closes the port (connections are refused) and a later
`start()` listens on the same port again. `open_requests` counts requests received
and not yet answered (running or queued, what a budget must bound) and
`max_open_requests` its peak. Usage reports `prompt_tokens_details.cached_tokens`
like vLLM with `--enable-prompt-tokens-details`: a system prompt seen before is a
prefix-cache hit.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = re.compile(r"\[\[fake:([a-z_0-9]+)\]\]")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a whole batch of clients may connect at once


class FakeLLM:
    def __init__(
        self,
        *,
        model: str = "Qwen/Qwen3-4B-Instruct-2507",
        capacity: int = 64,
        latency: float = 0.0,
        slow_seconds: float = 5.0,
        retry_after: str = "1",
        port: int = 0,
    ) -> None:
        self.model = model
        self.capacity = capacity
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.script: list[str] = []
        self.default = "valid"
        self.requests: list[dict[str, Any]] = []
        self.modes: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.open_requests = 0
        self.max_open_requests = 0
        self._seen_prefixes: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(capacity)
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> FakeLLM:
        """Listen (again, after `stop()`: on the same port, as a restarted server does)."""
        if self._closed:
            self._server = _Server(("127.0.0.1", self._port), self._handler())
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._closed = False
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: new connections are refused, open ones (kept alive, or with a
        request in progress) are cut, as when the server process dies."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._closed = True
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        with self._lock:
            self.script = []
            self.default = "valid"
            self.requests = []
            self.modes = Counter()
            self.max_in_flight = 0
            self.max_open_requests = self.open_requests
            self.latency = 0.0
            self._seen_prefixes = set()

    # -- behaviour --------------------------------------------------------------------

    def _mode_for(self, body: dict[str, Any]) -> str:
        user = next(
            (
                m.get("content", "")
                for m in reversed(body.get("messages", []))
                if m["role"] == "user"
            ),
            "",
        )
        with self._lock:
            match = MARKER.search(user)
            if match:
                mode = match.group(1)
            elif self.script:
                mode = self.script.pop(0)
            else:
                mode = self.default
            self.requests.append(body)
            self.modes[mode] += 1
        return mode

    @staticmethod
    def valid_reply(schema: dict[str, Any], *, variant: int = 0) -> dict[str, Any]:
        """A reply that satisfies the schema: three quarters of each maximum (or a level)."""
        criteria = {}
        for key, spec in schema["properties"]["criteria"]["properties"].items():
            score_spec = spec["properties"]["score"]
            if "enum" in score_spec:
                levels = score_spec["enum"]
                score = levels[min(len(levels) - 1, len(levels) // 2 + variant)]
            else:
                score = max(0, min(score_spec["maximum"], score_spec["maximum"] * 3 // 4 + variant))
            criteria[key] = {"rationale": f"Rationale for {key}.", "score": score}
        return {
            "criteria": criteria,
            "feedback": "Clear answer; add one more example.",
            "blank": False,
            "off_topic": False,
            "prompt_injection_suspected": False,
        }

    def _content(self, mode: str, schema: dict[str, Any], index: int) -> str:
        reply = self.valid_reply(schema, variant=index)
        if mode == "malformed":
            return '{"criteria": {"c1": {"rationale": "cut off'
        if mode == "truncated":
            return json.dumps(reply, ensure_ascii=False)[:40]
        if mode == "control_chars":
            first = sorted(reply["criteria"])[0]
            reply["criteria"][first]["rationale"] = "Line one\x01\nline two\x00."
            reply["feedback"] = "Good\x0b work\ttab."
            # json.dumps escapes control characters; a grammar-constrained model does not.
            text = json.dumps(reply, ensure_ascii=False)
            for escaped, raw in (("\\u0001", "\x01"), ("\\u0000", "\x00"), ("\\u000b", "\x0b")):
                text = text.replace(escaped, raw)
            return text.replace("\\n", "\n").replace("\\t", "\t")
        if mode == "missing_criterion":
            reply["criteria"].pop(sorted(reply["criteria"])[-1])
        elif mode == "out_of_range":
            first = sorted(reply["criteria"])[0]
            reply["criteria"][first]["score"] = 999
        return json.dumps(reply, ensure_ascii=False)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None):
                data = json.dumps(payload, ensure_ascii=False).encode()
                # No longer open once the reply is on its way: the client may send its next
                # request the moment it arrives, and must not be counted twice.
                self._close_request()
                # The client may have given up already (a timeout test), or the server was
                # stopped under it: nothing to tell it.
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)

            def _close_request(self) -> None:
                if getattr(self, "_open", False):
                    self._open = False
                    with fake._lock:
                        fake.open_requests -= 1

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._send(200, {"object": "list", "data": [{"id": fake.model}]})
                elif self.path == "/health":
                    self._send(200, {})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with fake._lock:
                    fake.open_requests += 1
                    fake.max_open_requests = max(fake.max_open_requests, fake.open_requests)
                self._open = True
                try:
                    self._generate(body)
                finally:
                    self._close_request()

            def _generate(self, body: dict[str, Any]) -> None:
                mode = fake._mode_for(body)
                # A request holds a slot for exactly `latency` (the model's generation
                # time); writing the HTTP reply happens after, as in vLLM.
                with fake._slots:
                    with fake._lock:
                        fake.in_flight += 1
                        fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    try:
                        if fake.latency:
                            time.sleep(fake.latency)
                    finally:
                        with fake._lock:
                            fake.in_flight -= 1
                self._respond(mode, body)

            def _respond(self, mode: str, body: dict[str, Any]) -> None:
                if mode == "error500":
                    self._send(500, {"object": "error", "message": "engine crashed"})
                    return
                if mode in ("error502", "error503"):
                    status = int(mode[-3:])
                    self._send(status, {"error": {"message": f"upstream answered {status}"}})
                    return
                if mode == "loading":
                    self._send(
                        503,
                        {
                            "error": {
                                "code": 503,
                                "message": "Loading model",
                                "type": "unavailable_error",
                            }
                        },
                    )
                    return
                if mode == "rate_limited":
                    self._send(
                        429,
                        {"error": {"message": "too many requests"}},
                        {"Retry-After": fake.retry_after},
                    )
                    return
                if mode == "unauthorized":
                    self._send(401, {"error": {"message": "invalid api key"}})
                    return
                if mode == "context_length":
                    self._send(
                        400,
                        {
                            "object": "error",
                            "message": "This model's maximum context length is 8192 tokens. "
                            "However, you requested 9000 tokens (8000 in the messages, "
                            "1000 in the completion).",
                            "type": "BadRequestError",
                            "code": 400,
                        },
                    )
                    return
                if mode == "slow":
                    time.sleep(fake.slow_seconds)
                schema = body["response_format"]["json_schema"]["schema"]
                prompt_chars = sum(len(m.get("content", "")) for m in body["messages"])
                choices = []
                for i in range(int(body.get("n") or 1)):
                    content = fake._content(mode, schema, i)
                    choices.append(
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "length" if mode == "truncated" else "stop",
                        }
                    )
                completion = sum(len(c["message"]["content"]) for c in choices) // 3
                system = next(
                    (m.get("content", "") for m in body["messages"] if m["role"] == "system"), ""
                )
                with fake._lock:
                    hit = system in fake._seen_prefixes
                    fake._seen_prefixes.add(system)
                # vLLM caches whole blocks of 16 tokens of the identical prefix.
                cached = (len(system) // 2) // 16 * 16 if hit else 0
                self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model", fake.model),
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": prompt_chars // 2,
                            "completion_tokens": completion,
                            "total_tokens": prompt_chars // 2 + completion,
                            "prompt_tokens_details": {"cached_tokens": cached},
                        },
                    },
                )

        return Handler


def main() -> None:
    """Run standalone: `python -m tests.fake_llm [port]` (for trying `make demo` with a model)."""
    import sys

    fake = FakeLLM(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"fake OpenAI-compatible server on {fake.url}", flush=True)
    fake._server.serve_forever()


if __name__ == "__main__":
    main()
