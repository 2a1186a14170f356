"""Hand-in: students save drafts, hand in work, and ask for a second look.

Deadlines and attempts are enforced here with messages the student can act on.
Handing in marks the answers for grading; the queue takes them once the
transaction commits, so nothing slow runs in the student's request.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from courses.models import Assignment
from courses.models import User as UserModel

from ..audit import audit_record
from ..models import (
    Answer,
    AnswerStatus,
    RegradeRequest,
    RegradeStatus,
    Submission,
    SubmissionStatus,
)
from .queue import answers_enqueue


class SubmissionError(ValueError):
    """A hand-in that breaks the assignment's rules; the message is for the student."""


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
