"""Teachers' roster pages: add someone, end an enrollment, import a class list from CSV.

The roster itself shows on the course page (`teacher_views.course_detail`); these views
change it and, under HTMX, re-render that part of the page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import permissions, rosters, services
from .forms import EnrollmentAddForm, RosterUploadForm, add_errors
from .http import HtmxHttpRequest
from .models import Course, Enrollment
from .teacher_views import managed_course, roster_context


def _roster_response(
    request: HtmxHttpRequest, course: Course, form: EnrollmentAddForm | None = None
) -> HttpResponse:
    if request.htmx:
        return render(
            request,
            "teach/_roster.html",
            roster_context(course, form),
            status=400 if form is not None and form.errors else 200,
        )
    return redirect("teach:course", pk=course.pk)


@login_required
@require_POST
def roster_add(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    course = managed_course(request, pk)
    form = EnrollmentAddForm(request.POST, auto_id="roster-%s")
    if form.is_valid():
        try:
            enrollment = services.enrollment_add(
                course=course,
                identifier=form.cleaned_data["identifier"],
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except ValidationError as exc:
            add_errors(form, exc)
        else:
            messages.success(
                request,
                _("%(name)s added as %(role)s.")
                % {"name": enrollment.user.display_name, "role": enrollment.get_role_display()},
            )
            return _roster_response(request, course)
    if not request.htmx:
        for error in form.errors.values():
            messages.error(request, " ".join(str(message) for message in error))
    return _roster_response(request, course, form)


@login_required
@require_POST
def enrollment_end(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    enrollment = get_object_or_404(
        Enrollment.objects.select_related("user", "course").filter(
            course__in=permissions.managed_courses(request.user)
        ),
        pk=pk,
    )
    try:
        services.enrollment_end(enrollment=enrollment, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("%(name)s removed. Their work and grades are kept.")
            % {"name": enrollment.user.display_name},
        )
    return _roster_response(request, enrollment.course)


@login_required
@never_cache
def roster_import(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Upload → preview (nothing saved) → confirm. The preview carries the file's text in
    the confirm form, so nothing is stored between the two steps."""
    course = managed_course(request, pk)
    form = RosterUploadForm()
    context: dict[str, Any] = {"course": course, "form": form}
    if request.method == "POST":
        text = request.POST.get("csv_text")
        try:
            if text is None:
                form = RosterUploadForm(request.POST, request.FILES)
                context["form"] = form
                if not form.is_valid():
                    return render(request, "teach/roster_import.html", context, status=400)
                text = rosters.roster_decode(form.cleaned_data["file"].read())
            if request.POST.get("action") == "import":
                result = rosters.roster_import(course=course, text=text, actor=request.user)
                return render(
                    request, "teach/roster_result.html", {"course": course, "result": result}
                )
            context.update(preview=rosters.roster_preview(course=course, text=text), text=text)
        except rosters.RosterError as exc:
            context["error"] = str(exc)
            return render(request, "teach/roster_import.html", context, status=400)
    return render(request, "teach/roster_import.html", context)
