"""Let a session that came in through an LTI launch be shown inside its LMS's frame.

Everywhere else the site keeps frame-ancestors 'none' and X-Frame-Options: DENY. A
launched session may be framed only by the origins registered for the platform that
launched it. Must sit after XFrameOptionsMiddleware (and so after CSPMiddleware) in
MIDDLEWARE: it marks the response before those two read it."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .views import FRAME_ORIGINS_KEY


class LtiFramingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        origins = session.get(FRAME_ORIGINS_KEY) if session is not None else None
        if origins:
            response.xframe_options_exempt = True
            response._csp_replace = {"frame-ancestors": list(origins)}  # type: ignore[attr-defined]
        return response
