"""A teacher's overview across assignments: the home page's to-do list, the regrade inbox
and the gradebook of a course."""

from __future__ import annotations

import csv
import datetime
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from courses.models import Assignment, AssignmentState, Course, Enrollment, Question, Role
from grading import selectors, services
from grading.models import Answer, AnswerStatus

from .conftest import GOOD, make_user, submit

HOME = reverse("home")


def enroll(course: Course, *names: str, role: str = Role.STUDENT) -> list:
    users = []
    for name in names:
        user = make_user(name)
        Enrollment.objects.create(course=course, user=user, role=role)
        users.append(user)
    return users


def cell(html: str, assignment_pk: int, column: str) -> str:
    """The text of one count of the to-do table (row of the assignment, data-todo column)."""
    row = re.search(
        rf'<tr[^>]*>\s*<th scope="row"><a href="/grading/assignments/{assignment_pk}/".*?</tr>',
        html,
        re.S,
    )
    assert row, f"no to-do row for assignment {assignment_pk}"
    found = re.search(rf'data-todo="{column}">(.*?)</td>', row.group(0), re.S)
    assert found
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


@pytest.fixture
def enrolled_essays(graded_essays, assignment):
    """The four graded essays, their writers enrolled as students of the course."""
    for answer in graded_essays:
        Enrollment.objects.create(
            course=assignment.course, user=answer.submission.student, role=Role.STUDENT
        )
    return graded_essays


# --- Home: the to-do list -------------------------------------------------------------


