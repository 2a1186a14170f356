"""Assignments and questions built by teachers: forms, answer-key validation, order,
publishing and the student preview."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from courses import services
from courses.models import Assignment, AssignmentState, Question
from grading.models import AuditEvent, Rubric

from .conftest import submit


@pytest.fixture
def client(client):
    """Pages in English, whatever the school's default language."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def draft(course, teacher) -> Assignment:
    return services.assignment_create(course=course, actor=teacher, title="第一单元测验")


def test_assignment_form_creates_a_draft_with_a_local_due_date(client, course, teacher):
    client.force_login(teacher)
    response = client.post(
        reverse("teach:assignment_create", args=[course.pk]),
        {
            "title": "期末作文",
            "instructions": "认真审题。",
            "language": "zh-hans",
            "due_at": "2026-12-20T18:00",
            "late_policy": "accept",
            "attempts_allowed": 2,
            "grading_mode": "ai_review",
            "release_policy": "manual",
            "anonymous_grading": "on",
        },
    )
    assignment = Assignment.objects.get(title="期末作文")
    assert response.status_code == 302
    assert assignment.state == AssignmentState.DRAFT
    assert assignment.due_at.isoformat() == "2026-12-20T10:00:00+00:00"  # Asia/Shanghai 18:00
    assert assignment.anonymous_grading and assignment.attempts_allowed == 2
    assert AuditEvent.objects.filter(action="assignment.created", assignment_id=assignment.pk)


def test_assignment_form_errors(client, course, teacher):
    client.force_login(teacher)
    response = client.post(
        reverse("teach:assignment_create", args=[course.pk]),
        {
            "title": "",
            "language": "zh-hans",
            "due_at": "tomorrow",
            "late_policy": "refuse",
            "attempts_allowed": 0,
            "grading_mode": "ai_review",
            "release_policy": "manual",
        },
    )
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"title", "due_at", "attempts_allowed"}


def test_edit_is_audited_with_before_and_after(client, draft, teacher):
    client.force_login(teacher)
    data = {
        "title": "第一单元测验",
        "language": "zh-hans",
        "late_policy": "refuse",
        "attempts_allowed": 3,
        "grading_mode": "manual",
        "release_policy": "automatic",
    }
    assert client.post(reverse("teach:assignment_edit", args=[draft.pk]), data).status_code == 302
    event = AuditEvent.objects.get(action="assignment.updated")
    assert event.before == {
        "attempts_allowed": 1,
        "grading_mode": "ai_review",
        "release_policy": "manual",
    }
    assert event.after["attempts_allowed"] == 3


def post_question(client, assignment, kind, data):
    return client.post(
        reverse("teach:question_create", args=[assignment.pk]), {"kind": kind, **data}
    )


def test_each_kind_of_question_through_the_form(client, draft, teacher, rubric_templates):
    client.force_login(teacher)
    template = Rubric.objects.get(title="中文作文评分标准（五项）", is_template=True)
    post_question(
        client,
        draft,
        "essay",
        {
            "prompt": "以“那一刻，我长大了”为题写作文。",
            "rubric": f"t{template.pk}",
            "reference_answer": "围绕成长瞬间。",
            "grader_guidelines": "偏题不高于5分。",
        },
    )
    post_question(
        client,
        draft,
        "single_choice",
        {
            "prompt": "《背影》的作者是？",
            "points": 2,
            "options": "A. 朱自清\nB. 鲁迅\n冰心",
            "correct": "a",
        },
    )
    post_question(
        client,
        draft,
        "multiple_choice",
        {
            "prompt": "哪些是唐代诗人？",
            "points": 2,
            "options": "李白\n杜甫\n苏轼",
            "correct": "A、B",
        },
    )
    post_question(
        client,
        draft,
        "numeric",
        {"prompt": "g = ? m/s²", "points": 1, "value": "９.８", "tolerance": "0,1"},
    )
    post_question(
        client,
        draft,
        "exact_text",
        {
            "prompt": "“床前明月光”的下一句？",
            "points": 1,
            "accepted": "疑是地上霜",
            "case_sensitive": "",
        },
    )
    questions = list(draft.questions.order_by("order"))
    assert [q.kind for q in questions] == [
        "essay",
        "single_choice",
        "multiple_choice",
        "numeric",
        "exact_text",
    ]
    essay, single, multiple, numeric, exact = questions
    # The template was copied for this teacher, never attached itself.
    assert essay.rubric.owner == teacher and not essay.rubric.is_template
    assert essay.rubric.max_points == 100 and essay.rubric.criteria.count() == 5
    assert single.options == [
        {"key": "A", "text": "朱自清"},
        {"key": "B", "text": "鲁迅"},
        {"key": "C", "text": "冰心"},
    ]
    assert single.answer_key == {"correct": ["A"]}
    assert multiple.answer_key == {"correct": ["A", "B"]}
    assert numeric.answer_key == {"value": 9.8, "tolerance": 0.1}
    assert exact.answer_key == {"accepted": ["疑是地上霜"], "regex": False, "case_sensitive": False}
    assert AuditEvent.objects.filter(action="question.created").count() == 5
    assert services.assignment_publish_problems(draft) == []


