"""A teacher's overview: the to-do list per course and assignment, the regrade inbox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
)

from courses.models import (
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    Role,
)

from ..models import (
    Answer,
    AnswerStatus,
    RegradeRequest,
    RegradeStatus,
    Submission,
    SubmissionStatus,
)

# --- A teacher's overview: the to-do list, the regrade inbox, the gradebook -------------------


@dataclass
class AssignmentTodo:
    """What one assignment still asks of its teachers."""

    assignment: Assignment
    students: int = 0  # current students of the course
    handed_in: int = 0  # of them, how many handed in (any attempt)
    in_flight: int = 0  # answers handed in and not graded yet
    waiting: int = 0  # answers awaiting a teacher's review (proposals and manual grading)
    flagged: int = 0  # of the waiting proposals, those with a flag
    regrades: int = 0  # open regrade requests
    ready: int = 0  # submissions graded in full whose grades students cannot see yet

    @property
    def missing(self) -> int:
        """Current students who have not handed in (none for a draft: nobody can)."""
        if self.assignment.state == AssignmentState.DRAFT:
            return 0
        return max(0, self.students - self.handed_in)

    @property
    def unreleased(self) -> int:
        return 0 if self.assignment.grades_released else self.ready

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.regrades or self.unreleased)


@dataclass
class CourseTodo:
    course: Course
    students: int
    assignments: list[AssignmentTodo] = field(default_factory=list)

    @property
    def regrades(self) -> int:
        return sum(a.regrades for a in self.assignments)

    @property
    def waiting(self) -> int:
        return sum(a.waiting for a in self.assignments)


def _by_assignment(rows: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {row["assignment_id"]: row for row in rows}


def teacher_todo(*, courses: QuerySet[Course]) -> list[CourseTodo]:
    """Per course and assignment: answers waiting for review (and how many are flagged),
    open regrade requests, students who have not handed in, and grades ready but not
    released. Seven queries, however many courses, assignments and students there are
    (the home page of a teacher with ten classes must not read a thousand rows one by one).
    """
    course_list = list(courses.order_by("code", "pk"))
    course_ids = [c.pk for c in course_list]
    students = dict(
        Enrollment.objects.active()
        .filter(course_id__in=course_ids, role=Role.STUDENT)
        .values_list("course_id")
        .annotate(n=Count("user_id", distinct=True))
    )
    assignments = list(Assignment.objects.filter(course_id__in=course_ids).order_by("due_at", "pk"))
    ids = [a.pk for a in assignments]
    handed = Submission.objects.filter(assignment_id__in=ids, status=SubmissionStatus.SUBMITTED)
    answers = _by_assignment(
        Answer.objects.filter(submission__in=handed)
        .values(assignment_id=F("submission__assignment_id"))
        .annotate(
            in_flight=Count(
                "pk", filter=Q(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING])
            ),
            waiting=Count(
                "pk", filter=Q(status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL])
            ),
            flagged=Count(
                "pk", filter=Q(status=AnswerStatus.GRADED) & ~Q(current_assessment__flags=[])
            ),
        )
        .order_by()
    )
    ready = dict(
        handed.filter(
            ~Exists(
                Answer.objects.filter(submission=OuterRef("pk")).exclude(
                    status=AnswerStatus.APPROVED
                )
            )
        )
        .values_list("assignment_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    # Only current students count as handed in: someone who left keeps their work, but
    # the missing count is about the class as it is now.
    current = Enrollment.objects.active().filter(
        course_id=OuterRef("assignment__course_id"),
        user_id=OuterRef("student_id"),
        role=Role.STUDENT,
    )
    handed_in = dict(
        handed.filter(Exists(current))
        .values_list("assignment_id")
        .annotate(n=Count("student_id", distinct=True))
        .order_by()
    )
    regrades = dict(
        RegradeRequest.objects.filter(
            status=RegradeStatus.OPEN, answer__question__assignment_id__in=ids
        )
        .values_list("answer__question__assignment_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    todo = {c.pk: CourseTodo(course=c, students=students.get(c.pk, 0)) for c in course_list}
    for a in assignments:
        row = answers.get(a.pk, {})
        todo[a.course_id].assignments.append(
            AssignmentTodo(
                assignment=a,
                students=students.get(a.course_id, 0),
                handed_in=handed_in.get(a.pk, 0),
                in_flight=row.get("in_flight", 0),
                waiting=row.get("waiting", 0),
                flagged=row.get("flagged", 0),
                regrades=regrades.get(a.pk, 0),
                ready=ready.get(a.pk, 0),
            )
        )
        a.course = todo[a.course_id].course  # spare a query per row in the template
    return list(todo.values())


def regrade_inbox(*, assignments: QuerySet[Assignment]) -> QuerySet[RegradeRequest]:
    """Open regrade requests of these assignments (a teacher's, across all their courses),
    the oldest first: a student has waited longest for that answer."""
    return (
        RegradeRequest.objects.filter(
            status=RegradeStatus.OPEN, answer__question__assignment__in=assignments
        )
        .select_related(
            "answer__question__assignment__course",
            "answer__submission__student",
            "answer__final_grade",
        )
        .order_by("created_at", "pk")
    )
