from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from . import permissions


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Links to the teachers' pages. A callable, so the query runs only when a template
    asks (templates call callables)."""
    user = getattr(request, "user", None)
    return {"nav_teacher": lambda: permissions.is_teacher(user)}
