"""Tables for export and overview: the grade export and the course gradebook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Count,
    Prefetch,
    Q,
    Sum,
    TextChoices,
)
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from courses.models import (
    Assignment,
    AssignmentState,
    Course,
    Role,
)
from courses.models import User as UserModel

from ..models import (
    Answer,
    AnswerStatus,
    Criterion,
    FinalCriterionGrade,
    Submission,
    SubmissionStatus,
)
from .review import assignment_missing_students

# --- Export ----------------------------------------------------------------------------------


# A criterion's column: its title, and which of that title it is within its rubric (a
# rubric may hold two criteria of one title; the second exports as "title (2)").
CriterionKey = tuple[str, int]


def _criterion_keys(
    rubric_ids: set[int],
) -> tuple[dict[int, CriterionKey], dict[int, list[int]]]:
    """Criterion id → its column key, and rubric id → its criterion ids in rubric order."""
    keys: dict[int, CriterionKey] = {}
    criteria_of: dict[int, list[int]] = {pk: [] for pk in rubric_ids}
    seen: dict[tuple[int, str], int] = {}
    for pk, rubric_id, title in Criterion.objects.filter(rubric_id__in=rubric_ids).values_list(
        "pk", "rubric_id", "title"
    ):  # the model's ordering: rubric, order, id
        n = seen.get((rubric_id, title), 0) + 1
        seen[(rubric_id, title)] = n
        keys[pk] = (title, n)
        criteria_of[rubric_id].append(pk)
    return keys, criteria_of


class ExportStatus:
    """The `status` column of the grade export: whether a row's total is final."""

    COMPLETE = "complete"  # every question has an approved grade
    INCOMPLETE = "incomplete"  # some question has none yet (listed in `pending`)
    MISSING = "missing"  # a current student who never handed in


def assignment_grade_table(
    *, assignment: Assignment, missing_as_zero: bool = False
) -> tuple[list[str], list[list[Any]]]:
    """Approved grades of every submission, per criterion and in total, for export.

    A cell is empty where no grade was approved: an export never shows a proposal, and an
    answer marked approved without a grade behind it (old data) exports as ungraded.
    Every grade keeps the criteria it was given with: a question's criterion columns are
    the titles of its current rubric and of every rubric version its grades used, so a
    grade from an earlier version is exported in full, beside the newer columns.

    No row looks final unless it is: `status` says complete, incomplete (its total adds
    up only the approved questions; `pending` names the others) or missing, a current
    student who never handed in. A missing student's totals are empty, or 0 with
    `missing_as_zero` (the teacher's choice when exporting).
    """
    questions = list(assignment.questions.order_by("order", "pk"))
    submissions = list(
        Submission.objects.filter(assignment=assignment, status=SubmissionStatus.SUBMITTED)
        .select_related("student")
        .prefetch_related(
            Prefetch(
                "answers",
                queryset=Answer.objects.filter(
                    status=AnswerStatus.APPROVED, final_grade__isnull=False
                ).select_related("final_grade"),
            ),
            Prefetch(
                "answers__final_grade__criteria",
                queryset=FinalCriterionGrade.objects.select_related("criterion"),
            ),
        )
        .order_by("student__username", "attempt")
    )
    # The rubrics each question's columns come from: its current one, then those graded with.
    used: dict[int, set[int]] = {
        q.pk: {q.rubric_id} if q.is_subjective and q.rubric_id else set() for q in questions
    }
    for s in submissions:
        for answer in s.answers.all():
            for row in answer.final_grade.criteria.all():
                used.setdefault(answer.question_id, set()).add(row.criterion.rubric_id)
    keys, criteria_of = _criterion_keys(set().union(*used.values()))

    header = [
        "username",
        "name",
        "student_number",
        "attempt",
        "submitted_at",
        "late",
        "status",
        "pending",
    ]
    columns: list[tuple[int, CriterionKey | None]] = []  # (question id, criterion or total)
    for q in questions:
        # The current rubric first, then older ones newest first (a later version has a
        # higher id); a title takes the place it has in the newest rubric that has it, and
        # titles at the same place sit side by side, newest first.
        ranked = sorted(used.get(q.pk, ()), key=lambda pk: (pk != q.rubric_id, -pk))
        place: dict[CriterionKey, tuple[int, int]] = {}
        for rank, rubric_id in enumerate(ranked):
            for position, criterion_id in enumerate(criteria_of[rubric_id]):
                place.setdefault(keys[criterion_id], (position, rank))
        for title, n in sorted(place, key=place.__getitem__):
            header.append(f"Q{q.order} {title}" if n == 1 else f"Q{q.order} {title} ({n})")
            columns.append((q.pk, (title, n)))
        header.append(f"Q{q.order} total")
        columns.append((q.pk, None))
    header.append("total")
    rows = []
    for s in submissions:
        cells: dict[tuple[int, CriterionKey | None], int] = {}
        for answer in s.answers.all():
            grade = answer.final_grade
            cells[(answer.question_id, None)] = grade.points
            for row in grade.criteria.all():
                cells[(answer.question_id, keys[row.criterion_id])] = row.points
        totals = [cells[k] for k in columns if k[1] is None and k in cells]
        pending = [f"Q{q.order}" for q in questions if (q.pk, None) not in cells]
        rows.append(
            [
                s.student.username,
                s.student.display_name,
                s.student.student_number or "",
                s.attempt,
                timezone.localtime(s.submitted_at).isoformat() if s.submitted_at else "",
                "yes" if s.is_late else "",
                ExportStatus.INCOMPLETE if pending else ExportStatus.COMPLETE,
                " ".join(pending),
                *[cells.get(k, "") for k in columns],
                sum(totals) if totals else "",
            ]
        )
    missing_total: int | str = 0 if missing_as_zero else ""
    for student in assignment_missing_students(assignment=assignment):
        rows.append(
            [
                student.username,
                student.display_name,
                student.student_number or "",
                "",
                "",
                "",
                ExportStatus.MISSING,
                "",
                *["" if k[1] is not None else missing_total for k in columns],
                missing_total,
            ]
        )
    return header, rows


