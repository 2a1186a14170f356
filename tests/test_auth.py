"""Logging in and the home page, per role."""

from __future__ import annotations

import pytest
from django.urls import reverse

from .conftest import PASSWORD


def login(client, username: str):
    return client.post(reverse("login"), {"username": username, "password": PASSWORD}, follow=True)


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode()


def test_teacher_sees_their_courses(client, teacher, student, assignment):
    page = login(client, "teacher").content.decode()
    assert "CHN-8A" in page
    assert "王老师" in page


def test_student_sees_published_assignments_only(client, student, assignment, course):
    from courses.models import Assignment

    Assignment.objects.create(course=course, title="还没发布的草稿")
    page = login(client, "student").content.decode()
    assert assignment.title in page
    assert "还没发布的草稿" not in page
    assert "CHN-8A" not in page  # students do not get the teaching table


def test_outsider_sees_nothing_to_do(client, outsider, assignment):
    response = login(client, "outsider")
    page = response.content.decode()
    assert response.status_code == 200
    assert assignment.title not in page


def test_other_teacher_does_not_see_foreign_course(client, other_teacher, course):
    page = login(client, "other_teacher").content.decode()
    assert "SCI-8B" in page and "CHN-8A" not in page


def test_wrong_password_is_refused_with_message(client, teacher):
    response = client.post(reverse("login"), {"username": "teacher", "password": "nope"})
    assert response.status_code == 200
    assert response.wsgi_request.user.is_anonymous
    assert 'role="alert"' in response.content.decode()


@pytest.mark.parametrize("language,text", [("en", "Log out"), ("zh-hans", "退出")])
def test_logout_and_languages(client, teacher, language, text):
    client.force_login(teacher)
    client.post(reverse("set_language"), {"language": language, "next": "/"})
    page = client.get(reverse("home")).content.decode()
    assert text in page
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302
