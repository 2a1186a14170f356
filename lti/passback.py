"""Assignment and Grade Services: the LMS gradebook follows Markwise.

Hand-in → Submitted / PendingManual (no score); release → the approved total,
Completed / FullyGraded; hiding grades → back to pending. Each (placement, student)
has one Passback row the teacher sees; its task sends the state of that moment."""

from __future__ import annotations

import datetime
import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import requests
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_q.models import Schedule
from django_q.tasks import async_task, schedule
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException, LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.service_connector import ServiceConnector

from courses.models import Assignment, User
from grading.audit import audit_record
from grading.models import Submission, SubmissionStatus
from grading.selectors import GradebookStatus, course_gradebook

from .models import Passback, PassbackStatus, Platform, PlatformUser, ResourceLink
from .protocol import registration_for

SEND_FUNC = "lti.tasks.passback_send"
MAX_ATTEMPTS = 5
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
# Renew a cached token this long before the platform says it expires.
TOKEN_MARGIN_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 20


class CachedServiceConnector(ServiceConnector):
    """pylti1p3's connector with the access token kept in Django's cache until it expires
    (pylti1p3 keeps it for one connector object only, i.e. one task)."""

    def __init__(self, platform: Platform) -> None:
        registration = registration_for(platform)
        session = requests.Session()
        session.headers["User-Agent"] = "Markwise-LTI"
        super().__init__(registration, requests_session=session)
        self.platform = platform

    def get_access_token(self, scopes: Sequence[str]) -> str:
        scope = " ".join(sorted(scopes))
        key = (
            "lti-token:"
            + hashlib.sha256(
                f"{self.platform.pk}\n{self.platform.auth_token_url}\n{scope}".encode()
            ).hexdigest()
        )
        token = cache.get(key)
        if token:
            return str(token)
        registration = self._registration
        client_id = str(registration.get_client_id())
        token_url = str(registration.get_auth_token_url())
        now = int(time.time())
        assertion = self.encode_jwt(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": registration.get_auth_audience() or token_url,
                "iat": now - 5,
                "exp": now + 60,
                "jti": f"markwise-{uuid.uuid4()}",
            },
            str(registration.get_tool_private_key()),
            {"kid": str(registration.get_kid())},
        )
        response = self._requests_session.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": scope,
            },
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        if not response.ok:
            raise LtiServiceException(response)
        body = response.json()
        lifetime = int(body.get("expires_in") or 3600) - TOKEN_MARGIN_SECONDS
        if lifetime > 0:
            cache.set(key, body["access_token"], lifetime)
        return str(body["access_token"])


def ags_service(link: ResourceLink) -> AssignmentsGradesService:
    context = link.context
    data: dict[str, Any] = {"scope": context.ags_scopes, "lineitems": context.lineitems_url}
    if link.lineitem_url:
        data["lineitem"] = link.lineitem_url
    return AssignmentsGradesService(CachedServiceConnector(context.platform), cast(Any, data))


def assignment_total(assignment: Assignment) -> int:
    return sum(q.max_points for q in assignment.questions.select_related("rubric"))


def _lineitem_url(link: ResourceLink, service: AssignmentsGradesService) -> str:
    """The placement's line item: coupled at launch, or found / created by resourceId."""
    if link.lineitem_url:
        return link.lineitem_url
    assert link.assignment is not None
    wanted = LineItem()
    wanted.set_resource_id(str(link.assignment.pk)).set_label(link.assignment.title)
    wanted.set_score_maximum(assignment_total(link.assignment) or 1)
    wanted.set_resource_link_id(link.resource_link_id)
    found = service.find_or_create_lineitem(wanted, find_by="resource_id")
    url = str(found.get_id() or "")
    if not url:
        raise LtiException("The platform returned a line item without an id")
    link.lineitem_url = url
    link.save(update_fields=["lineitem_url"])
    return url


def passback_score(*, link: ResourceLink, student: User) -> dict[str, Any]:
    """What the LMS should show now for this student (the AGS score fields, no userId)."""
    assignment = link.assignment
    assert assignment is not None
    # The gradebook's cell is the one rule for "how far along is this student's work".
    gradebook = course_gradebook(course=assignment.course)
    columns = [a.pk for a in gradebook.assignments]
    cell = None
    if assignment.pk in columns:
        for user, cells in gradebook.rows:
            if user.pk == student.pk:
                cell = cells[columns.index(assignment.pk)]
                break
    if cell is None or cell.status == GradebookStatus.MISSING:
        return {"activityProgress": "Initialized", "gradingProgress": "NotReady"}
    if cell.status == GradebookStatus.RELEASED and cell.points is not None:
        with translation.override(assignment.language or None):
            comment = _("Graded in Markwise: %(points)s / %(max)s. Feedback is in Markwise.") % {
                "points": cell.points,
                "max": cell.max_points,
            }
        return {
            "scoreGiven": cell.points,
            "scoreMaximum": cell.max_points or assignment_total(assignment),
            "activityProgress": "Completed",
            "gradingProgress": "FullyGraded",
            "comment": comment,
        }
    return {"activityProgress": "Submitted", "gradingProgress": "PendingManual"}


