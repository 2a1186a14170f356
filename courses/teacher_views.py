"""Teachers' pages: courses, assignments and questions; the roster's own pages are in
`roster_views`. Thin: permission, form, service, render. Other people's courses are 404s —
an outsider learns nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from grading.models import Rubric, SubmissionStatus
from grading.rubrics import rubric_copy

from . import permissions, rosters, services
from .forms import (
    AssignmentForm,
    CourseForm,
    EnrollmentAddForm,
    QuestionForm,
    RubricChoices,
    add_errors,
)
from .http import HtmxHttpRequest, parse_id
from .models import (
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    Question,
    QuestionKind,
    Role,
    User,
)
from .pdf import pdf_response
from .views import feedback_context, feedback_sheet, work_context

Saved = TypeVar("Saved")


def managed_course(request: HtmxHttpRequest, pk: int) -> Course:
    """The course if this teacher manages it, else a 404 (the roster's views use it too)."""
    return get_object_or_404(permissions.managed_courses(request.user), pk=pk)


def _assignment(request: HtmxHttpRequest, pk: int) -> Assignment:
    return get_object_or_404(
        permissions.managed_assignments(request.user).select_related("course"), pk=pk
    )


def _question(request: HtmxHttpRequest, pk: int) -> Question:
    return get_object_or_404(
        permissions.managed_questions(request.user).select_related("assignment__course"), pk=pk
    )


def _submit(
    request: HtmxHttpRequest, form: forms.BaseForm, save: Callable[[dict[str, Any]], Saved]
) -> Saved | None:
    """On a valid POST, hand the form's values to a service; its ValidationError lands on the
    form's fields. Returns what the service returned, or None when there is a form to show."""
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        return save({name: form.cleaned_data[name] for name in form.fields})
    except ValidationError as exc:
        add_errors(form, exc)
        return None


def _form_page(request: HtmxHttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    return render(request, template, context, status=400 if context["form"].errors else 200)


# --- Courses ------------------------------------------------------------------------


@login_required
def course_list(request: HtmxHttpRequest) -> HttpResponse:
    courses = (
        Course.objects.filter(pk__in=permissions.managed_courses(request.user).values("pk"))
        .with_counts()
        .order_by("archived", "code")
    )
    return render(
        request,
        "teach/course_list.html",
        {"courses": courses, "can_create": permissions.is_teacher(request.user)},
    )


@login_required
def course_create(request: HtmxHttpRequest) -> HttpResponse:
    if not permissions.is_teacher(request.user):
        raise PermissionDenied
    form = CourseForm(request.POST or None, initial={"language": request.LANGUAGE_CODE})
    course = _submit(request, form, lambda v: services.course_create(actor=request.user, **v))
    if course is not None:
        messages.success(request, _("Course created. Add students next."))
        return redirect("teach:course", pk=course.pk)
    return _form_page(request, "teach/course_form.html", {"form": form})


@login_required
def course_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    course = managed_course(request, pk)
    form = CourseForm(request.POST or None, instance=course)
    # The form writes its values onto `course`; the service compares against the stored row.
    saved = _submit(
        request,
        form,
        lambda v: services.course_update(
            course=Course.objects.get(pk=course.pk), actor=request.user, **v
        ),
    )
    if saved is not None:
        messages.success(request, _("Saved."))
        return redirect("teach:course", pk=course.pk)
    return _form_page(request, "teach/course_form.html", {"form": form, "course": course})


@login_required
@require_POST
def course_archive(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    course = managed_course(request, pk)
    archived = request.POST.get("archived") == "1"
    services.course_archive(course=course, actor=request.user, archived=archived)
    messages.success(
        request,
        _("Course archived: students no longer see it.") if archived else _("Course restored."),
    )
    return redirect("teach:course", pk=course.pk)


def roster_context(course: Course, form: EnrollmentAddForm | None = None) -> dict[str, Any]:
    """The course page's people: staff, students and those who left (`roster_views` renders
    the same part on its own)."""
    enrollments = list(
        Enrollment.objects.filter(course=course)
        .select_related("user")
        .order_by("user__student_number", "user__username")
    )
    active = [e for e in enrollments if e.ended_at is None]
    return {
        "course": course,
        "staff": [e for e in active if e.role != Role.STUDENT],
        "students": [e for e in active if e.role == Role.STUDENT],
        "former": [e for e in enrollments if e.ended_at is not None],
        "add_form": form or EnrollmentAddForm(auto_id="roster-%s"),
    }


@login_required
def course_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    course = managed_course(request, pk)
    assignments = course.assignments.annotate(
        question_count=Count("questions", distinct=True)
    ).order_by("due_at", "pk")
    return render(
        request,
        "teach/course.html",
        {**roster_context(course), "assignments": assignments},
    )


@login_required
@never_cache
@require_POST
def student_password_reset(request: HtmxHttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """A new initial password for one student of this course, shown on this page once.
    Rendered, not redirected: the password must not travel through the session's messages."""
    course = managed_course(request, pk)
    student = get_object_or_404(
        User.objects.filter(
            enrollments__course=course,
            enrollments__role=Role.STUDENT,
            enrollments__ended_at__isnull=True,
        ).distinct(),
        pk=user_pk,
    )
    if not permissions.can_reset_password(request.user, course, student):
        raise PermissionDenied  # a student of this course who also teaches somewhere
    password = rosters.student_password_reset(course=course, student=student, actor=request.user)
    return render(
        request,
        "teach/password_reset.html",
        {"course": course, "student": student, "password": password},
    )


# --- Assignments --------------------------------------------------------------------


@login_required
def assignment_create(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    course = managed_course(request, pk)
    form = AssignmentForm(request.POST or None, initial={"language": course.language})
    assignment = _submit(
        request, form, lambda v: services.assignment_create(course=course, actor=request.user, **v)
    )
    if assignment is not None:
        messages.success(request, _("Assignment created as a draft. Add questions next."))
        return redirect("teach:assignment", pk=assignment.pk)
    return _form_page(request, "teach/assignment_form.html", {"form": form, "course": course})


@login_required
def assignment_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment(request, pk)
    form = AssignmentForm(request.POST or None, instance=assignment)
    # The form writes its values onto `assignment`; the service compares against the row.
    saved = _submit(
        request,
        form,
        lambda v: services.assignment_update(
            assignment=Assignment.objects.get(pk=assignment.pk), actor=request.user, **v
        ),
    )
    if saved is not None:
        messages.success(request, _("Saved."))
        return redirect("teach:assignment", pk=assignment.pk)
    return _form_page(
        request,
        "teach/assignment_form.html",
        {"form": form, "course": assignment.course, "assignment": assignment},
    )


def _questions_context(assignment: Assignment) -> dict[str, Any]:
    return {
        "assignment": assignment,
        "questions": list(
            assignment.questions.select_related("rubric")
            .annotate(answer_count=Count("answers"))
            .order_by("order", "pk")
        ),
        "kinds": QuestionKind.choices,
    }


@login_required
def assignment_manage(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment(request, pk)
    return render(
        request,
        "teach/assignment.html",
        {
            **_questions_context(assignment),
            "problems": services.assignment_publish_problems(assignment),
            "states": AssignmentState,
        },
    )


@login_required
@require_POST
def assignment_state(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment(request, pk)
    state = request.POST.get("state", "")
    try:
        services.assignment_set_state(assignment=assignment, state=state, actor=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        done = {
            AssignmentState.PUBLISHED: _("Published: students can see it now."),
            AssignmentState.CLOSED: _("Closed: no more hand-ins."),
            AssignmentState.DRAFT: _("Back to draft: students no longer see it."),
        }
        messages.success(request, done[AssignmentState(state)])
    return redirect("teach:assignment", pk=assignment.pk)


@login_required
def assignment_preview(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The student's page, exactly, with nothing saved: a teacher or TA checks the wording."""
    assignment = get_object_or_404(
        permissions.teachable_assignments(request.user).select_related("course"), pk=pk
    )
    context = work_context(assignment, current=None)
    return render(request, "courses/work.html", {**context, "preview": True})


@login_required
def assignment_feedback_bundle(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Every student's feedback in one PDF, a page (or more) each, for teachers who hand
    paper back. Exactly what each student sees online, so only once grades are released."""
    assignment = get_object_or_404(
        permissions.teachable_assignments(request.user).select_related("course"), pk=pk
    )
    if not assignment.grades_released:
        messages.error(
            request, _("Release the grades first: the printed feedback is what students see.")
        )
        return redirect("grading:assignment", pk=assignment.pk)
    students = (
        User.objects.filter(
            submissions__assignment=assignment,
            submissions__status=SubmissionStatus.SUBMITTED,
        )
        .distinct()
        .order_by("student_number", "username")
    )
    sheets = [feedback_sheet(feedback_context(assignment, student)) for student in students]
    return pdf_response(
        template="courses/feedback_pdf.html",
        context={
            "assignment": assignment,
            "sheets": [s for s in sheets if s["grades"] or s["pending"]],
            "bundle": True,
        },
        filename=f"feedback-{assignment.pk}-all.pdf",
        request=request,
    )


# --- Questions ----------------------------------------------------------------------


def _rubric_choices(request: HtmxHttpRequest) -> RubricChoices:
    mine = [
        (f"r{r.pk}", f"{r.title} (v{r.version}, {r.max_points})")
        for r in permissions.usable_rubrics(request.user).prefetch_related("criteria")
    ]
    templates = [
        (f"t{r.pk}", _("%(title)s — a copy for you") % {"title": r.title})
        for r in Rubric.objects.filter(is_template=True).order_by("title")
    ]
    choices: RubricChoices = []
    if mine:
        choices.append((_("My rubrics"), mine))
    if templates:
        choices.append((_("Start from a template"), templates))
    return choices


def _chosen_rubric(request: HtmxHttpRequest, value: str) -> Rubric:
    """The rubric behind a choice; a template is copied into the teacher's rubrics first."""
    # The form only accepts its own choices, "r<id>" and "t<id>"; the id still goes
    # through the one parser rather than int().
    kind, pk = value[:1], parse_id(value[1:])
    if pk is None:
        raise Http404
    if kind == "t":
        template = get_object_or_404(Rubric, pk=pk, is_template=True)
        return rubric_copy(source=template, owner=request.user, actor=request.user)
    return get_object_or_404(permissions.usable_rubrics(request.user), pk=pk)


def _save_question(
    request: HtmxHttpRequest, form: QuestionForm, save: Callable[[dict[str, Any]], Question]
) -> Question | None:
    """Run `save(values)` in one transaction with any template copy it needs."""
    if not form.is_valid():
        return None
    values = form.service_values()
    try:
        with transaction.atomic():
            if "rubric" in form.cleaned_data:
                values["rubric"] = _chosen_rubric(request, form.cleaned_data["rubric"])
            return save(values)
    except ValidationError as exc:
        add_errors(form, exc, form.error_aliases)
        return None


@login_required
def question_create(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment(request, pk)
    kind = request.GET.get("kind") or request.POST.get("kind", "")
    if kind not in QuestionKind.values:
        messages.error(request, _("Choose a kind of question."))
        return redirect("teach:assignment", pk=assignment.pk)
    form = QuestionForm(request.POST or None, kind=kind, rubric_choices=_rubric_choices(request))
    if request.method == "POST":
        question = _save_question(
            request,
            form,
            lambda values: services.question_create(
                assignment=assignment, kind=kind, actor=request.user, **values
            ),
        )
        if question is not None:
            messages.success(request, _("Question %(n)s added.") % {"n": question.order})
            return redirect("teach:assignment", pk=assignment.pk)
    return render(
        request,
        "teach/question_form.html",
        {
            "form": form,
            "assignment": assignment,
            "kind": kind,
            "kind_label": QuestionKind(kind).label,
        },
        status=400 if form.errors else 200,
    )


@login_required
def question_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    question = _question(request, pk)
    form = QuestionForm(
        request.POST or None,
        kind=question.kind,
        rubric_choices=_rubric_choices(request),
        initial=QuestionForm.initial_for(question),
    )
    if request.method == "POST":
        saved = _save_question(
            request,
            form,
            lambda values: services.question_update(
                question=question, actor=request.user, **values
            ),
        )
        if saved is not None:
            messages.success(request, _("Question %(n)s saved.") % {"n": saved.order})
            return redirect("teach:assignment", pk=question.assignment_id)
    return render(
        request,
        "teach/question_form.html",
        {
            "form": form,
            "assignment": question.assignment,
            "question": question,
            "kind": question.kind,
            "kind_label": question.get_kind_display(),
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def question_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    question = _question(request, pk)
    try:
        services.question_delete(question=question, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Question deleted."))
    return redirect("teach:assignment", pk=question.assignment_id)


@login_required
@require_POST
def question_move(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    question = _question(request, pk)
    offset = -1 if request.POST.get("direction") == "up" else 1
    services.question_move(question=question, offset=offset, actor=request.user)
    if request.htmx:
        return render(request, "teach/_questions.html", _questions_context(question.assignment))
    return redirect("teach:assignment", pk=question.assignment_id)
