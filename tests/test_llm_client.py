"""The OpenAI-compatible client against a real loopback server: every failure mode."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from grading import selectors
from grading.llm import (
    ContextLengthExceeded,
    LLMClient,
    LLMError,
    ModelUnavailable,
    check_health,
    endpoints,
)
from grading.models import Answer, AnswerStatus, AssessmentStatus
from grading.prompts import (
    FEEDBACK_MAX,
    RATIONALE_MAX,
    RATIONALE_MIN,
    TOKENS_PER_CHAR,
    GradingContext,
    parse_reply,
    reply_bounds,
    reply_schema,
)

from .conftest import GOOD, make_user, submit
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


# --- Sampling parameters -------------------------------------------------------------------


def test_sampling_parameters_are_sent_for_qwen3_instruct_2507(fake_llm):
    chat()
    body = fake_llm.requests[0]
    # The model card's values, the temperature lowered for grading; no thinking switch for
    # a model that never thinks.
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "min_p")} == {
        "temperature": 0.2,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.0,
    }
    assert body["presence_penalty"] == 0.0
    assert "chat_template_kwargs" not in body


def test_hybrid_qwen3_is_asked_not_to_think(fake_llm, settings):
    settings.LLM_MODEL = "Qwen/Qwen3-8B"
    chat()
    body = fake_llm.requests[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["top_k"] == 20


def test_other_models_get_only_openai_standard_parameters(fake_llm, settings):
    settings.LLM_MODEL = "gpt-4o-mini"
    chat()
    body = fake_llm.requests[0]
    assert body["temperature"] == 0.2 and body["top_p"] == 1.0
    assert not {"top_k", "min_p", "chat_template_kwargs"} & set(body)


def test_operator_overrides_win(fake_llm, settings):
    settings.LLM_TEMPERATURE = 0.0
    settings.LLM_TOP_K = 5
    chat()
    body = fake_llm.requests[0]
    assert body["temperature"] == 0.0 and body["top_k"] == 5 and body["top_p"] == 0.8


def test_cached_prompt_tokens_are_read(fake_llm):
    first, second = chat(), chat()
    assert first.cached_tokens == 0  # the prefix was new to the server
    assert 0 < second.cached_tokens < second.prompt_tokens


# --- Outages and the circuit breaker -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["error502", "error503", "loading"])
def test_outage_answers_are_retried(fake_llm, mode):
    fake_llm.script = [mode]
    reply = chat()
    assert reply.attempts == 2


@pytest.mark.parametrize("mode", ["error502", "error503", "loading", "rate_limited"])
def test_a_lasting_outage_is_model_unavailable_not_an_error(fake_llm, monkeypatch, mode):
    fake_llm.default = mode
    monkeypatch.setattr(fake_llm, "retry_after", "0")
    with pytest.raises(ModelUnavailable) as info:
        chat(max_retries=5, breaker_threshold=2)
    assert info.value.retryable
    assert len(fake_llm.requests) == 2  # the breaker opened: no third request


def test_open_breaker_sends_nothing_more(fake_llm):
    fake_llm.default = "error503"

    async def go():
        async with LLMClient(concurrency=4, breaker_threshold=3, max_retries=10) as llm:
            return await asyncio.gather(
                *(llm.chat(CONTEXT.messages(str(i)), schema=CONTEXT.schema()) for i in range(20)),
                return_exceptions=True,
            )

    outcomes = asyncio.run(go())
    assert all(isinstance(o, ModelUnavailable) for o in outcomes)
    # At most the requests already in flight when the third failure arrived.
    assert len(fake_llm.requests) <= 3 + 4


def test_a_replica_that_is_down_is_skipped(fake_llm, settings):
    down = FakeLLM()
    dead_url = down.url
    down.stop()
    settings.LLM_BACKOFF_BASE = 0.01

    async def go():
        async with LLMClient(
            base_url=f"{dead_url},{fake_llm.url}", concurrency=2, breaker_threshold=2
        ) as llm:
            replies = await asyncio.gather(
                *(llm.chat(CONTEXT.messages(str(i)), schema=CONTEXT.schema()) for i in range(8))
            )
            return replies, [e.usable for e in llm.endpoints]

    replies, usable = asyncio.run(go())
    assert len(replies) == 8 and len(fake_llm.requests) == 8
    assert usable == [False, True]  # the dead replica's breaker opened


def test_endpoints_are_listed_comma_separated(settings):
    settings.LLM_BASE_URL = "http://a:8000/v1/, http://b:8000/v1"
    assert endpoints() == ["http://a:8000/v1", "http://b:8000/v1"]
    settings.LLM_BASE_URL = ""
    assert endpoints() == []


# --- The model call in the pipeline -------------------------------------------------------------


def essay(assignment, essay_question, text, username="s1"):
    return submit(assignment, make_user(username), {essay_question: text}).answers.get()


def test_max_tokens_comes_from_the_schema_bounds(
    fake_llm, settings, grade_now, assignment, essay_question
):
    settings.LLM_MAX_TOKENS = 1024
    grade_now([essay(assignment, essay_question, GOOD)])
    body = fake_llm.requests[0]
    schema = body["response_format"]["json_schema"]["schema"]
    criteria = schema["properties"]["criteria"]["properties"]
    rationale = criteria["c1"]["properties"]["rationale"]["maxLength"]
    feedback = schema["properties"]["feedback"]["maxLength"]
    # The demo rubric's five criteria no longer allow 5 × 300 + 800 characters against
    # 1024 tokens: Chinese free text at a token a character fits, with the structure.
    assert 5 * rationale + feedback < 1024 - 100
    assert body["max_tokens"] <= 1024
    assert body["max_tokens"] >= 5 * rationale + feedback


def test_a_cut_off_reply_is_asked_again_with_shorter_limits(
    fake_llm, grade_now, assignment, essay_question
):
    fake_llm.script = ["truncated"]
    answer = essay(assignment, essay_question, GOOD)
    grade_now([answer])
    answer.refresh_from_db()
    assert answer.status == AnswerStatus.GRADED
    first, second = (r["response_format"]["json_schema"]["schema"] for r in fake_llm.requests)
    assert second["properties"]["feedback"]["maxLength"] == (
        first["properties"]["feedback"]["maxLength"] // 2
    )
    assert fake_llm.requests[0]["max_tokens"] == fake_llm.requests[1]["max_tokens"]
    cut = answer.assessments.get(status=AssessmentStatus.FAILED)
    assert "cut off at max_tokens" in cut.error


def test_raw_control_characters_are_accepted_and_cleaned(
    fake_llm, grade_now, assignment, essay_question
):
    fake_llm.script = ["control_chars"]
    answer = essay(assignment, essay_question, GOOD)
    grade_now([answer])
    answer.refresh_from_db()
    assert answer.status == AnswerStatus.GRADED and len(fake_llm.requests) == 1
    assessment = answer.current_assessment
    rationale = assessment.scores.order_by("criterion__order").first().rationale
    assert rationale == "Line one\nline two."
    assert assessment.feedback == "Good work\ttab."
    assert "\x00" not in assessment.raw_output and "\x01" not in assessment.raw_output


def test_cached_tokens_are_stored_and_shown(
    fake_llm, grade_now, client, teacher, assignment, essay_question
):
    answers = [essay(assignment, essay_question, f"{GOOD}（{i}）", f"s{i}") for i in range(4)]
    summary = grade_now(answers)
    cached = [
        a.current_assessment.cached_tokens
        for a in Answer.objects.filter(pk__in=[a.pk for a in answers])
    ]
    assert sorted(cached)[0] == 0 and all(c > 0 for c in sorted(cached)[1:])
    assert summary.cached_tokens == sum(cached)
    usage = selectors.assignment_usage(assignment=assignment)
    rate = 100 * usage["cached_tokens"] // usage["prompt_tokens"]
    assert rate > 0
    client.force_login(teacher)
    url = f"/grading/assignments/{assignment.pk}/"
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"{usage['prompt_tokens']} prompt tokens ({rate} % served from the prefix cache)" in page
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert f"（{rate} % 由前缀缓存提供）" in page


# --- Reply bounds and parsing ----------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("budget", [768, 1024, 4096])
def test_reply_bounds_fit_the_token_budget(language, budget):
    snapshot = {**RUBRIC, "criteria": RUBRIC["criteria"] * 3}  # six criteria
    bounds = reply_bounds(snapshot, language=language, token_budget=budget)
    per_char = TOKENS_PER_CHAR[language]
    free_text = 6 * bounds.rationale_max + bounds.feedback_max
    assert bounds.max_tokens <= budget
    assert bounds.max_tokens >= free_text * per_char  # the worst case is covered
    assert bounds.rationale_max <= RATIONALE_MAX and bounds.feedback_max <= FEEDBACK_MAX
    schema = reply_schema(snapshot, bounds)
    assert schema["properties"]["feedback"]["maxLength"] == bounds.feedback_max
    tighter = reply_bounds(snapshot, language=language, token_budget=budget, tighter=True)
    assert tighter.max_tokens == bounds.max_tokens
    assert tighter.rationale_max < bounds.rationale_max or tighter.rationale_max == RATIONALE_MIN


def test_a_budget_too_small_for_the_rubric_keeps_the_minimums():
    snapshot = {**RUBRIC, "criteria": RUBRIC["criteria"] * 6}  # twelve criteria
    bounds = reply_bounds(snapshot, language="zh-hans", token_budget=256)
    assert bounds.rationale_max == RATIONALE_MIN
    assert bounds.max_tokens > 256  # what the minimum needs, not a truncation by design


def test_reply_with_raw_control_characters_parses_clean():
    reply = FakeLLM.valid_reply(reply_schema(RUBRIC))
    reply["feedback"] = "Well done.\x0bMore\r\nexamples."
    text = json.dumps(reply).replace("\\u000b", "\x0b").replace("\\r\\n", "\r\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)  # what the strict parser said to vLLM's output
    proposal = parse_reply(text, RUBRIC)
    assert proposal.feedback == "Well done.More\nexamples."
