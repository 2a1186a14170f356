"""Reads. Keyword-only functions that return what a page, a command or the API shows.

Nothing here writes. Permission checks stay in `courses.permissions`; callers pass
objects they are allowed to see. One rule lives only here: `grading_rubric`, the
rubric snapshot an answer is graded against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Case, Count, F, IntegerField, Prefetch, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from courses.models import SUBJECTIVE_KINDS, Assignment
from courses.models import User as UserModel

from .models import (
    Answer,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    AuditEvent,
    FinalGrade,
    RegradeRequest,
    RegradeStatus,
    Rubric,
    Snapshot,
    Submission,
    SubmissionStatus,
)

REVIEWABLE = (AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL, AnswerStatus.APPROVED)


# --- The rubric an answer is graded against -----------------------------------------------


def grading_proposal(*, answer: Answer) -> Assessment | None:
    """The answer's current AI (or rule) proposal, if its scoring run completed."""
    proposal = answer.current_assessment
    if proposal is None or proposal.status != AssessmentStatus.COMPLETED:
        return None
    return proposal


def grading_rubric(*, answer: Answer) -> dict[str, Any] | None:
    """The rubric snapshot a grade for this answer is given against.

    The snapshot its current proposal was scored with, so a rubric edited since
    never rewrites what the teacher approves; with no proposal (manual grading,
    a failed run), the question's current rubric; None when the question has none.
    """
    proposal = grading_proposal(answer=answer)
    if proposal is not None and proposal.rubric_snapshot is not None:
        return proposal.rubric_snapshot.data
    rubric = answer.question.rubric
    return rubric.snapshot() if rubric is not None else None


# --- Answers scored with an older rubric version -------------------------------------


def rubric_outdated_answers(*, rubric: Rubric) -> QuerySet[Answer]:
    """Answers to questions now on this version whose current proposal was scored with an
    earlier version of the same rubric."""
    older = Snapshot.objects.filter(data__lineage=str(rubric.lineage)).exclude(data__id=rubric.pk)
    return Answer.objects.filter(
        question__rubric=rubric, current_assessment__rubric_snapshot__in=older
    )


def rubric_outdated_by_assignment(*, rubric: Rubric) -> list[dict[str, Any]]:
    """Per assignment: how many answers were scored with an older version, how many of those
    are still awaiting review (a regrade replaces their proposal) and how many are approved
    (their grades stand unless the teacher reopens them)."""
    rows = (
        rubric_outdated_answers(rubric=rubric)
        .values("question__assignment_id")
        .annotate(
            total=Count("pk"),
            approved=Count("pk", filter=Q(status=AnswerStatus.APPROVED)),
        )
    )
    titles = dict(
        Assignment.objects.filter(pk__in=[r["question__assignment_id"] for r in rows]).values_list(
            "pk", "title"
        )
    )
    return [
        {
            "assignment_id": r["question__assignment_id"],
            "title": titles.get(r["question__assignment_id"], ""),
            "total": r["total"],
            "approved": r["approved"],
            "regradable": r["total"] - r["approved"],
        }
        for r in rows
    ]


def assignment_outdated_questions(*, assignment: Assignment) -> list[dict[str, Any]]:
    """Questions of this assignment with answers scored against an older rubric version."""
    rows = []
    for question in assignment.questions.filter(rubric__isnull=False).select_related("rubric"):
        if question.rubric is None:
            continue
        answers = rubric_outdated_answers(rubric=question.rubric).filter(question=question)
        count = answers.count()
        if count:
            waiting = answers.exclude(status=AnswerStatus.APPROVED).count()
            rows.append(
                {
                    "question": question,
                    "rubric": question.rubric,
                    "count": count,
                    "regradable": waiting,
                }
            )
    return rows


# --- Progress -------------------------------------------------------------------------------


def assignment_progress(*, assignment: Assignment) -> dict[str, int]:
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


def assignment_usage(*, assignment: Assignment, since: datetime | None = None) -> dict[str, int]:
    """Model tokens spent on an assignment (since a moment, e.g. the start of a run)."""
    qs = Assessment.objects.filter(answer__submission__assignment=assignment)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    totals = qs.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    return {"prompt_tokens": totals["p"] or 0, "completion_tokens": totals["c"] or 0}


# --- Review -----------------------------------------------------------------------------------


def review_queue(*, assignment: Assignment, status: str = "") -> QuerySet[Answer]:
    """Subjective answers to review; manual, flagged and low-confidence first."""
    answers = (
        Answer.objects.filter(
            submission__assignment=assignment,
            submission__status=SubmissionStatus.SUBMITTED,
            question__kind__in=SUBJECTIVE_KINDS,
            status__in=REVIEWABLE,
        )
        .select_related("submission__student", "question", "current_assessment", "final_grade")
        .annotate(
            attention=Case(
                When(status=AnswerStatus.NEEDS_MANUAL, then=Value(0)),
                When(~Q(current_assessment__flags=[]), then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
    )
    if status in REVIEWABLE:
        answers = answers.filter(status=status)
    return answers.order_by(
        "attention",
        F("current_assessment__confidence").asc(nulls_last=True),
        "question__order",
        "pk",
    )


def review_neighbours(*, answer: Answer, assignment: Assignment) -> dict[str, Any]:
    """Where the answer stands in the review queue, and the answers either side of it."""
    order = list(review_queue(assignment=assignment).values_list("pk", flat=True))
    index = order.index(answer.pk) if answer.pk in order else -1
    return {
        "previous_id": order[index - 1] if index > 0 else None,
        "next_id": order[index + 1] if 0 <= index < len(order) - 1 else None,
        "position": index + 1,
        "queue_length": len(order),
    }


def regrade_requests_open(*, assignment: Assignment) -> QuerySet[RegradeRequest]:
    return RegradeRequest.objects.filter(
        answer__question__assignment=assignment, status=RegradeStatus.OPEN
    ).select_related("answer__question", "student")


def audit_events(
    *, assignment: Assignment | None = None, submission: Submission | None = None
) -> QuerySet[AuditEvent]:
    """An assignment's (or one submission's) recorded changes, newest first."""
    events = AuditEvent.objects.all()
    if submission is not None:
        events = events.filter(submission_id=submission.pk)
    elif assignment is not None:
        events = events.filter(assignment_id=assignment.pk)
    return events.order_by("-id")


# --- What students see ------------------------------------------------------------------------


def submission_current(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's open draft, else their latest handed-in attempt."""
    return (
        Submission.objects.filter(assignment=assignment, student=student)
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


# --- Export ----------------------------------------------------------------------------------


def assignment_grade_table(*, assignment: Assignment) -> tuple[list[str], list[list[Any]]]:
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
