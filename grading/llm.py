"""The one client for OpenAI-compatible model servers (vLLM, llama.cpp, SGLang, OpenAI).

All outbound HTTP to a model goes through here. Structured output uses the
OpenAI-standard `response_format={"type": "json_schema", ...}`; the old
vLLM-only `guided_json` is never sent (vLLM ≥ 0.12 ignores it silently).

The process-wide `Engine` (one event-loop thread and one client per worker
process, kept between tasks) and the per-worker share of the concurrency
limit live here too, so every piece of model I/O and its concurrency is in
one module and the grading rules stay synchronous.

Errors are classified once, here: connection errors, timeouts, 429 and 5xx
are retried with exponential backoff and full jitter (Retry-After honoured);
other 4xx cannot succeed on retry and are raised at once with the server's
own message (a prompt over the context length becomes ContextLengthExceeded).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import certifi
import httpx
from django.conf import settings

T = TypeVar("T")
R = TypeVar("R")


class LLMError(Exception):
    """A request that did not produce a reply. `retryable` says whether trying again could help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ContextLengthExceeded(LLMError):
    """The prompt plus max_tokens does not fit the served model's context window."""


@dataclass(frozen=True)
class ChatReply:
    contents: list[str]
    finish_reasons: list[str]
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    attempts: int


@dataclass(frozen=True)
class HealthReport:
    reachable: bool
    models: list[str]
    model: str
    error: str = ""

    @property
    def serving_model(self) -> bool:
        return self.reachable and self.model in self.models


_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "max_model_len",
    "exceeds the available context",
    "exceed_context_size",
    "too many tokens",
    "prompt is too long",
)


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~50 ms; every client in the process shares one.
    return ssl.create_default_context(cafile=certifi.where())


