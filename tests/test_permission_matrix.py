"""Every URL walked as anonymous, student, other student, teacher and another course's teacher."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from grading.models import Answer, Submission, SubmissionStatus

ANON, STUDENT, OTHER_STUDENT, TEACHER, OTHER_TEACHER = (
    "anonymous",
    "student",
    "other_student",
    "teacher",
    "other_teacher",
)
LOGIN = 302  # anonymous users are sent to the login page


@pytest.fixture
def world(assignment, essay_question, teacher, student, other_student, other_teacher):
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
        {ANON: LOGIN, STUDENT: 200, OTHER_STUDENT: 200, TEACHER: 200, OTHER_TEACHER: 200},
    ),
    (
        "get",
        "assignment_feedback",
        "a",
        {ANON: LOGIN, STUDENT: 200, OTHER_STUDENT: 200, TEACHER: 404, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:assignment",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:progress",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:grade",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 302, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:queue",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:bulk_approve",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 302, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:review",
        "answer",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "post",
        "grading:review",
        "answer",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 409, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:export",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:audit",
        "a",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "grading:submission_audit",
        "submission",
        {ANON: LOGIN, STUDENT: 404, OTHER_STUDENT: 404, TEACHER: 200, OTHER_TEACHER: 404},
    ),
    (
        "get",
        "admin:index",
        None,
        {ANON: LOGIN, STUDENT: LOGIN, OTHER_STUDENT: LOGIN, TEACHER: LOGIN, OTHER_TEACHER: LOGIN},
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
    client.force_login(teacher)
    client.post(url, {"action": "release"})
    assignment.refresh_from_db()
    assert assignment.grades_released
    client.post(url, {"action": "hide"})
    assignment.refresh_from_db()
    assert not assignment.grades_released
