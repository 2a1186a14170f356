"""Names and Role Provisioning Services: the LMS roster comes into the linked course."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.module_loading import import_string

from courses.models import Enrollment, Role
from grading.models import AuditEvent
from lti import keys, views
from lti.models import Context, PlatformUser

from .lti_platform import LIS, LoopbackPlatform, launch_via_oidc, registered_platform


@pytest.fixture
def client(client):
    # Pages before a launch follow the browser's language; these tests read English.
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def lms(db) -> Iterator[LoopbackPlatform]:
    platforms = registered_platform()
    platform = next(platforms)
    platform.tool_jwks = keys.jwks()
    yield platform
    next(platforms, None)


def _member(sub: str, role: str, status: str = "Active") -> dict[str, Any]:
    return {
        "user_id": sub,
        "status": status,
        "name": f"Member {sub}",
        "email": f"{sub}@school.example",
        "roles": [LIS + role],
    }


def _active_roles(course) -> dict[str, str]:
    return {
        e.user.lti_identities.get().sub: e.role
        for e in Enrollment.objects.active()
        .filter(course=course, user__lti_identities__isnull=False)
        .select_related("user")
    }


def test_sync_adds_changes_and_ends_enrolments(client, lms, student):
    launch_via_oidc(client, lms, sub="t1", roles=(LIS + "Instructor",))
    launch_via_oidc(client, lms, sub="left")
    launch_via_oidc(client, lms, sub="promoted")
    context = Context.objects.get()
    # Someone the teacher added by hand in Markwise is not the LMS's to remove.
    Enrollment.objects.create(course=context.course, user=student, role=Role.STUDENT)
    lms.members = [
        _member("t1", "Instructor"),
        _member("promoted", "Instructor#TeachingAssistant"),
        _member("new", "Learner"),
        _member("paused", "Learner", status="Inactive"),
    ]
    out = io.StringIO()
    call_command("lti_sync_roster", "--course", context.course.code, stdout=out)
    assert out.getvalue().strip() == (
        f"{context.course.code}: added=1 changed=1 ended=1 unchanged=2"
    )
    assert _active_roles(context.course) == {
        "t1": Role.TEACHER,
        "promoted": Role.TA,
        "new": Role.STUDENT,
    }
    assert Enrollment.objects.active().filter(course=context.course, user=student).exists()
    new = PlatformUser.objects.get(sub="new").user
    assert (new.name, new.email) == ("Member new", "new@school.example")
    assert AuditEvent.objects.filter(action="lti.roster.synced").exists()


def test_sync_roster_button_runs_the_sync_for_the_course_teacher(client, lms, monkeypatch):
    monkeypatch.setattr(views, "async_task", lambda func, *args: import_string(func)(*args))
    launch_via_oidc(client, lms, sub="t1", roles=(LIS + "Instructor",))
    course = Context.objects.get().course
    lms.members = [_member("t1", "Instructor"), _member("s9", "Learner")]
    page = client.get(f"/teach/courses/{course.pk}/")
    assert b"Sync roster from the learning platform" in page.content
    response = client.post(f"/lti/courses/{course.pk}/sync-roster/")
    assert response.status_code == 302
    assert _active_roles(course)["s9"] == Role.STUDENT


def test_sync_roster_refuses_students_and_unknown_courses(client, lms):
    launch_via_oidc(client, lms, sub="s1")
    course = Context.objects.get().course
    assert client.post(f"/lti/courses/{course.pk}/sync-roster/").status_code == 404
    with pytest.raises(CommandError):
        call_command("lti_sync_roster", "--course", "NOPE", stdout=io.StringIO())
