"""Grade export: approved grades only, per criterion and total, UTF-8 with BOM."""

from __future__ import annotations

import csv
import io

from django.urls import reverse

from grading import services


def test_csv_has_bom_chinese_headers_and_only_approved_grades(
    client,
    graded_essays,
    teacher,
    student,
    assignment,
):
    services.grade_approve(answer=graded_essays[0], actor=teacher)
    url = reverse("grading:export", args=[assignment.pk])
    client.force_login(student)
    assert client.get(url).status_code == 404
    client.force_login(teacher)
    response = client.get(url)
    assert response["Content-Type"].startswith("text/csv")
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    header, data = rows[0], rows[1:]
    assert "Q1 内容切题" in header and header[-1] == "total" and len(data) == 4
    by_user = {row[0]: row for row in data}
    approved = by_user[graded_essays[0].submission.student.username]
    assert approved[-1] == "75" and approved[header.index("Q1 内容切题")] == "15"
    pending = by_user[graded_essays[1].submission.student.username]
    assert (
        pending[-1] == "" and pending[header.index("Q1 total")] == ""
    )  # a proposal is never exported
