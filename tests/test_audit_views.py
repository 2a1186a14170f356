"""Teachers read the audit trail of an assignment and of one submission."""

from __future__ import annotations

from django.urls import reverse

from grading import services


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
