"""Course pages. Views stay thin: ask `permissions`, query, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from grading.models import SubmissionStatus
from grading.services import student_visible_grades

from . import permissions


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """One page per person: what they teach, what they have to do."""
    user = request.user
    teaching = (
        permissions.teaching_courses(user)
        .filter(archived=False)
        .annotate(
            student_count=Count(
                "enrollments",
                filter=Q(enrollments__role="student", enrollments__ended_at__isnull=True),
                distinct=True,
            ),
            assignment_count=Count("assignments", distinct=True),
        )
        .order_by("code")
    )
    assignments = (
        permissions.student_assignments(user)
        .select_related("course")
        .annotate(
            submitted=Count(
                "submissions",
                filter=Q(
                    submissions__student=user,
                    submissions__status=SubmissionStatus.SUBMITTED,
                ),
            )
        )
        .order_by("due_at", "id")
    )
    teaching_assignments = (
        permissions.teachable_assignments(user)
        .filter(course__archived=False)
        .select_related("course")
        .order_by("course__code", "due_at", "id")
    )
    return render(
        request,
        "courses/home.html",
        {
            "teaching": teaching,
            "teaching_assignments": teaching_assignments,
            "assignments": assignments,
        },
    )


@login_required
def assignment_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    """A student's released, approved grades for one assignment — nothing else, ever."""
    assignment = get_object_or_404(
        permissions.student_assignments(request.user).select_related("course"), pk=pk
    )
    grades = student_visible_grades(student=request.user, assignment=assignment)
    return render(
        request,
        "courses/feedback.html",
        {
            "assignment": assignment,
            "grades": grades,
            "total": sum(g.points for g in grades),
            "max_total": sum(g.max_points for g in grades),
        },
    )
