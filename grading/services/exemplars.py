"""Calibration: teachers choose the exemplars, and regrade with them.

Every answer a teacher graded is an exemplar of its question unless the teacher
excludes it; a pinned one goes first into the model's prompt
(`grading.prompts.select_exemplars`). "Regrade with calibration" measures, on the
answers the teacher already graded, how the offline engine agrees with the
teacher before (zero-shot) and after calibration (each answer scored without its
own grade: leave-one-out), then queues the assignment's ungraded answers again:
their input hash holds the exemplar set, so only questions whose exemplars
changed are graded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.db import transaction

from courses.models import Assignment, Question
from courses.models import User as UserModel

from .. import analytics, calibration
from ..agreement import Agreement
from ..audit import audit_record
from ..models import Answer, AnswerStatus, ExemplarChoice
from .pipeline import question_exemplars
from .queue import assignment_grade
from .review import BulkApproval, grades_bulk_approve

Choice = Literal["pinned", "excluded", "default"]


def exemplar_choose(*, answer: Answer, actor: UserModel, choice: Choice) -> None:
    """Pin an answer as an exemplar, exclude it, or give it back its default."""
    with transaction.atomic():
        current = ExemplarChoice.objects.select_for_update().filter(answer=answer).first()
        before = None if current is None else ("pinned" if current.pinned else "excluded")
        after = None if choice == "default" else choice
        if before == after:
            return
        if choice == "default":
            ExemplarChoice.objects.filter(answer=answer).delete()
        else:
            ExemplarChoice.objects.update_or_create(
                answer=answer, defaults={"pinned": choice == "pinned", "chosen_by": actor}
            )
        audit_record(
            actor=actor,
            action="answer.exemplar_changed",
            target=answer,
            before={"exemplar": before},
            after={"exemplar": after},
            assignment_id=answer.submission.assignment_id,
            submission_id=answer.submission_id,
        )


CHECK_MIN = calibration.CALIBRATION_MIN + 1  # graded answers before a check says anything


@dataclass(frozen=True)
class CalibrationCheck:
    question: Question
    exemplars: int
    before: Agreement  # zero-shot vs the teacher
    after: Agreement  # calibrated (leave-one-out) vs the teacher


def question_calibration_check(*, question: Question) -> CalibrationCheck | None:
    """Agreement with the teacher on the question's graded answers, zero-shot and
    calibrated, by leave-one-out; None for a question without a rubric or too few grades
    (each left-out answer must leave CALIBRATION_MIN to calibrate on)."""
    if question.rubric is None or not question.is_subjective:
        return None
    snapshot = question.rubric.snapshot()
    graded = question_exemplars(question=question, snapshot=snapshot)
    if len(graded) < CHECK_MIN:
        return None
    before, after = calibration.cross_validate(
        snapshot=snapshot,
        question=question.prompt,
        reference=question.reference_answer,
        language=question.assignment.language,
        graded=graded,
    )
    return CalibrationCheck(question, len(graded), before, after)


def assignment_regrade_calibrated(
    *, assignment: Assignment, actor: UserModel
) -> tuple[int, list[CalibrationCheck]]:
    """Measure calibration per question, then queue the assignment's answers that are not
    approved yet (unchanged inputs are not graded twice). Returns (queued, checks)."""
    checks = [
        check
        for question in assignment.questions.select_related("rubric", "assignment")
        if (check := question_calibration_check(question=question)) is not None
    ]
    queued = assignment_grade(assignment=assignment, actor=actor)
    return queued, checks


class BulkApprovalNotJustified(Exception):
    """The measured agreement for the question does not justify approving in bulk."""


def question_bulk_approve_trusted(*, question: Question, actor: UserModel) -> BulkApproval:
    """Approve all above confidence X, for one question: every answer awaiting review
    whose proposal is confident (at least LOW_CONFIDENCE) and not flagged — only when the
    AI's measured agreement with the teachers on that question justifies it."""
    measured = analytics.assignment_agreement(assignment=question.assignment, question=question)
    if not measured.bulk_approval_justified:
        raise BulkApprovalNotJustified(question.pk)
    waiting = Answer.objects.filter(question=question, status=AnswerStatus.GRADED)
    return grades_bulk_approve(
        answer_ids=list(waiting.values_list("pk", flat=True)),
        actor=actor,
        include_low_confidence=False,
    )
