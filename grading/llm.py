"""The one client for OpenAI-compatible model servers (vLLM, llama.cpp, SGLang, OpenAI).

All outbound HTTP to a model goes through here. Structured output uses the
OpenAI-standard `response_format={"type": "json_schema", ...}`; the old
vLLM-only `guided_json` is never sent (vLLM ≥ 0.12 ignores it silently).
Sampling parameters are always sent, from the model family's defaults
(`sampling_for`), so a server's own defaults never decide how grading samples.

The process-wide `Engine` (one event-loop thread and one client per worker
process, kept between tasks) lives here too, so every piece of model I/O and
its concurrency is in one module and the grading rules stay synchronous.

`LLM_BASE_URL` names one endpoint, or several replicas comma-separated. Each
endpoint has:

- a **budget** of LLM_MAX_CONCURRENCY requests in flight shared by every
  worker process on every host: the engine leases slots for its chunk from
  `grading.llm_state` (Redis or the database) in batches, grows its lease while
  the chunk has work and gives slots back as the chunk drains;
- a **circuit breaker**: connection errors (refused, reset, connect timeouts),
  429, 502/503/504 and "model loading" are outages. After LLM_BREAKER_THRESHOLD of them in a row (or
  a request's retries spent) the endpoint gets no more requests; when every
  endpoint is open, requests end with `ModelUnavailable` at once — the answer
  waits for the model, it is not the teacher's work. The open state is shared
  through `grading.llm_state`; a probe of /models closes it (`endpoints_probe`).

Other errors are classified once, here: 500 and read timeouts are retried with
backoff and then reported; other 4xx cannot succeed on retry and are raised at once with the
server's own message (a prompt over the context length becomes
ContextLengthExceeded).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import email.utils
import functools
import os
import queue
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import certifi
import httpx
from django.conf import settings
from django.utils import timezone

from . import llm_state

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


class ModelUnavailable(LLMError):
    """Every endpoint is down (its circuit breaker is open). Nothing was wrong with the
    answer: it waits for the model to come back."""


class NotSent(Exception):
    """No request slot came free before the chunk's send deadline: the request was never
    sent, and its answer goes back to the queue."""


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
# A server that is starting says so (llama.cpp: 503 "Loading model"); behind a proxy a
# restarting vLLM is a 502/503/504, and 429 asks us to wait.
_OUTAGE_STATUSES = frozenset({429, 502, 503, 504})
_LOADING_MARKERS = ("loading model", "model is loading", "model loading", "still loading")


def endpoints(base_url: str | None = None) -> list[str]:
    """The configured endpoints: LLM_BASE_URL, one URL or several comma-separated."""
    raw = settings.LLM_BASE_URL if base_url is None else base_url
    return [url.strip().rstrip("/") for url in raw.split(",") if url.strip()]


# --- Sampling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, sent explicitly with every request."""

    temperature: float
    top_p: float
    top_k: int | None = None  # not OpenAI-standard: only for servers that take it
    min_p: float | None = None
    presence_penalty: float = 0.0
    chat_template_kwargs: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
        }
        if self.top_k is not None:
            values["top_k"] = self.top_k
        if self.min_p is not None:
            values["min_p"] = self.min_p
        if self.chat_template_kwargs:
            values["chat_template_kwargs"] = self.chat_template_kwargs
        return values


# The model cards' recommended values, with the temperature lowered for grading (a
# rubric score wants the likeliest reading, not variety). Presence penalty stays 0: under
# a JSON grammar the keys and quotes must repeat, and penalising them pushes a model
# towards whitespace. Hybrid-thinking Qwen3 models are asked not to think: the schema
# has no room for a <think> block.
FAMILY_SAMPLING: dict[str, Sampling] = {
    # Qwen3-*-Instruct-2507 (card: temperature 0.7, top_p 0.8, top_k 20, min_p 0).
    "qwen3-2507": Sampling(temperature=0.2, top_p=0.8, top_k=20, min_p=0.0),
    # Hybrid Qwen3 (Qwen3-4B, Qwen3-8B, …; the card's non-thinking values are the same).
    "qwen3": Sampling(
        temperature=0.2,
        top_p=0.8,
        top_k=20,
        min_p=0.0,
        chat_template_kwargs={"enable_thinking": False},
    ),
    # Anything else, OpenAI included: only the OpenAI-standard parameters.
    "default": Sampling(temperature=0.2, top_p=1.0),
}


