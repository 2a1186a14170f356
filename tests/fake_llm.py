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
unauthorized (401), flags_clean (valid, every flag false). Like vLLM under
load, at most `capacity` requests are served at once, each holding its slot
for `latency` seconds.
"""

from __future__ import annotations

import contextlib
import json
import re
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
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(capacity)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.script = []
            self.default = "valid"
            self.requests = []
            self.modes = Counter()
            self.max_in_flight = 0
            self.latency = 0.0

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

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None):
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                # The client may have given up already (a timeout test): nothing to tell it.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

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
                            "finish_reason": "stop",
                        }
                    )
                completion = sum(len(c["message"]["content"]) for c in choices) // 3
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
                        },
                    },
                )

        return Handler


def main() -> None:
    """Run standalone: `python -m tests.fake_llm [port]` (for trying `make demo` with a model)."""
    import sys

    fake = FakeLLM()
    if len(sys.argv) > 1:
        fake._server.server_close()
        fake._server = _Server(("127.0.0.1", int(sys.argv[1])), fake._handler())
    print(f"fake OpenAI-compatible server on {fake.url}", flush=True)
    fake._server.serve_forever()


if __name__ == "__main__":
    main()
