"""Scoring: from answers marked GRADING to stored proposals.

`answers_grade` is what a django-q2 task runs. For each answer it decides the
path: objective items are scored from the answer key; manual-only assignments,
questions without a rubric, unchanged inputs and blank answers are finished at
once; the rest go to the model, all concurrently on the process's engine
(`grading.llm.engine`), or to the offline rule engine when no model is
configured. Identical answers to one question are sent once, and inputs graded
before (same input hash) are reused, never re-sent. Every reply is validated
against the rubric; an invalid one is asked again, then the answer goes to
manual grading. A failure is never a zero. `grading.services.assessments`
stores what this module decides.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Literal

from django.conf import settings
from django.db.models import Prefetch

from courses.models import GradingMode, Question

from .. import llm, objective, rules, screening
from ..llm import ChatReply, ContextLengthExceeded, LLMClient, LLMError
from ..models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    Criterion,
    Scorer,
    Snapshot,
)
from ..prompts import PROMPT_VERSION, GradingContext, InvalidReply, Proposal, parse_reply
from . import assessments

logger = logging.getLogger(__name__)

PERSIST_BATCH = 64  # outcomes stored per transaction while the model keeps answering


@dataclass(frozen=True)
class Prepared:
    """A question ready for grading: its prompt context and stored snapshots."""

    context: GradingContext
    rubric_snapshot: Snapshot
    prompt_prefix: Snapshot


@dataclass
class Job:
    """One subjective answer on its way to a scorer."""

    answer: Answer
    prepared: Prepared
    input_hash: str
    injection: list[str]

    @property
    def context(self) -> GradingContext:
        return self.prepared.context


@dataclass
class CallRecord:
    """One model call (or rule-engine run), stored as one Assessment."""

    status: str
    raw_output: str = ""
    error: str = ""
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    model: str = ""
    attempt: int = 1


@dataclass
class Outcome:
    input_hash: str
    calls: list[CallRecord] = field(default_factory=list)
    proposal: Proposal | None = None
    confidence: float | None = None
    failure: str = ""


@dataclass(frozen=True)
class Immediate:
    """An answer finished without a model call; `kind` says why."""

    answer: Answer
    kind: Literal["objective", "manual", "unchanged", "blank"]
    reason: str = ""  # manual: why a teacher must grade it
    objective: objective.ObjectiveResult | None = None  # objective: the answer-key score
    prepared: Prepared | None = None  # blank: the question's rubric snapshot
    input_hash: str = ""  # blank: the input it was scored for


@dataclass
class GradeSummary:
    graded: int = 0
    needs_manual: int = 0
    approved: int = 0
    skipped: int = 0
    reused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _scorer() -> tuple[str, str]:
    if settings.LLM_BASE_URL:
        return Scorer.LLM, settings.LLM_MODEL
    return Scorer.RULES, rules.RULES_VERSION


def _input_hash(context: GradingContext, answer_text: str, scorer: str, model: str) -> str:
    # Everything the result depends on: the answer, the whole prompt prefix (rubric
    # snapshot, question, reference, guidelines), the prompt version and the model.
    h = hashlib.sha256()
    for part in (
        screening.normalize(answer_text),
        context.system_prompt,
        PROMPT_VERSION,
        scorer,
        model,
        str(settings.LLM_SAMPLES),
    ):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _load(answer_ids: list[int]) -> list[Answer]:
    criteria = Prefetch(
        "question__rubric__criteria",
        queryset=Criterion.objects.order_by("order", "id").prefetch_related("levels"),
    )
    return list(
        Answer.objects.filter(pk__in=answer_ids)
        .select_related(
            "question__rubric", "question__assignment", "submission", "current_assessment"
        )
        .prefetch_related(criteria)
        .order_by("pk")
    )


def answers_grade(*, answer_ids: list[int], force: bool = False) -> GradeSummary:
    """Grade the given answers. Safe to call twice: finished answers are skipped."""
    summary = GradeSummary()
    scorer, model = _scorer()
    prepared: dict[int, Prepared] = {}
    jobs: list[Job] = []
    immediate: list[Immediate] = []

    for answer in _load(answer_ids):
        if answer.status != AnswerStatus.GRADING:
            summary.skipped += 1  # finished by an earlier run of this task, or approved
            continue
        question = answer.question
        if not question.is_subjective:
            immediate.append(_objective_outcome(answer))
            continue
        if question.assignment.grading_mode == GradingMode.MANUAL:
            immediate.append(
                Immediate(answer, "manual", reason="this assignment is graded by teachers only")
            )
            continue
        if question.rubric is None:
            immediate.append(Immediate(answer, "manual", reason="the question has no rubric"))
            continue
        if question.pk not in prepared:
            prepared[question.pk] = _prepare(question)
        context = prepared[question.pk].context
        input_hash = _input_hash(context, answer.text, scorer, model)
        current = answer.current_assessment
        if (
            not force
            and current is not None
            and current.input_hash == input_hash
            and current.status == AssessmentStatus.COMPLETED
        ):
            immediate.append(Immediate(answer, "unchanged"))
            continue
        if screening.is_blank(answer.text):
            immediate.append(
                Immediate(answer, "blank", prepared=prepared[question.pk], input_hash=input_hash)
            )
            continue
        jobs.append(
            Job(answer, prepared[question.pk], input_hash, screening.injection_signals(answer.text))
        )

    assessments.answers_finish_immediate(items=immediate, summary=summary)

    # Identical normalized answers to the same question are graded once.
    leaders: dict[str, Job] = {}
    followers: dict[str, list[Job]] = {}
    for job in jobs:
        if job.input_hash in leaders:
            followers.setdefault(job.input_hash, []).append(job)
        else:
            leaders[job.input_hash] = job
    previous = {} if force else _previous_results(list(leaders))
    assessments.assessments_reuse(
        groups=[
            ([leaders.pop(input_hash), *followers.pop(input_hash, [])], assessment)
            for input_hash, assessment in previous.items()
        ],
        summary=summary,
    )

    if not leaders:
        return summary
    outcomes = (
        llm.engine().map_unordered(_call_model, list(leaders.values()), on_error=_crashed)
        if scorer == Scorer.LLM
        else (_rules_outcome(job) for job in leaders.values())
    )

    def store(batch: list[Outcome]) -> None:
        assessments.assessments_store(
            outcomes=batch, leaders=leaders, followers=followers, scorer=scorer, summary=summary
        )

    batch: list[Outcome] = []
    for outcome in outcomes:
        batch.append(outcome)
        if len(batch) >= PERSIST_BATCH:
            store(batch)
            batch = []
    if batch:
        store(batch)
    return summary


def _prepare(question: Question) -> Prepared:
    if question.rubric is None:  # refused by Question.clean; data from before that rule
        raise ValueError(f"question {question.pk} has no rubric to grade against")
    context = GradingContext(
        language=question.assignment.language,
        question=question.prompt,
        reference_answer=question.reference_answer,
        guidelines=question.grader_guidelines,
        rubric=question.rubric.snapshot(),
    )
    prefix = context.messages("")[:-1]  # everything before the student's message
    return Prepared(context, Snapshot.store(context.rubric), Snapshot.store(prefix))


def _objective_outcome(answer: Answer) -> Immediate:
    q = answer.question
    try:
        result = objective.score(
            kind=q.kind,
            answer_key=q.answer_key,
            points=q.points,
            text=answer.text,
            choices=list(answer.choices or []),
        )
    except objective.AnswerKeyError as exc:
        return Immediate(answer, "manual", reason=f"answer key problem: {exc}")
    return Immediate(answer, "objective", objective=result)


def _previous_results(hashes: list[str]) -> dict[str, Assessment]:
    """Completed assessments of identical inputs from earlier runs: reuse, don't re-send."""
    found: dict[str, Assessment] = {}
    for assessment in (
        Assessment.objects.filter(
            input_hash__in=hashes, status=AssessmentStatus.COMPLETED, reused_from__isnull=True
        )
        .prefetch_related("scores")
        .order_by("-created_at")
    ):
        found.setdefault(assessment.input_hash, assessment)
    return found


