"""The queue: answers marked GRADING and handed to django-q2 once the transaction commits.

Nothing slow runs in a web request. Answers travel in chunks of `chunk_size()`
(a whole number of rounds of the worker's concurrency), each chunk one task of
`grading.tasks.grade_answers`; a hook sends a crashed chunk to manual grading,
and a scheduled sweeper re-enqueues answers a dead worker left behind.

A hand-in brings one or two subjective answers, so hand-ins go to a shared pool
instead: each enqueues one `grading.tasks.grade_pool` task, and whichever pool
task runs first claims everything waiting, up to a chunk. In a deadline rush the
chunks fill up and every worker keeps the model server's slots busy; one task
per hand-in would grade at workers / latency answers per second, whatever the
server's capacity. Pool tasks that find the pool empty end at once.

When the model server is down the answers wait for it, still GRADING, instead
of going to the teachers: a task never sleeps through an outage (it would run
into Q_TIMEOUT). It marks them waiting and leaves a one-off schedule to probe
the server; `model_outage_check` queues them again once it serves. Answers a
chunk had no time to send are queued again at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from courses.models import Assignment, Question
from courses.models import User as UserModel

from .. import llm
from ..audit import audit_record
from ..llm import per_worker_concurrency
from ..models import Answer, AnswerStatus, SubmissionStatus
from .assessments import (
    answers_claim_pooled,
    answers_mark_failed,
    answers_mark_grading,
    answers_mark_waiting,
)
from .pipeline import GradeSummary, answers_grade

logger = logging.getLogger(__name__)

TASK_FUNC = "grading.tasks.grade_answers"
POOL_FUNC = "grading.tasks.grade_pool"
TASK_HOOK = "grading.tasks.grading_finished"
PROBE_FUNC = "grading.tasks.model_probe"
PROBE_SCHEDULE = "Probe the model server (answers are waiting)"


def chunk_size() -> int:
    # A whole number of rounds per chunk keeps every slot busy until the chunk ends.
    return settings.GRADING_CHUNK_SIZE or 4 * per_worker_concurrency()


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def answers_enqueue(*, answer_ids: Iterable[int], force: bool = False, pooled: bool = False) -> int:
    """Mark answers GRADING and enqueue their grading once the transaction commits;
    `pooled` (a hand-in): into the shared pool, for the next pool task to claim.

    Approved answers are left alone: a teacher's grade is never replaced by a
    new proposal behind their back.
    """
    pooled = pooled and not force
    ids = answers_mark_grading(answer_ids=answer_ids, pooled=pooled)
    if not ids:
        return 0

    def enqueue() -> None:
        if pooled:
            async_task(POOL_FUNC)
            return
        for chunk in _chunks(ids, chunk_size()):
            async_task(TASK_FUNC, chunk, force=force, hook=TASK_HOOK)

    transaction.on_commit(enqueue)
    return len(ids)


def answers_grade_chunk(*, answer_ids: list[int], force: bool = False) -> GradeSummary:
    """What a grading task runs: grade the chunk, then see to the answers the model could
    not take now — waiting for it when it is down, back in the queue when the chunk ran
    out of time to send them."""
    summary = answers_grade(answer_ids=answer_ids, force=force)
    if summary.waiting:
        answers_wait_for_model(answer_ids=summary.waiting)
    if summary.unsent:
        answers_enqueue(answer_ids=summary.unsent, force=force)
    return summary


def answers_grade_pool() -> GradeSummary | None:
    """What a pool task runs: claim a chunk from the pool and grade it (None: the pool was
    empty, an earlier pool task took them). A crash sends the claimed answers to manual
    grading, as the hook does for a named chunk."""
    ids = answers_claim_pooled(limit=chunk_size())
    if not ids:
        return None
    try:
        return answers_grade_chunk(answer_ids=ids)
    except Exception as exc:
        answers_mark_failed(answer_ids=ids, reason=f"grading task failed: {str(exc)[:1500]}")
        raise


def answers_wait_for_model(*, answer_ids: Iterable[int]) -> int:
    """Mark answers as waiting for the model and make sure a probe is scheduled."""
    ids = answers_mark_waiting(answer_ids=answer_ids)
    if ids:
        logger.warning("%s answers wait for the model server to come back", len(ids))
        model_probe_schedule()
    return len(ids)


def model_probe_schedule() -> None:
    """One pending probe task, at the time the first open endpoint is due (a one-off
    schedule: the cluster's scheduler turns it into a task within about 30 s of then)."""
    states = llm.endpoint_states()
    due = [s.next_probe_at for s in states.values() if s.open and s.next_probe_at]
    when = min(due, default=timezone.now())
    defaults = {"func": PROBE_FUNC, "schedule_type": Schedule.ONCE, "next_run": when, "repeats": -1}
    try:
        with transaction.atomic():
            Schedule.objects.update_or_create(name=PROBE_SCHEDULE, defaults=defaults)
    except IntegrityError:  # another worker created it in the same instant
        Schedule.objects.filter(name=PROBE_SCHEDULE).update(**defaults)


def model_outage_check() -> int:
    """Probe the model endpoints that are down and due; once one serves again, queue the
    answers waiting for it. Returns how many were queued.

    Runs from the probe schedule and from the sweeper (in case a schedule was lost).
    Without a model configured any more, waiting answers go to the offline rule engine.
    """
    waiting = Answer.objects.filter(
        status=AnswerStatus.GRADING, waiting_for_model_since__isnull=False
    )
    states = llm.endpoints_probe()
    if states and all(state.open for state in states.values()):
        if waiting.exists():
            model_probe_schedule()
        return 0
    return answers_enqueue(answer_ids=list(waiting.values_list("pk", flat=True)))


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
    ids = answers_mark_grading(
        answer_ids=Answer.objects.filter(
            question=question, submission__status=SubmissionStatus.SUBMITTED
        ).values_list("pk", flat=True),
        reopen_approved=True,
    )
    if ids:
        answers_grade(answer_ids=ids, force=True)
    return len(ids)


def answers_requeue_stuck(*, older_than: timedelta | None = None) -> int:
    """Re-enqueue answers left GRADING past the task timeout (a worker died, a broker lost it).

    After GRADING_MAX_REQUEUES tries an answer goes to manual grading instead,
    so nothing hangs forever and nothing is silently dropped.
    """
    model_outage_check()
    # Answers waiting for the model have no grading_started_at: never counted as stuck.
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
