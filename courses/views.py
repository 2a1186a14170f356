"""Course pages. Views stay thin: ask `permissions`, query, render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.db.models import Count, Exists, OuterRef, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from grading.models import Answer, Submission, SubmissionStatus
from grading.selectors import student_visible_grades, submission_current
from grading.services import SubmissionError, regrade_request_create, submission_save

from . import permissions
from .http import HtmxHttpRequest
from .models import Assignment, Enrollment, Role, User


@login_required
def home(request: HtmxHttpRequest) -> HttpResponse:
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
            managing=Exists(
                Enrollment.objects.active().filter(
                    course=OuterRef("pk"), user=user, role=Role.TEACHER
                )
            ),
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
def assignment_feedback(request: HtmxHttpRequest, pk: int) -> HttpResponse:
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


@login_required
def assignment_work(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The student's form: one answer per question, drafts kept, handed in once ready."""
    assignment = get_object_or_404(
        permissions.student_assignments(request.user).select_related("course"), pk=pk
    )
    questions = list(assignment.questions.order_by("order", "pk"))
    error = ""
    if request.method == "POST":
        responses = {
            q.pk: (request.POST.get(f"text-{q.pk}", ""), request.POST.getlist(f"choice-{q.pk}"))
            for q in questions
        }
        try:
            submission_save(
                assignment=assignment,
                student=request.user,
                responses=responses,
                hand_in=request.POST.get("action") == "submit",
            )
        except SubmissionError as exc:
            error = str(exc)
        else:
            if request.POST.get("action") == "submit":
                messages.success(request, _("Handed in. Your teacher will release the grades."))
                return redirect("home")
            messages.success(request, _("Draft saved."))
            return redirect("assignment_work", pk=assignment.pk)
    current = submission_current(assignment=assignment, student=request.user)
    return render(
        request,
        "courses/work.html",
        {**work_context(assignment, current=current), "error": error},
        status=400 if error else 200,
    )


def work_context(assignment: Assignment, *, current: Submission | None) -> dict[str, Any]:
    """What the student's page shows; the teacher's preview renders the same thing."""
    questions = list(assignment.questions.order_by("order", "pk"))
    saved = {a.question_id: a for a in current.answers.all()} if current else {}
    return {
        "assignment": assignment,
        "items": [{"question": q, "answer": saved.get(q.pk)} for q in questions],
        "current": current,
        "can_edit": (
            current is None
            or current.status == SubmissionStatus.DRAFT
            or current.attempt < assignment.attempts_allowed
        ),
    }


@login_required
@require_POST
def regrade_request(request: HtmxHttpRequest, answer_pk: int) -> HttpResponse:
    answer = get_object_or_404(
        Answer.objects.select_related("question__assignment", "submission").filter(
            submission__student=request.user,
            question__assignment__in=permissions.student_assignments(request.user),
        ),
        pk=answer_pk,
    )
    try:
        regrade_request_create(
            answer=answer, student=request.user, comment=request.POST.get("comment", "")
        )
    except SubmissionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your request was sent to your teacher."))
    return redirect("assignment_feedback", pk=answer.question.assignment_id)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, which also lifts the first-login requirement."""

    request: HtmxHttpRequest  # Django's view requires login: the user is one of ours
    success_url = reverse_lazy("home")

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_valid(form)
        User.objects.filter(pk=self.request.user.pk).update(must_change_password=False)
        messages.success(self.request, _("Your password was changed."))
        return response
