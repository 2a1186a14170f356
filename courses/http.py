"""The request type every view receives, for the type checker (as django-htmx documents it).

`django_htmx.middleware.HtmxMiddleware` sets `request.htmx`; `login_required` (or the
view's own check) guarantees `request.user` is one of our users, never AnonymousUser.
"""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from .models import User


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    user: User
