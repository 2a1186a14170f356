"""The review queue and review page over HTTP: permissions, order, bulk approval, locking,
and a constant number of queries however many submissions there are."""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from grading.models import Answer, AnswerStatus, FinalGrade

from .conftest import GOOD, make_user, submit


def test_queue_puts_flagged_first_and_is_teacher_only(
    client, graded_essays, teacher, student, assignment
):
    url = reverse("grading:queue", args=[assignment.pk])
    client.force_login(student)
    assert client.get(url).status_code == 404
    client.force_login(teacher)
    page = client.get(url)
    rows = [a.pk for a in page.context["page"]]
    flagged = {graded_essays[2].pk, graded_essays[3].pk}  # prompt injection, blank
    assert set(rows[:2]) == flagged and len(rows) == 4
    html = page.content.decode()
    # Blank and suspected prompt-injection answers get no box to tick: one by one only.
    assert f'value="{graded_essays[2].pk}"' not in html
    assert f'value="{graded_essays[3].pk}"' not in html
    assert f'name="answer" value="{graded_essays[0].pk}"' in html


def test_bulk_approve_leaves_flagged_rows(client, graded_essays, teacher, assignment):
    client.force_login(teacher)
    url = reverse("grading:bulk_approve", args=[assignment.pk])
    # A crafted request that lists flagged answers does not approve them, even with the
    # low-confidence button: blank and prompt-injection answers are graded one by one.
    client.post(url, {"answer": [a.pk for a in graded_essays], "include_low_confidence": "1"})
    statuses = [Answer.objects.get(pk=a.pk).status for a in graded_essays]
    assert statuses == ["approved", "approved", "graded", "graded"]


def test_review_page_approve_override_and_stale_save(client, graded_essays, teacher, assignment):
    answer = graded_essays[0]
    url = reverse("grading:review", args=[answer.pk])
    criteria = list(answer.current_assessment.scores.order_by("criterion__order"))
    form = {f"score-{s.criterion_id}": s.points for s in criteria}
    client.force_login(teacher)
    page = client.get(url).content.decode()
    assert "内容切题" in page and "一等" in page and GOOD in page
    changed = {**form, f"score-{criteria[0].criterion_id}": 19, "feedback": "好", "version": ""}
    refused = client.post(url, changed)
    assert refused.status_code == 409 and "修改 AI 分数需要填写简短理由" in refused.content.decode()
    ok = client.post(url, {**changed, "reason": "开头很好"})
    assert ok.status_code == 302
    grade = FinalGrade.objects.get(answer=answer)
    assert grade.points == 79 and grade.version == 1 and grade.override_reason == "开头很好"
    # A colleague who loaded the page before that save is refused, and told the new value.
    stale = client.post(url, {**form, "version": "", "feedback": "x"})
    assert stale.status_code == 409 and "79/100" in stale.content.decode()
    assert FinalGrade.objects.get(answer=answer).points == 79


def test_anonymous_grading_hides_names(client, graded_essays, teacher, assignment):
    assignment.anonymous_grading = True
    assignment.save()
    client.force_login(teacher)
    name = graded_essays[0].submission.student.display_name
    label = graded_essays[0].submission.label_for_graders(assignment)
    assert label == f"Student #{graded_essays[0].submission_id}"
    queue = client.get(reverse("grading:queue", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert name not in queue.content.decode() and label in queue.content.decode()
    review = client.get(
        reverse("grading:review", args=[graded_essays[0].pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert name not in review and label in review  # the same label as in the queue and audit


def test_answer_text_is_escaped(client, fake_llm, grade_now, assignment, essay_question, teacher):
    answer = submit(
        assignment, make_user("x1"), {essay_question: GOOD + "<script>alert(1)</script>"}
    ).answers.get()
    grade_now([answer])
    client.force_login(teacher)
    html = client.get(reverse("grading:review", args=[answer.pk])).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


_last_sql: list[str] = []


def _queries(client, url) -> int:
    # Warm the per-process caches (the staff banner) from empty, so that an entry an
    # earlier test left cannot expire between the warm-up and the measured request.
    cache.clear()
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    _last_sql[:] = [q["sql"][:120] for q in captured.captured_queries]
    return len(captured)


def test_constant_queries_10_vs_200(
    client, fake_llm, grade_now, assignment, essay_question, teacher
):
    client.force_login(teacher)

    def add(n: int, start: int) -> list[Answer]:
        answers = [
            submit(
                assignment, make_user(f"q{start + i}"), {essay_question: f"{GOOD}{start + i}"}
            ).answers.get()
            for i in range(n)
        ]
        grade_now(answers)
        return answers

    first = add(10, 0)
    queue_url = reverse("grading:queue", args=[assignment.pk])
    review_url = reverse("grading:review", args=[first[0].pk])
    small = (_queries(client, queue_url), _queries(client, review_url))
    add(190, 10)
    large = (_queries(client, queue_url), _queries(client, review_url))
    assert small == large, (small, large, _last_sql)


def test_review_page_of_a_question_without_rubric_explains_instead_of_failing(
    client, grade_now, teacher, student, assignment, essay_question
):
    # Question.clean refuses a subjective question without a rubric, but older data (or an
    # admin edit) can hold one; the pipeline sends its answers to manual grading.
    from courses.models import Question

    Question.objects.filter(pk=essay_question.pk).update(rubric=None)
    answer = submit(assignment, student, {essay_question: GOOD}).answers.get()
    grade_now([answer])
    answer.refresh_from_db()
    assert answer.status == AnswerStatus.NEEDS_MANUAL
    client.force_login(teacher)
    url = reverse("grading:review", args=[answer.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert "This question has no rubric to grade against" in page.content.decode()
    refused = client.post(url, {"feedback": "好"}, HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 409
    assert "This question has no rubric to grade against." in refused.content.decode()
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "此题没有评分标准" in chinese
    assert not FinalGrade.objects.filter(answer=answer).exists()
