"""Every admin page an administrator uses loads; history stays read-only."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from courses.models import Enrollment, Question, QuestionKind, Role
from grading.audit import audit_record
from grading.models import (
    Answer,
    AnswerStatus,
    Assessment,
    AuditEvent,
    Criterion,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    Level,
    RegradeRequest,
    Rubric,
    Snapshot,
    Submission,
)

from .conftest import submit


@pytest.fixture
def demo_school(db, settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())


@pytest.fixture(autouse=True)
def _english_pages(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def _admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_changelist_and_change_page_loads(client, admin_user, demo_school):
    client.force_login(admin_user)
    assert client.get(reverse("admin:index")).status_code == 200
    for model, model_admin in admin.site._registry.items():
        changelist = client.get(_admin_url(model, "changelist"))
        assert changelist.status_code == 200, model
        search = client.get(_admin_url(model, "changelist"), {"q": "作文"})
        assert search.status_code == 200, model
        obj = model.objects.first()
        if obj is not None:
            assert client.get(_admin_url(model, "change", obj.pk)).status_code == 200, model
        if model_admin.has_add_permission(_request_for(admin_user)):
            assert client.get(_admin_url(model, "add")).status_code == 200, model


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


@pytest.mark.parametrize("model", [AuditEvent, Assessment, FinalGrade])
def test_history_is_read_only_for_superusers(client, admin_user, course, model):
    client.force_login(admin_user)
    model_admin = admin.site._registry[model]
    request = _request_for(admin_user)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert client.get(_admin_url(model, "add")).status_code == 403


def test_audit_event_cannot_be_deleted_through_admin(client, admin_user, course):
    event = audit_record(actor=admin_user, action="course.update", target=course)
    client.force_login(admin_user)
    assert client.get(_admin_url(AuditEvent, "change", event.pk)).status_code == 200
    response = client.post(_admin_url(AuditEvent, "delete", event.pk), {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_rubric_admin_edits_criteria_inline(client, admin_user, rubric):
    client.force_login(admin_user)
    page = client.get(_admin_url(type(rubric), "change", rubric.pk)).content.decode()
    assert "内容切题" in page and "书写规范" in page


def test_admin_changes_are_audited(client, admin_user, assignment):
    # The same service and the same audit action as the teacher's own edit page.
    client.force_login(admin_user)
    url = _admin_url(type(assignment), "change", assignment.pk)
    data = _unchanged_post(client.get(url))
    data.update({"title": "期中作文（修订）", "due_at_0": "2026-12-01", "due_at_1": "08:00:00"})
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    event = AuditEvent.objects.get(action="assignment.updated")
    assert event.actor == admin_user and event.after["title"] == "期中作文（修订）"
    assert event.before == {"title": "期中作文", "due_at": event.before["due_at"]}
    assert event.assignment_id == assignment.pk


# --- Admin is no back door ------------------------------------------------------------
#
# Scores, answers and the trail are history: admins look, nobody edits. Enrolments,
# assignments, questions and rubrics change in admin only through the services the
# teachers' pages use, so the same rules hold and the same audit events are written.


def _unchanged_post(response) -> dict[str, object]:
    """What a browser would post back from an admin change page left as it is: the form
    and every inline, read-only fields excluded (browsers do not post them)."""
    from django import forms

    context = response.context
    all_forms = [context["adminform"].form]
    for inline in context["inline_admin_formsets"]:
        all_forms.append(inline.formset.management_form)
        all_forms.extend(inline.formset.forms)
    data: dict[str, object] = {}
    for form in all_forms:
        for name, field in form.fields.items():
            if field.disabled:
                continue
            key, value = form.add_prefix(name), form[name].value()
            if isinstance(field.widget, forms.MultiWidget):
                parts = value if isinstance(value, list) else field.widget.decompress(value)
                for i, part in enumerate(parts):
                    data[f"{key}_{i}"] = "" if part is None else part
            elif isinstance(field, forms.BooleanField):
                if value:
                    data[key] = "on"
            else:
                data[key] = "" if value is None else value
    return data


def _inline_row(data: dict[str, object], prefix: str, pk: int) -> str:
    """The form prefix ("questions-0") of the inline row that edits object `pk`."""
    for key, value in data.items():
        if key.startswith(f"{prefix}-") and key.endswith("-id") and str(value) == str(pk):
            return key.removesuffix("-id")
    raise AssertionError(f"no {prefix} row for {pk}")


def _errors(response) -> str:
    if response.status_code != 200 or response.context is None:
        return str(response.status_code)
    errors = response.context.get("errors")
    return str(list(errors) if errors else response.content.decode()[:2000])


@pytest.fixture
def choice_question(assignment, student, other_student):
    """A two-point single-choice question answered by two students, scored from the key
    (and so approved at once): `student` right, `other_student` wrong."""
    from grading import services as grading

    question = Question.objects.create(
        assignment=assignment,
        order=1,
        kind=QuestionKind.SINGLE_CHOICE,
        prompt="《背影》的作者？",
        options=[{"key": "A", "text": "朱自清"}, {"key": "B", "text": "鲁迅"}],
        answer_key={"correct": ["A"]},
        points=2,
    )
    submit(assignment, student, {question: ["A"]})
    submit(assignment, other_student, {question: ["B"]})
    ids = list(Answer.objects.filter(question=question).values_list("pk", flat=True))
    Answer.objects.filter(pk__in=ids).update(status=AnswerStatus.GRADING)
    grading.answers_grade(answer_ids=ids)
    assert set(Answer.objects.values_list("status", flat=True)) == {AnswerStatus.APPROVED}
    return question


def _points() -> dict[str, int]:
    return dict(Answer.objects.values_list("submission__student__username", "final_grade__points"))


SCORE_BEARING = [
    Answer,
    Assessment,
    AuditEvent,
    FinalGrade,
    RegradeRequest,
    Snapshot,
    Submission,
]


@pytest.mark.parametrize("model", SCORE_BEARING)
def test_score_bearing_models_are_read_only_in_admin(admin_user, model):
    request = _request_for(admin_user)
    model_admin = admin.site._registry.get(model)
    assert model_admin is not None, f"{model.__name__} can be viewed in admin"
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    for inline in model_admin.get_inline_instances(request):
        assert not inline.has_add_permission(request, None)
        assert not inline.has_change_permission(request)
        assert not inline.has_delete_permission(request)


@pytest.mark.parametrize("model", [CriterionScore, FinalCriterionGrade])
def test_scores_are_shown_only_in_read_only_inlines(admin_user, model):
    request = _request_for(admin_user)
    assert model not in admin.site._registry
    inlines = [
        inline
        for model_admin in admin.site._registry.values()
        for inline in model_admin.get_inline_instances(request)
        if inline.model is model
    ]
    assert inlines
    for inline in inlines:
        assert not inline.has_change_permission(request)
        assert not inline.has_delete_permission(request)


def test_an_answer_cannot_be_changed_through_its_submission(
    client, admin_user, choice_question, student
):
    answer = Answer.objects.get(submission__student=student)
    before = Answer.objects.values().get(pk=answer.pk)
    url = _admin_url(Submission, "change", answer.submission_id)
    client.force_login(admin_user)
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="answers-0-status"' not in page.content.decode()
    assert 'name="answers-0-text"' not in page.content.decode()
    # What the old inline accepted: a new text and a status that has no grade behind it.
    submission = answer.submission
    response = client.post(
        url,
        {
            "assignment": submission.assignment_id,
            "student": submission.student_id,
            "attempt": 1,
            "status": "submitted",
            "submitted_at_0": "2026-01-01",
            "submitted_at_1": "08:00:00",
            "answers-TOTAL_FORMS": "1",
            "answers-INITIAL_FORMS": "1",
            "answers-0-id": answer.pk,
            "answers-0-submission": submission.pk,
            "answers-0-text": "改过的答案",
            "answers-0-choices": '["B"]',
            "answers-0-status": "graded",
            "answers-0-status_reason": "",
        },
    )
    assert response.status_code == 403
    assert Answer.objects.values().get(pk=answer.pk) == before
    assert (
        client.post(_admin_url(Answer, "change", answer.pk), {"status": "graded"}).status_code
        == 403
    )
    assert Answer.objects.values().get(pk=answer.pk) == before


def test_an_approved_answer_cannot_be_deleted_through_admin(
    client, admin_user, choice_question, student, course
):
    answer = Answer.objects.select_related("submission").get(submission__student=student)
    submission = answer.submission
    client.force_login(admin_user)
    # Directly, through the submission's inline, and by deleting what it hangs on.
    assert (
        client.post(_admin_url(Submission, "delete", submission.pk), {"post": "yes"}).status_code
        == 403
    )
    inline_delete = {
        "answers-TOTAL_FORMS": "1",
        "answers-INITIAL_FORMS": "1",
        "answers-0-id": answer.pk,
        "answers-0-submission": submission.pk,
        "answers-0-DELETE": "on",
    }
    assert (
        client.post(_admin_url(Submission, "change", submission.pk), inline_delete).status_code
        == 403
    )
    bulk = {"action": "delete_selected", "_selected_action": [submission.pk], "post": "yes"}
    client.post(_admin_url(Submission, "changelist"), bulk)
    for model, pk in [
        (type(choice_question.assignment), choice_question.assignment_id),
        (type(course), course.pk),
        (type(student), student.pk),
    ]:
        response = client.post(_admin_url(model, "delete", pk), {"post": "yes"})
        assert response.status_code in (200, 403), model
    assert Answer.objects.filter(pk=answer.pk, status=AnswerStatus.APPROVED).exists()
    assert FinalGrade.objects.filter(answer=answer).exists()
    assert not AuditEvent.objects.filter(action__endswith="deleted").exists()


def test_a_question_with_answers_cannot_be_deleted_through_admin(
    client, admin_user, choice_question
):
    assignment = choice_question.assignment
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    data[f"{_inline_row(data, 'questions', choice_question.pk)}-DELETE"] = "on"
    response = client.post(url, data)
    assert response.status_code == 200
    assert Question.objects.filter(pk=choice_question.pk).exists()
    assert not AuditEvent.objects.filter(action="question.deleted").exists()


def test_deleting_an_unanswered_question_in_admin_is_audited_and_renumbers(
    client, admin_user, assignment, essay_question
):
    second = Question.objects.create(
        assignment=assignment,
        order=2,
        kind=QuestionKind.NUMERIC,
        prompt="g = ?",
        answer_key={"value": 9.8, "tolerance": 0.1},
    )
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    data[f"{_inline_row(data, 'questions', essay_question.pk)}-DELETE"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    assert list(assignment.questions.values_list("pk", "order")) == [(second.pk, 1)]
    event = AuditEvent.objects.get(action="question.deleted")
    assert event.actor == admin_user and event.assignment_id == assignment.pk


def test_changing_points_in_admin_rescores_objective_answers_and_is_audited(
    client, admin_user, choice_question
):
    assert _points() == {"student": 2, "other_student": 0}
    assignment = choice_question.assignment
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    row = _inline_row(data, "questions", choice_question.pk)
    data[f"{row}-points"] = "5"
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    assert _points() == {"student": 5, "other_student": 0}
    event = AuditEvent.objects.get(action="question.updated")
    assert event.actor == admin_user
    assert (event.before, event.after) == ({"points": 2}, {"points": 5})
    assert event.assignment_id == assignment.pk
    # The same admin page corrects the key: the answers follow it.
    data = _unchanged_post(client.get(url))
    data[f"{row}-answer_key"] = '{"correct": ["B"]}'
    assert client.post(url, data).status_code == 302
    assert _points() == {"student": 0, "other_student": 5}


def test_an_invalid_answer_key_is_refused_in_admin_with_the_questions_message(
    client, admin_user, choice_question
):
    assignment = choice_question.assignment
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    data[f"{_inline_row(data, 'questions', choice_question.pk)}-answer_key"] = '{"correct": ["Z"]}'
    response = client.post(url, data)
    assert response.status_code == 200
    assert "is not one of the options" in response.content.decode()
    assert Question.objects.get(pk=choice_question.pk).answer_key == {"correct": ["A"]}


def test_the_kind_of_an_existing_question_cannot_change_in_admin(
    client, admin_user, choice_question
):
    assignment = choice_question.assignment
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    row = _inline_row(data, "questions", choice_question.pk)
    data[f"{row}-kind"] = "multiple_choice"  # valid with these options and key
    client.post(url, data)
    assert Question.objects.get(pk=choice_question.pk).kind == QuestionKind.SINGLE_CHOICE


def test_a_question_added_in_admin_goes_through_question_create(
    client, admin_user, assignment, essay_question, rubric
):
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    data.update(
        {
            "questions-TOTAL_FORMS": "2",
            "questions-1-kind": "numeric",
            "questions-1-prompt": "g = ? m/s²",
            "questions-1-points": "3",
            "questions-1-answer_key": '{"value": 9.8, "tolerance": 0.1}',
            "questions-1-options": "[]",
            "questions-1-rubric": "",
            "questions-1-reference_answer": "",
            "questions-1-grader_guidelines": "",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    added = assignment.questions.get(kind="numeric")
    assert (added.order, added.points, added.rubric_id) == (2, 3, None)
    event = AuditEvent.objects.get(action="question.created")
    assert event.actor == admin_user and event.target_id == str(added.pk)


def test_an_assignment_state_change_in_admin_follows_the_teachers_rules(
    client, admin_user, choice_question
):
    assignment = choice_question.assignment
    url = _admin_url(type(assignment), "change", assignment.pk)
    client.force_login(admin_user)
    data = _unchanged_post(client.get(url))
    assert "grades_released_at_0" not in data  # released only from the grading pages
    data["state"] = "draft"  # students have handed in: hiding it is refused
    response = client.post(url, data)
    assert response.status_code == 200
    assert "close it instead" in response.content.decode()
    assignment.refresh_from_db()
    assert assignment.state == "published"
    data["state"] = "closed"
    assert client.post(url, data).status_code == 302
    assignment.refresh_from_db()
    assert assignment.state == "closed"
    event = AuditEvent.objects.get(action="assignment.closed")
    assert event.actor == admin_user and event.after == {"state": "closed"}


def test_an_assignment_added_in_admin_is_created_by_the_service(client, admin_user, course):
    from courses.models import Assignment

    client.force_login(admin_user)
    url = _admin_url(Assignment, "add")
    data = _unchanged_post(client.get(url))
    data.update({"course": course.pk, "title": "单元测验", "attempts_allowed": "1"})
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    created = Assignment.objects.get(title="单元测验")
    event = AuditEvent.objects.get(action="assignment.created")
    assert event.actor == admin_user and event.assignment_id == created.pk


def test_a_student_cannot_become_a_teacher_through_admin(
    client, admin_user, course, teacher, student
):
    enrollment = Enrollment.objects.get(user=student, course=course)
    client.force_login(admin_user)
    # 1. The course page's enrolment rows: the role is not editable there.
    course_url = _admin_url(type(course), "change", course.pk)
    data = _unchanged_post(client.get(course_url))
    for key in [k for k, v in data.items() if k.startswith("enrollments-") and k.endswith("-id")]:
        if str(data[key]) == str(enrollment.pk):
            data[key.removesuffix("-id") + "-role"] = Role.TEACHER
    client.post(course_url, data)
    # 2. The enrolment's own page: view only.
    response = client.post(
        _admin_url(Enrollment, "change", enrollment.pk),
        {"course": course.pk, "user": student.pk, "role": Role.TEACHER},
    )
    assert response.status_code == 403
    # 3. A second enrolment beside the first: enrollment_add refuses it, with its reason.
    response = client.post(
        _admin_url(Enrollment, "add"),
        {"course": course.pk, "identifier": student.username, "role": Role.TEACHER},
    )
    assert response.status_code == 200
    assert "already in this course as Student" in response.content.decode()
    assert list(Enrollment.objects.filter(user=student).values_list("role", "ended_at")) == [
        (Role.STUDENT, None)
    ]
    assert not AuditEvent.objects.filter(action__startswith="enrollment.").exists()


def test_enrolling_in_admin_goes_through_enrollment_add_and_is_audited(
    client, admin_user, course, teacher, outsider
):
    client.force_login(admin_user)
    url = _admin_url(Enrollment, "add")
    assert client.get(url).status_code == 200
    response = client.post(
        url, {"course": course.pk, "identifier": outsider.username, "role": Role.TEACHER}
    )
    assert response.status_code == 302, _errors(response)
    enrollment = Enrollment.objects.get(user=outsider, course=course)
    assert enrollment.role == Role.TEACHER and enrollment.is_active
    event = AuditEvent.objects.get(action="enrollment.added")
    assert event.actor == admin_user
    assert event.after == {"course": course.pk, "user": "outsider", "role": "teacher"}
    response = client.post(url, {"course": course.pk, "identifier": "nobody", "role": "student"})
    assert response.status_code == 200
    assert "No single account" in response.content.decode()


def test_an_enrolment_is_ended_in_admin_never_deleted(client, admin_user, course, teacher, student):
    enrollment = Enrollment.objects.get(user=student, course=course)
    client.force_login(admin_user)
    delete = client.post(_admin_url(Enrollment, "delete", enrollment.pk), {"post": "yes"})
    assert delete.status_code == 403
    client.post(_admin_url(type(course), "delete", course.pk), {"post": "yes"})
    assert Enrollment.objects.filter(pk=enrollment.pk).exists()
    changelist = _admin_url(Enrollment, "changelist")
    ended = client.post(
        changelist, {"action": "end_enrollments", "_selected_action": [enrollment.pk]}
    )
    assert ended.status_code == 302
    enrollment.refresh_from_db()
    assert enrollment.ended_at is not None
    event = AuditEvent.objects.get(action="enrollment.ended")
    assert event.actor == admin_user and event.target_id == str(enrollment.pk)
    # The course's last teacher stays: enrollment_end's rule, with its message.
    last = Enrollment.objects.get(user=teacher, course=course)
    response = client.post(
        changelist, {"action": "end_enrollments", "_selected_action": [last.pk]}, follow=True
    )
    assert "A course needs at least one teacher." in response.content.decode()
    last.refresh_from_db()
    assert last.ended_at is None


def test_editing_a_used_rubric_in_admin_makes_a_new_version(
    client, admin_user, graded_essays, essay_question, rubric
):
    client.force_login(admin_user)
    url = _admin_url(Rubric, "change", rubric.pk)
    data = _unchanged_post(client.get(url))
    first = rubric.criteria.get(order=1)
    data[f"{_inline_row(data, 'criteria', first.pk)}-max_points"] = "25"
    data["_continue"] = "1"
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    new = Rubric.objects.get(lineage=rubric.lineage, version=2)
    assert response["Location"] == _admin_url(Rubric, "change", new.pk)
    assert new.criteria.get(order=1).max_points == 25
    assert rubric.criteria.get(order=1).max_points == 20  # what the grades were given under
    essay_question.refresh_from_db()
    assert essay_question.rubric_id == new.pk
    actions = list(
        AuditEvent.objects.filter(action__startswith="rubric.").values_list("action", "actor")
    )
    assert actions == [
        ("rubric.versioned", admin_user.pk),
        ("rubric.criterion_updated", admin_user.pk),
    ]


def test_rubric_admin_edits_go_through_the_rubric_services(client, admin_user, rubric):
    client.force_login(admin_user)
    url = _admin_url(Rubric, "change", rubric.pk)
    data = _unchanged_post(client.get(url))
    assert "version" not in data  # versions are made by the service, never typed
    data["title"] = "作文评分标准"
    data[f"{_inline_row(data, 'criteria', rubric.criteria.get(order=5).pk)}-DELETE"] = "on"
    data.update(
        {
            "criteria-TOTAL_FORMS": "6",
            "criteria-5-title": "字数",
            "criteria-5-max_points": "5",
            "criteria-5-scoring": "range",
            "criteria-5-description": "",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    rubric.refresh_from_db()
    assert rubric.version == 1 and rubric.title == "作文评分标准"
    assert list(rubric.criteria.values_list("order", "title")) == [
        (1, "内容切题"),
        (2, "结构清晰"),
        (3, "语言表达"),
        (4, "文采创意"),
        (5, "字数"),
    ]
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {
        "rubric.updated",
        "rubric.criterion_deleted",
        "rubric.criterion_added",
    }


def test_a_level_above_its_criterion_maximum_is_refused_in_admin(client, admin_user, rubric):
    criterion = rubric.criteria.get(order=1)
    client.force_login(admin_user)
    url = _admin_url(Criterion, "change", criterion.pk)
    data = _unchanged_post(client.get(url))
    row = _inline_row(data, "levels", criterion.levels.get(points=16).pk)
    data[f"{row}-points"] = "30"
    response = client.post(url, data)
    assert response.status_code == 200
    assert "cannot exceed" in response.content.decode()
    data[f"{row}-points"] = "18"
    assert client.post(url, data).status_code == 302
    assert set(criterion.levels.values_list("points", flat=True)) == {18, 0}
    event = AuditEvent.objects.get(action="rubric.level_updated")
    assert event.actor == admin_user and event.after == {"points": 18}


def test_administrators_edit_templates_in_admin(client, admin_user, rubric):
    Rubric.objects.filter(pk=rubric.pk).update(is_template=True)
    client.force_login(admin_user)
    url = _admin_url(Rubric, "change", rubric.pk)
    data = _unchanged_post(client.get(url))
    data["description"] = "全校通用"
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response)
    rubric.refresh_from_db()
    assert rubric.description == "全校通用" and rubric.is_template
    assert AuditEvent.objects.filter(action="rubric.updated", actor=admin_user).exists()


def test_history_pages_render_for_admins(client, admin_user, graded_essays, teacher):
    from grading import services as grading
    from grading.models import RegradeRequest

    answer = graded_essays[0]
    grading.grade_approve(answer=answer, actor=teacher)
    grading.grades_release(assignment=answer.question.assignment, actor=teacher)
    RegradeRequest.objects.create(
        answer=answer, student=answer.submission.student, comment="请再看看"
    )
    client.force_login(admin_user)
    for model in [*SCORE_BEARING, Rubric, Criterion, Level]:
        if model not in admin.site._registry:
            continue
        assert client.get(_admin_url(model, "changelist")).status_code == 200, model
        obj = model.objects.first()
        assert obj is not None, model
        page = client.get(_admin_url(model, "change", obj.pk))
        assert page.status_code == 200, model
