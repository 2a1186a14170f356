"""A teacher cannot touch another teacher's course: every management URL, every actor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from courses.models import Assignment, Course, Enrollment, Question
from grading.models import AuditEvent, Criterion, Level

ANON, STUDENT, TEACHER, OTHER_TEACHER = "anonymous", "student", "teacher", "other_teacher"
LOGIN = 302


@pytest.fixture
def world(course, assignment, essay_question, rubric, teacher, student, other_teacher):
    criterion = rubric.criteria.first()
    return {
        "users": {STUDENT: student, TEACHER: teacher, OTHER_TEACHER: other_teacher},
        "course": course.pk,
        "assignment": assignment.pk,
        "question": essay_question.pk,
        "enrollment": Enrollment.objects.get(user=student).pk,
        "rubric": rubric.pk,
        "criterion": criterion.pk,
        "level": Level.objects.filter(criterion=criterion).first().pk,
    }


# (method, url name, kwargs key, POST data, status for the course's own teacher)
ROUTES = [
    ("get", "teach:course", "course", None, 200),
    ("get", "teach:course_edit", "course", None, 200),
    ("post", "teach:course_edit", "course", {"title": "改", "code": "HACK", "language": "en"}, 302),
    ("post", "teach:course_archive", "course", {"archived": "1"}, 302),
    ("post", "teach:roster_add", "course", {"identifier": "outsider", "role": "ta"}, 302),
    ("get", "teach:roster_import", "course", None, 200),
    (
        "post",
        "teach:roster_import",
        "course",
        {"csv_text": "username\nintruder\n", "action": "import"},
        200,
    ),
    ("post", "teach:enrollment_end", "enrollment", {}, 302),
    ("get", "teach:assignment_create", "course", None, 200),
    ("post", "teach:assignment_create", "course", {"title": "x"}, 400),
    ("get", "teach:assignment", "assignment", None, 200),
    ("get", "teach:assignment_edit", "assignment", None, 200),
    ("post", "teach:assignment_state", "assignment", {"state": "closed"}, 302),
    ("get", "teach:assignment_preview", "assignment", None, 200),
    ("get", "teach:question_create", "assignment", None, 302),
    (
        "post",
        "teach:question_create",
        "assignment",
        {"kind": "numeric", "prompt": "?", "points": 1, "value": "1"},
        302,
    ),
    ("get", "teach:question_edit", "question", None, 200),
    ("post", "teach:question_move", "question", {"direction": "down"}, 302),
    ("post", "teach:question_delete", "question", {}, 302),
    (
        "post",
        "grading:rubric_change",
        "rubric",
        {"op": "criterion.add", "title": "x", "max_points": 1, "scoring": "range"},
        302,
    ),
    ("post", "grading:rubric_change", "rubric", {"op": "criterion.delete"}, 302),
]


def _data(data, world):
    if data and data.get("op", "").startswith("criterion.") and data["op"] != "criterion.add":
        return {**data, "criterion": world["criterion"]}
    return data


@pytest.mark.parametrize(
    "method,name,key,data,own", ROUTES, ids=[f"{m} {n} {k}" for m, n, k, *_ in ROUTES]
)
def test_only_the_courses_teacher_gets_through(
    client, world, outsider, method, name, key, data, own
):
    url = reverse(name, args=[world[key]])
    data = _data(data, world)
    before = (
        AuditEvent.objects.count(),
        Course.objects.filter(archived=True).count(),
        Assignment.objects.count(),
        Question.objects.count(),
        Criterion.objects.count(),
        Enrollment.objects.filter(ended_at__isnull=True).count(),
    )
    for actor, status in ((ANON, LOGIN), (STUDENT, 404), (OTHER_TEACHER, 404)):
        client.logout()
        if actor != ANON:
            client.force_login(world["users"][actor])
        response = getattr(client, method)(url, data or {})
        assert response.status_code == status, (actor, response.status_code)
        if actor == ANON:
            assert response["Location"].startswith(reverse("login"))
    after = (
        AuditEvent.objects.count(),
        Course.objects.filter(archived=True).count(),
        Assignment.objects.count(),
        Question.objects.count(),
        Criterion.objects.count(),
        Enrollment.objects.filter(ended_at__isnull=True).count(),
    )
    assert after == before, "nothing changed for anyone but the course's teacher"
    client.force_login(world["users"][TEACHER])
    assert getattr(client, method)(url, data or {}).status_code == own


def test_other_teachers_course_is_absent_from_lists(client, world, course):
    client.force_login(world["users"][OTHER_TEACHER])
    page = client.get(reverse("teach:courses")).content.decode()
    assert course.title not in page
