"""The demo assignments through the real vLLM (the CPU build) and a tiny random Qwen3.

What the look-alike servers cannot show: vLLM's own structured outputs (xgrammar, no
free whitespace, as docker/ runs it), its usage report with cached prompt tokens, and
its answer to a prompt over --max-model-len. Random weights: every assertion is about
validity, statuses and counts, never scores.

Marked `vllm`; MARKWISE_SKIP_VLLM=1 skips the group. The first run installs vLLM into a
cache outside the repository (several minutes, tests/vllm_server.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest
from django.conf import settings

from courses.management.commands.seed_demo import seed
from courses.models import Language, Question, QuestionKind
from grading import screening, services
from grading.llm import LLMClient, check_health
from grading.models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    Criterion,
    Rubric,
    Scorer,
)
from grading.prompts import GradingContext, parse_reply

from .conftest import make_user, submit
from .vllm_server import VllmServer, ensure_installed

MODEL_ID = "Qwen/Qwen3-4B-Instruct-2507"
MAX_MODEL_LEN = 8192

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(os.environ.get("MARKWISE_SKIP_VLLM") == "1", reason="MARKWISE_SKIP_VLLM=1"),
]


@pytest.fixture(scope="module")  # stopped as soon as this group is done: it holds GBs
def vllm(tmp_path_factory):
    python, model = ensure_installed()
    work = tmp_path_factory.mktemp("vllm")
    server = VllmServer(
        python, model, alias=MODEL_ID, log=work / "vllm.log", max_model_len=MAX_MODEL_LEN
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_vllm(vllm, settings):
    settings.LLM_BASE_URL = vllm.url
    settings.LLM_MODEL = MODEL_ID
    settings.LLM_TIMEOUT = 300.0  # a whole batch shares one CPU core
    settings.LLM_MAX_CONCURRENCY = 16  # the cluster-wide budget: as many as max-num-seqs
    settings.LLM_BACKOFF_BASE = 0.05
    settings.LLM_INVALID_RETRIES = 1
    settings.LLM_SAMPLES = 1
    # The free text's bounds follow the token budget (grading/prompts.py): a smaller
    # budget keeps a random model's replies, which fill every string to its limit, short.
    settings.LLM_MAX_TOKENS = 512
    # No per-request seed: vLLM 0.32.0's CPU runner then kills its engine whenever a
    # prefill is split into chunks ("CPU Generator does not use offset").
    settings.LLM_SEED = None
    return vllm


def demo_context(question: Question) -> GradingContext:
    assert question.rubric is not None
    return GradingContext(
        language=question.assignment.language,
        question=question.prompt,
        reference_answer=question.reference_answer,
        guidelines=question.grader_guidelines,
        rubric=question.rubric.snapshot(),
    )


def test_health_check_sees_the_served_model(on_vllm):
    report = check_health()
    assert report.reachable and report.serving_model, report.error


def test_schema_constrained_replies_parse_and_the_prefix_cache_is_reported(on_vllm, db):
    seed()
    question = Question.objects.get(kind=QuestionKind.ESSAY, assignment__title__contains="期中")
    context = demo_context(question)

    # As the pipeline asks: free text bounded to fit the token budget, max_tokens its
    # worst case (estimated per character; here counted by the real Qwen tokenizer).
    bounds = context.bounds(settings.LLM_MAX_TOKENS)
    schema = context.schema(bounds)

    async def go():
        async with LLMClient(concurrency=2) as llm:
            first = await llm.chat(
                context.messages("那一刻，我长大了。"), schema=schema, max_tokens=bounds.max_tokens
            )
            # The same system prefix (rules, rubric, question, reference): vLLM reuses it.
            second = await llm.chat(
                context.messages("我学会了做饭。"), schema=schema, max_tokens=bounds.max_tokens
            )
            return first, second

    first, second = asyncio.run(go())
    assert first.prompt_tokens > 500 and first.completion_tokens > 0
    assert second.cached_tokens > 0, "vLLM reports no cached tokens: --enable-prompt-tokens-details"
    for reply in (first, second):
        assert reply.finish_reasons == ["stop"]
        # Raw control characters inside strings are legal under vLLM's grammar; the
        # parser must take them rather than send the answer to a teacher.
        parse_reply(reply.contents[0], question.rubric.snapshot())


def test_demo_assignments_grade_through_real_vllm(
    on_vllm, db, django_capture_on_commit_callbacks, capsys
):
    with django_capture_on_commit_callbacks(execute=False):  # graded here, not by a cluster
        seed()
    answers = Answer.objects.filter(submission__assignment__course__code__in=["CHN-8A", "SCI-8A"])
    ids = list(answers.values_list("pk", flat=True))
    subjective = answers.filter(
        question__kind__in=[QuestionKind.ESSAY, QuestionKind.SHORT_ANSWER]
    ).select_related("current_assessment", "question")
    assert subjective.count() == 46  # 25 essays and 21 short answers
    to_model = [a.pk for a in subjective if not screening.is_blank(a.text)]

    started = time.monotonic()
    services.answers_grade(answer_ids=ids)
    wall = time.monotonic() - started

    outcome = Counter(subjective.values_list("status", flat=True))
    reasons = Counter(
        a.status_reason.split(":")[0] for a in subjective if a.status == AnswerStatus.NEEDS_MANUAL
    )
    runs = list(Assessment.objects.filter(answer__in=to_model, scorer=Scorer.LLM))
    cached = sum(r.cached_tokens or 0 for r in runs)
    prompt = sum(r.prompt_tokens or 0 for r in runs)
    completion = sum(r.completion_tokens or 0 for r in runs)
    with capsys.disabled():  # the figures belong in the test output, pass or fail
        print(
            f"\nvLLM demo grading: {len(to_model)} of {len(ids)} answers to the model in "
            f"{wall:.0f}s: graded={outcome[AnswerStatus.GRADED]} "
            f"needs_manual={outcome[AnswerStatus.NEEDS_MANUAL]} {dict(reasons)}; "
            f"{len(runs)} model runs, prompt tokens {prompt} ({cached} cached), "
            f"completion tokens {completion}"
        )
    failed = [r.error for r in runs if r.status != AssessmentStatus.COMPLETED]
    assert not [e for e in failed if "control character" in e or "not valid JSON" in e], failed
    # The grammar guarantees the schema and max_tokens covers its worst case: every
    # answer gets a proposal, nothing is left to the teachers.
    assert outcome == {AnswerStatus.GRADED: 46}, (dict(reasons), failed[:5])
    assert len(runs) == len(to_model) > 40  # one request each: no reply was refused
    for answer in subjective.filter(pk__in=to_model):
        current = answer.current_assessment
        assert current.model == MODEL_ID and current.status == AssessmentStatus.COMPLETED
        scores = list(current.scores.all())
        assert scores and all(0 <= s.points <= s.max_points for s in scores)
        assert current.total == sum(s.points for s in scores)
        assert current.prompt_tokens and current.completion_tokens
    # Every answer to a question shares the prompt's prefix (rules, rubric, question,
    # reference): after the first, the server serves most of it from its cache.
    assert cached > prompt / 2


def test_prompt_over_max_model_len_is_one_request_and_a_clear_status(on_vllm, assignment):
    assignment.language = Language.EN
    assignment.save()
    rubric = Rubric.objects.create(title="Moon phases", language="en")
    Criterion.objects.create(rubric=rubric, order=1, title="Accuracy", max_points=4)
    question = Question.objects.create(
        assignment=assignment,
        order=1,
        kind=QuestionKind.SHORT_ANSWER,
        prompt="Why does the Moon have phases?",
        rubric=rubric,
        reference_answer="It reflects sunlight; we see varying parts of its lit half.",
    )
    answer = submit(
        assignment, make_user("long"), {question: "The Moon is bright tonight. " * 2500}
    ).answers.get()
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.GRADING)
    refused_before = on_vllm.chat_requests(status=400)

    services.answers_grade(answer_ids=[answer.pk])

    answer.refresh_from_db()
    assert answer.status == AnswerStatus.NEEDS_MANUAL
    assert "too long for the model" in answer.status_reason
    assert "maximum context length" in answer.status_reason  # vLLM's own words, kept
    # Retrying cannot make it fit: one request, not a retry loop.
    assert on_vllm.chat_requests(status=400) - refused_before == 1
