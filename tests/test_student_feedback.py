"""Students see their own approved grades, and only after release."""

from __future__ import annotations

import pytest
from django.urls import reverse

from courses.models import Enrollment, Role
from grading import services

from .conftest import make_user


@pytest.fixture
def url(assignment, graded_essays):
    for answer in graded_essays:  # the writers are students of the course
        Enrollment.objects.create(
            course=assignment.course, user=answer.submission.student, role=Role.STUDENT
        )
    return reverse("assignment_feedback", args=[assignment.pk])


def test_nothing_before_release_and_never_unapproved(
    client, graded_essays, teacher, assignment, url
):
    owner = graded_essays[0].submission.student
    client.force_login(owner)
    page = client.get(url).content.decode()
    assert "75 / 100" not in page and "Rationale" not in page
    services.grade_approve(answer=graded_essays[0], actor=teacher)
    assert "75 / 100" not in client.get(url).content.decode()  # approved, not yet released
    services.grades_release(assignment=assignment, actor=teacher)
    page = client.get(url).content.decode()
    assert "75 / 100" in page and "内容切题" in page
    # A classmate whose proposal was never approved sees nothing, even after release.
    client.force_login(graded_essays[1].submission.student)
    assert "/ 100" not in client.get(url).content.decode()


def test_teacher_change_is_shown(client, graded_essays, teacher, assignment, url):
    answer = graded_essays[0]
    first = answer.current_assessment.scores.order_by("criterion__order").first()
    services.grade_approve(
        answer=answer, actor=teacher, scores={first.criterion_id: 20}, reason="优秀"
    )
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(answer.submission.student)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "80 / 100" in page and "Adjusted by your teacher" in page


def test_outsiders_and_teachers_of_other_courses_get_404(client, assignment, url, other_teacher):
    for user in (make_user("nobody"), other_teacher):
        client.force_login(user)
        assert client.get(url).status_code == 404


def test_the_student_reads_their_own_answer_beside_the_feedback(
    client, graded_essays, teacher, assignment, url
):
    # With or without inline comments, the released feedback shows what was handed in.
    answer = graded_essays[0]
    services.grade_approve(answer=answer, actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(answer.submission.student)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Your answer" in page
    assert answer.text[:20] in page