class GradebookStatus(TextChoices):
    """Where one student's work on one assignment stands, from hand-in to release."""

    MISSING = "missing", _("Missing")
    SUBMITTED = "submitted", _("Submitted")
    GRADING = "grading", _("Grading")
    AWAITING_REVIEW = "awaiting_review", _("Awaiting review")
    APPROVED = "approved", _("Approved")
    RELEASED = "released", _("Released")


@dataclass(frozen=True)
class GradebookCell:
    status: GradebookStatus
    submission_id: int | None = None
    attempt: int | None = None
    late: bool = False
    # The approved total once every answer is approved; None while anything is open, and
    # while an anonymously graded assignment is unreleased (a named total would undo the
    # anonymity of the review pages, whose queue shows totals).
    points: int | None = None
    max_points: int | None = None


@dataclass
class Gradebook:
    assignments: list[Assignment]
    rows: list[tuple[UserModel, list[GradebookCell]]]


def course_gradebook(*, course: Course) -> Gradebook:
    """Current students × the course's assignments (drafts left out: nobody can hand them
    in), each cell the state of the student's latest handed-in attempt. Three queries."""
    assignments = list(
        course.assignments.exclude(state=AssignmentState.DRAFT).order_by("due_at", "pk")
    )
    students = list(
        UserModel.objects.filter(
            enrollments__course=course,
            enrollments__role=Role.STUDENT,
            enrollments__ended_at__isnull=True,
        )
        .distinct()
        .order_by("student_number", "username")
    )
    approved = Q(answers__status=AnswerStatus.APPROVED)
    latest: dict[tuple[int, int], Mapping[str, Any]] = {}
    for row in (
        Submission.objects.filter(assignment__in=assignments, status=SubmissionStatus.SUBMITTED)
        .values("pk", "assignment_id", "student_id", "attempt", "is_late")
        .annotate(
            answers_n=Count("answers"),
            pending=Count("answers", filter=Q(answers__status=AnswerStatus.PENDING)),
            grading=Count("answers", filter=Q(answers__status=AnswerStatus.GRADING)),
            waiting=Count(
                "answers",
                filter=Q(answers__status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL]),
            ),
            points=Sum("answers__final_grade__points", filter=approved),
            max_points=Sum("answers__final_grade__max_points", filter=approved),
        )
        .order_by("attempt")
    ):
        latest[(row["student_id"], row["assignment_id"])] = row  # the last attempt wins
    rows = []
    for student in students:
        cells = []
        for a in assignments:
            cells.append(_gradebook_cell(a, latest.get((student.pk, a.pk))))
        rows.append((student, cells))
    return Gradebook(assignments=assignments, rows=rows)


def _gradebook_cell(assignment: Assignment, row: Mapping[str, Any] | None) -> GradebookCell:
    if row is None:
        return GradebookCell(GradebookStatus.MISSING)
    # The least advanced answer decides: a submission is only as far along as its slowest part.
    if row["pending"] or not row["answers_n"]:
        status = GradebookStatus.SUBMITTED
    elif row["grading"]:
        status = GradebookStatus.GRADING
    elif row["waiting"]:
        status = GradebookStatus.AWAITING_REVIEW
    elif assignment.grades_released:
        status = GradebookStatus.RELEASED
    else:
        status = GradebookStatus.APPROVED
    complete = status in (GradebookStatus.APPROVED, GradebookStatus.RELEASED)
    show_points = complete and (assignment.grades_released or not assignment.anonymous_grading)
    return GradebookCell(
        status=status,
        submission_id=row["pk"],
        attempt=row["attempt"],
        late=row["is_late"],
        points=(row["points"] or 0) if show_points else None,
        max_points=(row["max_points"] or 0) if show_points else None,
    )


def gradebook_table(*, gradebook: Gradebook) -> tuple[list[str], list[list[Any]]]:
    """The gradebook as export rows: per assignment its status code and approved points."""
    header = ["username", "name", "student_number"]
    for a in gradebook.assignments:
        header += [f"{a.title} status", f"{a.title} points", f"{a.title} max"]
    rows = []
    for student, cells in gradebook.rows:
        row: list[Any] = [student.username, student.display_name, student.student_number or ""]
        for cell in cells:
            row += [
                cell.status.value,
                "" if cell.points is None else cell.points,
                "" if cell.max_points is None else cell.max_points,
            ]
        rows.append(row)
    return header, rows
