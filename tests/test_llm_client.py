"""The OpenAI-compatible client against a real loopback server: every failure mode."""

from __future__ import annotations

import asyncio
import time

import pytest

from grading.llm import ContextLengthExceeded, LLMClient, LLMError, check_health
from grading.prompts import GradingContext

from .fake_llm import FakeLLM

RUBRIC = {
    "title": "Science",
    "criteria": [
        {
            "id": 1,
            "title": "Accuracy",
            "description": "",
            "max_points": 4,
            "scoring": "range",
            "levels": [],
        },
        {
            "id": 2,
            "title": "Vocabulary",
            "description": "",
            "max_points": 2,
            "scoring": "levels",
            "levels": [
                {"points": 0, "title": "", "descriptor": "none"},
                {"points": 2, "title": "", "descriptor": "precise"},
            ],
        },
    ],
}
CONTEXT = GradingContext(
    language="en",
    question="Why phases?",
    reference_answer="Reflected light.",
    guidelines="",
    rubric=RUBRIC,
)


def chat(**client_options):
    async def go():
        async with LLMClient(**client_options) as llm:
            return await llm.chat(CONTEXT.messages("It orbits."), schema=CONTEXT.schema(), n=1)

    return asyncio.run(go())


def test_request_uses_standard_structured_output(fake_llm):
    reply = chat()
    body = fake_llm.requests[0]
    assert body["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "guided_json" not in body and "guided_json" not in str(body.get("extra_body"))
    assert body["temperature"] == 0.2
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.attempts == 1 and reply.finish_reasons == ["stop"]


def test_server_errors_are_retried(fake_llm):
    fake_llm.script = ["error500", "error500"]
    reply = chat()
    assert reply.attempts == 3
    assert fake_llm.modes["error500"] == 2


def test_retry_after_is_honoured(fake_llm):
    fake_llm.script = ["rate_limited"]
    started = time.monotonic()
    reply = chat()
    assert reply.attempts == 2
    assert time.monotonic() - started >= 1.0  # the server asked for one second


def test_gives_up_after_bounded_retries(fake_llm):
    fake_llm.default = "error500"
    with pytest.raises(LLMError, match="gave up after 3 attempts") as info:
        chat()
    assert "engine crashed" in str(info.value)
    assert len(fake_llm.requests) == 3


def test_context_length_is_not_retried(fake_llm):
    fake_llm.script = ["context_length"]
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 8192"):
        chat()
    assert len(fake_llm.requests) == 1


def test_other_client_errors_are_not_retried(fake_llm):
    fake_llm.script = ["unauthorized"]
    with pytest.raises(LLMError, match="HTTP 401: invalid api key") as info:
        chat()
    assert not info.value.retryable
    assert len(fake_llm.requests) == 1


def test_slow_server_times_out_then_retries(fake_llm):
    fake_llm.slow_seconds = 1.5
    fake_llm.script = ["slow"]
    reply = chat(timeout=0.5)
    assert reply.attempts == 2


def test_connection_refused_is_retried_then_reported(db, settings):
    server = FakeLLM()
    url = server.url
    server.stop()  # nothing listens on that port any more
    settings.LLM_BACKOFF_BASE = 0.01
    with pytest.raises(LLMError, match="cannot reach") as info:
        chat(base_url=url, max_retries=1)
    assert "gave up after 2 attempts" in str(info.value)


def test_concurrency_is_bounded(fake_llm):
    server = FakeLLM(latency=0.2).start()  # its own server: no stray request from other tests

    async def go():
        async with LLMClient(base_url=server.url, concurrency=4) as llm:
            await asyncio.gather(
                *(llm.chat(CONTEXT.messages(str(i)), schema=CONTEXT.schema()) for i in range(12))
            )

    try:
        asyncio.run(go())
    finally:
        server.stop()
    assert server.max_in_flight == 4 and len(server.requests) == 12


def test_health_check(fake_llm, settings):
    report = check_health()
    assert report.reachable and report.serving_model
    settings.LLM_MODEL = "other/model"
    report = check_health()
    assert report.reachable and not report.serving_model
    assert "not served" in report.error
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    assert not check_health().reachable
