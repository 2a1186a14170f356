"""Names and Role Provisioning Services: bring the LMS roster into the linked course."""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests
from django.db import transaction
from pylti1p3.exception import LtiException
from pylti1p3.names_roles import NamesRolesProvisioningService

from courses.models import Enrollment, User
from grading.audit import audit_record

from .models import Context, PlatformUser
from .passback import CachedServiceConnector
from .services import enrollment_sync, platform_user_sync, role_from_claims


class RosterSyncError(Exception):
    """The platform could not be asked (or refused); the message says what it answered."""


def roster_sync(*, context: Context, actor: User | None) -> dict[str, int]:
    """Add new members, apply role changes, and end the enrolments of LTI members the
    platform no longer lists as active. People added by hand in Markwise are left alone."""
    if not context.memberships_url:
        raise RosterSyncError("the platform offers no roster for this course")
    service = NamesRolesProvisioningService(
        CachedServiceConnector(context.platform),
        {"context_memberships_url": context.memberships_url},
    )
    try:
        members: list[dict[str, Any]] = [dict(m) for m in service.get_members()]
    except (LtiException, requests.RequestException, ValueError) as exc:
        raise RosterSyncError(str(exc)[:500]) from exc
    counts: Counter[str] = Counter()
    course = context.course
    with transaction.atomic():
        listed: set[int] = set()
        for member in members:
            sub = str(member.get("user_id") or "")
            if not sub:
                continue
            user = platform_user_sync(platform=context.platform, sub=sub, claims=member)
            listed.add(user.pk)
            active = str(member.get("status") or "Active") == "Active"
            role = role_from_claims([str(r) for r in member.get("roles") or []]) if active else None
            before = Enrollment.objects.active().filter(course=course, user=user).first()
            enrollment_sync(course=course, user=user, role=role, source="lti roster sync")
            if before is None and role is not None:
                counts["added"] += 1
            elif before is not None and role is None:
                counts["ended"] += 1
            elif before is not None and before.role != role:
                counts["changed"] += 1
            else:
                counts["unchanged"] += 1
        lms_users = PlatformUser.objects.filter(platform=context.platform).values("user_id")
        gone = Enrollment.objects.active().filter(course=course, user_id__in=lms_users)
        for enrollment in gone.exclude(user_id__in=listed).select_related("user"):
            enrollment_sync(
                course=course, user=enrollment.user, role=None, source="lti roster sync"
            )
            counts["ended"] += 1
        result = {k: counts[k] for k in ("added", "changed", "ended", "unchanged")}
        audit_record(
            actor=actor,
            action="lti.roster.synced",
            target=course,
            after={"context": context.context_id, **result},
        )
    return result