# --- Calling the model ------------------------------------------------------------------


def _crashed(job: Job, exc: BaseException) -> Outcome:
    # An unexpected error (or cancellation) ends as manual grading, never as a lost answer.
    logger.error("grading answer %s failed", job.answer.pk, exc_info=exc)
    return Outcome(job.input_hash, failure=f"internal error: {exc!r}")


async def _call_model(llm: LLMClient, job: Job) -> Outcome:
    outcome = Outcome(job.input_hash)
    messages = job.context.messages(job.answer.text)
    schema = job.context.schema()
    for attempt in range(1, settings.LLM_INVALID_RETRIES + 2):
        try:
            reply = await llm.chat(
                messages, schema=schema, n=settings.LLM_SAMPLES, seed=settings.LLM_SEED
            )
        except ContextLengthExceeded as exc:
            outcome.calls.append(
                CallRecord(AssessmentStatus.FAILED, error=str(exc), attempt=attempt)
            )
            outcome.failure = f"answer too long for the model: {exc}"
            return outcome
        except LLMError as exc:
            outcome.calls.append(
                CallRecord(AssessmentStatus.FAILED, error=str(exc), attempt=attempt)
            )
            outcome.failure = f"model unavailable: {exc}"
            return outcome
        proposals, problems = _parse_choices(reply, job)
        record = CallRecord(
            AssessmentStatus.COMPLETED if proposals else AssessmentStatus.FAILED,
            raw_output="\n---\n".join(reply.contents),
            error="; ".join(problems),
            latency_ms=reply.latency_ms,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            cached_tokens=reply.cached_tokens,
            model=reply.model,
            attempt=attempt,
        )
        outcome.calls.append(record)
        if proposals:
            outcome.proposal, outcome.confidence = _aggregate(proposals, job)
            return outcome
    outcome.failure = (
        f"no valid reply after {settings.LLM_INVALID_RETRIES + 1} attempts: "
        f"{outcome.calls[-1].error}"
    )
    return outcome


