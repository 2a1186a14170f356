"""Who is calling, checked before any view runs (DRF's permission class).

Kept apart from the views: REST_FRAMEWORK names this class, and DRF imports it while
its own view module loads.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission

from courses import permissions

from ..models import ApiKey


def caller_key(request: Any) -> ApiKey | None:
    """The API key of the request, or None for a person's session."""
    return request.auth if isinstance(request.auth, ApiKey) else None


class CallerPermission(BasePermission):
    """Signed in (session or key); a key's GET needs its read scope. What the caller may
    do with each object is asked of `courses.permissions` by the view."""

    message = _("This API key does not have the read scope.")

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        key = caller_key(request)
        if key is not None and request.method in SAFE_METHODS:
            return permissions.api_key_reads(key)
        return True
