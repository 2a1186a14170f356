"""django-q2 entry points for LTI; thin, the work is in lti/passback.py and lti/roster.py."""

from __future__ import annotations

from . import passback


def passback_plan(assignment_id: int, student_ids: list[int] | None = None) -> int:
    return len(passback.passback_plan(assignment_id=assignment_id, student_ids=student_ids))


def passback_send(passback_id: int) -> str:
    return passback.passback_send(passback_id=passback_id)


def roster_sync(context_id: int, actor_id: int | None = None) -> dict[str, int]:
    from courses.models import User

    from .models import Context
    from .roster import roster_sync as sync

    context = Context.objects.select_related("platform", "course").get(pk=context_id)
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    return sync(context=context, actor=actor)
