"""The only code that writes assessments, criterion scores and answer status.

The pipeline decides; this module stores. Every write locks the answers first
and skips those another run of the same task finished meanwhile, so a task
delivered twice leaves one current result per answer (the other run's rows stay
as history). Objective scores are exact and become the final grade at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import objective, rules, webhooks
from ..audit import audit_record_many
from ..models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    CriterionScore,
    FinalGrade,
    GradeSource,
    Scorer,
    sha256_hex,
)
from ..prompts import PROMPT_VERSION, Proposal

if TYPE_CHECKING:  # the pipeline's vocabulary; it imports this module, not the other way
    from .pipeline import CallRecord, GradeSummary, Immediate, Job, Outcome, Prepared

LOW_CONFIDENCE = 0.6


# --- Answer status ----------------------------------------------------------------------


def answers_mark_grading(
    *, answer_ids: Iterable[int], reopen_approved: bool = False, pooled: bool = False
) -> list[int]:
    """Mark answers GRADING and return their ids, sorted; `pooled`: into the shared pool
    that pool tasks claim from (hand-ins), else for a task that names them.

    Approved answers are left alone — a teacher's grade is never replaced by a new
    proposal behind their back — unless `reopen_approved`: objective grades come from
    the answer key, and a corrected key must rescore them.
    """
    now = timezone.now()
    answers = Answer.objects.filter(pk__in=list(answer_ids))
    if not reopen_approved:
        answers = answers.exclude(status=AnswerStatus.APPROVED)
    ids = sorted(answers.values_list("pk", flat=True))
    Answer.objects.filter(pk__in=ids).update(
        status=AnswerStatus.GRADING,
        grading_started_at=now,
        waiting_for_model_since=None,
        grading_pooled=pooled,
        status_reason="",
        updated_at=now,
    )
    return ids


def answers_claim_pooled(*, limit: int) -> list[int]:
    """Take up to `limit` answers out of the pool, oldest first, for one task. Locked rows
    are skipped and each claim is committed at once: two tasks never share an answer."""
    with transaction.atomic():
        ids = list(
            Answer.objects.select_for_update(skip_locked=True)
            .filter(grading_pooled=True, status=AnswerStatus.GRADING)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        # Claimed now: the sweeper's clock starts at the claim, not at the hand-in, so an
        # answer that waited in the pool is not taken for a stuck one while it is graded.
        Answer.objects.filter(pk__in=ids).update(
            grading_pooled=False, grading_started_at=timezone.now()
        )
    return ids


def answers_mark_waiting(*, answer_ids: Iterable[int]) -> list[int]:
    """Answers the model could not take because it is down: they stay GRADING, off the
    sweeper's clock (no grading_started_at), waiting since the first time they were
    turned away. Returns the ids. Nothing is audited: no grade or status changed."""
    ids = list(
        Answer.objects.filter(pk__in=list(answer_ids), status=AnswerStatus.GRADING).values_list(
            "pk", flat=True
        )
    )
    Answer.objects.filter(pk__in=ids).update(
        grading_started_at=None,
        waiting_for_model_since=Coalesce(
            "waiting_for_model_since", Value(timezone.now(), output_field=DateTimeField())
        ),
    )
    return ids


def answers_mark_failed(*, answer_ids: Iterable[int], reason: str) -> int:
    """Answers whose grading crashed go to manual grading with the reason (never a zero)."""
    now = timezone.now()
    rows = list(
        Answer.objects.filter(pk__in=list(answer_ids), status=AnswerStatus.GRADING).values_list(
            "pk", "submission_id", "submission__assignment_id"
        )
    )
    ids = [pk for pk, _, _ in rows]
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
                # So the event shows in the assignment's and the submission's audit trail.
                "assignment_id": assignment_id,
                "submission_id": submission_id,
                "after": {"reason": reason[:500]},
            }
            for pk, submission_id, assignment_id in rows
        ]
    )
    webhooks.answers_finished_emit(answer_ids=ids)
    return len(ids)


def answer_mark_approved(*, answer: Answer) -> None:
    """The teacher's grade is given (the FinalGrade row is review's to write)."""
    Answer.objects.filter(pk=answer.pk).update(
        status=AnswerStatus.APPROVED, status_reason="", updated_at=timezone.now()
    )


# --- Storing results --------------------------------------------------------------------


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
        cached_tokens=record.cached_tokens if scorer == Scorer.LLM else None,
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
    """Lock the rows and return those that no other run has finished meanwhile.

    Only the answers' own rows, in id order: the default ordering would join the
    submission, assignment, course and question into the FOR UPDATE and lock them too,
    and a hand-in's commit (its foreign keys to the assignment) then deadlocks with the
    audit chain's lock, which this transaction takes next (tests/test_grading_locks.py).
    """
    return set(
        Answer.objects.select_for_update(of=("self",))
        .filter(pk__in=[a.pk for a in answers], status=AnswerStatus.GRADING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def assessments_store(
    *,
    outcomes: list[Outcome],
    leaders: dict[str, Job],
    followers: dict[str, list[Job]],
    scorer: str,
    summary: GradeSummary,
) -> None:
    """Store model (or rule-engine) outcomes: one Assessment per call, the last one current.

    `followers` are identical answers to a leader's; each gets a copy of its result.
    """
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
            summary.cached_tokens += sum(r.cached_tokens or 0 for r in outcome.calls)
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


def assessments_reuse(*, groups: list[tuple[list[Job], Assessment]], summary: GradeSummary) -> None:
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


def answers_finish_immediate(*, items: list[Immediate], summary: GradeSummary) -> None:
    """Answers that need no model: objective, blank, manual-only, unchanged."""
    if not items:
        return
    now = timezone.now()
    with transaction.atomic():
        live = _locked_still_grading([item.answer for item in items])
        events: list[dict[str, Any]] = []
        for item in items:
            answer = item.answer
            if answer.pk not in live:
                continue  # another run finished it first
            answer.grading_started_at = None
            answer.updated_at = now
            match item.kind:
                case "objective":
                    assert item.objective is not None
                    assessment = _store_objective(answer, item.objective)
                    events.append(_assessed_event(answer, assessment))
                    summary.approved += 1
                    continue  # _store_objective saved the answer
                case "manual":
                    answer.status, answer.status_reason = AnswerStatus.NEEDS_MANUAL, item.reason
                    summary.needs_manual += 1
                case "unchanged":
                    answer.status, answer.status_reason = AnswerStatus.GRADED, ""
                    summary.skipped += 1
                case "blank":
                    assert item.prepared is not None
                    assessment = _store_blank(answer, item.prepared, item.input_hash)
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
