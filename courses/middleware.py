"""Request-wide rules: accounts with an initial password change it before anything else;
messages made during an HTMX request reach the page that made it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
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


class HtmxMessagesMiddleware:
    """Messages reach the page of the HTMX request that made them, at once.

    A view says what happened with `django.contrib.messages` whether the request is HTMX
    or not. A full page shows messages in base.html; an HTMX response replaces only part
    of the page, so its messages go out as the `markwise:messages` event in the
    `HX-Trigger` header, which static/js/markwise.js shows as a notice — and they no longer
    wait to surprise the teacher on the next page they open. A response that makes the
    browser load another page (a redirect, HX-Redirect, HX-Location, HX-Refresh) leaves them
    for that page.
    """

    EVENT = "markwise:messages"
    _NAVIGATING = ("HX-Redirect", "HX-Location", "HX-Refresh")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or getattr(request, "_messages", None) is None:
            return response
        if 300 <= response.status_code < 400 or any(h in response for h in self._NAVIGATING):
            return response
        notices = [
            {"level": m.level_tag, "message": str(m)} for m in messages.get_messages(request)
        ]
        if not notices:
            return response
        triggers: dict[str, Any] = {}
        if "HX-Trigger" in response:
            existing = response["HX-Trigger"]
            triggers = json.loads(existing) if existing.startswith("{") else {existing: None}
        triggers[self.EVENT] = notices
        # ensure_ascii: a header is Latin-1; JSON \u escapes carry Chinese through it intact.
        response["HX-Trigger"] = json.dumps(triggers, ensure_ascii=True)
        return response
