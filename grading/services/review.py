"""Review and release: teachers turn proposals into grades, and grades reach students.

A proposal is never a grade. `grade_approve` accepts it or overrides scores (an
override needs a reason), with optimistic locking on the grade's version; bulk
approval never takes a blank, off-topic or suspected prompt-injection answer, and takes
a low-confidence one only when the teacher asks for it. Students see approved grades
(and the teacher's inline comments) only once the assignment's grades are released.
Every step is audited in the same transaction. Each teacher's comment bank lives here
too: comments saved to reuse while reviewing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from courses.models import Assignment, ReleasePolicy
from courses.models import User as UserModel
from courses.text import clean_text
from lti import hooks as lti_hooks

from .. import webhooks
from ..audit import audit_record
from ..models import (
    Answer,
    AnswerComment,
    AnswerStatus,
    CommentBankEntry,
    FinalCriterionGrade,
    FinalGrade,
    GradeSource,
    RegradeRequest,
    RegradeStatus,
)
from ..selectors import grading_proposal, grading_rubric
from ..workspace import display_text
from .assessments import answer_mark_approved

# Answers a teacher must open one by one: nothing the model proposed for them can be
# trusted in bulk, whatever the teacher ticks.
NEVER_BULK_APPROVED = frozenset({"blank", "off_topic", "prompt_injection_suspected"})
# Approved in bulk only on the teacher's explicit choice (a button of its own, or ticked one
# by one through the API); the offline rule engine flags every proposal it makes so.
LOW_CONFIDENCE_FLAG = "low_confidence"
COMMENT_MAX_CHARS = 2000


class GradeError(ValueError):
    """A grade change that breaks a rule; the message is for the teacher."""


class ReasonRequired(GradeError):
    """A changed AI score without a reason: the page puts the teacher in the reason field."""


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
    reason = clean_text(reason)
    feedback = None if feedback is None else clean_text(feedback)
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
            raise ReasonRequired(
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
        if feedback is None:  # bulk approval, the API without feedback: the proposal's
            feedback = proposal.student_feedback if proposal else ""
        grade.feedback = feedback
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
        elif assignment.grades_released:
            # Changed after release (a regrade, a correction): the LMS gradebook follows.
            lti_hooks.passback_request(
                assignment_id=assignment.pk, student_ids=[answer.submission.student_id]
            )
    return grade


@dataclass(frozen=True)
class BulkApproval:
    """What a bulk approval did. Unpacks as `(approved, skipped)`, as callers always read it."""

    approved: int = 0
    approved_low_confidence: int = 0  # of `approved`: low-confidence proposals taken on purpose
    skipped_low_confidence: int = 0  # low confidence, and the teacher did not ask for them
    refused: int = 0  # blank, off topic or suspected prompt injection: one by one only

    @property
    def skipped(self) -> int:
        return self.skipped_low_confidence + self.refused

    def __iter__(self) -> Iterator[int]:
        return iter((self.approved, self.skipped))


def grades_bulk_approve(
    *,
    answer_ids: Iterable[int],
    actor: UserModel,
    include_flagged: Iterable[int] = (),
    include_low_confidence: bool = False,
) -> BulkApproval:
    """Accept the AI proposals of many answers awaiting review.

    Never a blank, off-topic or suspected prompt-injection answer (NEVER_BULK_APPROVED):
    those are graded one by one on the review page. A low-confidence proposal is accepted
    only when the teacher asks for it: all of them (`include_low_confidence`, the queue's
    button that says so) or each one named in `include_flagged`."""
    ticked = set(include_flagged)
    approved = approved_low = skipped_low = refused = 0
    answers = Answer.objects.filter(
        pk__in=list(answer_ids), status=AnswerStatus.GRADED
    ).select_related("current_assessment")
    for answer in answers:
        flags = set(answer.current_assessment.flags if answer.current_assessment else [])
        if flags & NEVER_BULK_APPROVED:
            refused += 1
            continue
        low = LOW_CONFIDENCE_FLAG in flags
        if low and not (include_low_confidence or answer.pk in ticked):
            skipped_low += 1
            continue
        expected = (
            FinalGrade.objects.filter(answer=answer).values_list("version", flat=True).first()
        )
        grade_approve(answer=answer, actor=actor, expected_version=expected)
        approved += 1
        approved_low += low
    return BulkApproval(approved, approved_low, skipped_low, refused)


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
        webhooks.grades_released_emit(assignment=locked)
        lti_hooks.passback_request(assignment_id=locked.pk)
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
        lti_hooks.passback_request(assignment_id=locked.pk)
    assignment.grades_released_at = None
    assignment.release_policy = ReleasePolicy.MANUAL


def regrade_request_answer(
    *,
    request: RegradeRequest,
    actor: UserModel,
    response: str,
    scores: dict[int, int] | None = None,
    reason: str = "",
    feedback: str | None = None,
    expected_version: int | None = None,
) -> RegradeRequest:
    """The teacher answers; with new scores (or new feedback) the grade changes in the same
    step, as an audited override whose reason is `reason` or else the reply.

    `expected_version` is the grade's version the teacher saw (the review page sends it);
    None takes the current one. Scores and feedback equal to the grade's are no change."""
    response = clean_text(response)
    if not response.strip():
        raise GradeError(gettext("Write a short reply to the student."))
    with transaction.atomic():
        locked = RegradeRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != RegradeStatus.OPEN:
            raise GradeError(gettext("This request was already answered."))
        answer = locked.answer
        grade = FinalGrade.objects.filter(answer=answer).prefetch_related("criteria").first()
        current = {c.criterion_id: c.points for c in grade.criteria.all()} if grade else {}
        new_feedback = None if feedback is None else clean_text(feedback)
        scores_changed = bool(scores) and any(
            current.get(pk) != points for pk, points in (scores or {}).items()
        )
        feedback_changed = (
            grade is not None and new_feedback is not None and new_feedback != grade.feedback
        )
        changed = scores_changed or feedback_changed
        if changed and grade is not None:
            grade_approve(
                answer=answer,
                actor=actor,
                # Every criterion as graded now, the teacher's changes on top: a criterion
                # the teacher did not touch keeps its grade, not the AI's proposal.
                scores={**current, **(scores or {})},
                reason=reason or response,
                feedback=grade.feedback if new_feedback is None else new_feedback,
                expected_version=grade.version if expected_version is None else expected_version,
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
            after={"request": locked.pk, "changed": changed},
            reason=locked.response,
            assignment_id=answer.question.assignment_id,
            submission_id=answer.submission_id,
        )
    return locked


