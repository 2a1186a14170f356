"""Every URL walked as anonymous, student, other student, teacher, the course's teaching
assistant and another course's teacher."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from courses.models import Enrollment, Role
from grading.models import Answer, Submission, SubmissionStatus

from .conftest import make_user

ANON, STUDENT, OTHER_STUDENT, TEACHER, TA, OTHER_TEACHER = (
    "anonymous",
    "student",
    "other_student",
    "teacher",
    "ta",
    "other_teacher",
)
LOGIN = 302  # anonymous users are sent to the login page
# A TA sees the assignment, so a refusal of what only its teachers do is said plainly.
NOT_YOURS = 403


@pytest.fixture
def world(assignment, essay_question, teacher, student, other_student, other_teacher):
    ta = make_user("ta", name="助教")
    Enrollment.objects.create(course=assignment.course, user=ta, role=Role.TA)
    submission = Submission.objects.create(
        assignment=assignment,
        student=student,
        status=SubmissionStatus.SUBMITTED,
        submitted_at=timezone.now(),
    )
    answer = Answer.objects.create(
        submission=submission, question=essay_question, text="作文", status="needs_manual"
    )
    return {
        "users": {
            STUDENT: student,
            OTHER_STUDENT: other_student,
            TEACHER: teacher,
            TA: ta,
            OTHER_TEACHER: other_teacher,
        },
        "a": assignment.pk,
        "answer": answer.pk,
        "submission": submission.pk,
    }


# (method, url name, kwargs key, expected per actor)
MATRIX = [
    (
        "get",
        "home",
        None,
        {ANON: LOGIN, STUDENT: 200, OTHER_STUDENT: 200, TEACHER: 200, TA: 200, OTHER_TEACHER: 200},
    ),
    (
        "get",
        "assignment_feedback",
        "a",
        {ANON: LOGIN, STUDENT: 200, OTHER_STUDENT: 200, TEACHER: 404, TA: 404, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:assignment",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:progress",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:grade",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 302, TA: 302, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:queue",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:bulk_approve",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 302, TA: 302, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:review",
        "answer",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:review",
        "answer",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 409, TA: 409, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:export",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:audit",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:submission_audit",
        "submission",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, TA: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:release",
        "a",
        {
            ANON: LOGIN,
            STUDENT: 404,
            OTHER_STUDENT: 404,
            TEACHER: 302,
            TA: NOT_YOURS,  # TAs review and approve; the course's teachers release
            OTHER_TEACHER: 404,
        },
    ),
    (
        "get",
        "admin:index",
        None,
        {
            ANON: LOGIN,
            STUDENT: LOGIN,
            OTHER_STUDENT: LOGIN,
            TEACHER: LOGIN,
            TA: LOGIN,
            OTHER_TEACHER: LOGIN,
        },
    ),
]


@pytest.mark.parametrize(
    "method,name,key,expected", MATRIX, ids=[f"{m} {n}" for m, n, *_ in MATRIX]
)
def test_permission_matrix(
    client, world, no_llm, django_capture_on_commit_callbacks, method, name, key, expected
):
    url = reverse(name, args=[world[key]] if key else [])
    for actor, status in expected.items():
        client.logout()
        if actor != ANON:
            client.force_login(world["users"][actor])
        with django_capture_on_commit_callbacks(execute=False):
            response = getattr(client, method)(url)
        assert response.status_code == status, (actor, url, response.status_code)


def test_release_and_hide_over_http(client, world, teacher, student, assignment):
    url = reverse("grading:release", args=[assignment.pk])
    client.force_login(student)
    assert client.post(url).status_code == 404
    client.force_login(world["users"][TA])
    assert client.post(url, {"action": "release"}).status_code == NOT_YOURS
    assignment.refresh_from_db()
    assert not assignment.grades_released
    client.force_login(teacher)
    client.post(url, {"action": "release"})
    assignment.refresh_from_db()
    assert assignment.grades_released
    client.post(url, {"action": "hide"})
    assignment.refresh_from_db()
    assert not assignment.grades_released


def test_a_ta_sees_the_release_state_without_the_buttons(client, world, teacher, assignment):
    url = reverse("grading:assignment", args=[assignment.pk])
    client.force_login(world["users"][TA])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert reverse("grading:release", args=[assignment.pk]) not in page
    assert 'value="release"' not in page and "teachers release them" in page
    client.force_login(teacher)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert reverse("grading:release", args=[assignment.pk]) in page and 'value="release"' in page