def model_family(model: str) -> str:
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith("qwen3") and "2507" in name:
        return "qwen3-2507"
    if name.startswith("qwen3"):
        return "qwen3"
    return "default"


def sampling_for(model: str) -> Sampling:
    """The family's defaults, with any LLM_TEMPERATURE / LLM_TOP_P / LLM_TOP_K / LLM_MIN_P /
    LLM_PRESENCE_PENALTY the operator set."""
    base = FAMILY_SAMPLING[model_family(model)]
    overrides = {
        "temperature": settings.LLM_TEMPERATURE,
        "top_p": settings.LLM_TOP_P,
        "top_k": settings.LLM_TOP_K,
        "min_p": settings.LLM_MIN_P,
        "presence_penalty": settings.LLM_PRESENCE_PENALTY,
    }
    return Sampling(
        **{
            name: getattr(base, name) if value is None else value
            for name, value in overrides.items()
        },
        chat_template_kwargs=base.chat_template_kwargs,
    )


# --- HTTP details -------------------------------------------------------------------------


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


# The monotonic time after which a chunk starts no new request (None: no deadline). Set
# per job by the engine, read where a request waits for a slot.
_send_until: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "markwise_llm_send_until", default=None
)


# --- Endpoints and their lanes --------------------------------------------------------------


class Endpoint:
    """One server: its lanes, its share of the budget and its breaker, as this process
    sees them. Touched only on the event loop's thread (the engine hops there).

    A lane is an httpx client with a single keep-alive connection: httpx's shared pool
    rescans every connection for every request, which at 32+ in flight costs more CPU
    than the rest of grading put together.
    """

    def __init__(self, url: str, capacity: int, new_client: Callable[[str], httpx.AsyncClient]):
        self.url = url
        self.capacity = capacity  # lanes this process may use now (leased slots)
        self.busy = 0
        self.clients: list[httpx.AsyncClient] = []
        self._idle: list[httpx.AsyncClient] = []
        self._new_client = new_client
        self.failures = 0  # consecutive outages
        self.open_since: datetime.datetime | None = None
        self.error = ""
        self.tripped_here = False  # opened by this process, not yet in the shared store

    @property
    def usable(self) -> bool:
        return self.open_since is None

    @property
    def free(self) -> int:
        return self.capacity - self.busy if self.usable else 0

    def take(self) -> httpx.AsyncClient:
        self.busy += 1
        if self._idle:
            return self._idle.pop()
        client = self._new_client(self.url)
        self.clients.append(client)
        return client

    def give_back(self, client: httpx.AsyncClient) -> None:
        self.busy -= 1
        self._idle.append(client)

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, error: str, threshold: int) -> bool:
        """Count an outage; True when that opened the breaker."""
        self.failures += 1
        self.error = error
        if self.failures >= threshold and self.usable:
            self.trip(error)
            return True
        return False

    def trip(self, error: str) -> None:
        if self.open_since is None:
            self.open_since = timezone.now()
            self.tripped_here = True
        self.error = error

    def close_breaker(self) -> None:
        self.open_since, self.failures, self.error, self.tripped_here = None, 0, "", False