@pytest.mark.parametrize(
    "kind,data,field,message",
    [
        ("numeric", {"value": "abc"}, "value", "not a number"),
        ("numeric", {"value": "1", "tolerance": "-1"}, "tolerance", "cannot be negative"),
        ("exact_text", {"accepted": "[0-9", "regex": "on"}, "accepted", "not a valid regular"),
        ("single_choice", {"options": "甲\n乙", "correct": "E"}, "correct", "not one of the"),
        ("single_choice", {"options": "甲\n乙", "correct": "A,B"}, "correct", "exactly one"),
        ("multiple_choice", {"options": "只有一个", "correct": "A"}, "options", "at least two"),
        ("essay", {"rubric": ""}, "rubric", "required"),
    ],
    ids=["numeric", "tolerance", "regex", "choice-key", "single-two", "one-option", "no-rubric"],
)
def test_answer_keys_are_validated_field_by_field(
    client, draft, teacher, kind, data, field, message
):
    client.force_login(teacher)
    response = post_question(client, draft, kind, {"prompt": "题目", "points": 1, **data})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert message in " ".join(errors[field])
    assert not draft.questions.exists()


def test_model_validation_guards_every_writer(draft, teacher):
    with pytest.raises(ValidationError) as exc:
        services.question_create(
            assignment=draft, kind="numeric", actor=teacher, prompt="?", answer_key={"value": "x"}
        )
    assert "answer_key" in exc.value.message_dict


def test_fields_of_other_kinds_are_dropped(draft, teacher, rubric):
    question = services.question_create(
        assignment=draft,
        kind="single_choice",
        actor=teacher,
        prompt="?",
        options=[{"key": "A", "text": "甲"}, {"key": "B", "text": "乙"}],
        answer_key={"correct": ["A"]},
        reference_answer="secret",
        rubric=rubric,
    )
    assert question.rubric is None and question.reference_answer == ""