class LLMClient:
    """Async client; one instance per batch, used as `async with LLMClient() as llm`.

    `concurrency` bounds requests in flight from this client, so a batch keeps
    the server's continuous batching full without flooding it. Each request
    slot is a "lane" with its own single keep-alive connection: httpx's shared
    pool rescans every connection for every request, which at 32+ in flight
    costs more CPU than the rest of grading put together.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        concurrency: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float = 30.0,
    ) -> None:
        self.base_url = (base_url if base_url is not None else settings.LLM_BASE_URL).rstrip("/")
        if not self.base_url:
            raise ValueError("LLM_BASE_URL is not set")
        self.model = model or settings.LLM_MODEL
        self.api_key = settings.LLM_API_KEY if api_key is None else api_key
        self.timeout = timeout or settings.LLM_TIMEOUT
        self.connect_timeout = connect_timeout or settings.LLM_CONNECT_TIMEOUT
        self.max_retries = settings.LLM_MAX_RETRIES if max_retries is None else max_retries
        self.concurrency = concurrency or settings.LLM_MAX_CONCURRENCY
        self.backoff_base = settings.LLM_BACKOFF_BASE if backoff_base is None else backoff_base
        self.backoff_max = backoff_max
        self._lanes: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._clients: list[httpx.AsyncClient] = []

    async def __aenter__(self) -> LLMClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        for _ in range(self.concurrency):
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=_tls_context(),
            )
            self._clients.append(client)
            self._lanes.put_nowait(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))
        self._clients.clear()

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        lane = await self._lanes.get()
        try:
            return await lane.post("/chat/completions", json=payload)
        finally:
            self._lanes.put_nowait(lane)

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any],
        schema_name: str = "rubric_grade",
        n: int = 1,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
    ) -> ChatReply:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": settings.LLM_TEMPERATURE if temperature is None else temperature,
            "max_tokens": max_tokens or settings.LLM_MAX_TOKENS,
            "n": n,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }
        if top_p is not None:
            payload["top_p"] = top_p
        if seed is not None:
            payload["seed"] = seed
        assert self._clients, "use `async with LLMClient() as client`"

        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._post(payload)
            except httpx.TimeoutException as exc:
                error = LLMError(
                    f"no reply within {self.timeout:g}s ({type(exc).__name__})", retryable=True
                )
                wait = None
            except httpx.TransportError as exc:
                error = LLMError(f"cannot reach {self.base_url}: {exc!r}", retryable=True)
                wait = None
            else:
                latency_ms = int((time.perf_counter() - started) * 1000)
                if response.status_code == 200:
                    return self._reply(response, latency_ms, attempt)
                message = _server_message(response)
                status = response.status_code
                if status == 429 or status >= 500:
                    error = LLMError(f"HTTP {status}: {message}", retryable=True, status=status)
                    wait = _retry_after(response)
                elif any(marker in message.lower() for marker in _CONTEXT_MARKERS):
                    raise ContextLengthExceeded(message, retryable=False, status=status)
                else:
                    raise LLMError(f"HTTP {status}: {message}", retryable=False, status=status)
            if attempt > self.max_retries:
                raise LLMError(
                    f"{error} (gave up after {attempt} attempts)",
                    retryable=False,
                    status=error.status,
                )
            delay = self._backoff(attempt) if wait is None else min(wait, self.backoff_max)
            await asyncio.sleep(delay)

    def _reply(self, response: httpx.Response, latency_ms: int, attempts: int) -> ChatReply:
        try:
            body = response.json()
            choices = body["choices"]
            contents = [(c.get("message") or {}).get("content") or "" for c in choices]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMError(f"malformed response body: {exc!r}", retryable=True) from exc
        usage = body.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return ChatReply(
            contents=contents,
            finish_reasons=[str(c.get("finish_reason") or "") for c in choices],
            model=str(body.get("model") or self.model),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            latency_ms=latency_ms,
            attempts=attempts,
        )


def check_health(*, base_url: str | None = None, timeout: float = 5.0) -> HealthReport:
    """GET /models: is the endpoint up, and does it serve the configured model?"""
    url = (base_url if base_url is not None else settings.LLM_BASE_URL).rstrip("/")
    model = settings.LLM_MODEL
    if not url:
        return HealthReport(False, [], model, "LLM_BASE_URL is not set (offline rule engine)")
    headers = {"Authorization": f"Bearer {settings.LLM_API_KEY}"} if settings.LLM_API_KEY else {}
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return HealthReport(False, [], model, f"cannot reach {url}: {exc!r}")
    if response.status_code != 200:
        return HealthReport(
            False, [], model, f"HTTP {response.status_code}: {_server_message(response)}"
        )
    try:
        models = [str(m["id"]) for m in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return HealthReport(False, [], model, f"unexpected /models reply: {exc!r}")
    error = "" if model in models else f"{model} is not served here (serving: {models})"
    return HealthReport(True, models, model, error)


# --- The process's engine ------------------------------------------------------------


def per_worker_concurrency() -> int:
    """LLM_MAX_CONCURRENCY is for the whole cluster; each worker process gets its share."""
    workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
    return max(1, settings.LLM_MAX_CONCURRENCY // workers)


class Engine:
    """One event loop thread and one model client per process, kept between tasks.

    Django's ORM is synchronous, so results are persisted in the calling thread
    while this loop keeps the model server's batch full; and because the
    client outlives a chunk, its keep-alive connections do too.
    """

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-engine", daemon=True)
        self.thread.start()
        self.client = LLMClient(concurrency=per_worker_concurrency())
        self.run(self.client.__aenter__())

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def map_unordered(
        self,
        call: Callable[[LLMClient, T], Awaitable[R]],
        items: list[T],
        *,
        on_error: Callable[[T, BaseException], R],
    ) -> Iterator[R]:
        """Run `call(client, item)` for every item concurrently; yield results in the
        calling thread as they finish. An exception becomes `on_error(item, exc)`, so
        no item is ever lost, not even to cancellation."""
        results: queue.Queue[R] = queue.Queue()

        async def one(item: T) -> None:
            try:
                results.put(await call(self.client, item))
            except BaseException as exc:
                results.put(on_error(item, exc))
                if not isinstance(exc, Exception):
                    raise

        for item in items:
            asyncio.run_coroutine_threadsafe(one(item), self.loop)
        for _ in items:
            yield results.get()

    def close(self) -> None:
        self.run(self.client.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def engine() -> Engine:
    """The process's engine for the current settings (tests change them; a new one is made)."""
    global _engine
    key = (
        settings.LLM_BASE_URL,
        settings.LLM_MODEL,
        settings.LLM_API_KEY,
        settings.LLM_TIMEOUT,
        settings.LLM_CONNECT_TIMEOUT,
        settings.LLM_MAX_RETRIES,
        settings.LLM_BACKOFF_BASE,
        per_worker_concurrency(),
        os.getpid(),
    )
    with _engine_lock:
        if _engine is None or _engine.key != key:
            # An engine inherited from a parent process (fork) is not ours to close.
            if _engine is not None and _engine.key[-1] == os.getpid():
                _engine.close()
            _engine = Engine(key)
        return _engine
