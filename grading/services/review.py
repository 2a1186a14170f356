"""Review and release: teachers turn proposals into grades, and grades reach students.

A proposal is never a grade. `grade_approve` accepts it or overrides scores (an
override needs a reason), with optimistic locking on the grade's version; bulk
approval never takes a flagged answer unless it was ticked on its own. Students
see approved grades only once the assignment's grades are released. Every step
is audited in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from courses.models import Assignment, ReleasePolicy
from courses.models import User as UserModel

from ..audit import audit_record
from ..models import (
    Answer,
    AnswerStatus,
    FinalCriterionGrade,
    FinalGrade,
    GradeSource,
    RegradeRequest,
    RegradeStatus,
)
from ..selectors import grading_proposal, grading_rubric
from .assessments import answer_mark_approved

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


@dataclass(frozen=True)
class CriterionChoice:
    """One criterion of a grade being given: the teacher's points and the AI's, if any."""

    criterion: dict[str, Any]  # from the rubric snapshot
    points: int
    ai_points: int | None

    @property
    def changed(self) -> bool:
        return self.ai_points is not None and self.ai_points != self.points


def _validated_scores(
    *, snapshot: dict[str, Any], ai_points: dict[int, int], scores: dict[int, int]
) -> list[CriterionChoice]:
    """Every criterion of the snapshot gets a score within its bounds; missing ones keep
    the AI's. Raises GradeError naming the criterion."""
    chosen = {**ai_points, **scores}
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
        rows.append(CriterionChoice(criterion, points, ai_points.get(criterion["id"])))
    return rows


def _lock_for_grading(*, answer: Answer, expected_version: int | None) -> FinalGrade | None:
    """Lock the answer's grade and check the teacher saw its latest version."""
    existing = FinalGrade.objects.select_for_update().filter(answer=answer).first()
    if existing is not None and existing.version != expected_version:
        raise StaleGrade(existing)
    if existing is None and expected_version not in (None, 0):
        raise GradeError(gettext("This grade was removed meanwhile. Reload the page."))
    if answer.status in (AnswerStatus.PENDING, AnswerStatus.GRADING):
        raise GradeError(gettext("This answer is still being graded."))
    return existing


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
            .select_related(
                "current_assessment__rubric_snapshot", "question__assignment", "question__rubric"
            )
            .get(pk=answer.pk)
        )
        existing = _lock_for_grading(answer=answer, expected_version=expected_version)
        proposal = grading_proposal(answer=answer)
        snapshot = grading_rubric(answer=answer)
        if snapshot is None:
            raise GradeError(gettext("This question has no rubric to grade against."))
        ai_points = {s.criterion_id: s.points for s in proposal.scores.all()} if proposal else {}
        rows = _validated_scores(snapshot=snapshot, ai_points=ai_points, scores=scores or {})
        changed = [row.criterion["title"] for row in rows if row.changed]
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
        grade.points = sum(row.points for row in rows)
        grade.max_points = sum(row.criterion["max_points"] for row in rows)
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
                criterion_id=row.criterion["id"],
                points=row.points,
                max_points=row.criterion["max_points"],
                ai_points=row.ai_points,
            )
            for row in rows
        )
        answer_mark_approved(answer=answer)
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