def test_home_counts_the_courses_students(client, teacher, course, assignment):
    """Was "学生 0" for every course: the count reused the join that picked the teacher's
    own enrollment."""
    enroll(course, "s1", "s2", "s3")
    (gone,) = enroll(course, "s4")
    Enrollment.objects.filter(user=gone).update(ended_at=timezone.now())
    client.force_login(teacher)
    html = client.get(HOME, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "3 students" in html
    courses = client.get(reverse("teach:courses"), HTTP_ACCEPT_LANGUAGE="en").context["courses"]
    assert [(c.student_count, c.assignment_count) for c in courses] == [(3, 1)]


def test_home_lists_what_each_assignment_waits_for(
    client, enrolled_essays, teacher, assignment, course, essay_question
):
    # Four essays graded: two plain, two flagged (injection, blank). One approved.
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    enroll(course, "late1", "late2")  # two students who never handed in
    owner = enrolled_essays[0].submission.student
    services.grades_release(assignment=assignment, actor=teacher)
    services.regrade_request_create(answer=enrolled_essays[0], student=owner, comment="再看看")
    quiet = Assignment.objects.create(
        course=course, title="随堂练习", state=AssignmentState.PUBLISHED
    )
    client.force_login(teacher)
    html = client.get(HOME, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert cell(html, assignment.pk, "waiting") == "3"
    assert cell(html, assignment.pk, "flagged") == "2"
    assert cell(html, assignment.pk, "regrades") == "1"
    assert cell(html, assignment.pk, "missing") == "2"
    assert cell(html, assignment.pk, "unreleased") == "Released"
    assert cell(html, quiet.pk, "missing") == "6"  # nobody handed in
    assert cell(html, quiet.pk, "waiting") == "0"
    assert 'id="regrade-inbox-link"' in html and "1 open request" in html


def test_grades_not_released_counts_students_graded_in_full(
    client, enrolled_essays, teacher, assignment
):
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    services.grade_approve(answer=enrolled_essays[1], actor=teacher)
    client.force_login(teacher)
    html = client.get(HOME, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert cell(html, assignment.pk, "unreleased") == "2"
    assert cell(html, assignment.pk, "waiting") == "2"


def test_todo_reads_a_fixed_number_of_queries(teacher, course, rubric):
    def measure() -> int:
        with CaptureQueriesContext(connection) as queries:
            todo = selectors.teacher_todo(courses=Course.objects.filter(enrollments__user=teacher))
            for c in todo:
                for a in c.assignments:
                    assert a.missing >= 0 and a.unreleased >= 0 and a.assignment.course.title
        return len(queries.captured_queries)

    def grow(n: int) -> None:
        other = Course.objects.create(title=f"班{n}", code=f"C-{n}")
        Enrollment.objects.create(course=other, user=teacher, role=Role.TEACHER)
        for i in range(2):
            a = Assignment.objects.create(course=other, title=f"作业{i}", state="published")
            q = Question.objects.create(
                assignment=a, order=1, kind="essay", prompt="?", rubric=rubric
            )
            for s in enroll(other, f"c{n}a{i}x", f"c{n}a{i}y"):
                submit(a, s, {q: GOOD})

    grow(1)
    few = measure()
    grow(2)
    grow(3)
    assert measure() == few <= 7


def test_home_hides_other_courses(client, other_teacher, enrolled_essays, assignment):
    client.force_login(other_teacher)
    html = client.get(HOME).content.decode()
    assert assignment.title not in html


# --- The regrade inbox ------------------------------------------------------------------


@pytest.fixture
def two_requests(enrolled_essays, teacher, assignment):
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    services.grade_approve(answer=enrolled_essays[1], actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    first = services.regrade_request_create(
        answer=enrolled_essays[0],
        student=enrolled_essays[0].submission.student,
        comment="第二段被忽略了",
    )
    second = services.regrade_request_create(
        answer=enrolled_essays[1],
        student=enrolled_essays[1].submission.student,
        comment="结构分太低",
    )
    return first, second


def test_inbox_lists_open_requests_of_every_course_oldest_first(
    client, two_requests, teacher, other_teacher, student
):
    first, _ = two_requests
    client.force_login(teacher)
    html = client.get(reverse("grading:regrade_inbox")).content.decode()
    assert html.index("第二段被忽略了") < html.index("结构分太低")
    assert reverse("grading:review", args=[first.answer_id]) in html
    assert "75 / 100" in html  # the grade the student questions
    services.regrade_request_answer(request=first, actor=teacher, response="已复核")
    html = client.get(reverse("grading:regrade_inbox")).content.decode()
    assert "第二段被忽略了" not in html and "结构分太低" in html
    for user in (other_teacher, student):
        client.force_login(user)
        assert "结构分太低" not in client.get(reverse("grading:regrade_inbox")).content.decode()


def test_inbox_spans_courses_and_filters_by_assignment(
    client, two_requests, teacher, assignment, course, essay_question
):
    other = Course.objects.create(title="九年级语文", code="CHN-9A")
    Enrollment.objects.create(course=other, user=teacher, role=Role.TEACHER)
    second_assignment = Assignment.objects.create(course=other, title="周记", state="published")
    q = Question.objects.create(
        assignment=second_assignment,
        order=1,
        kind="essay",
        prompt="周记",
        rubric=essay_question.rubric,
    )
    (writer,) = enroll(other, "nine")
    answer = submit(second_assignment, writer, {q: GOOD}).answers.get()
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.NEEDS_MANUAL)
    services.grade_approve(
        answer=answer, actor=teacher, scores={c.pk: 10 for c in q.rubric.criteria.all()}
    )
    services.grades_release(assignment=second_assignment, actor=teacher)
    services.regrade_request_create(answer=answer, student=writer, comment="周记的分数")
    client.force_login(teacher)
    html = client.get(reverse("grading:regrade_inbox")).content.decode()
    assert "周记的分数" in html and "结构分太低" in html and "CHN-9A" in html
    only = client.get(reverse("grading:regrade_inbox"), {"assignment": assignment.pk})
    assert "周记的分数" not in only.content.decode() and "结构分太低" in only.content.decode()
    # The home page counts them all.
    assert "3 open requests" in client.get(HOME, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_inbox_keeps_anonymous_grading(client, two_requests, teacher, assignment):
    assignment.anonymous_grading = True
    assignment.save()
    first, _ = two_requests
    client.force_login(teacher)
    html = client.get(reverse("grading:regrade_inbox"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert first.answer.submission.student.display_name not in html
    assert f"Student #{first.answer.submission_id}" in html


# --- The gradebook ------------------------------------------------------------------------


def _statuses(response) -> dict[str, list[str]]:
    book = response.context["book"]
    return {student.username: [c.status.value for c in cells] for student, cells in book.rows}


def test_gradebook_status_per_cell(client, enrolled_essays, teacher, assignment, course, rubric):
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    enroll(course, "absent")
    grading = enroll(course, "busy")[0]
    busy = submit(assignment, grading, {assignment.questions.get(): GOOD}).answers.get()
    Answer.objects.filter(pk=busy.pk).update(status=AnswerStatus.GRADING)
    Assignment.objects.create(course=course, title="草稿作业")  # a draft: no column
    client.force_login(teacher)
    url = reverse("grading:gradebook", args=[course.pk])
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    statuses = _statuses(response)
    writers = [a.submission.student.username for a in enrolled_essays]
    assert statuses[writers[0]] == ["approved"]
    assert statuses[writers[1]] == ["awaiting_review"]
    assert statuses["absent"] == ["missing"] and statuses["busy"] == ["grading"]
    html = response.content.decode()
    assert "草稿作业" not in html and "75 / 100" in html and "Awaiting review" in html
    services.grades_release(assignment=assignment, actor=teacher)
    assert _statuses(client.get(url))[writers[0]] == ["released"]


def test_gradebook_latest_attempt_and_pending_answer(
    client, teacher, course, assignment, essay_question
):
    assignment.attempts_allowed = 2
    assignment.save()
    (writer,) = enroll(course, "twice")
    submit(assignment, writer, {essay_question: GOOD})
    submit(assignment, writer, {essay_question: GOOD + "再交一次"}, attempt=2)
    client.force_login(teacher)
    response = client.get(reverse("grading:gradebook", args=[course.pk]))
    (c,) = response.context["book"].rows[0][1]
    assert c.status == selectors.GradebookStatus.SUBMITTED and c.attempt == 2


def test_gradebook_hides_points_of_anonymous_grading_until_release(
    client, enrolled_essays, teacher, assignment, course
):
    assignment.anonymous_grading = True
    assignment.save()
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    client.force_login(teacher)
    url = reverse("grading:gradebook", args=[course.pk])
    assert "75 / 100" not in client.get(url).content.decode()
    _, rows = _csv(client, course)
    assert rows[enrolled_essays[0].submission.student.username][4] == ""
    services.grades_release(assignment=assignment, actor=teacher)
    assert "75 / 100" in client.get(url).content.decode()


def _csv(client, course):
    response = client.get(reverse("grading:gradebook_export", args=[course.pk]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8").lstrip("\ufeff"))))
    return rows[0], {row[0]: row for row in rows[1:]}


def test_gradebook_csv_lists_every_student_and_neutralises_formulas(
    client, enrolled_essays, teacher, assignment, course
):
    services.grade_approve(answer=enrolled_essays[0], actor=teacher)
    evil = make_user("evil", name='=HYPERLINK("http://evil.example","x")')
    Enrollment.objects.create(course=course, user=evil, role=Role.STUDENT)
    client.force_login(teacher)
    header, rows = _csv(client, course)
    assert header[:3] == ["username", "name", "student_number"]
    assert header[3:] == [
        f"{assignment.title} status",
        f"{assignment.title} points",
        f"{assignment.title} max",
    ]
    writer = enrolled_essays[0].submission.student.username
    assert rows[writer][3:] == ["approved", "75", "100"]
    assert rows["evil"][1].startswith("'=") and rows["evil"][3] == "missing"


def test_gradebook_reads_a_fixed_number_of_queries(teacher, course, essay_question, assignment):
    def measure() -> int:
        with CaptureQueriesContext(connection) as queries:
            book = selectors.course_gradebook(course=course)
            selectors.gradebook_table(gradebook=book)
        return len(queries.captured_queries)

    for s in enroll(course, "g1", "g2"):
        submit(assignment, s, {essay_question: GOOD})
    few = measure()
    for s in enroll(course, "g3", "g4", "g5", "g6"):
        submit(assignment, s, {essay_question: GOOD})
    Assignment.objects.create(
        course=course,
        title="第二次",
        state="closed",
        due_at=timezone.now() - datetime.timedelta(days=1),
    )
    assert measure() == few <= 3


def test_gradebook_is_for_the_courses_staff_only(
    client, course, teacher, student, other_teacher, assignment
):
    ta = make_user("ta")
    Enrollment.objects.create(course=course, user=ta, role=Role.TA)
    for user, code in ((teacher, 200), (ta, 200), (student, 404), (other_teacher, 404)):
        client.force_login(user)
        assert client.get(reverse("grading:gradebook", args=[course.pk])).status_code == code
        assert client.get(reverse("grading:gradebook_export", args=[course.pk])).status_code == code
