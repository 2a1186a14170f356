"""Reads for what students see: their submission, their released grades and the feedback
that explains them (the page, its PDF and the teacher's printed bundle)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import (
    Prefetch,
    prefetch_related_objects,
)

from courses.models import (
    Assignment,
    QuestionKind,
)
from courses.models import User as UserModel

from ..models import (
    Answer,
    AnswerComment,
    AnswerStatus,
    Assessment,
    FinalCriterionGrade,
    FinalGrade,
    Scorer,
    Submission,
    SubmissionStatus,
)
from ..workspace import level_met

# --- What students see ------------------------------------------------------------------------


def submission_current(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's open draft, else their latest handed-in attempt."""
    return (
        Submission.objects.filter(assignment=assignment, student=student)
        .order_by("-attempt")
        .prefetch_related("answers")
        .first()
    )


def submission_handed_in(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's latest handed-in attempt, with its answers."""
    return (
        Submission.objects.filter(
            assignment=assignment, student=student, status=SubmissionStatus.SUBMITTED
        )
        .order_by("-attempt")
        .prefetch_related("answers")
        .first()
    )


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


def student_pending_answers(*, student: UserModel, assignment: Assignment) -> list[Answer]:
    """Once grades are released, the student's handed-in answers (of their latest attempt)
    that have no approved grade yet: their page marks these "pending", so that a total of
    the approved ones never reads as the final mark."""
    if assignment.grades_released_at is None:
        return []
    latest = (
        Submission.objects.filter(
            assignment=assignment, student=student, status=SubmissionStatus.SUBMITTED
        )
        .order_by("-attempt")
        .values("pk")[:1]
    )
    return list(
        Answer.objects.filter(submission__in=latest)
        .exclude(status=AnswerStatus.APPROVED)
        .select_related("question")
        .order_by("question__order", "question_id")
    )


def student_answer_comments(*, grades: Iterable[FinalGrade]) -> dict[int, list[AnswerComment]]:
    """Answer id → the inline comments a student may read on it: those on the answers of
    grades from `student_visible_grades` (approved, released, their own), by position."""
    comments: dict[int, list[AnswerComment]] = {}
    for comment in AnswerComment.objects.filter(answer_id__in=[g.answer_id for g in grades]):
        comments.setdefault(comment.answer_id, []).append(comment)
    return comments


# --- Feedback a student reads (the page, its PDF, the teacher's printed bundle) ---------------


@dataclass(frozen=True)
class CriterionFeedback:
    title: str
    points: int
    max_points: int
    level: str  # the descriptor of the level the score met ("" when the criterion has none)
    level_title: str
    comment: str  # what the teacher approved as the explanation ("" when nothing)
    changed_by_teacher: bool


@dataclass(frozen=True)
class ObjectiveFeedback:
    given: str  # the student's answer, as they gave it
    correct: str  # the key ("" when the teacher does not show keys, or it is a pattern)


def _criterion_comment(row: FinalCriterionGrade, rationale: dict[int, str], by_model: bool) -> str:
    # The teacher's own comment first. The model's rationale explains its score, so it is
    # the explanation the teacher approved only where they kept that score; the offline
    # rule engine's "rationale" is a note for teachers (term coverage), never for students.
    if row.comment:
        return row.comment
    if by_model and not row.changed_by_teacher:
        return rationale.get(row.criterion_id, "")
    return ""


def _objective_feedback(answer: Answer, *, show_key: bool) -> ObjectiveFeedback:
    question = answer.question
    key = question.answer_key or {}
    if question.is_choice:
        options = {o.get("key"): o.get("text", "") for o in question.options or []}
        given = "; ".join(f"{k}. {options.get(k, '')}" for k in answer.choices)
        correct = "; ".join(f"{k}. {options.get(k, '')}" for k in key.get("correct") or [])
    elif question.kind == QuestionKind.NUMERIC:
        given = answer.text
        tolerance = key.get("tolerance") or 0
        value = key.get("value", "")
        correct = f"{value} ± {tolerance}" if tolerance else str(value)
    else:
        given = answer.text
        # A pattern is the teacher's tool for accepting variants, not an answer to show.
        accepted = [] if key.get("regex") else [str(a) for a in key.get("accepted") or []]
        correct = " / ".join(accepted)
    return ObjectiveFeedback(given=given, correct=correct if show_key else "")


def feedback_details(*, grades: list[FinalGrade], assignment: Assignment) -> list[FinalGrade]:
    """Adds to each of these grades (from `student_visible_grades`) what the student's
    feedback shows beside the score: `criterion_feedback`, each criterion with the level
    descriptor its score met and the comment the teacher approved; and `objective`, for an
    objective item, the student's answer and — when the assignment shows answer keys —
    the correct one. A fixed number of queries (prefetches), however many grades."""
    prefetch_related_objects(
        grades,
        Prefetch(
            "criteria",
            queryset=FinalCriterionGrade.objects.select_related("criterion").prefetch_related(
                "criterion__levels"
            ),
        ),
        Prefetch("based_on", queryset=Assessment.objects.prefetch_related("scores")),
    )
    for grade in grades:
        proposal = grade.based_on
        by_model = proposal is not None and proposal.scorer == Scorer.LLM
        rationale = (
            {s.criterion_id: s.rationale for s in proposal.scores.all()}
            if proposal is not None and by_model
            else {}
        )
        rows = []
        for row in grade.criteria.all():
            criterion = row.criterion
            levels = list(criterion.levels.all())
            met = level_met([{"points": lv.points} for lv in levels], row.points)
            level = levels[met] if met is not None else None
            rows.append(
                CriterionFeedback(
                    title=criterion.title,
                    points=row.points,
                    max_points=row.max_points,
                    level=level.descriptor if level else "",
                    level_title=level.title if level else "",
                    comment=_criterion_comment(row, rationale, by_model),
                    changed_by_teacher=row.changed_by_teacher,
                )
            )
        grade.criterion_feedback = rows  # type: ignore[attr-defined]
        question = grade.answer.question
        grade.objective = (  # type: ignore[attr-defined]
            None
            if question.is_subjective
            else _objective_feedback(grade.answer, show_key=assignment.show_answer_keys)
        )
    return grades
