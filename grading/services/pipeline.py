"""Scoring: from answers marked GRADING to stored proposals.

`answers_grade` is what a django-q2 task runs. For each answer it decides the
path: objective items are scored from the answer key; manual-only assignments,
questions without a rubric, unchanged inputs and blank answers are finished at
once; the rest go to the model, all concurrently on the process's engine
(`grading.llm.engine`), or to the offline rule engine when no model is
configured. Identical answers to one question are sent once, and inputs graded
before (same input hash) are reused, never re-sent. Every reply is validated
against the rubric; an invalid one is asked again (one cut off at max_tokens
with shorter free-text limits), then the answer goes to manual grading. A
failure is never a zero. `grading.services.assessments` stores what this
module decides.

Two outcomes are nobody's verdict and are not stored: the model is down
(`ModelUnavailable`: the answer waits for it) and the chunk ran out of time to
send (`NotSent`: the answer goes back to the queue). The summary lists both;
`grading.services.queue.answers_grade_chunk` acts on them.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db.models import Prefetch

from courses.models import GradingMode, Question
from courses.text import clean_text

from .. import calibration, llm, objective, rules, screening, webhooks
from ..llm import ChatReply, ContextLengthExceeded, LLMClient, LLMError, ModelUnavailable, NotSent
from ..models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    Criterion,
    FinalGrade,
    GradeSource,
    Scorer,
    Snapshot,
)
from ..prompts import (
    PROMPT_VERSION,
    GradingContext,
    InvalidReply,
    Proposal,
    parse_reply,
    select_exemplars,
)
from . import assessments

logger = logging.getLogger(__name__)

PERSIST_BATCH = 64  # outcomes stored per transaction while the model keeps answering


@dataclass(frozen=True)
class Prepared:
    """A question ready for grading: its prompt context and stored snapshots."""

    context: GradingContext
    rubric_snapshot: Snapshot
    prompt_prefix: Snapshot
    # The offline engine's per-question model, calibrated on the teacher's graded answers
    # (None: fewer than CALIBRATION_MIN, the zero-shot engine grades). `exemplar_key` is in the
    # input hash, so a new or changed teacher grade makes the question's answers regradable.
    calibrated: calibration.QuestionModel | None = field(default=None, compare=False)
    exemplar_key: str = ""


@dataclass
class Job:
    """One subjective answer on its way to a scorer."""

    answer: Answer
    prepared: Prepared
    input_hash: str
    injection: list[str]

    @property
    def context(self) -> GradingContext:
        # The question's shared context, or, for an answer that is itself one of the
        # prompt's exemplars, the same context without it (it never grades itself).
        return self.prepared.context.without(self.answer.pk)


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
    # Not a verdict, nothing stored: "waiting" for the model to come back, or "unsent"
    # because the chunk's time to send ran out.
    postponed: Literal["", "waiting", "unsent"] = ""


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
    cached_tokens: int = 0
    waiting: list[int] = field(default_factory=list)  # answers waiting for the model
    unsent: list[int] = field(default_factory=list)  # answers to queue again


def _scorer() -> tuple[str, str]:
    if settings.LLM_BASE_URL:
        return Scorer.LLM, settings.LLM_MODEL
    return Scorer.RULES, rules.RULES_VERSION


def _input_hash(
    context: GradingContext, answer_text: str, scorer: str, model: str, exemplar_key: str = ""
) -> str:
    # Everything the result depends on: the answer, the whole prompt prefix (rubric
    # snapshot, question, reference, guidelines), the prompt version and the model; for
    # the offline engine also the teacher-graded exemplars it is calibrated on.
    h = hashlib.sha256()
    for part in (
        screening.normalize(answer_text),
        context.system_prompt,
        PROMPT_VERSION,
        scorer,
        model,
        str(settings.LLM_SAMPLES),
        exemplar_key,
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
        context = prepared[question.pk].context.without(answer.pk)
        input_hash = _input_hash(
            context,
            answer.text,
            scorer,
            model,
            prepared[question.pk].exemplar_key if scorer == Scorer.RULES else "",
        )
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
        webhooks.answers_finished_emit(answer_ids=answer_ids)
        return summary
    # Half the task's timeout to start requests, half for the last ones to finish: a
    # task never runs into Q_TIMEOUT waiting for a slot.
    send_until = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    outcomes = (
        llm.engine().map_unordered(
            _call_model, list(leaders.values()), on_error=_crashed, send_until=send_until
        )
        if scorer == Scorer.LLM
        else (_rules_outcome(job) for job in leaders.values())
    )

    def store(batch: list[Outcome]) -> None:
        assessments.assessments_store(
            outcomes=batch, leaders=leaders, followers=followers, scorer=scorer, summary=summary
        )

    batch: list[Outcome] = []
    for outcome in outcomes:
        if outcome.postponed:
            group = [leaders.pop(outcome.input_hash), *followers.pop(outcome.input_hash, [])]
            ids = [job.answer.pk for job in group]
            (summary.waiting if outcome.postponed == "waiting" else summary.unsent).extend(ids)
            continue
        batch.append(outcome)
        if len(batch) >= PERSIST_BATCH:
            store(batch)
            batch = []
    if batch:
        store(batch)
    webhooks.answers_finished_emit(answer_ids=answer_ids)
    return summary


def _prepare(question: Question) -> Prepared:
    if question.rubric is None:  # refused by Question.clean; data from before that rule
        raise ValueError(f"question {question.pk} has no rubric to grade against")
    rubric = question.rubric.snapshot()
    language = question.assignment.language
    exemplars = question_exemplars(question=question, snapshot=rubric)
    context = GradingContext(
        language=language,
        question=question.prompt,
        reference_answer=question.reference_answer,
        guidelines=question.grader_guidelines,
        rubric=rubric,
        # The model sees a balanced few of them in the shared prefix (prefix cache); the
        # offline engine below learns from all of them.
        exemplars=select_exemplars(exemplars, language=language)
        if _scorer()[0] == Scorer.LLM
        else (),
    )
    prefix = context.messages("")[:-1]  # everything before the student's message
    # Below CALIBRATION_MIN graded answers the zero-shot engine grades, and the exemplar
    # set is no part of the input: a first teacher grade makes nothing regradable.
    calibrated = (
        calibration.question_model(
            context.rubric,
            context.question,
            context.reference_answer,
            context.language,
            exemplars,
        )
        if len(exemplars) >= calibration.CALIBRATION_MIN
        else None
    )
    return Prepared(
        context,
        Snapshot.store(context.rubric),
        Snapshot.store(prefix),
        calibrated=calibrated,
        exemplar_key=calibration.exemplars_key(exemplars) if calibrated else "",
    )


def question_exemplars(
    *, question: Question, snapshot: dict[str, Any]
) -> tuple[calibration.Exemplar, ...]:
    """The question's teacher-graded answers scored against this rubric snapshot: grades a
    teacher accepted, overrode or gave by hand (never the answer key's), per criterion in
    the snapshot's order; a grade given under other criteria (an edited rubric) and an
    answer the teacher excluded are left out, a pinned one is marked. The most recent
    EXEMPLARS_MAX, in answer order (deterministic)."""
    criterion_ids = [c["id"] for c in snapshot["criteria"]]
    grades = (
        FinalGrade.objects.filter(
            answer__question=question,
            source__in=[GradeSource.AI_ACCEPTED, GradeSource.OVERRIDE, GradeSource.MANUAL],
        )
        .exclude(answer__exemplar_choice__pinned=False)
        .select_related("answer__exemplar_choice")
        .prefetch_related("criteria")
        .order_by("-approved_at", "-pk")[: calibration.EXEMPLARS_MAX]
    )
    found: list[calibration.Exemplar] = []
    for grade in grades:
        points = {c.criterion_id: c.points for c in grade.criteria.all()}
        if set(points) != set(criterion_ids) or screening.is_blank(grade.answer.text):
            continue
        found.append(
            calibration.Exemplar(
                grade.answer.text,
                tuple(points[cid] for cid in criterion_ids),
                answer_id=grade.answer_id,
                pinned=hasattr(grade.answer, "exemplar_choice"),  # excluded ones are gone
            )
        )
    return tuple(sorted(found, key=lambda e: e.answer_id or 0))


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
    # The schema's free text is sized so that its worst case fits LLM_MAX_TOKENS, and
    # max_tokens is that worst case; a reply cut off anyway is asked again, once, with
    # half the free text and the same max_tokens.
    bounds = job.context.bounds(settings.LLM_MAX_TOKENS)
    schema = job.context.schema(bounds)
    tightened = False
    for attempt in range(1, settings.LLM_INVALID_RETRIES + 2):
        try:
            reply = await llm.chat(
                messages,
                schema=schema,
                n=settings.LLM_SAMPLES,
                seed=settings.LLM_SEED,
                max_tokens=bounds.max_tokens,
            )
        except ModelUnavailable:
            return Outcome(job.input_hash, postponed="waiting")
        except NotSent:
            return Outcome(job.input_hash, postponed="unsent")
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
            # What the model said, kept for the teacher: without the raw control characters
            # a JSON grammar lets through (PostgreSQL refuses NUL in text).
            raw_output=clean_text("\n---\n".join(reply.contents)),
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
        if "length" in reply.finish_reasons and not tightened:
            bounds = job.context.bounds(settings.LLM_MAX_TOKENS, tighter=True)
            schema, tightened = job.context.schema(bounds), True
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
    calibrated = job.prepared.calibrated
    if calibrated is not None and calibrated.calibrates(exclude=job.answer.pk):
        # An exemplar never grades itself: a regraded exemplar is scored by the others.
        proposal, confidence = calibrated.propose(job.answer.text, exclude=job.answer.pk)
        version = calibration.CALIBRATED_VERSION
    else:
        proposal = rules.propose(
            snapshot=job.context.rubric,
            question=job.context.question,
            reference=job.context.reference_answer,
            answer=job.answer.text,
            language=job.context.language,
        )
        confidence, version = rules.RULES_CONFIDENCE, rules.RULES_VERSION
    record = CallRecord(
        AssessmentStatus.COMPLETED,
        latency_ms=int((time.perf_counter() - started) * 1000),
        model=version,
    )
    return Outcome(job.input_hash, [record], proposal, confidence)