# --- Inline comments: a teacher's note on a passage of the answer ---------------------------


def answer_comment_create(
    *, answer: Answer, actor: UserModel, start: int, end: int, quote: str, body: str
) -> AnswerComment:
    """Attach `body` to the passage `start`..`end` (characters of the answer's text as the
    page shows it). `quote` is the passage the teacher selected: when it is not the text at
    those places (the page measured wrong, or the answer is not what the page showed), the
    comment is refused rather than pinned to the wrong words."""
    body = clean_text(body).strip()
    if not body:
        raise GradeError(gettext("Write the comment first."))
    if len(body) > COMMENT_MAX_CHARS:
        raise GradeError(
            gettext("A comment is at most %(n)s characters.") % {"n": COMMENT_MAX_CHARS}
        )
    text = display_text(answer.text)
    if not (0 <= start < end <= len(text)) or text[start:end] != clean_text(quote):
        raise GradeError(gettext("Select a passage of the answer, then write the comment."))
    with transaction.atomic():
        comment = AnswerComment.objects.create(
            answer=answer, author=actor, start=start, end=end, quote=text[start:end], body=body
        )
        audit_record(
            actor=actor,
            action="comment.added",
            target=answer,
            after={"comment_id": comment.pk, "passage": comment.quote, "comment": body},
            assignment_id=answer.question.assignment_id,
            submission_id=answer.submission_id,
        )
    return comment


def answer_comment_delete(*, comment: AnswerComment, actor: UserModel) -> None:
    answer = comment.answer
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="comment.removed",
            target=answer,
            before={"comment_id": comment.pk, "passage": comment.quote, "comment": comment.body},
            assignment_id=answer.question.assignment_id,
            submission_id=answer.submission_id,
        )
        comment.delete()


# --- Each teacher's comment bank ------------------------------------------------------------


def comment_language(text: str) -> str:
    """zh-hans when the comment has Chinese characters in it, else en."""
    return "zh-hans" if any("\u3400" <= ch <= "\u9fff" for ch in text) else "en"


def comment_bank_save(*, owner: UserModel, text: str) -> CommentBankEntry:
    """Keep `text` in the teacher's bank (saving it again keeps the one entry)."""
    text = clean_text(text).strip()
    if not text:
        raise GradeError(gettext("Write the comment first."))
    if len(text) > COMMENT_MAX_CHARS:
        raise GradeError(
            gettext("A comment is at most %(n)s characters.") % {"n": COMMENT_MAX_CHARS}
        )
    entry, _ = CommentBankEntry.objects.get_or_create(
        owner=owner, text=text, defaults={"language": comment_language(text)}
    )
    return entry


def comment_bank_use(*, entry: CommentBankEntry) -> None:
    """The teacher reused this entry: the most used come first next time."""
    CommentBankEntry.objects.filter(pk=entry.pk).update(
        uses=F("uses") + 1, last_used_at=timezone.now()
    )


def comment_bank_delete(*, entry: CommentBankEntry) -> None:
    entry.delete()