def passback_plan(
    *, assignment_id: int, student_ids: list[int] | None = None, enqueue: bool = True
) -> list[int]:
    """Queue one send per placement × student who handed in (or was sent something before)."""
    links = ResourceLink.objects.filter(assignment_id=assignment_id).select_related(
        "context__platform"
    )
    handed_in = set(
        Submission.objects.filter(
            assignment_id=assignment_id, status=SubmissionStatus.SUBMITTED
        ).values_list("student_id", flat=True)
    )
    queued: list[int] = []
    for link in links:
        if not link.context.lineitems_url and not link.lineitem_url:
            continue  # the platform offers no gradebook for this placement
        known = set(link.passbacks.values_list("student_id", flat=True))
        identities = set(
            PlatformUser.objects.filter(platform=link.context.platform).values_list(
                "user_id", flat=True
            )
        )
        students = (handed_in | known) & identities
        if student_ids is not None:
            students &= set(student_ids)
        for student_id in sorted(students):
            row, _created = Passback.objects.update_or_create(
                resource_link=link,
                student_id=student_id,
                defaults={"status": PassbackStatus.QUEUED, "attempts": 0, "message": ""},
            )
            queued.append(row.pk)
    if enqueue:
        transaction.on_commit(lambda: [async_task(SEND_FUNC, pk) for pk in queued])
    return queued


def passback_backoff(attempt: int) -> datetime.timedelta:
    """30 s, 2 min, 8 min, 32 min: a platform that is down for a while still gets it."""
    return datetime.timedelta(seconds=30 * 4 ** max(attempt - 1, 0))


def passback_send(*, passback_id: int) -> str:
    row = (
        Passback.objects.select_related(
            "resource_link__context__platform", "resource_link__assignment__course", "student"
        )
        .filter(pk=passback_id)
        .first()
    )
    if row is None or row.resource_link.assignment is None:
        return "gone"
    link = row.resource_link
    identity = PlatformUser.objects.filter(platform=link.context.platform, user=row.student).first()
    if identity is None:
        return "gone"
    score = passback_score(link=link, student=row.student)
    grade = Grade()
    grade.set_user_id(identity.sub).set_timestamp(timezone.now().isoformat())
    grade.set_activity_progress(score["activityProgress"])
    grade.set_grading_progress(score["gradingProgress"])
    if "scoreGiven" in score:
        grade.set_score_given(score["scoreGiven"]).set_score_maximum(score["scoreMaximum"])
        grade.set_comment(score["comment"])
    try:
        service = ags_service(link)
        lineitem = LineItem().set_id(_lineitem_url(link, service))
        service.put_grade(grade, lineitem)
    except (LtiException, requests.RequestException, ValueError) as exc:
        return _failed(row, str(exc))
    row.status = PassbackStatus.SENT
    row.sent_score = score
    row.message = ""
    row.attempts += 1
    row.save(update_fields=["status", "sent_score", "message", "attempts", "updated_at"])
    audit_record(
        actor=None,
        action="lti.passback.sent",
        target=row,
        after={"student": row.student.username, **score},
        assignment_id=link.assignment_id,
    )
    return "sent"


def _failed(row: Passback, message: str) -> str:
    row.attempts += 1
    row.message = message[:2000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = PassbackStatus.FAILED
    row.save(update_fields=["attempts", "message", "status", "updated_at"])
    audit_record(
        actor=None,
        action="lti.passback.failed",
        target=row,
        after={"student": row.student.username, "attempt": row.attempts},
        reason=row.message,
        assignment_id=row.resource_link.assignment_id,
    )
    if row.status == PassbackStatus.FAILED:
        return "failed"
    schedule(
        SEND_FUNC,
        row.pk,
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + passback_backoff(row.attempts),
    )
    return "retrying"


def passback_retry(*, passback: Passback, actor: User | None) -> Passback:
    """The teacher's retry button (and `lti_passback`): send again from a fresh count."""
    passback.status = PassbackStatus.QUEUED
    passback.attempts = 0
    passback.save(update_fields=["status", "attempts", "updated_at"])
    audit_record(
        actor=actor,
        action="lti.passback.retried",
        target=passback,
        assignment_id=passback.resource_link.assignment_id,
    )
    pk = passback.pk
    transaction.on_commit(lambda: async_task(SEND_FUNC, pk))
    return passback
