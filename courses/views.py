"""Course pages. Views stay thin: ask `permissions`, query, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import RequestDataTooBig
from django.db.models import Count, Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from grading.models import Answer, Submission, SubmissionStatus
from grading.selectors import (
    feedback_details,
    student_answer_comments,
    student_pending_answers,
    student_visible_grades,
    submission_current,
    submission_handed_in,
    teacher_todo,
)
from grading.services import (
    SubmissionError,
    hand_in_token_new,
    regrade_request_create,
    submission_closed_reason,
    submission_save,
)
from grading.services.submissions import Responses
from grading.workspace import display_text, passages

from . import permissions
from .http import HtmxHttpRequest
from .models import Assignment, Enrollment, Question, Role, User
from .pdf import pdf_response
from .text import clean_text


@login_required
def home(request: HtmxHttpRequest) -> HttpResponse:
    """One page per person: a teacher's to-do list per course and assignment (answers to
    review, flags, regrade requests, missing work, grades not released), a student's
    assignments."""
    user = request.user
    teaching = (
        permissions.teaching_courses(user)
        .filter(archived=False)
        .annotate(
            managing=Exists(
                Enrollment.objects.active().filter(
                    course=OuterRef("pk"), user=user, role=Role.TEACHER
                )
            ),
        )
    )
    todo = teacher_todo(courses=teaching)
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
    return render(
        request,
        "courses/home.html",
        {
            "todo": todo,
            "regrades_open": sum(course.regrades for course in todo),
            "assignments": assignments,
        },
    )


def feedback_context(assignment: Assignment, student: User) -> dict[str, Any]:
    """What a student's feedback shows, on the page, in its PDF and in the teacher's printed
    bundle alike: their released, approved grades only (`student_visible_grades`)."""
    grades = feedback_details(
        grades=student_visible_grades(student=student, assignment=assignment),
        assignment=assignment,
    )
    return {
        "assignment": assignment,
        "student": student,
        "grades": grades,
        "total": sum(g.points for g in grades),
        "max_total": sum(g.max_points for g in grades),
        # The review workspace's part: questions not graded yet say "pending" (so the
        # total never reads as final), and the teacher's inline comments by answer.
        "pending": student_pending_answers(student=student, assignment=assignment),
        "inline_comments": student_answer_comments(grades=grades),
    }


def _own_feedback(request: HtmxHttpRequest, pk: int) -> Assignment:
    return get_object_or_404(
        permissions.student_assignments(request.user).select_related("course"), pk=pk
    )


@login_required
def assignment_feedback(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A student's released, approved grades for one assignment — nothing else, ever."""
    assignment = _own_feedback(request, pk)
    return render(request, "courses/feedback.html", feedback_context(assignment, request.user))