def _parse_choices(reply: ChatReply, job: Job) -> tuple[list[Proposal], list[str]]:
    proposals: list[Proposal] = []
    problems: list[str] = []
    for content, finish in zip(reply.contents, reply.finish_reasons, strict=False):
        try:
            proposals.append(parse_reply(content, job.context.rubric))
        except InvalidReply as exc:
            cut = " (reply cut off at max_tokens)" if finish == "length" else ""
            problems.append(f"{exc}{cut}")
    return proposals, problems


def _aggregate(proposals: list[Proposal], job: Job) -> tuple[Proposal, float | None]:
    """Self-consistency: per-criterion median; the spread between samples gives a confidence."""
    if len(proposals) == 1:
        return proposals[0], None
    criteria = job.context.rubric["criteria"]
    scores = [
        int(statistics.median_low(p.scores[i] for p in proposals)) for i in range(len(criteria))
    ]
    spreads = [
        (max(p.scores[i] for p in proposals) - min(p.scores[i] for p in proposals))
        / c["max_points"]
        for i, c in enumerate(criteria)
    ]
    confidence = round(max(0.0, 1.0 - statistics.fmean(spreads)), 3)
    # Rationale and feedback from the sample closest to the median scores.
    closest = min(
        proposals, key=lambda p: sum(abs(a - b) for a, b in zip(p.scores, scores, strict=True))
    )
    flags = frozenset().union(*(p.flags for p in proposals))
    return Proposal(scores, closest.rationales, closest.feedback, flags), confidence


def _rules_outcome(job: Job) -> Outcome:
    started = time.perf_counter()
    proposal = rules.propose(
        snapshot=job.context.rubric,
        question=job.context.question,
        reference=job.context.reference_answer,
        answer=job.answer.text,
        language=job.context.language,
    )
    record = CallRecord(
        AssessmentStatus.COMPLETED,
        latency_ms=int((time.perf_counter() - started) * 1000),
        model=rules.RULES_VERSION,
    )
    return Outcome(job.input_hash, [record], proposal, rules.RULES_CONFIDENCE)
