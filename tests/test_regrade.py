"""A student asks for a regrade of a released grade; the teacher answers and may change it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from courses.models import Enrollment, Role
from grading import services
from grading.models import AuditEvent, RegradeRequest, RegradeStatus
from grading.services import SubmissionError


@pytest.fixture
def released(graded_essays, teacher, assignment):
    for answer in graded_essays:
        Enrollment.objects.create(
            course=assignment.course, user=answer.submission.student, role=Role.STUDENT
        )
    services.grade_approve(answer=graded_essays[0], actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    return graded_essays[0]


def test_rules_for_asking(graded_essays, released, teacher):
    owner = released.submission.student
    with pytest.raises(SubmissionError):
        services.regrade_request_create(
            answer=released, student=graded_essays[1].submission.student, comment="mine?"
        )
    with pytest.raises(SubmissionError):
        services.regrade_request_create(
            answer=graded_essays[1],
            student=graded_essays[1].submission.student,
            comment="not approved yet",
        )
    with pytest.raises(SubmissionError):
        services.regrade_request_create(answer=released, student=owner, comment="  ")
    services.regrade_request_create(answer=released, student=owner, comment="第二段被忽略了")
    with pytest.raises(SubmissionError):
        services.regrade_request_create(answer=released, student=owner, comment="again")


def test_round_trip_over_http(client, released, teacher, assignment):
    owner = released.submission.student
    client.force_login(owner)
    client.post(reverse("regrade_request", args=[released.pk]), {"comment": "请再看看结构"})
    request = RegradeRequest.objects.get()
    client.force_login(teacher)
    queue = client.get(reverse("grading:queue", args=[assignment.pk])).content.decode()
    assert "请再看看结构" in queue
    review = client.get(reverse("grading:review", args=[released.pk])).content.decode()
    assert "请再看看结构" in review
    # The teacher changes a score (an audited override), then answers.
    first = released.current_assessment.scores.order_by("criterion__order").first()
    services.grade_approve(
        answer=released,
        actor=teacher,
        scores={first.criterion_id: 18},
        reason="复核后加分",
        expected_version=1,
    )
    client.post(reverse("grading:regrade_answer", args=[request.pk]), {"response": "已加分"})
    request.refresh_from_db()
    assert request.status == RegradeStatus.ANSWERED and request.responder == teacher
    client.force_login(owner)
    page = client.get(reverse("assignment_feedback", args=[assignment.pk])).content.decode()
    assert "已加分" in page and "78 / 100" in page
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert {"regrade.requested", "grade.overridden", "regrade.answered"} <= set(actions)


def test_other_teachers_cannot_answer(client, released, other_teacher):
    request = services.regrade_request_create(
        answer=released, student=released.submission.student, comment="?"
    )
    client.force_login(other_teacher)
    url = reverse("grading:regrade_answer", args=[request.pk])
    assert client.post(url, {"response": "no"}).status_code == 404