@login_required
def assignment_feedback_pdf(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The same feedback as a PDF to keep or print (nothing before release)."""
    assignment = _own_feedback(request, pk)
    sheet = feedback_sheet(feedback_context(assignment, request.user))
    if not sheet["grades"]:
        return redirect("assignment_feedback", pk=assignment.pk)
    return pdf_response(
        template="courses/feedback_pdf.html",
        context={"assignment": assignment, "sheets": [sheet]},
        filename=f"feedback-{assignment.pk}.pdf",
        request=request,
    )


def feedback_sheet(context: dict[str, Any]) -> dict[str, Any]:
    """`feedback_context` made ready for paper: each answer's text cut into the passages
    its inline comments cover (numbered, listed below the answer instead of beside it)."""
    comments = context["inline_comments"]
    for grade in context["grades"]:
        on_answer = comments.get(grade.answer_id, [])
        grade.print_comments = on_answer
        grade.print_passages = passages(display_text(grade.answer.text), on_answer)
    return context


@login_required
def assignment_work(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The student's form: one answer per question, drafts kept, handed in once ready.

    A refused save (closed, too long, out of attempts) shows the page again with what the
    student typed, so nothing they wrote is lost."""
    assignment = get_object_or_404(
        permissions.student_assignments(request.user).select_related("course"), pk=pk
    )
    questions = list(assignment.questions.order_by("order", "pk"))
    error = ""
    typed: Responses | None = None
    if request.method == "POST":
        typed = {
            q.pk: (request.POST.get(f"text-{q.pk}", ""), request.POST.getlist(f"choice-{q.pk}"))
            for q in questions
        }
        try:
            submission_save(
                assignment=assignment,
                student=request.user,
                responses=typed,
                hand_in=request.POST.get("action") == "submit",
                hand_in_token=request.POST.get("hand_in_token", ""),
            )
        except SubmissionError as exc:
            error = str(exc)
        else:
            if request.POST.get("action") == "submit":
                messages.success(request, _("Handed in. Your teacher will release the grades."))
                # Back to this page, which now shows what was handed in and its status.
                return redirect("assignment_work", pk=assignment.pk)
            messages.success(request, _("Draft saved."))
            return redirect("assignment_work", pk=assignment.pk)
    current = submission_current(assignment=assignment, student=request.user)
    return render(
        request,
        "courses/work.html",
        {**work_context(assignment, current=current, typed=typed), "error": error},
        status=400 if error else 200,
    )


def work_context(
    assignment: Assignment, *, current: Submission | None, typed: Responses | None = None
) -> dict[str, Any]:
    """What the student's page shows; the teacher's preview renders the same thing.

    Each item's text and choices are what the student just typed (`typed`, from a refused
    save) or else what is saved. Every rendering carries a fresh hand-in token."""
    questions = list(assignment.questions.order_by("order", "pk"))
    saved = {a.question_id: a for a in current.answers.all()} if current else {}
    items = []
    for q in questions:
        answer = saved.get(q.pk)
        if typed is not None:
            text, choices = typed.get(q.pk, ("", []))
            text = clean_text(text)
        else:
            text, choices = (answer.text, answer.choices) if answer else ("", [])
        items.append({"question": q, "answer": answer, "text": text, "choices": choices})
    closed_reason = submission_closed_reason(assignment=assignment)
    can_edit = not closed_reason and (
        current is None
        or current.status == SubmissionStatus.DRAFT
        or current.attempt < assignment.attempts_allowed
    )
    handed = current
    if current is not None and current.status == SubmissionStatus.DRAFT:
        # A draft of a later attempt: the receipt is still the attempt handed in before it.
        handed = submission_handed_in(assignment=assignment, student=current.student)
    # The attempt the next hand-in uses, and whether it is the last: the student confirms.
    attempt = current.attempt if current and current.status == SubmissionStatus.DRAFT else 0
    attempt = attempt or (handed.attempt + 1 if handed else 1)
    return {
        "handed_in": handed,
        "receipt": _receipt(questions, handed) if handed else [],
        "next_attempt": attempt,
        "last_attempt": attempt >= assignment.attempts_allowed,
        "assignment": assignment,
        "items": items,
        "current": current,
        "can_edit": can_edit,
        "closed_reason": closed_reason,
        # A refused save, and a closed assignment, still show the student's work (read only
        # when it cannot be saved), so that it can be copied and nothing typed is lost.
        # (What was handed in shows as the receipt instead.)
        "show_answers": can_edit
        or typed is not None
        or bool(closed_reason and current and current != handed),
        "hand_in_token": hand_in_token_new(),
        "answer_max_chars": settings.ANSWER_MAX_CHARS,
    }


def _receipt(questions: list[Question], handed: Submission) -> list[dict[str, Any]]:
    """What was handed in, per question, as the student wrote or chose it."""
    answers = {a.question_id: a for a in handed.answers.all()}
    items = []
    for q in questions:
        answer = answers.get(q.pk)
        options = {o.get("key"): o.get("text", "") for o in q.options or []}
        items.append(
            {
                "question": q,
                "text": answer.text if answer else "",
                "choices": [
                    (key, options.get(key, "")) for key in (answer.choices if answer else [])
                ],
            }
        )
    return items


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


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 400 page (`handler400`), in the site's layout and language. A form too large to
    read (RequestDataTooBig: Django refuses the body before any view sees it) answers 413
    and says how to get the text back and what fits.

    Takes a plain HttpRequest: the error may come from a middleware before HTMX's has run.
    """
    too_large = isinstance(exception, RequestDataTooBig)
    # Only a path on this site is offered as the way back ("//host" would leave it).
    on_site = request.path.startswith("/") and not request.path.startswith("//")
    back = request.path if on_site else ""
    return render(
        request,
        "400.html",
        {
            "too_large": too_large,
            "back": back,
            "answer_max_chars": settings.ANSWER_MAX_CHARS,
        },
        status=413 if too_large else 400,
    )
