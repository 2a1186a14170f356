"""Swagger UI at /api/docs/, served from drf-spectacular-sidecar's static files (no CDN),
under the site's Content-Security-Policy, and the API's 404 for unknown paths."""

from __future__ import annotations

from typing import Any

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from drf_spectacular.views import SpectacularSwaggerSplitView

from .problems import PROBLEM_CONTENT_TYPE, problem_body


# The split view serves its start-up script from its own URL (script-src 'self' holds);
# Swagger UI sets inline style attributes and draws its icons as data: images, which this
# page alone is allowed.
@method_decorator(
    csp_update({"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:"]}),
    name="dispatch",
)
class ApiDocs(SpectacularSwaggerSplitView):
    pass


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    body = problem_body(
        problem="not-found",
        title=gettext("Not found"),
        status_code=404,
        detail=gettext("No such endpoint. The API's endpoints are listed at /api/docs/."),
        instance=request.path,
    )
    return JsonResponse(body, status=404, content_type=PROBLEM_CONTENT_TYPE)