def test_reorder_with_buttons(client, draft, teacher):
    client.force_login(teacher)
    for text in ("一", "二", "三"):
        services.question_create(
            assignment=draft,
            kind="exact_text",
            actor=teacher,
            prompt=text,
            answer_key={"accepted": [text]},
        )
    third = draft.questions.get(prompt="三")
    response = client.post(
        reverse("teach:question_move", args=[third.pk]), {"direction": "up"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and 'id="questions"' in response.content.decode()
    assert list(draft.questions.order_by("order").values_list("prompt", flat=True)) == [
        "一",
        "三",
        "二",
    ]
    first = draft.questions.get(prompt="一")
    client.post(reverse("teach:question_move", args=[first.pk]), {"direction": "up"})  # no-op
    assert draft.questions.get(prompt="一").order == 1


def test_answered_questions_cannot_be_deleted(client, assignment, essay_question, teacher, student):
    submit(assignment, student, {essay_question: "作文"})
    client.force_login(teacher)
    client.post(reverse("teach:question_delete", args=[essay_question.pk]))
    assert Question.objects.filter(pk=essay_question.pk).exists()


def test_deleting_renumbers(draft, teacher):
    made = [
        services.question_create(
            assignment=draft,
            kind="exact_text",
            actor=teacher,
            prompt=t,
            answer_key={"accepted": [t]},
        )
        for t in ("一", "二", "三")
    ]
    services.question_delete(question=made[0], actor=teacher)
    assert list(draft.questions.order_by("order").values_list("order", "prompt")) == [
        (1, "二"),
        (2, "三"),
    ]


def test_publish_needs_questions_and_then_students_see_it(client, draft, teacher, student):
    client.force_login(teacher)
    client.post(reverse("teach:assignment_state", args=[draft.pk]), {"state": "published"})
    draft.refresh_from_db()
    assert draft.state == AssignmentState.DRAFT
    services.question_create(
        assignment=draft,
        kind="exact_text",
        actor=teacher,
        prompt="?",
        answer_key={"accepted": ["!"]},
    )
    client.post(reverse("teach:assignment_state", args=[draft.pk]), {"state": "published"})
    draft.refresh_from_db()
    assert draft.state == AssignmentState.PUBLISHED
    client.force_login(student)
    assert (
        reverse("assignment_work", args=[draft.pk]) in client.get(reverse("home")).content.decode()
    )


def test_preview_shows_the_student_page_without_grader_material(
    client, assignment, essay_question, teacher
):
    essay_question.grader_guidelines = "偏题不高于五分"
    essay_question.save()
    client.force_login(teacher)
    response = client.get(reverse("teach:assignment_preview", args=[assignment.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert essay_question.prompt in page
    assert essay_question.reference_answer not in page and "偏题不高于五分" not in page
    assert "disabled" in page  # nothing can be handed in from a preview


def test_teaching_assistant_previews_but_does_not_manage(client, assignment, essay_question):
    from courses.models import Enrollment, Role

    from .conftest import make_user

    ta = make_user("ta")
    Enrollment.objects.create(course=assignment.course, user=ta, role=Role.TA)
    client.force_login(ta)
    assert client.get(reverse("teach:assignment_preview", args=[assignment.pk])).status_code == 200
    assert client.get(reverse("teach:assignment", args=[assignment.pk])).status_code == 404
    assert client.get(reverse("teach:course", args=[assignment.course_id])).status_code == 404


def test_correcting_an_answer_key_rescores_handed_in_answers(
    client, assignment, teacher, student, other_student
):
    from grading import services as grading
    from grading.models import Answer, AuditEvent, GradeSource

    question = services.question_create(
        assignment=assignment,
        kind="single_choice",
        actor=teacher,
        prompt="《背影》的作者？",
        options=[{"key": "A", "text": "朱自清"}, {"key": "B", "text": "鲁迅"}],
        answer_key={"correct": ["B"]},
        points=2,
    )
    submit(assignment, student, {question: ["A"]})
    submit(assignment, other_student, {question: ["B"]})
    ids = list(Answer.objects.values_list("pk", flat=True))
    Answer.objects.filter(pk__in=ids).update(status="grading")
    grading.answers_grade(answer_ids=ids)

    def points() -> dict[str, int]:
        return dict(
            Answer.objects.values_list("submission__student__username", "final_grade__points")
        )

    assert points() == {"student": 0, "other_student": 2}
    client.force_login(teacher)
    response = client.post(
        reverse("teach:question_edit", args=[question.pk]),
        {
            "kind": "single_choice",
            "prompt": "《背影》的作者？",
            "points": 2,
            "options": "朱自清\n鲁迅",
            "correct": "A",
        },
    )
    assert response.status_code == 302
    assert points() == {"student": 2, "other_student": 0}
    assert set(Answer.objects.values_list("final_grade__source", flat=True)) == {
        GradeSource.OBJECTIVE
    }
    assert AuditEvent.objects.filter(action="question.updated").count() == 1
