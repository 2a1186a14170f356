"""Grading rules. The only code that writes assessments and grades.

Flow: `submission_submit` / `assignment_grade` mark answers GRADING and, on
commit, enqueue django-q2 tasks of `chunk_size()` answers each. A task calls
`answers_grade`, which scores objective answers in-process, screens
subjective ones, sends the rest to the model concurrently (or to the rule
engine when no model is configured), validates every reply, and stores one
Assessment per model call. Every answer ends GRADED (a proposal to review),
NEEDS_MANUAL (with the reason) or APPROVED (objective). A failure is never a
zero, and a task that runs twice changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Prefetch, Sum
from django.utils import timezone
from django.utils.translation import gettext

from courses.models import Assignment, GradingMode, Question, ReleasePolicy
from courses.models import User as UserModel

from . import objective, rules, screening
from .audit import audit_record, audit_record_many
from .llm import ChatReply, ContextLengthExceeded, LLMClient, LLMError
from .models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    Criterion,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    GradeSource,
    RegradeRequest,
    RegradeStatus,
    Scorer,
    Snapshot,
    Submission,
    SubmissionStatus,
    sha256_hex,
)
from .prompts import PROMPT_VERSION, GradingContext, InvalidReply, Proposal, parse_reply

logger = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.6
PERSIST_BATCH = 64
TASK_FUNC = "grading.tasks.grade_answers"
TASK_HOOK = "grading.tasks.grading_finished"


# --- Enqueueing ----------------------------------------------------------------------


def per_worker_concurrency() -> int:
    """LLM_MAX_CONCURRENCY is for the whole cluster; each worker gets its share."""
    workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
    return max(1, settings.LLM_MAX_CONCURRENCY // workers)


def chunk_size() -> int:
    # A whole number of rounds per chunk keeps every slot busy until the chunk ends.
    return settings.GRADING_CHUNK_SIZE or 4 * per_worker_concurrency()


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def answers_enqueue(*, answer_ids: Iterable[int], force: bool = False) -> int:
    """Mark answers GRADING and enqueue their grading once the transaction commits.

    Approved answers are left alone: a teacher's grade is never replaced by a
    new proposal behind their back.
    """
    from django_q.tasks import async_task

    now = timezone.now()
    ids = sorted(
        Answer.objects.filter(pk__in=list(answer_ids))
        .exclude(status=AnswerStatus.APPROVED)
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    Answer.objects.filter(pk__in=ids).update(
        status=AnswerStatus.GRADING, grading_started_at=now, status_reason="", updated_at=now
    )

    def enqueue() -> None:
        for chunk in _chunks(ids, chunk_size()):
            async_task(TASK_FUNC, chunk, force=force, hook=TASK_HOOK)

    transaction.on_commit(enqueue)
    return len(ids)


def submission_submit(*, submission: Submission, actor: UserModel | None = None) -> Submission:
    """Hand in a submission; grading starts after the commit, never inside the request."""
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission.pk)
        if submission.status == SubmissionStatus.SUBMITTED:
            return submission
        now = timezone.now()
        submission.status = SubmissionStatus.SUBMITTED
        submission.submitted_at = now
        submission.is_late = submission.assignment.is_past_due(now)
        submission.save(update_fields=["status", "submitted_at", "is_late", "updated_at"])
        audit_record(
            actor=actor,
            action="submission.submitted",
            target=submission,
            after={"attempt": submission.attempt, "late": submission.is_late},
            assignment_id=submission.assignment_id,
            submission_id=submission.pk,
        )
        answers_enqueue(answer_ids=submission.answers.values_list("pk", flat=True))
    return submission


def assignment_grade(
    *, assignment: Assignment, actor: UserModel | None = None, force: bool = False
) -> int:
    """Grade (or regrade) every submitted answer of an assignment. Returns how many were queued."""
    with transaction.atomic():
        ids = Answer.objects.filter(
            submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
        ).values_list("pk", flat=True)
        count = answers_enqueue(answer_ids=ids, force=force)
        audit_record(
            actor=actor,
            action="assignment.grading_requested",
            target=assignment,
            after={"answers": count, "force": force},
            assignment_id=assignment.pk,
        )
    return count


def objective_answers_rescore(*, question: Question) -> int:
    """Score a question's handed-in answers again with its current (corrected) answer key.

    Objective scores are exact and final at once, so this runs now, in-process — no
    model, microseconds an answer — through the same path as grading, audited per answer.
    """
    if question.is_subjective:
        return 0
    ids = list(
        Answer.objects.filter(
            question=question, submission__status=SubmissionStatus.SUBMITTED
        ).values_list("pk", flat=True)
    )
    if ids:
        Answer.objects.filter(pk__in=ids).update(
            status=AnswerStatus.GRADING, grading_started_at=timezone.now()
        )
        answers_grade(answer_ids=ids, force=True)
    return len(ids)


def answers_requeue_stuck(*, older_than: timedelta | None = None) -> int:
    """Re-enqueue answers left GRADING past the task timeout (a worker died, a broker lost it).

    After GRADING_MAX_REQUEUES tries an answer goes to manual grading instead,
    so nothing hangs forever and nothing is silently dropped.
    """
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.Q_CLUSTER["retry"] + 60))
    stuck = Answer.objects.filter(status=AnswerStatus.GRADING, grading_started_at__lt=cutoff)
    with transaction.atomic():
        exhausted = list(
            stuck.filter(grading_requeues__gte=settings.GRADING_MAX_REQUEUES).values_list(
                "pk", flat=True
            )
        )
        if exhausted:
            answers_mark_failed(
                answer_ids=exhausted,
                reason=f"grading did not finish after {settings.GRADING_MAX_REQUEUES} tries",
            )
        retry_ids = list(stuck.values_list("pk", flat=True))
        Answer.objects.filter(pk__in=retry_ids).update(grading_requeues=F("grading_requeues") + 1)
        answers_enqueue(answer_ids=retry_ids)
    return len(retry_ids)


def answers_mark_failed(*, answer_ids: Iterable[int], reason: str) -> int:
    """Answers whose grading crashed go to manual grading with the reason (never a zero)."""
    now = timezone.now()
    ids = list(
        Answer.objects.filter(pk__in=list(answer_ids), status=AnswerStatus.GRADING).values_list(
            "pk", flat=True
        )
    )
    Answer.objects.filter(pk__in=ids).update(
        status=AnswerStatus.NEEDS_MANUAL,
        status_reason=reason[:2000],
        grading_started_at=None,
        updated_at=now,
    )
    audit_record_many(
        [
            {
                "action": "answer.needs_manual",
                "target_type": "grading.answer",
                "target_id": pk,
                "after": {"reason": reason[:500]},
            }
            for pk in ids
        ]
    )
    return len(ids)


# --- Grading --------------------------------------------------------------------------


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
    immediate: list[tuple[Answer, dict[str, Any]]] = []

    for answer in _load(answer_ids):
        if answer.status != AnswerStatus.GRADING:
            summary.skipped += 1  # finished by an earlier run of this task, or approved
            continue
        question = answer.question
        if not question.is_subjective:
            immediate.append((answer, _objective_outcome(answer)))
            continue
        if question.assignment.grading_mode == GradingMode.MANUAL:
            immediate.append((answer, {"manual": "this assignment is graded by teachers only"}))
            continue
        if question.rubric is None:
            immediate.append((answer, {"manual": "the question has no rubric"}))
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
            immediate.append((answer, {"unchanged": True}))
            continue
        if screening.is_blank(answer.text):
            immediate.append((answer, {"blank": (prepared[question.pk], input_hash)}))
            continue
        jobs.append(
            Job(answer, prepared[question.pk], input_hash, screening.injection_signals(answer.text))
        )

    _persist_immediate(immediate, summary)

    # Identical normalized answers to the same question are graded once.
    leaders: dict[str, Job] = {}
    followers: dict[str, list[Job]] = {}
    for job in jobs:
        if job.input_hash in leaders:
            followers.setdefault(job.input_hash, []).append(job)
        else:
            leaders[job.input_hash] = job
    previous = {} if force else _previous_results(list(leaders))
    _persist_reuse(
        [
            ([leaders.pop(input_hash), *followers.pop(input_hash, [])], assessment)
            for input_hash, assessment in previous.items()
        ],
        summary,
    )

    if not leaders:
        return summary
    outcomes = (
        _llm_outcomes(list(leaders.values()))
        if scorer == Scorer.LLM
        else (_rules_outcome(job) for job in leaders.values())
    )
    batch: list[Outcome] = []
    for outcome in outcomes:
        batch.append(outcome)
        if len(batch) >= PERSIST_BATCH:
            _persist_outcomes(batch, leaders, followers, scorer, summary)
            batch = []
    if batch:
        _persist_outcomes(batch, leaders, followers, scorer, summary)
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


def _objective_outcome(answer: Answer) -> dict[str, Any]:
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
        return {"manual": f"answer key problem: {exc}"}
    return {"objective": result}


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


class _Engine:
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

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.run(self.client.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _engine_now() -> _Engine:
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
            if _engine is not None and _engine.key[-1] == os.getpid():
                _engine.close()
            _engine = _Engine(key)
        return _engine


def _llm_outcomes(jobs: list[Job]) -> Iterator[Outcome]:
    """Send every job concurrently; yield outcomes in the calling thread as they finish."""
    engine = _engine_now()
    results: queue.Queue[Outcome] = queue.Queue()

    async def one(job: Job) -> None:
        try:
            results.put(await _call_model(engine.client, job))
        except BaseException as exc:  # never lose an answer, even to cancellation
            logger.exception("grading answer %s failed", job.answer.pk)
            results.put(Outcome(job.input_hash, failure=f"internal error: {exc!r}"))
            if not isinstance(exc, Exception):
                raise

    for job in jobs:
        asyncio.run_coroutine_threadsafe(one(job), engine.loop)
    for _ in jobs:
        yield results.get()


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


# --- Persisting -----------------------------------------------------------------------------


def _flags_for(proposal: Proposal, job: Job, confidence: float | None) -> list[str]:
    flags = set(proposal.flags)
    if job.injection:
        flags.add("prompt_injection_suspected")  # whatever the model said
    if confidence is not None and confidence < LOW_CONFIDENCE:
        flags.add("low_confidence")
    return sorted(flags)


def _assessment_for(
    job: Job, record: CallRecord, scorer: str, outcome: Outcome, final: bool
) -> Assessment:
    snapshot = job.context.rubric
    proposal = outcome.proposal if final and record.status == AssessmentStatus.COMPLETED else None
    result: dict[str, Any] = {}
    if proposal is not None:
        result = {
            "scores": proposal.scores,
            "flags": sorted(proposal.flags),
        }
        if job.injection:
            result["injection_signals"] = job.injection
    return Assessment(
        answer=job.answer,
        scorer=scorer,
        status=record.status if proposal is not None else AssessmentStatus.FAILED,
        model=record.model or (settings.LLM_MODEL if scorer == Scorer.LLM else ""),
        prompt_version=PROMPT_VERSION if scorer == Scorer.LLM else rules.RULES_VERSION,
        prompt_prefix=job.prepared.prompt_prefix if scorer == Scorer.LLM else None,
        prompt=job.context.messages(job.answer.text)[-1]["content"] if scorer == Scorer.LLM else "",
        raw_output=record.raw_output,
        result=result,
        feedback=proposal.feedback if proposal else "",
        flags=_flags_for(proposal, job, outcome.confidence) if proposal else [],
        confidence=outcome.confidence if proposal else None,
        total=proposal.total() if proposal else None,
        max_total=sum(c["max_points"] for c in snapshot["criteria"]),
        rubric_snapshot=job.prepared.rubric_snapshot,
        input_hash=job.input_hash,
        latency_ms=record.latency_ms,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        attempt=record.attempt,
        error=record.error,
    )


def _scores_for(assessment: Assessment, proposal: Proposal) -> list[CriterionScore]:
    snapshot = assessment.rubric_snapshot
    if snapshot is None:  # a scored assessment always names the rubric it was scored with
        raise ValueError(f"assessment of answer {assessment.answer_id} has no rubric snapshot")
    return [
        CriterionScore(
            assessment=assessment,
            criterion_id=c["id"],
            points=points,
            max_points=c["max_points"],
            rationale=rationale,
        )
        for c, points, rationale in zip(
            snapshot.data["criteria"],
            proposal.scores,
            proposal.rationales,
            strict=True,
        )
    ]


def _locked_still_grading(answers: list[Answer]) -> set[int]:
    """Lock the rows and return those that no other run has finished meanwhile."""
    return set(
        Answer.objects.select_for_update()
        .filter(pk__in=[a.pk for a in answers], status=AnswerStatus.GRADING)
        .values_list("pk", flat=True)
    )


def _persist_outcomes(
    outcomes: list[Outcome],
    leaders: dict[str, Job],
    followers: dict[str, list[Job]],
    scorer: str,
    summary: GradeSummary,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        groups = [(o, [leaders[o.input_hash], *followers.get(o.input_hash, [])]) for o in outcomes]
        live = _locked_still_grading([job.answer for _, jobs in groups for job in jobs])
        history: list[Assessment] = []
        finals: list[tuple[Outcome, Job, Assessment]] = []
        for outcome, jobs in groups:
            leader = jobs[0]
            for i, record in enumerate(outcome.calls):
                final = i == len(outcome.calls) - 1
                assessment = _assessment_for(leader, record, scorer, outcome, final)
                if final:
                    finals.append((outcome, leader, assessment))
                else:
                    history.append(assessment)
            summary.prompt_tokens += sum(r.prompt_tokens or 0 for r in outcome.calls)
            summary.completion_tokens += sum(r.completion_tokens or 0 for r in outcome.calls)
        Assessment.objects.bulk_create(history)
        Assessment.objects.bulk_create([a for _, _, a in finals])

        copies: list[tuple[Outcome, Job, Assessment]] = []
        for outcome, _leader, source in finals:
            for job in followers.get(outcome.input_hash, []):
                copies.append((outcome, job, _copy_assessment(source, job.answer)))
        Assessment.objects.bulk_create([a for _, _, a in copies])

        scores: list[CriterionScore] = []
        updates: list[Answer] = []
        events: list[dict[str, Any]] = []
        for outcome, job, assessment in finals + copies:
            if outcome.proposal is not None and assessment.status == AssessmentStatus.COMPLETED:
                scores.extend(_scores_for(assessment, outcome.proposal))
            if job.answer.pk not in live:
                continue  # another run finished this answer first; our rows stay as history
            answer = job.answer
            answer.current_assessment = assessment
            answer.grading_started_at = None
            answer.updated_at = now
            if assessment.status == AssessmentStatus.COMPLETED:
                answer.status, answer.status_reason = AnswerStatus.GRADED, ""
                summary.graded += 1
            else:
                answer.status, answer.status_reason = AnswerStatus.NEEDS_MANUAL, outcome.failure
                summary.needs_manual += 1
            if assessment.reused_from_id:
                summary.reused += 1
            updates.append(answer)
            events.append(_assessed_event(answer, assessment))
        CriterionScore.objects.bulk_create(scores)
        _finish_answers(updates)
        audit_record_many(events)


def _finish_answers(answers: list[Answer]) -> None:
    """Write each answer's new status and current assessment in one round trip.

    bulk_update() builds a CASE/WHEN per column and costs ~4 ms of CPU per
    answer; one parameterised UPDATE run with executemany costs a tenth.
    """
    if not answers:
        return
    table = connection.ops.quote_name(Answer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET current_assessment_id = %s, status = %s, status_reason = %s, "
            "grading_started_at = NULL, updated_at = %s WHERE id = %s",
            [
                (a.current_assessment_id, a.status, a.status_reason, a.updated_at, a.pk)
                for a in answers
            ],
        )


def _copy_assessment(source: Assessment, answer: Answer) -> Assessment:
    """The same result for an identical answer, pointing at the run it came from."""
    return Assessment(
        answer=answer,
        scorer=source.scorer,
        status=source.status,
        model=source.model,
        prompt_version=source.prompt_version,
        prompt="",
        raw_output="",
        result=source.result,
        feedback=source.feedback,
        flags=source.flags,
        confidence=source.confidence,
        total=source.total,
        max_total=source.max_total,
        rubric_snapshot_id=source.rubric_snapshot_id,
        input_hash=source.input_hash,
        error=source.error,
        reused_from=source.reused_from or source,
    )


def _persist_reuse(groups: list[tuple[list[Job], Assessment]], summary: GradeSummary) -> None:
    """Identical inputs graded before: copy the stored result, send nothing."""
    if not groups:
        return
    now = timezone.now()
    with transaction.atomic():
        live = _locked_still_grading([job.answer for jobs, _ in groups for job in jobs])
        pairs = [
            (_copy_assessment(source, job.answer), source)
            for jobs, source in groups
            for job in jobs
            if job.answer.pk in live
        ]
        Assessment.objects.bulk_create([copy for copy, _ in pairs])
        CriterionScore.objects.bulk_create(
            CriterionScore(
                assessment=copy,
                criterion_id=s.criterion_id,
                points=s.points,
                max_points=s.max_points,
                rationale=s.rationale,
            )
            for copy, source in pairs
            for s in source.scores.all()
        )
        for copy, _ in pairs:
            copy.answer.current_assessment = copy
            copy.answer.status, copy.answer.status_reason = AnswerStatus.GRADED, ""
            copy.answer.grading_started_at = None
            copy.answer.updated_at = now
        _finish_answers([copy.answer for copy, _ in pairs])
        audit_record_many([_assessed_event(copy.answer, copy) for copy, _ in pairs])
        summary.graded += len(pairs)
        summary.reused += len(pairs)


def _persist_immediate(items: list[tuple[Answer, dict[str, Any]]], summary: GradeSummary) -> None:
    """Answers that need no model: objective, blank, manual-only, unchanged."""
    if not items:
        return
    now = timezone.now()
    with transaction.atomic():
        live = _locked_still_grading([a for a, _ in items])
        events: list[dict[str, Any]] = []
        for answer, what in items:
            if answer.pk not in live:
                continue  # another run finished it first
            answer.grading_started_at = None
            answer.updated_at = now
            if "objective" in what:
                assessment = _store_objective(answer, what["objective"])
                events.append(_assessed_event(answer, assessment))
                summary.approved += 1
                continue
            if "manual" in what:
                answer.status, answer.status_reason = AnswerStatus.NEEDS_MANUAL, what["manual"]
                summary.needs_manual += 1
            elif "unchanged" in what:
                answer.status, answer.status_reason = AnswerStatus.GRADED, ""
                summary.skipped += 1
            elif "blank" in what:
                question_prepared, input_hash = what["blank"]
                assessment = _store_blank(answer, question_prepared, input_hash)
                answer.current_assessment = assessment
                answer.status, answer.status_reason = AnswerStatus.GRADED, ""
                events.append(_assessed_event(answer, assessment))
                summary.graded += 1
            answer.save(
                update_fields=[
                    "current_assessment",
                    "status",
                    "status_reason",
                    "grading_started_at",
                    "updated_at",
                ]
            )
        audit_record_many(events)


def _store_blank(answer: Answer, prepared: Prepared, input_hash: str) -> Assessment:
    """A blank answer is scored 0 by rule — flagged, never sent to a model, never bulk-approved."""
    snapshot = prepared.context.rubric
    assessment = Assessment.objects.create(
        answer=answer,
        scorer=Scorer.RULES,
        status=AssessmentStatus.COMPLETED,
        model=rules.RULES_VERSION,
        prompt_version=rules.RULES_VERSION,
        result={"scores": [0] * len(snapshot["criteria"]), "reason": "blank answer"},
        flags=["blank"],
        confidence=1.0,
        total=0,
        max_total=sum(c["max_points"] for c in snapshot["criteria"]),
        rubric_snapshot=prepared.rubric_snapshot,
        input_hash=input_hash,
    )
    CriterionScore.objects.bulk_create(
        CriterionScore(
            assessment=assessment, criterion_id=c["id"], points=0, max_points=c["max_points"]
        )
        for c in snapshot["criteria"]
    )
    return assessment


def _store_objective(answer: Answer, result: objective.ObjectiveResult) -> Assessment:
    """Answer-key scores are exact: they become the final grade straight away."""
    assessment = Assessment.objects.create(
        answer=answer,
        scorer=Scorer.OBJECTIVE,
        status=AssessmentStatus.COMPLETED,
        result={"correct": result.correct, "detail": result.detail},
        confidence=1.0,
        total=result.points,
        max_total=result.max_points,
        input_hash=sha256_hex(
            {"text": answer.text, "choices": answer.choices, "key": answer.question.answer_key}
        ),
    )
    FinalGrade.objects.update_or_create(
        answer=answer,
        defaults={
            "points": result.points,
            "max_points": result.max_points,
            "source": GradeSource.OBJECTIVE,
            "based_on": assessment,
            "approved_by": None,
            "approved_at": timezone.now(),
        },
    )
    answer.current_assessment = assessment
    answer.status, answer.status_reason = AnswerStatus.APPROVED, ""
    answer.save(
        update_fields=[
            "current_assessment",
            "status",
            "status_reason",
            "grading_started_at",
            "updated_at",
        ]
    )
    return assessment


def _assessed_event(answer: Answer, assessment: Assessment) -> dict[str, Any]:
    return {
        "action": "assessment.created",
        "target_type": "grading.answer",
        "target_id": answer.pk,
        "assignment_id": answer.question.assignment_id,
        "submission_id": answer.submission_id,
        "after": {
            "assessment": assessment.pk,
            "scorer": assessment.scorer,
            "status": assessment.status,
            "total": assessment.total,
            "max_total": assessment.max_total,
            "flags": assessment.flags,
            "answer_status": answer.status,
        },
    }


# --- Progress ---------------------------------------------------------------------------


def assignment_progress(assignment: Assignment) -> dict[str, int]:
    """Answers by status for one assignment (submitted work only)."""
    counts = {status.value: 0 for status in AnswerStatus}
    rows = (
        Answer.objects.filter(
            submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
        )
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    for status, n in rows:
        counts[status] = n
    return counts


def assignment_usage(assignment: Assignment, since: Any = None) -> dict[str, int]:
    qs = Assessment.objects.filter(answer__submission__assignment=assignment)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    totals = qs.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    return {"prompt_tokens": totals["p"] or 0, "completion_tokens": totals["c"] or 0}


# --- Review and release ---------------------------------------------------------------

NEVER_BULK_APPROVED = frozenset(
    {"blank", "off_topic", "prompt_injection_suspected", "low_confidence"}
)


class GradeError(ValueError):
    """A grade change that breaks a rule; the message is for the teacher."""


class StaleGrade(GradeError):
    """Someone saved this grade since the teacher loaded it (optimistic locking)."""

    def __init__(self, current: FinalGrade) -> None:
        super().__init__(
            gettext(
                "This grade was changed by %(who)s (now %(points)s/%(max)s, version %(v)s). "
                "Reload to see it before saving again."
            )
            % {
                "who": getattr(current.approved_by, "username", "?"),
                "points": current.points,
                "max": current.max_points,
                "v": current.version,
            }
        )
        self.current = current


def _grade_state(grade: FinalGrade | None) -> dict[str, Any] | None:
    if grade is None:
        return None
    return {
        "points": grade.points,
        "feedback": grade.feedback,
        "source": grade.source,
        "version": grade.version,
        "criteria": {str(c.criterion_id): c.points for c in grade.criteria.all()},
    }


def grade_approve(
    *,
    answer: Answer,
    actor: UserModel,
    scores: dict[int, int] | None = None,
    feedback: str | None = None,
    reason: str = "",
    expected_version: int | None = None,
) -> FinalGrade:
    """Turn the current proposal (or the teacher's own scores) into the answer's grade.

    `scores` maps criterion id → points; missing criteria keep the AI proposal.
    A score that differs from the proposal is an override and needs a reason.
    `expected_version` is the version the teacher saw (None: there was no grade);
    a save against an older version raises StaleGrade and changes nothing.
    """
    with transaction.atomic():
        answer = (
            # Lock the answer row only; the joined rows may be NULL (outer joins).
            Answer.objects.select_for_update(of=("self",))
            .select_related("current_assessment__rubric_snapshot", "question__assignment")
            .get(pk=answer.pk)
        )
        existing = FinalGrade.objects.select_for_update().filter(answer=answer).first()
        if existing is not None and existing.version != expected_version:
            raise StaleGrade(existing)
        if existing is None and expected_version not in (None, 0):
            raise GradeError(gettext("This grade was removed meanwhile. Reload the page."))
        if answer.status in (AnswerStatus.PENDING, AnswerStatus.GRADING):
            raise GradeError(gettext("This answer is still being graded."))
        proposal = answer.current_assessment
        if proposal is not None and proposal.status != AssessmentStatus.COMPLETED:
            proposal = None
        snapshot = _snapshot_for(answer, proposal)
        ai_points = {s.criterion_id: s.points for s in proposal.scores.all()} if proposal else {}
        chosen = {**ai_points, **(scores or {})}
        rows = []
        for criterion in snapshot["criteria"]:
            if criterion["id"] not in chosen:
                raise GradeError(gettext("Give a score for “%(c)s”.") % {"c": criterion["title"]})
            points = int(chosen[criterion["id"]])
            if not 0 <= points <= criterion["max_points"]:
                raise GradeError(
                    gettext("“%(c)s” must be between 0 and %(max)s.")
                    % {"c": criterion["title"], "max": criterion["max_points"]}
                )
            rows.append((criterion, points, ai_points.get(criterion["id"])))
        changed = [c["title"] for c, points, ai in rows if ai is not None and ai != points]
        if changed and not reason.strip():
            raise GradeError(
                gettext("Changing an AI score needs a short reason: %(c)s")
                % {"c": "、".join(changed)}
            )
        if not ai_points:
            source = GradeSource.MANUAL
        elif changed:
            source = GradeSource.OVERRIDE
        else:
            source = GradeSource.AI_ACCEPTED
        before = _grade_state(existing)
        grade = existing or FinalGrade(answer=answer, version=0)
        grade.points = sum(points for _, points, _ in rows)
        grade.max_points = sum(c["max_points"] for c, _, _ in rows)
        grade.feedback = proposal.feedback if feedback is None and proposal else (feedback or "")
        grade.source = source
        grade.override_reason = reason.strip() if changed else ""
        grade.based_on = proposal
        grade.approved_by = actor
        grade.approved_at = timezone.now()
        grade.version += 1
        grade.save()
        grade.criteria.all().delete()
        FinalCriterionGrade.objects.bulk_create(
            FinalCriterionGrade(
                final_grade=grade,
                criterion_id=c["id"],
                points=points,
                max_points=c["max_points"],
                ai_points=ai,
            )
            for c, points, ai in rows
        )
        Answer.objects.filter(pk=answer.pk).update(
            status=AnswerStatus.APPROVED, status_reason="", updated_at=timezone.now()
        )
        audit_record(
            actor=actor,
            action="grade.overridden" if changed else "grade.approved",
            target=answer,
            before=before,
            after=_grade_state(grade),
            reason=grade.override_reason,
            assignment_id=answer.question.assignment_id,
            submission_id=answer.submission_id,
        )
        assignment = answer.question.assignment
        if assignment.release_policy == ReleasePolicy.AUTOMATIC and not assignment.grades_released:
            grades_release(assignment=assignment, actor=actor)
    return grade


def _snapshot_for(answer: Answer, proposal: Assessment | None) -> dict[str, Any]:
    """The rubric the grade is given against: the proposal's snapshot, else the current one."""
    if proposal is not None and proposal.rubric_snapshot is not None:
        return proposal.rubric_snapshot.data
    rubric = answer.question.rubric
    if rubric is None:
        raise GradeError(gettext("This question has no rubric to grade against."))
    return rubric.snapshot()


def grades_bulk_approve(
    *, answer_ids: Iterable[int], actor: UserModel, include_flagged: Iterable[int] = ()
) -> tuple[int, int]:
    """Accept the AI proposals of many answers. Flagged answers are skipped unless each one
    was ticked on its own (`include_flagged`). Returns (approved, skipped)."""
    ticked = set(include_flagged)
    approved = skipped = 0
    answers = Answer.objects.filter(
        pk__in=list(answer_ids), status=AnswerStatus.GRADED
    ).select_related("current_assessment")
    for answer in answers:
        flags = set(answer.current_assessment.flags if answer.current_assessment else [])
        if flags & NEVER_BULK_APPROVED and answer.pk not in ticked:
            skipped += 1
            continue
        expected = (
            FinalGrade.objects.filter(answer=answer).values_list("version", flat=True).first()
        )
        grade_approve(answer=answer, actor=actor, expected_version=expected)
        approved += 1
    return approved, skipped


def grades_release(*, assignment: Assignment, actor: UserModel | None) -> None:
    """Students see approved grades of this assignment from now on."""
    with transaction.atomic():
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if locked.grades_released_at is not None:
            return
        locked.grades_released_at = timezone.now()
        locked.save(update_fields=["grades_released_at", "updated_at"])
        audit_record(
            actor=actor,
            action="grades.released",
            target=locked,
            after={"released_at": locked.grades_released_at.isoformat()},
            assignment_id=locked.pk,
        )
    assignment.grades_released_at = locked.grades_released_at


def grades_hide(*, assignment: Assignment, actor: UserModel) -> None:
    """Take released grades out of students' view again (approved grades are kept)."""
    with transaction.atomic():
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if locked.grades_released_at is None:
            return
        before = {"released_at": locked.grades_released_at.isoformat()}
        locked.grades_released_at = None
        locked.release_policy = ReleasePolicy.MANUAL  # or the next approval would re-release
        locked.save(update_fields=["grades_released_at", "release_policy", "updated_at"])
        audit_record(
            actor=actor,
            action="grades.hidden",
            target=locked,
            before=before,
            after={"released_at": None},
            assignment_id=locked.pk,
        )
    assignment.grades_released_at = None
    assignment.release_policy = ReleasePolicy.MANUAL


def student_visible_grades(*, student: UserModel, assignment: Assignment) -> list[FinalGrade]:
    """The only way a student's grades are read: approved, released, their own."""
    if assignment.grades_released_at is None:
        return []
    return list(
        FinalGrade.objects.filter(
            answer__submission__student=student,
            answer__submission__assignment=assignment,
            answer__status=AnswerStatus.APPROVED,
        )
        .select_related("answer__question")
        .prefetch_related("criteria__criterion", "answer__regrade_requests")
        .order_by("answer__question__order")
    )


def assignment_grade_table(assignment: Assignment) -> tuple[list[str], list[list[Any]]]:
    """Approved grades of every submission, per criterion and in total, for export.

    A cell is empty where no grade was approved: an export never shows a proposal.
    """
    questions = list(
        assignment.questions.select_related("rubric")
        .prefetch_related("rubric__criteria")
        .order_by("order", "pk")
    )
    header = ["username", "name", "student_number", "attempt", "submitted_at", "late"]
    columns: list[tuple[int, int | None]] = []  # (question id, criterion id or None = total)
    for q in questions:
        if q.is_subjective and q.rubric is not None:
            for c in q.rubric.criteria.all():
                header.append(f"Q{q.order} {c.title}")
                columns.append((q.pk, c.pk))
        header.append(f"Q{q.order} total")
        columns.append((q.pk, None))
    header.append("total")
    submissions = (
        Submission.objects.filter(assignment=assignment, status=SubmissionStatus.SUBMITTED)
        .select_related("student")
        .prefetch_related(
            Prefetch(
                "answers",
                queryset=Answer.objects.filter(status=AnswerStatus.APPROVED)
                .select_related("final_grade")
                .prefetch_related("final_grade__criteria"),
            )
        )
        .order_by("student__username", "attempt")
    )
    rows = []
    for s in submissions:
        cells: dict[tuple[int, int | None], int] = {}
        for answer in s.answers.all():
            grade = answer.final_grade
            cells[(answer.question_id, None)] = grade.points
            for row in grade.criteria.all():
                cells[(answer.question_id, row.criterion_id)] = row.points
        totals = [cells[k] for k in columns if k[1] is None and k in cells]
        rows.append(
            [
                s.student.username,
                s.student.display_name,
                s.student.student_number or "",
                s.attempt,
                timezone.localtime(s.submitted_at).isoformat() if s.submitted_at else "",
                "yes" if s.is_late else "",
                *[cells.get(k, "") for k in columns],
                sum(totals) if totals else "",
            ]
        )
    return header, rows


# --- Student work -------------------------------------------------------------------


class SubmissionError(ValueError):
    """A hand-in that breaks the assignment's rules; the message is for the student."""


def submission_current(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's open draft, else their latest handed-in attempt."""
    return (
        Submission.objects.filter(assignment=assignment, student=student)
        .order_by("-attempt")
        .prefetch_related("answers")
        .first()
    )


def submission_save(
    *,
    assignment: Assignment,
    student: UserModel,
    responses: dict[int, tuple[str, list[str]]],
    hand_in: bool = False,
) -> Submission:
    """Keep the student's answers as a draft; with `hand_in`, submit them for grading.

    `responses` maps question id → (text, chosen option keys). Deadlines and the
    number of attempts are enforced here, with a message the student can act on.
    """
    from django.utils.translation import gettext as _

    now = timezone.now()
    if assignment.is_past_due(now) and assignment.late_policy == "refuse":
        raise SubmissionError(_("The deadline has passed; this assignment no longer accepts work."))
    with transaction.atomic():
        latest = (
            Submission.objects.select_for_update()
            .filter(assignment=assignment, student=student)
            .order_by("-attempt")
            .first()
        )
        if latest is None or latest.status == SubmissionStatus.SUBMITTED:
            used = latest.attempt if latest else 0
            if used >= assignment.attempts_allowed:
                raise SubmissionError(_("You have used every attempt this assignment allows."))
            latest = Submission.objects.create(
                assignment=assignment, student=student, attempt=used + 1
            )
        questions = {q.pk: q for q in assignment.questions.all()}
        existing = {a.question_id: a for a in latest.answers.all()}
        for question_id, question in questions.items():
            text, choices = responses.get(question_id, ("", []))
            valid = {o.get("key") for o in question.options or []}
            choices = [c for c in choices if c in valid]
            answer = existing.get(question_id) or Answer(submission=latest, question=question)
            answer.text, answer.choices = text, choices
            answer.save()
    if hand_in:
        latest = submission_submit(submission=latest, actor=student)
    return latest


def regrade_request_create(*, answer: Answer, student: UserModel, comment: str) -> RegradeRequest:
    """A student asks for a second look at a released grade of their own."""
    from django.utils.translation import gettext as _

    answer = Answer.objects.select_related("question__assignment", "submission").get(pk=answer.pk)
    assignment = answer.question.assignment
    if answer.submission.student_id != student.pk:
        raise SubmissionError(_("You can only ask about your own work."))
    if assignment.grades_released_at is None or answer.status != AnswerStatus.APPROVED:
        raise SubmissionError(_("You can ask for a regrade once the grade is released."))
    if not comment.strip():
        raise SubmissionError(_("Say briefly what you would like your teacher to look at."))
    if answer.regrade_requests.filter(status=RegradeStatus.OPEN).exists():
        raise SubmissionError(_("Your teacher has not answered your last request yet."))
    with transaction.atomic():
        request = RegradeRequest.objects.create(
            answer=answer, student=student, comment=comment.strip()[:2000]
        )
        audit_record(
            actor=student,
            action="regrade.requested",
            target=answer,
            after={"request": request.pk},
            reason=request.comment,
            assignment_id=assignment.pk,
            submission_id=answer.submission_id,
        )
    return request


def regrade_request_answer(
    *,
    request: RegradeRequest,
    actor: UserModel,
    response: str,
    scores: dict[int, int] | None = None,
    reason: str = "",
) -> RegradeRequest:
    """The teacher answers; with new scores the grade changes too (an audited override)."""
    if not response.strip():
        raise GradeError(gettext("Write a short answer to the student."))
    with transaction.atomic():
        locked = RegradeRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != RegradeStatus.OPEN:
            raise GradeError(gettext("This request was already answered."))
        answer = locked.answer
        if scores:
            version = FinalGrade.objects.filter(answer=answer).values_list("version", flat=True)
            grade_approve(
                answer=answer,
                actor=actor,
                scores=scores,
                reason=reason or response,
                feedback=answer.final_grade.feedback,
                expected_version=version.first(),
            )
        locked.status = RegradeStatus.ANSWERED
        locked.response = response.strip()
        locked.responder = actor
        locked.answered_at = timezone.now()
        locked.save()
        audit_record(
            actor=actor,
            action="regrade.answered",
            target=answer,
            after={"request": locked.pk, "changed": bool(scores)},
            reason=locked.response,
            assignment_id=answer.question.assignment_id,
            submission_id=answer.submission_id,
        )
    return locked
