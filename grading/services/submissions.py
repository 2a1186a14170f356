"""Hand-in: students save drafts, hand in work, and ask for a second look.

Only a published assignment takes work; deadlines, attempts and the length of an
answer are enforced here with messages the student can act on. Handing in marks the
answers for grading; the queue takes them once the transaction commits, so nothing slow
runs in the student's request. Two requests of one student (a double click) are
serialised, and the same form handed in twice is one hand-in.
"""

from __future__ import annotations

import datetime
import re
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from courses.models import Assignment, AssignmentState, Question
from courses.models import User as UserModel
from courses.text import clean_text
from lti import hooks as lti_hooks

from .. import webhooks
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

Responses = dict[int, tuple[str, list[str]]]

_HAND_IN_TOKEN = re.compile(r"[0-9a-f]{32}")
REGRADE_COMMENT_MAX_CHARS = 2000


class SubmissionError(ValueError):
    """A hand-in that breaks the assignment's rules; the message is for the student."""


def hand_in_token_new() -> str:
    """A fresh token for one rendering of the work form (see `submission_save`)."""
    return secrets.token_hex(16)


def submission_closed_reason(
    *, assignment: Assignment, now: datetime.datetime | None = None
) -> str:
    """Why students cannot save or hand in work for this assignment now; "" while they can."""
    if assignment.state == AssignmentState.DRAFT:
        return _("This assignment is not open yet.")
    if assignment.state != AssignmentState.PUBLISHED or assignment.course.archived:
        return _("This assignment is closed; it no longer accepts work.")
    if assignment.is_past_due(now) and assignment.late_policy == "refuse":
        return _("The deadline has passed; this assignment no longer accepts work.")
    return ""


def _responses_clean(
    questions: dict[int, Question], responses: Responses
) -> dict[int, tuple[str, list[str]]]:
    """Each question's cleaned text and its valid choices; refuses an answer over the length
    limit, naming the question, before anything is saved."""
    limit = settings.ANSWER_MAX_CHARS
    cleaned: dict[int, tuple[str, list[str]]] = {}
    too_long = []
    for question_id, question in questions.items():
        text, choices = responses.get(question_id, ("", []))
        text = clean_text(text)
        valid = {o.get("key") for o in question.options or []}
        cleaned[question_id] = (text, [c for c in choices if c in valid])
        if len(text) > limit:
            too_long.append(
                _(
                    "Your answer to question %(n)s has %(count)s characters; "
                    "at most %(max)s fit. Shorten it, then save again."
                )
                % {"n": question.order, "count": len(text), "max": limit}
            )
    if too_long:
        raise SubmissionError(" ".join(too_long))
    return cleaned


def _same_answers(submission: Submission, cleaned: dict[int, tuple[str, list[str]]]) -> bool:
    stored = {a.question_id: (a.text, list(a.choices)) for a in submission.answers.all()}
    return all(stored.get(qid, ("", [])) == value for qid, value in cleaned.items())


