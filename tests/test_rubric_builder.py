"""The rubric builder and rubric versioning: a rubric that has scored answers is never
rewritten; old assessments keep the snapshot they were scored with."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from grading import rubrics, selectors, services
from grading.models import (
    Answer,
    AnswerStatus,
    AuditEvent,
    Criterion,
    CriterionScore,
    Level,
    Rubric,
)

from .conftest import submit


@pytest.fixture
def client(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def v1_scored_essays(assignment, essay_question, student, other_student, no_llm):
    """Two essays scored by the offline engine against version 1 of the rubric."""
    for who, text in (
        (student, "那一刻我长大了，我照顾生病的妈妈。"),
        (other_student, "我的暑假。"),
    ):
        submit(assignment, who, {essay_question: text})
    ids = list(Answer.objects.values_list("pk", flat=True))
    Answer.objects.filter(pk__in=ids).update(status=AnswerStatus.GRADING)
    services.answers_grade(answer_ids=ids)
    return Answer.objects.filter(pk__in=ids).order_by("pk")


def change(client, rubric, op, **data):
    return client.post(
        reverse("grading:rubric_change", args=[rubric.pk]),
        {"op": op, **data},
        HTTP_HX_REQUEST="true",
    )


def test_unused_rubric_is_edited_in_place(rubric, essay_question, teacher):
    criterion = rubric.criteria.first()
    edit = rubrics.criterion_update(criterion=criterion, actor=teacher, max_points=25)
    assert not edit.versioned and edit.rubric == rubric
    assert rubric.max_points == 105
    assert Rubric.objects.filter(lineage=rubric.lineage).count() == 1


def test_editing_a_used_rubric_makes_a_new_version(
    rubric, essay_question, teacher, v1_scored_essays
):
    v1_snapshot = v1_scored_essays[0].current_assessment.rubric_snapshot
    v1_criterion = rubric.criteria.get(title="内容切题")
    edit = rubrics.criterion_update(
        criterion=v1_criterion, actor=teacher, title="内容切题（新）", max_points=30
    )
    v2 = edit.rubric
    assert edit.versioned and v2.version == 2 and v2.lineage == rubric.lineage
    # The question moved on; version 1 and everything scored with it stay as they were.
    essay_question.refresh_from_db()
    assert essay_question.rubric == v2
    assert rubric.criteria.get(pk=v1_criterion.pk).max_points == 20
    assert v2.criteria.get(order=v1_criterion.order).title == "内容切题（新）"
    assert v2.max_points == 110 and rubric.max_points == 100
    for answer in v1_scored_essays:
        assessment = answer.current_assessment
        assert assessment.rubric_snapshot_id == v1_snapshot.pk
        assert assessment.rubric_snapshot.data["version"] == 1
        assert {c["title"] for c in assessment.rubric_snapshot.data["criteria"]} >= {"内容切题"}
        assert set(
            CriterionScore.objects.filter(assessment=assessment).values_list(
                "criterion__rubric_id", flat=True
            )
        ) == {rubric.pk}
    # Levels came along, and further edits stay on version 2 (it has scored nothing yet).
    assert Level.objects.filter(criterion__rubric=v2).count() == 10
    again = rubrics.criterion_add(rubric=v2, actor=teacher, title="书写", max_points=5)
    assert not again.versioned and again.rubric == v2
    event = AuditEvent.objects.get(action="rubric.versioned")
    assert event.before["version"] == 1 and event.after["questions"] == [essay_question.pk]


def test_answers_scored_with_the_old_version_are_listed_and_regraded(
    rubric,
    essay_question,
    teacher,
    assignment,
    v1_scored_essays,
    django_capture_on_commit_callbacks,
):
    v2 = rubrics.criterion_update(
        criterion=rubric.criteria.first(), actor=teacher, max_points=25
    ).rubric
    services.grade_approve(answer=v1_scored_essays[0], actor=teacher)  # approved under version 1
    outdated = selectors.rubric_outdated_by_assignment(rubric=v2)
    assert outdated == [
        {
            "assignment_id": assignment.pk,
            "title": assignment.title,
            "total": 2,
            "approved": 1,
            "regradable": 1,
        }
    ]
    with django_capture_on_commit_callbacks(execute=False):
        queued = rubrics.rubric_regrade_outdated(rubric=v2, assignment=assignment, actor=teacher)
    assert queued == 1
    assert Answer.objects.get(pk=v1_scored_essays[1].pk).status == AnswerStatus.GRADING
    assert Answer.objects.get(pk=v1_scored_essays[0].pk).status == AnswerStatus.APPROVED
    services.answers_grade(answer_ids=[v1_scored_essays[1].pk])
    regraded = Answer.objects.get(pk=v1_scored_essays[1].pk).current_assessment
    assert regraded.rubric_snapshot.data["version"] == 2
    assert list(selectors.rubric_outdated_answers(rubric=v2)) == [v1_scored_essays[0]]


def test_only_the_newest_version_is_editable(rubric, essay_question, teacher, v1_scored_essays):
    rubrics.level_delete(
        level=Level.objects.filter(criterion__rubric=rubric).first(), actor=teacher
    )
    with pytest.raises(rubrics.StaleRubric):
        rubrics.criterion_add(rubric=rubric, actor=teacher, title="x", max_points=1)


def test_templates_are_not_edited_by_teachers(teacher, rubric_templates):
    template = Rubric.objects.filter(is_template=True).first()
    with pytest.raises(ValidationError):
        rubrics.rubric_update(rubric=template, actor=teacher, title="mine now")


def test_level_rules(rubric, teacher):
    criterion = rubric.criteria.first()
    with pytest.raises(ValidationError) as exc:
        rubrics.level_add(criterion=criterion, actor=teacher, points=21, descriptor="超出")
    assert "points" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        rubrics.level_add(criterion=criterion, actor=teacher, points=16, descriptor="重复")
    assert "already gives 16" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        rubrics.criterion_update(criterion=criterion, actor=teacher, max_points=10)
    assert "max_points" in exc.value.message_dict
    assert Criterion.objects.get(pk=criterion.pk).max_points == 20


def test_builder_htmx_round_trip(client, teacher, rubric, essay_question):
    client.force_login(teacher)
    page = client.get(reverse("grading:rubric", args=[rubric.pk])).content.decode()
    assert 'id="rubric-total"' in page and ">100<" in page
    response = change(
        client,
        rubric,
        "criterion.add",
        title="书写工整",
        max_points=5,
        scoring="range",
        description="",
    )
    body = response.content.decode()
    assert response.status_code == 200 and body.startswith('\n<div id="rubric-builder"')
    assert "书写工整" in body and ">105<" in body
    new = rubric.criteria.get(title="书写工整")
    response = change(
        client, rubric, "level.add", criterion=new.pk, points=9, title="", descriptor="太高"
    )
    assert response.status_code == 400 and "maximum of 5 points" in response.content.decode()
    assert not new.levels.exists()
    response = change(client, rubric, "criterion.up", criterion=new.pk)
    assert rubric.criteria.order_by("order").values_list("title", flat=True)[4] == "书写工整"
    response = change(client, rubric, "criterion.delete", criterion=new.pk)
    assert not rubric.criteria.filter(title="书写工整").exists()
    assert ">100<" in response.content.decode()


def test_builder_redirects_to_the_new_version(
    client, teacher, rubric, essay_question, v1_scored_essays
):
    client.force_login(teacher)
    criterion = rubric.criteria.first()
    response = change(
        client,
        rubric,
        "criterion.update",
        criterion=criterion.pk,
        title=criterion.title,
        max_points=25,
        scoring="range",
        description="",
    )
    v2 = Rubric.objects.get(lineage=rubric.lineage, version=2)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("grading:rubric", args=[v2.pk])
    page = client.get(response["HX-Redirect"]).content.decode()
    assert "made version 2" in page
    assert "2 answers scored with an earlier version" in page
    grading_page = client.get(reverse("grading:assignment", args=[essay_question.assignment_id]))
    text = grading_page.content.decode()
    assert "Question 1: 2 answers were scored with an earlier version of its rubric" in text
    assert "Regrade 2 answers with this version" in text
    old_page = client.get(reverse("grading:rubric", args=[rubric.pk])).content.decode()
    assert "This is an earlier version" in old_page and 'name="op"' not in old_page


def test_library_copy_of_a_template_and_of_a_colleagues_rubric(
    client, teacher, other_teacher, rubric, essay_question, rubric_templates
):
    client.force_login(other_teacher)
    page = client.get(reverse("grading:rubrics")).content.decode()
    for title in (
        "中文作文评分标准（五项）",
        "通用分析型评分标准（四级）",
        "Analytic rubric (4 levels)",
    ):
        assert title in page
    assert rubric.title in page  # a colleague's rubric, used in a course next door
    response = client.post(reverse("grading:rubric_copy", args=[rubric.pk]))
    copy = Rubric.objects.get(owner=other_teacher)
    assert response["Location"] == reverse("grading:rubric", args=[copy.pk])
    assert copy.lineage != rubric.lineage and copy.max_points == rubric.max_points
    # Reading is allowed, changing a colleague's rubric is not.
    assert change(client, rubric, "rubric.update", title="x", language="en").status_code == 404


def test_students_never_reach_rubrics(client, student, rubric, outsider):
    for user in (student, outsider):
        client.force_login(user)
        assert client.get(reverse("grading:rubrics")).status_code == 403
        assert client.get(reverse("grading:rubric", args=[rubric.pk])).status_code == 404
        assert change(client, rubric, "criterion.add", title="x", max_points=1).status_code == 404


def test_saving_without_changes_makes_no_version(rubric, essay_question, teacher, v1_scored_essays):
    criterion = rubric.criteria.first()
    edit = rubrics.criterion_update(
        criterion=criterion,
        actor=teacher,
        title=criterion.title,
        max_points=criterion.max_points,
        scoring=criterion.scoring,
        description=criterion.description,
    )
    assert not edit.versioned
    rubrics.rubric_update(rubric=rubric, actor=teacher, title=rubric.title, language="zh-hans")
    assert Rubric.objects.filter(lineage=rubric.lineage).count() == 1


def test_a_rubric_counts_as_used_once_grading_has_begun(rubric, essay_question, teacher):
    from grading.models import Snapshot

    Snapshot.store(rubric.snapshot())  # a run took its snapshot and is waiting for the model
    edit = rubrics.criterion_update(criterion=rubric.criteria.first(), actor=teacher, title="新")
    assert edit.versioned


def test_a_colleagues_rubric_is_editable_only_inside_shared_courses(
    client, teacher, other_teacher, rubric, essay_question, other_course
):
    from courses import permissions
    from courses.models import Enrollment, Question, Role

    rubric.owner = teacher
    rubric.save()
    Enrollment.objects.create(
        course=essay_question.assignment.course, user=other_teacher, role=Role.TEACHER
    )
    assert permissions.editable_rubrics(other_teacher).filter(pk=rubric.pk).exists()
    # Once the owner also uses it in a course the colleague does not teach, it is theirs alone.
    solo = essay_question.assignment
    solo.pk = None
    solo.course = other_course
    solo.save()
    Enrollment.objects.filter(course=other_course, user=other_teacher).delete()
    Question.objects.create(assignment=solo, kind="essay", prompt="?", rubric=rubric)
    assert not permissions.editable_rubrics(other_teacher).filter(pk=rubric.pk).exists()
    assert permissions.editable_rubrics(teacher).filter(pk=rubric.pk).exists()


@pytest.mark.parametrize(
    "data",
    [
        {"op": "criterion.delete", "criterion": "abc"},
        {"op": "level.delete", "level": "1x"},
        {"op": "rubric.update", "criterion": "-1"},
    ],
)
def test_malformed_ids_are_not_found(client, teacher, rubric, essay_question, data):
    client.force_login(teacher)
    response = client.post(reverse("grading:rubric_change", args=[rubric.pk]), data)
    assert response.status_code == 404
    response = client.post(reverse("grading:rubric_regrade", args=[rubric.pk]), {"assignment": "x"})
    assert response.status_code == 404
