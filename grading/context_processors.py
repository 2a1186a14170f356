from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.http import HttpRequest

from courses import permissions

from . import health


def service_banner(request: HttpRequest) -> dict[str, Any]:
    """Teachers and admins see a banner when the model is down or grading falls behind."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    if not (user.is_staff or permissions.teaching_courses(user).exists()):
        return {}
    key = f"markwise:banner:{request.LANGUAGE_CODE}"
    problems = cache.get(key)
    if problems is None:
        problems = health.banner_problems()
        cache.set(key, problems, health.LLM_STATUS_CACHE_SECONDS)
    return {"service_problems": problems}