class _Lanes:
    """Hands out lanes across endpoints, first come first served, to the endpoint with the
    most room. Waiters are woken one at a time, with the lane in hand (no thundering herd)."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints
        self._waiters: deque[asyncio.Future[tuple[Endpoint, httpx.AsyncClient]]] = deque()

    def _pick(self) -> Endpoint | None:
        best = None
        for endpoint in self.endpoints:
            if endpoint.free > 0 and (best is None or endpoint.free > best.free):
                best = endpoint
        return best

    def all_down(self) -> bool:
        return not any(e.usable for e in self.endpoints)

    def unavailable(self) -> ModelUnavailable:
        errors = "; ".join(f"{e.url}: {e.error or 'down'}" for e in self.endpoints)
        return ModelUnavailable(f"waiting for the model ({errors})", retryable=True)

    async def get(self, deadline: float | None) -> tuple[Endpoint, httpx.AsyncClient]:
        if self.all_down():
            raise self.unavailable()
        while self._waiters and self._waiters[0].done():  # expired or cancelled
            self._waiters.popleft()
        if not self._waiters and (endpoint := self._pick()) is not None:
            return endpoint, endpoint.take()
        loop = asyncio.get_running_loop()
        if deadline is not None and deadline <= loop.time():
            raise NotSent("the chunk's time to send ran out")
        waiter: asyncio.Future[tuple[Endpoint, httpx.AsyncClient]] = loop.create_future()
        self._waiters.append(waiter)
        self.dispatch()  # first in line may be served at once
        timer = loop.call_at(deadline, self._expire, waiter) if deadline is not None else None
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a lane in the same instant it was cancelled: give it back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.put(*waiter.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _expire(waiter: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_exception(NotSent("no request slot came free before the chunk's deadline"))

    def dispatch(self) -> None:
        while self._waiters:
            if self._waiters[0].done():  # expired or cancelled
                self._waiters.popleft()
                continue
            endpoint = self._pick()
            if endpoint is None:
                break
            self._waiters.popleft().set_result((endpoint, endpoint.take()))
        if self._waiters and self.all_down():
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(self.unavailable())

    def put(self, endpoint: Endpoint, client: httpx.AsyncClient) -> None:
        endpoint.give_back(client)
        self.dispatch()

    def grow(self, endpoint: Endpoint, count: int) -> None:
        endpoint.capacity += count
        self.dispatch()

    def shrink_idle(self, endpoint: Endpoint, count: int) -> int:
        """Give up to `count` lanes that are not in use; returns how many were given up."""
        given = max(0, min(count, endpoint.capacity - endpoint.busy))
        endpoint.capacity -= given
        return given

    def shrink(self, endpoint: Endpoint, count: int) -> None:
        """Slots lost (a lease expired): fewer lanes, busy ones finish first."""
        endpoint.capacity = max(0, endpoint.capacity - count)


# --- The client -------------------------------------------------------------------------------


class LLMClient:
    """Async client; one instance per batch, used as `async with LLMClient() as llm`.

    `concurrency` bounds requests in flight to each endpoint from this client, so a
    batch keeps the server's continuous batching full without flooding it. The engine
    starts it at 0 and sets it from the leased budget instead.
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
        breaker_threshold: int | None = None,
    ) -> None:
        urls = endpoints(base_url)
        if not urls:
            raise ValueError("LLM_BASE_URL is not set")
        self.base_url = urls[0]
        self.model = model or settings.LLM_MODEL
        self.api_key = settings.LLM_API_KEY if api_key is None else api_key
        self.timeout = timeout or settings.LLM_TIMEOUT
        self.connect_timeout = connect_timeout or settings.LLM_CONNECT_TIMEOUT
        self.max_retries = settings.LLM_MAX_RETRIES if max_retries is None else max_retries
        self.concurrency = settings.LLM_MAX_CONCURRENCY if concurrency is None else concurrency
        self.backoff_base = settings.LLM_BACKOFF_BASE if backoff_base is None else backoff_base
        self.backoff_max = backoff_max
        self.breaker_threshold = max(
            1, settings.LLM_BREAKER_THRESHOLD if breaker_threshold is None else breaker_threshold
        )
        self.sampling = sampling_for(self.model)
        self.endpoints = [Endpoint(url, self.concurrency, self._new_client) for url in urls]
        self.lanes = _Lanes(self.endpoints)
        self._entered = False

    def _new_client(self, url: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            verify=_tls_context(),
        )

    async def __aenter__(self) -> LLMClient:
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        clients = [c for e in self.endpoints for c in e.clients]
        await asyncio.gather(*(client.aclose() for client in clients))
        self._entered = False

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
            **self.sampling.payload(),
            "max_tokens": max_tokens or settings.LLM_MAX_TOKENS,
            "n": n,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }
        if temperature is not None:
            payload["temperature"] = temperature
        if top_p is not None:
            payload["top_p"] = top_p
        if seed is not None:
            payload["seed"] = seed
        assert self._entered, "use `async with LLMClient() as client`"
        deadline = _send_until.get()

        attempt = 0
        while True:
            attempt += 1
            endpoint, lane = await self.lanes.get(deadline)
            started = time.perf_counter()
            response: httpx.Response | None = None
            outage, wait = False, None
            try:
                response = await lane.post("/chat/completions", json=payload)
            except httpx.TransportError as exc:
                error, outage = self._transport_error(endpoint, exc)
            finally:
                self.lanes.put(endpoint, lane)
            if response is not None:
                latency_ms = int((time.perf_counter() - started) * 1000)
                if response.status_code == 200:
                    endpoint.succeeded()
                    return self._reply(response, latency_ms, attempt)
                message = _server_message(response)
                status = response.status_code
                wait = _retry_after(response)
                outage = status in _OUTAGE_STATUSES or any(
                    marker in message.lower() for marker in _LOADING_MARKERS
                )
                if outage or status >= 500:
                    error = LLMError(f"HTTP {status}: {message}", retryable=True, status=status)
                elif any(marker in message.lower() for marker in _CONTEXT_MARKERS):
                    raise ContextLengthExceeded(message, retryable=False, status=status)
                else:
                    raise LLMError(f"HTTP {status}: {message}", retryable=False, status=status)
                if not outage:
                    endpoint.succeeded()  # it answered: up, whatever this request's fate
            if outage:
                tripped = endpoint.failed(str(error), self.breaker_threshold)
                if attempt > self.max_retries and endpoint.usable:
                    endpoint.trip(str(error))  # a request's retries spent: that is an outage
                    tripped = True
                if tripped:
                    self.lanes.dispatch()
                if self.lanes.all_down():
                    raise ModelUnavailable(
                        f"{error} (gave up after {attempt} attempts)",
                        retryable=True,
                        status=error.status,
                    )
                if tripped:
                    continue  # another endpoint still serves: try it now
            elif attempt > self.max_retries:
                raise LLMError(
                    f"{error} (gave up after {attempt} attempts)",
                    retryable=False,
                    status=error.status,
                )
            delay = self._backoff(attempt) if wait is None else min(wait, self.backoff_max)
            await asyncio.sleep(delay)

    def _transport_error(
        self, endpoint: Endpoint, exc: httpx.TransportError
    ) -> tuple[LLMError, bool]:
        """The error, and whether it is an outage (the server is not there: refused, reset,
        no connection in time). A read timeout is not: the server is slow on this request,
        which is retried, then reported like a 500 — an answer that always times out must
        not wait forever."""
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            message = f"{endpoint.url}: no reply within {self.timeout:g}s ({type(exc).__name__})"
            return LLMError(message, retryable=True), False
        return LLMError(f"cannot reach {endpoint.url}: {exc!r}", retryable=True), True

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
    """GET /models: is the endpoint up, and does it serve the configured model?

    `base_url` is one endpoint; without it, the first configured one."""
    urls = endpoints(base_url)
    url = urls[0] if urls else ""
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


