"""Health probes, answered before Django checks the Host header or redirects to HTTPS."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

Handler = Callable[[HttpRequest], HttpResponse]


class HealthProbeMiddleware:
    """Answer GET /healthz, and /readyz's anonymous form, for any host, over plain HTTP.

    Probes call a container by its own address: Docker's healthcheck asks
    127.0.0.1:8000, the kubelet the pod's IP, neither of them in ALLOWED_HOSTS, and
    neither speaks HTTPS. Django would answer 400 (DisallowedHost) or redirect to
    https://, and the container would never be healthy.

    Skipping those checks is safe for exactly these answers: nothing in them depends on
    the Host header or the scheme (no link, no redirect, no cookie, no cached page a
    forged host could poison), and they tell a stranger nothing: /healthz is a constant,
    anonymous /readyz only "ready" or not. A request that carries credentials (the
    READYZ_TOKEN as a header or ?token=, a session cookie) asks for the details and takes
    the normal path through every check, so a token is never accepted from a host Django
    refuses or over plain HTTP once SECURE_SSL_REDIRECT is on.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        # The views themselves, so the early answer is the same answer (imported here:
        # the middleware is built once the apps are ready).
        from grading import views

        self.probes: dict[str, Handler] = {"/healthz": views.healthz, "/readyz": views.readyz}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        if probe is None or request.method != "GET" or _carries_credentials(request):
            return self.get_response(request)
        return probe(request)


def _carries_credentials(request: HttpRequest) -> bool:
    return (
        "Authorization" in request.headers
        or "token" in request.GET
        or settings.SESSION_COOKIE_NAME in request.COOKIES
    )
