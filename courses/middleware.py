"""Accounts created with an initial password must choose their own before anything else."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse


class PasswordChangeRequiredMiddleware:
    # Everything else waits until the password is changed; these stay reachable.
    ALLOWED_NAMES = ("password_change", "logout", "set_language")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.must_change_password:
            allowed = [reverse(name) for name in self.ALLOWED_NAMES]
            if request.path not in allowed and not request.path.startswith(("/static/", "/admin/")):
                return redirect("password_change")
        return self.get_response(request)
