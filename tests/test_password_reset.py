"""A teacher gives a student of their course a new initial password: shown once, changed
at the next login, audited without the password; never for staff or teachers."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses import rosters
from courses.models import Enrollment, Role, User
from grading.models import AuditEvent

from .conftest import PASSWORD, make_user


def reset_url(course, user) -> str:
    return reverse("teach:student_password_reset", args=[course.pk, user.pk])


def login(username: str, password: str) -> Client:
    browser = Client()
    browser.post(reverse("login"), {"username": username, "password": password})
    return browser


def test_teacher_resets_a_students_password_shown_once(client, teacher, student, course):
    client.force_login(teacher)
    roster = client.get(reverse("teach:course", args=[course.pk])).content.decode()
    assert reset_url(course, student) in roster and "data-confirm=" in roster
    response = client.post(reset_url(course, student))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    password = re.search(r'<code class="password">([^<]+)</code>', response.content.decode())[1]
    student.refresh_from_db()
    assert student.must_change_password and student.check_password(password)
    assert not student.check_password(PASSWORD)  # the old one no longer works
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.actor == teacher and event.target_id == str(student.pk)
    assert password not in str(event.after) and password not in event.reason
    # The new password logs in, and leads straight to choosing the student's own.
    browser = login("student", password)
    assert browser.get(reverse("home")).status_code == 302
    assert browser.get(reverse("home"))["Location"] == reverse("password_change")
    # Not in the session's messages either: the next page shows nothing of it.
    assert password not in client.get(reverse("teach:course", args=[course.pk])).content.decode()


def test_reset_ends_the_students_sessions_and_lifts_a_lockout(client, teacher, student, course):
    logged_in = Client()
    logged_in.force_login(student)
    assert logged_in.get(reverse("home")).status_code == 200
    AccessAttempt.objects.create(
        username="student",
        ip_address="127.0.0.1",
        user_agent="x",
        failures_since_start=5,
        attempt_time=timezone.now(),
    )
    client.force_login(teacher)
    client.post(reset_url(course, student))
    assert logged_in.get(reverse("home")).status_code == 302  # sent to log in again
    assert not AccessAttempt.objects.filter(username="student").exists()


@pytest.mark.parametrize("role", [Role.TA, Role.TEACHER])
def test_never_for_someone_who_teaches(client, teacher, course, other_course, role):
    colleague = make_user("colleague")
    Enrollment.objects.create(course=course, user=colleague, role=Role.STUDENT)
    Enrollment.objects.create(course=other_course, user=colleague, role=role)
    client.force_login(teacher)
    assert client.post(reset_url(course, colleague)).status_code == 403
    colleague.refresh_from_db()
    assert colleague.check_password(PASSWORD) and not colleague.must_change_password


def test_never_for_staff_accounts(client, teacher, course):
    staff = make_user("staffer", is_staff=True)
    Enrollment.objects.create(course=course, user=staff, role=Role.STUDENT)
    client.force_login(teacher)
    assert client.post(reset_url(course, staff)).status_code == 403
    with pytest.raises(PermissionDenied):
        rosters.student_password_reset(course=course, student=staff, actor=teacher)


def test_only_the_courses_teachers_and_only_its_current_students(
    client, teacher, student, course, other_teacher, other_course, outsider
):
    ta = make_user("ta")
    Enrollment.objects.create(course=course, user=ta, role=Role.TA)
    for user in (ta, other_teacher, student):
        client.force_login(user)
        assert client.post(reset_url(course, student)).status_code == 404
    client.force_login(teacher)
    assert client.post(reset_url(course, outsider)).status_code == 404  # not in the course
    Enrollment.objects.filter(user=student).update(ended_at=timezone.now())
    assert client.post(reset_url(course, student)).status_code == 404  # has left it
    assert client.get(reset_url(course, student)).status_code == 405
    assert not User.objects.filter(must_change_password=True).exists()
    with pytest.raises(PermissionDenied):
        rosters.student_password_reset(course=course, student=student, actor=other_teacher)
