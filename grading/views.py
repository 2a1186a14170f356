"""Grading views. Thin: parse, check permission, call a service, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from courses import permissions
from courses.models import Assignment

from . import health, services
from .models import AnswerStatus


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database, migrations, grading backlog and the model endpoint, as JSON."""
    report = health.readiness()
    return JsonResponse(report, status=200 if report["ready"] else 503)


def _teachable(request: HttpRequest, pk: int) -> Assignment:
    # 404, not 403, for everyone else: an outsider learns nothing about the assignment.
    return get_object_or_404(
        permissions.teachable_assignments(request.user).select_related("course"), pk=pk
    )


def _progress_context(assignment: Assignment) -> dict[str, Any]:
    counts = services.assignment_progress(assignment)
    total = sum(counts.values())
    in_flight = counts[AnswerStatus.PENDING] + counts[AnswerStatus.GRADING]
    return {
        "assignment": assignment,
        "counts": counts,
        "total": total,
        "done": total - in_flight,
        "in_flight": in_flight,
        "rows": [(AnswerStatus(status).label, status, n) for status, n in counts.items()],
        "scorer_is_model": bool(settings.LLM_BASE_URL),
        "model_name": settings.LLM_MODEL,
    }


@login_required
@require_GET
def assignment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    return render(request, "grading/assignment_detail.html", _progress_context(assignment))


@login_required
@require_GET
def assignment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress region alone; it keeps polling itself while grading runs."""
    assignment = _teachable(request, pk)
    return render(request, "grading/_progress.html", _progress_context(assignment))


@login_required
@require_POST
def assignment_grade(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    queued = services.assignment_grade(
        assignment=assignment, actor=request.user, force=request.POST.get("force") == "1"
    )
    messages.success(request, _("%(n)s answers queued for grading.") % {"n": queued})
    if request.htmx:
        return render(request, "grading/_progress.html", _progress_context(assignment))
    return redirect("grading:assignment", pk=assignment.pk)
