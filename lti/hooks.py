"""The grading services' one-line calls into LTI. Light on purpose: imported by
grading/services, it needs only Django and django-q2, and does nothing unless the
assignment is placed in an LMS."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django_q.tasks import async_task

PLAN_FUNC = "lti.tasks.passback_plan"


def passback_request(*, assignment_id: int, student_ids: Iterable[int] | None = None) -> None:
    """After the commit, send the LMS gradebook the current state of these students."""
    from .models import ResourceLink

    if not ResourceLink.objects.filter(assignment_id=assignment_id).exists():
        return
    ids = sorted(set(student_ids)) if student_ids is not None else None
    transaction.on_commit(lambda: async_task(PLAN_FUNC, assignment_id, ids))
