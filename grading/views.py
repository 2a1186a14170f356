"""Grading views. Thin: parse, check permission, call a service, render."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health


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
