"""The audit trail read by people: actions in words in the reader's language, before and
after as facts, filters by student, question, actor and action, a page at a time."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses.models import Enrollment, Question, QuestionKind, Role
from grading import audit_text, selectors, services
from grading.audit import audit_record_many

from .conftest import make_user, submit


@pytest.fixture
def overridden(graded_essays, teacher, assignment):
    """The first essay's 内容切题 changed from the AI's 15 to 18, with a reason."""
    answer = graded_essays[0]
    first = answer.current_assessment.scores.order_by("criterion__order").first()
    services.grade_approve(
        answer=answer, actor=teacher, scores={first.criterion_id: 18}, reason="论点清楚"
    )
    return answer


def page(client, assignment, lang="en", **params):
    response = client.get(
        reverse("grading:audit", args=[assignment.pk]), params, HTTP_ACCEPT_LANGUAGE=lang
    )
    assert response.status_code == 200
    return response


def test_a_change_reads_as_a_sentence_in_the_readers_language(
    client, overridden, teacher, assignment
):
    client.force_login(teacher)
    english = page(client, assignment).content.decode()
    student = overridden.submission.student.display_name
    assert f"王老师 changed 内容切题 from 15 to 18 (question 1, {student})" in english
    assert "论点清楚" in english  # the reason beside it
    chinese = page(client, assignment, lang="zh-hans").content.decode()
    assert f"王老师将内容切题从 15 改为 18（第 1 题，{student}）" in chinese
    # Before and after are facts, not JSON: the grade after the change lists each criterion.
    line = next(
        line
        for line in page(client, assignment).context["lines"]
        if line.event.action == "grade.overridden"
    )
    assert ("内容切题", "18") in line.after and ("Total", "78") in line.after
    assert line.before == []  # no grade before: the "from" is the AI's proposal


def test_a_second_change_is_measured_against_the_grade_before_it(
    client, overridden, teacher, assignment
):
    grade = overridden.final_grade
    second = overridden.current_assessment.scores.order_by("criterion__order")[1]
    services.grade_approve(
        answer=overridden,
        actor=teacher,
        scores={second.criterion_id: 12},
        reason="结构松散",
        expected_version=grade.version,
    )
    client.force_login(teacher)
    html = page(client, assignment, action="grade.overridden").content.decode()
    assert "结构清晰 from 15 to 12" in html
    assert "from 15 to 18" in html  # the first change is still there


def test_other_actions_in_words(client, overridden, teacher, assignment, graded_essays):
    services.grade_approve(answer=graded_essays[1], actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(teacher)
    html = page(client, assignment).content.decode()
    assert "AI model proposed 75/100 for question 1" in html
    assert "(flagged: prompt injection suspected" in html or "(flagged:" in html
    assert "王老师 approved the proposal for question 1" in html
    assert "王老师 released the grades to students" in html


def test_filters_by_student_question_actor_and_action(
    client, overridden, teacher, assignment, graded_essays, essay_question
):
    short = Question.objects.create(
        assignment=assignment,
        order=2,
        kind=QuestionKind.EXACT_TEXT,
        prompt="?",
        answer_key={"accepted": ["a"]},
    )
    ta = make_user("ta", name="助教")
    Enrollment.objects.create(course=assignment.course, user=ta, role=Role.TA)
    services.grade_approve(answer=graded_essays[1], actor=ta)
    client.force_login(teacher)
    owner = overridden.submission.student
    by_student = page(client, assignment, student=owner.pk).context["lines"]
    assert by_student and all(
        line.event.submission_id == overridden.submission_id for line in by_student
    )
    by_actor = page(client, assignment, actor=ta.pk).context["lines"]
    assert [line.actor for line in by_actor] == ["助教"]
    system = page(client, assignment, actor="system").context["lines"]
    assert system and {line.event.action for line in system} == {"assessment.created"}
    by_action = page(client, assignment, action="grade.overridden").context["lines"]
    assert [line.event.target_id for line in by_action] == [str(overridden.pk)]
    assert page(client, assignment, question=essay_question.pk).context["lines"]
    assert page(client, assignment, question=short.pk).context["lines"] == []
    # Malformed filters name nothing rather than failing.
    assert page(client, assignment, student="x", question="²", actor="-1").context["lines"]
    choices = page(client, assignment).context["choices"]
    assert ("system", "System") in choices.actors and (str(ta.pk), "助教") in choices.actors
    assert "grade.overridden" in choices.actions


def test_anonymous_grading_holds_in_words_and_filters(client, teacher, assignment, essay_question):
    assignment.anonymous_grading = True
    assignment.save()
    writer = make_user("writer", name="赵六")
    Enrollment.objects.create(course=assignment.course, user=writer, role=Role.STUDENT)
    submission = submit(assignment, writer, {essay_question: "我的作文"})
    audit_record_many(
        [
            {
                "actor": writer,
                "action": "submission.submitted",
                "target_type": "grading.submission",
                "target_id": submission.pk,
                "assignment_id": assignment.pk,
                "submission_id": submission.pk,
                "after": {"attempt": 1, "late": False},
            }
        ]
    )
    client.force_login(teacher)
    response = page(client, assignment)
    html = response.content.decode()
    assert "赵六" not in html and f"Student #{submission.pk} handed in attempt 1" in html
    choices = response.context["choices"]
    assert choices.students == [(f"s{submission.pk}", f"Student #{submission.pk}")]
    assert all(label != "赵六" for _, label in choices.actors)
    lines = page(client, assignment, student=f"s{submission.pk}").context["lines"]
    assert [line.event.action for line in lines] == ["submission.submitted"]


def test_paginated_keeping_the_filters(client, teacher, assignment, essay_question):
    audit_record_many(
        [
            {
                "action": "assessment.created",
                "target_type": "grading.answer",
                "target_id": 10_000 + i,
                "assignment_id": assignment.pk,
                "after": {"scorer": "rules", "status": "failed"},
            }
            for i in range(110)
        ]
    )
    client.force_login(teacher)
    first = page(client, assignment, action="assessment.created")
    assert len(first.context["lines"]) == 100
    assert "action=assessment.created&amp;page=2" in first.content.decode()
    second = page(client, assignment, action="assessment.created", page=2)
    assert len(second.context["lines"]) == 10


def test_unknown_actions_are_shown_by_their_code(db):
    assert audit_text.action_label("something.new") == "something.new"


def test_a_page_of_words_reads_a_fixed_number_of_queries(
    overridden, teacher, assignment, graded_essays
):
    def measure() -> int:
        events = list(selectors.audit_events(assignment=assignment)[:100])
        with CaptureQueriesContext(connection) as queries:
            context = selectors.audit_context(assignment=assignment, events=events)
            audit_text.audit_lines(events=events, context=context)
        return len(queries.captured_queries)

    few = measure()
    for answer in graded_essays[1:]:
        services.grade_approve(answer=answer, actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    assert measure() == few <= 7


def test_outsiders_get_404(client, overridden, assignment, other_teacher, student):
    for user in (other_teacher, student):
        client.force_login(user)
        assert client.get(reverse("grading:audit", args=[assignment.pk])).status_code == 404
