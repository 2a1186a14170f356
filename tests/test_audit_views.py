"""Teachers read the audit trail of an assignment and of one submission."""

from __future__ import annotations

from django.urls import reverse

from grading import services
from grading.models import AuditEvent

from .conftest import GOOD, submit


def test_audit_views_show_every_step(client, graded_essays, teacher, student, assignment):
    answer = graded_essays[0]
    first = answer.current_assessment.scores.order_by("criterion__order").first()
    services.grade_approve(
        answer=answer, actor=teacher, scores={first.criterion_id: 19}, reason="论点清楚"
    )
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(teacher)
    page = client.get(reverse("grading:audit", args=[assignment.pk])).content.decode()
    for action in ("assessment.created", "grade.overridden", "grades.released"):
        assert action in page
    assert "论点清楚" in page
    sub = client.get(reverse("grading:submission_audit", args=[answer.submission_id]))
    html = sub.content.decode()
    assert "grade.overridden" in html and "grades.released" not in html
    client.force_login(student)
    assert client.get(reverse("grading:audit", args=[assignment.pk])).status_code == 404
    assert (
        client.get(reverse("grading:submission_audit", args=[answer.submission_id])).status_code
        == 404
    )


def test_a_crashed_grading_shows_in_the_assignments_audit_trail(
    client, teacher, student, assignment, essay_question, django_capture_on_commit_callbacks
):
    # The "needs manual grading" event names its assignment and submission, so a teacher
    # finds it on the assignment's and the submission's audit pages, not only in the table.
    submission = submit(assignment, student, {essay_question: GOOD})
    answer = submission.answers.get()
    with django_capture_on_commit_callbacks(execute=False):
        services.answers_enqueue(answer_ids=[answer.pk])
    services.answers_mark_failed(answer_ids=[answer.pk], reason="worker lost")
    event = AuditEvent.objects.get(action="answer.needs_manual")
    assert (event.assignment_id, event.submission_id) == (assignment.pk, submission.pk)
    client.force_login(teacher)
    for url in (
        reverse("grading:audit", args=[assignment.pk]),
        reverse("grading:submission_audit", args=[submission.pk]),
    ):
        page = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
        assert page.status_code == 200
        assert event in page.context["page"].object_list