def submission_save(
    *,
    assignment: Assignment,
    student: UserModel,
    responses: Responses,
    hand_in: bool = False,
    hand_in_token: str = "",
    actor: UserModel | None = None,
) -> Submission:
    """Keep the student's answers as a draft; with `hand_in`, submit them for grading.

    `responses` maps question id → (text, chosen option keys); text is cleaned by the
    shared rule (`courses.text`) and limited to `ANSWER_MAX_CHARS`. Only a published,
    open assignment takes work, within its deadline and attempts.

    `hand_in_token` identifies the form the student handed in (`hand_in_token_new`): the
    same form posted again with the same answers returns the submission it already made,
    so a double click, a reload or a retried request hands in once. The student's row is
    locked first, so two requests of the same student never race for an attempt.

    `actor` is who handed in, for the audit trail: the student, unless a school system
    (an API key) hands in their transcribed paper for them.
    """
    token = hand_in_token if _HAND_IN_TOKEN.fullmatch(hand_in_token or "") else ""
    questions = {q.pk: q for q in assignment.questions.all()}
    cleaned = _responses_clean(questions, responses)
    with transaction.atomic():
        # Something that exists before the first submission: the student's own row. FOR NO
        # KEY UPDATE serialises this student's hand-ins without blocking rows that only
        # reference the student (their audit events, say) in other transactions.
        UserModel.objects.select_for_update(no_key=True).filter(pk=student.pk).first()
        if hand_in and token:
            done = Submission.objects.filter(
                assignment=assignment, student=student, hand_in_token=token
            ).first()
            if done is not None:
                if not _same_answers(done, cleaned):
                    raise SubmissionError(
                        _(
                            "This page was already handed in. Reload it to see your "
                            "submission, or to start your next attempt."
                        )
                    )
                return done
        # The state as it is now, not as the caller loaded it: a teacher may have closed
        # the assignment while the student was typing.
        assignment = Assignment.objects.select_related("course").get(pk=assignment.pk)
        reason = submission_closed_reason(assignment=assignment, now=timezone.now())
        if reason:
            raise SubmissionError(reason)
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
        existing = {a.question_id: a for a in latest.answers.all()}
        for question_id, question in questions.items():
            text, choices = cleaned[question_id]
            answer = existing.get(question_id) or Answer(submission=latest, question=question)
            answer.text, answer.choices = text, choices
            answer.save()
        if hand_in:
            latest = submission_submit(
                submission=latest, actor=actor or student, hand_in_token=token
            )
    return latest


def regrade_request_create(*, answer: Answer, student: UserModel, comment: str) -> RegradeRequest:
    """A student asks for a second look at a released grade of their own."""
    answer = Answer.objects.select_related("question__assignment", "submission").get(pk=answer.pk)
    assignment = answer.question.assignment
    if answer.submission.student_id != student.pk:
        raise SubmissionError(_("You can only ask about your own work."))
    if assignment.grades_released_at is None or answer.status != AnswerStatus.APPROVED:
        raise SubmissionError(_("You can ask for a regrade once the grade is released."))
    comment = clean_text(comment).strip()
    if not comment:
        raise SubmissionError(_("Say briefly what you would like your teacher to look at."))
    if len(comment) > REGRADE_COMMENT_MAX_CHARS:
        raise SubmissionError(
            _("Your request is too long; keep it to %(max)s characters.")
            % {"max": REGRADE_COMMENT_MAX_CHARS}
        )
    with transaction.atomic():
        # Lock the answer: two requests at once (a double click) must not both pass the
        # check below and meet the one-open-request constraint as a 500.
        Answer.objects.select_for_update(of=("self",)).filter(pk=answer.pk).first()
        open_request = answer.regrade_requests.filter(status=RegradeStatus.OPEN).first()
        if open_request is not None:
            if open_request.comment == comment:
                return open_request  # the same request sent twice
            raise SubmissionError(_("Your teacher has not answered your last request yet."))
        request = RegradeRequest.objects.create(answer=answer, student=student, comment=comment)
        audit_record(
            actor=student,
            action="regrade.requested",
            target=answer,
            after={"request": request.pk},
            reason=request.comment,
            assignment_id=assignment.pk,
            submission_id=answer.submission_id,
        )
        webhooks.regrade_requested_emit(request=request)
    return request


def submission_submit(
    *, submission: Submission, actor: UserModel | None = None, hand_in_token: str = ""
) -> Submission:
    """Hand in a submission; grading starts after the commit, never inside the request."""
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission.pk)
        if submission.status == SubmissionStatus.SUBMITTED:
            return submission
        now = timezone.now()
        submission.status = SubmissionStatus.SUBMITTED
        submission.submitted_at = now
        submission.is_late = submission.assignment.is_past_due(now)
        submission.hand_in_token = hand_in_token
        submission.save(
            update_fields=["status", "submitted_at", "is_late", "hand_in_token", "updated_at"]
        )
        audit_record(
            actor=actor,
            action="submission.submitted",
            target=submission,
            after={"attempt": submission.attempt, "late": submission.is_late},
            assignment_id=submission.assignment_id,
            submission_id=submission.pk,
        )
        answers_enqueue(answer_ids=submission.answers.values_list("pk", flat=True), pooled=True)
        lti_hooks.passback_request(
            assignment_id=submission.assignment_id, student_ids=[submission.student_id]
        )
    return submission