# --- The shared breaker -------------------------------------------------------------------------


def endpoint_states() -> dict[str, llm_state.BreakerState]:
    """The shared breaker of every configured endpoint."""
    urls = endpoints()
    return llm_state.store().breaker_states(urls) if urls else {}


def endpoints_probe(*, store: llm_state.Store | None = None) -> dict[str, llm_state.BreakerState]:
    """Probe /models of every endpoint whose breaker is open and due; close the breakers of
    those that serve the model again, back off the others. Returns the states after."""
    urls = endpoints()
    if not urls:
        return {}
    store = store or llm_state.store()
    states = store.breaker_states(urls)
    now = timezone.now()
    for url, state in states.items():
        if not state.due(now):
            continue
        report = check_health(base_url=url, timeout=settings.LLM_CONNECT_TIMEOUT)
        if report.serving_model:
            store.breaker_close(url)
            states[url] = llm_state.BreakerState(url)
        else:
            states[url] = store.breaker_probe_failed(url, report.error)
    return states


# --- The process's engine ------------------------------------------------------------------


def per_worker_concurrency() -> int:
    """A worker process's fair share of the cluster's budget (every endpoint together).

    It sizes chunks only: the budget itself is leased, so a worker may use more while
    others are idle, and never makes the cluster exceed it."""
    workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
    total = settings.LLM_MAX_CONCURRENCY * max(1, len(endpoints()))
    return max(1, total // workers)


class Engine:
    """One event loop thread and one model client per process, kept between tasks.

    Django's ORM is synchronous, so results are persisted in the calling thread
    while this loop keeps the model server's batch full; and because the
    client outlives a chunk, its keep-alive connections do too. The calling thread
    also keeps the chunk's budget lease (acquire, renew, give back) and writes the
    breaker's state to the shared store: a few round trips per chunk, none per request.
    """

    TICK = 0.05  # seconds the calling thread waits for a result before looking after leases
    ACQUIRE_EVERY = 0.1  # while short of slots, ask for more this often
    RELEASE_EVERY = 0.1  # give back what the chunk no longer needs at most this often

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-engine", daemon=True)
        self.thread.start()
        self.client = LLMClient(concurrency=0)
        self.run(self.client.__aenter__())
        self.budget = max(1, settings.LLM_MAX_CONCURRENCY)
        self.store: llm_state.Store | None = None
        self._next_acquire = 0.0
        self._next_release = 0.0
        self._next_renew = 0.0

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def _on_loop(self, function: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    # -- the chunk's lease and breakers (calling thread) ------------------------------------

    def _begin(self) -> None:
        """Take the shared breaker states (probing those that are due) before sending."""
        # Created lazily, in the worker: the store may open a Redis connection.
        self.store = self.store or llm_state.store()
        states = endpoints_probe(store=self.store)

        def apply() -> None:
            for endpoint in self.client.endpoints:
                state = states.get(endpoint.url)
                if state is not None and state.open:
                    endpoint.open_since, endpoint.error = state.open_since, state.last_error
                    endpoint.tripped_here = False
                elif endpoint.open_since is not None:
                    endpoint.close_breaker()

        self._on_loop(apply)

    def _publish_breakers(self) -> None:
        """Write breakers this process opened to the shared store; give back their slots."""
        assert self.store is not None
        for endpoint in self.client.endpoints:
            if endpoint.tripped_here:
                endpoint.tripped_here = False
                self.store.breaker_open(endpoint.url, endpoint.error)
            if not endpoint.usable and self.store.held(endpoint.url):
                given = self._on_loop(
                    functools.partial(self.client.lanes.shrink_idle, endpoint, endpoint.capacity)
                )
                self.store.release(endpoint.url, given)

    def _maintain(self, remaining: int, *, now: float | None = None) -> None:
        """Hold as many slots as the chunk can use: no more than its unfinished requests,
        no more than the budget."""
        assert self.store is not None
        now = time.monotonic() if now is None else now
        lanes, store = self.client.lanes, self.store
        if any(e.tripped_here for e in self.client.endpoints):
            self._publish_breakers()
        held = sum(store.held(e.url) for e in self.client.endpoints)
        if held > remaining and (now >= self._next_release or remaining == 0):
            surplus = held - remaining
            for endpoint in sorted(self.client.endpoints, key=lambda e: e.usable):
                if surplus <= 0:
                    break
                given = self._on_loop(
                    functools.partial(
                        lanes.shrink_idle, endpoint, min(surplus, store.held(endpoint.url))
                    )
                )
                store.release(endpoint.url, given)
                surplus -= given
            self._next_release = now + self.RELEASE_EVERY
        usable = [e for e in self.client.endpoints if e.usable]
        wanted = min(remaining, self.budget * len(usable)) - held
        if wanted > 0 and now >= self._next_acquire:
            # Start at a different endpoint in each process, so replicas fill evenly.
            start = os.getpid() % len(usable)
            for endpoint in usable[start:] + usable[:start]:
                room = self.budget - store.held(endpoint.url)
                got = store.acquire(endpoint.url, min(wanted, room), self.budget)
                if got:
                    self.loop.call_soon_threadsafe(lanes.grow, endpoint, got)
                    wanted -= got
                if wanted <= 0:
                    break
            self._next_acquire = now + (self.ACQUIRE_EVERY if wanted > 0 else 0.0)
        if now >= self._next_renew:
            if self._next_renew:  # not on a chunk's first look: its leases are fresh
                for url, lost in store.renew().items():
                    endpoint = next(e for e in self.client.endpoints if e.url == url)
                    self.loop.call_soon_threadsafe(lanes.shrink, endpoint, lost)
            self._next_renew = now + settings.LLM_SLOT_LEASE_SECONDS / 3

    def _end(self) -> None:
        assert self.store is not None
        self._publish_breakers()
        for endpoint in self.client.endpoints:
            given = self._on_loop(
                functools.partial(self.client.lanes.shrink_idle, endpoint, endpoint.capacity)
            )
            # Requests still in flight (an abandoned chunk) keep their slots: still leased
            # to this process, renewed by its next chunk or left to lapse.
            self.store.release(endpoint.url, given)
        self._next_acquire = self._next_release = self._next_renew = 0.0

    # -- running a chunk ---------------------------------------------------------------------

    def map_unordered(
        self,
        call: Callable[[LLMClient, T], Awaitable[R]],
        items: list[T],
        *,
        on_error: Callable[[T, BaseException], R],
        send_until: float | None = None,
    ) -> Iterator[R]:
        """Run `call(client, item)` for every item concurrently; yield results in the
        calling thread as they finish. An exception becomes `on_error(item, exc)`, so
        no item is ever lost, not even to cancellation. No request starts after the
        monotonic time `send_until`: those calls raise `NotSent`."""
        results: queue.Queue[R] = queue.Queue()

        async def one(item: T) -> None:
            _send_until.set(send_until)
            try:
                results.put(await call(self.client, item))
            except BaseException as exc:
                results.put(on_error(item, exc))
                if not isinstance(exc, Exception):
                    raise

        self._begin()
        remaining = len(items)
        self._maintain(remaining)
        futures = [asyncio.run_coroutine_threadsafe(one(item), self.loop) for item in items]
        try:
            while remaining:
                try:
                    result = results.get(timeout=self.TICK)
                except queue.Empty:
                    self._maintain(remaining)
                    continue
                remaining -= 1
                self._maintain(remaining)
                yield result
        finally:
            for future in futures:
                future.cancel()
            self._end()

    def close(self) -> None:
        if self.store is not None:
            self.store.release_all()
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
        settings.LLM_MAX_CONCURRENCY,
        settings.LLM_BREAKER_THRESHOLD,
        sampling_for(settings.LLM_MODEL),
        getattr(settings, "REDIS_URL", ""),
        os.getpid(),
    )
    with _engine_lock:
        if _engine is None or _engine.key != key:
            # An engine inherited from a parent process (fork) is not ours to close.
            if _engine is not None and _engine.key[-1] == os.getpid():
                _engine.close()
            _engine = Engine(key)
        return _engine
