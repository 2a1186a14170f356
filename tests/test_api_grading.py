"""Grading through the API: start it, watch it, approve and override with optimistic
locking (ETag / If-Match), bulk approve, release and hide, regrade requests, the audit
trail by cursor, and the lists' filters."""

from __future__ import annotations

from typing import Any

import pytest

from grading import services
from grading.models import Answer, AnswerStatus, FinalGrade, GradeSource, RegradeRequest

from .api_support import *  # noqa: F403
from .api_support import Api, problem


@pytest.fixture
def grader(course: Any, make_key: Any) -> Api:
    return Api(key=make_key(courses=[course], scopes=["read", "grade", "release"]))


def test_start_grading_and_watch_progress(
    no_llm: Any,
    django_capture_on_commit_callbacks: Any,
    assignment: Any,
    essay_question: Any,
    student: Any,
    grader: Api,
) -> None:
    from .conftest import GOOD, submit

    submit(assignment, student, {essay_question: GOOD})
    path = f"/api/v1/assignments/{assignment.pk}/grading/"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = grader.post(path, {"force": False})
    assert response.status_code == 202, response.content
    assert response.json()["queued"] == 1 and callbacks  # enqueued once committed
    progress = grader.get(path).json()
    assert progress["total"] == 1 and progress["in_flight"] == 1 and not progress["finished"]
    services.answers_grade(answer_ids=list(Answer.objects.values_list("pk", flat=True)))
    progress = grader.get(path).json()
    assert progress["finished"] and progress["counts"]["graded"] == 1


def test_approve_override_and_optimistic_locking(world: Any, grader: Api) -> None:
    essay = world.essay
    path = f"/api/v1/answers/{essay.pk}/grade/"
    FinalGrade.objects.filter(answer=essay).delete()
    essay.status = AnswerStatus.GRADED
    essay.save()
    problem(grader.get(path), 404, "not-found")
    problem(grader.put(path, {}, **{"If-Match": '"1"'}), 412, "precondition-failed")

    first = grader.put(path, {})  # the first approval needs no precondition
    assert first.status_code == 200, first.content
    assert first["ETag"] == '"1"' and first.json()["source"] == GradeSource.AI_ACCEPTED
    assert grader.get(path)["ETag"] == '"1"'

    body = problem(grader.put(path, {}), 428, "precondition-required")
    assert body["current_version"] == 1
    criterion = first.json()["criteria"][0]
    new_points = (criterion["points"] + 1) % (criterion["max_points"] + 1)
    override = {"scores": [{"criterion": criterion["criterion"], "points": new_points}]}
    refused = problem(grader.put(path, override, **{"If-Match": '"1"'}), 400, "validation-error")
    assert "reason" in refused["detail"]

    override["reason"] = "结尾点题。"
    second = grader.put(path, override, **{"If-Match": 'W/"1"'})
    assert second.status_code == 200, second.content
    assert second["ETag"] == '"2"' and second.json()["source"] == GradeSource.OVERRIDE
    assert second.json()["approved_by"].startswith("API:")  # the key's service account

    stale = problem(grader.put(path, override, **{"If-Match": '"1"'}), 412, "precondition-failed")
    assert stale["current_version"] == 2
    stale = problem(grader.put(path, {**override, "version": 1}), 412, "precondition-failed")
    assert stale["current_version"] == 2
    assert grader.put(path, {**override, "version": 2}).status_code == 200
    assert FinalGrade.objects.get(answer=essay).version == 3


def test_scores_for_criteria_outside_the_rubric_are_refused(world: Any, grader: Api) -> None:
    path = f"/api/v1/answers/{world.essay.pk}/grade/"
    body = {"scores": [{"criterion": 987654, "points": 1}], "reason": "x"}
    assert "scores" in problem(grader.put(path, body, **{"If-Match": "*"}), 400)["errors"]
    twice = {"scores": [{"criterion": 1, "points": 1}, {"criterion": 1, "points": 2}]}
    assert "scores" in problem(grader.put(path, twice, **{"If-Match": "*"}), 400)["errors"]


def test_bulk_approve_never_takes_blank_or_injected_answers(
    graded_essays: Any, assignment: Any, course: Any, make_key: Any
) -> None:
    api = Api(key=make_key(courses=[course], scopes=["grade"]))
    path = f"/api/v1/assignments/{assignment.pk}/grades/bulk-approve/"
    ids = [a.pk for a in graded_essays]
    response = api.post(path, {"answers": ids}).json()
    assert (response["approved"], response["refused"], response["skipped"]) == (2, 2, 2)
    response = api.post(path, {"answers": [], "include_flagged": [ids[2]]}).json()
    assert (response["approved"], response["refused"]) == (0, 1)


def test_bulk_approve_takes_low_confidence_proposals_only_when_asked(
    world: Any, grader: Api, grade_now: Any, essay_question: Any
) -> None:
    theirs = world.other_submission.answers.get()
    grade_now([theirs])  # the offline rule engine: always low confidence
    path = f"/api/v1/assignments/{world.assignment.pk}/grades/bulk-approve/"
    skipped = grader.post(path, {"answers": [theirs.pk]}).json()
    assert (skipped["approved"], skipped["skipped_low_confidence"]) == (0, 1)
    taken = grader.post(path, {"answers": [], "include_flagged": [theirs.pk]}).json()
    assert (taken["approved"], taken["approved_low_confidence"]) == (1, 1)


def test_bulk_approve_refuses_answers_of_other_assignments(
    world: Any, grader: Api, course: Any
) -> None:
    from courses.models import Assignment

    other = Assignment.objects.create(course=course, title="另一份")
    path = f"/api/v1/assignments/{other.pk}/grades/bulk-approve/"
    body = problem(grader.post(path, {"answers": [world.essay.pk], "include_flagged": ["x"]}), 400)
    assert set(body["errors"]) == {"include_flagged.0"} or "answers.0" in body["errors"]


def test_release_and_hide_decide_what_students_see(world: Any, grader: Api, student: Any) -> None:
    grades = f"/api/v1/assignments/{world.assignment.pk}/grades/"
    student_api = Api(user=student)
    hidden = grader.post(f"/api/v1/assignments/{world.assignment.pk}/hide/")
    assert hidden.status_code == 200 and hidden.json()["grades_released_at"] is None
    assert student_api.get(grades).json()["results"] == []
    released = grader.post(f"/api/v1/assignments/{world.assignment.pk}/release/")
    assert released.status_code == 200 and released.json()["grades_released_at"]
    assert len(student_api.get(grades).json()["results"]) == 2


def test_teaching_assistants_do_not_release(world: Any, ta: Any) -> None:
    response = Api(user=ta).post(f"/api/v1/assignments/{world.assignment.pk}/release/")
    assert "teachers" in problem(response, 403, "forbidden")["detail"]


def test_regrade_request_and_answer_with_a_changed_grade(
    world: Any, student: Any, teacher: Any
) -> None:
    student_api, teacher_api = Api(user=student), Api(user=teacher)
    again = student_api.post(
        "/api/v1/regrade-requests/", {"answer": world.essay.pk, "comment": "再看"}
    )
    assert "not answered" in problem(again, 400)["detail"]
    other = student_api.post(
        "/api/v1/regrade-requests/",
        {"answer": world.other_submission.answers.get().pk, "comment": "x"},
    )
    assert "answer" in problem(other, 400)["errors"]

    grade = FinalGrade.objects.get(answer=world.essay)
    criterion = grade.criteria.first()
    points = (criterion.points + 1) % (criterion.max_points + 1)
    response = teacher_api.post(
        f"/api/v1/regrade-requests/{world.regrade.pk}/answer/",
        {
            "response": "加一分。",
            "scores": [{"criterion": criterion.criterion_id, "points": points}],
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "answered"
    grade.refresh_from_db()
    assert grade.version == 2 and grade.source == GradeSource.OVERRIDE
    seen = student_api.get(f"/api/v1/regrade-requests/{world.regrade.pk}/").json()
    assert seen["response"] == "加一分。"
    twice = teacher_api.post(
        f"/api/v1/regrade-requests/{world.regrade.pk}/answer/", {"response": "再答一次"}
    )
    assert "already answered" in problem(twice, 400)["detail"]
    assert RegradeRequest.objects.get().responder == teacher


def test_audit_events_page_back_by_cursor(world: Any, grader: Api) -> None:
    path = f"/api/v1/assignments/{world.assignment.pk}/audit-events/"
    seen: list[int] = []
    response = grader.get(path, page_size=2)
    while True:
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [event["id"] for event in body["results"]]
        if not body["next"]:
            break
        response = grader.client.get(body["next"], headers=grader.headers)
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 4
    problem(grader.get(path, cursor="not-a-cursor"), 404)
    only = grader.get(path, action="grades.released").json()["results"]
    assert [e["action"] for e in only] == ["grades.released"]


def test_audit_events_are_read_only(world: Any, grader: Api) -> None:
    path = f"/api/v1/assignments/{world.assignment.pk}/audit-events/"
    problem(grader.post(path, {}), 405, "method-not-allowed")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"question": "abc"}, "question"),
        ({"question": "99999999999999999999999"}, "question"),
    ],
)
def test_filters_that_do_not_parse_are_field_errors(
    world: Any, grader: Api, params: dict[str, str], field: str
) -> None:
    response = grader.get(f"/api/v1/assignments/{world.assignment.pk}/answers/", **params)
    assert field in problem(response, 400, "validation-error")["errors"]


def test_filters_and_ordering(world: Any, grader: Api) -> None:
    path = f"/api/v1/assignments/{world.assignment.pk}/answers/"
    approved = grader.get(path, status="approved").json()["results"]
    assert {a["id"] for a in approved} == {world.essay.pk, world.choice.pk}
    newest_first = grader.get(path, ordering="-id").json()["results"]
    assert [a["id"] for a in newest_first] == sorted((a["id"] for a in newest_first), reverse=True)
    assert grader.get(path, code="\x00").status_code == 200  # unknown parameters are ignored
    courses = grader.get("/api/v1/courses/", code="CHN\x00-8A").json()["results"]
    assert [c["code"] for c in courses] == ["CHN-8A"]  # NUL removed, as everywhere


def test_pages_and_page_sizes(world: Any, grader: Api) -> None:
    body = grader.get("/api/v1/assignments/", page_size=1).json()
    assert body["count"] == 1 and body["next"] is None
    problem(grader.get("/api/v1/assignments/", page=99), 404, "not-found")
    problem(grader.get("/api/v1/assignments/", page="x"), 404, "not-found")


def test_assessments_list_the_proposals_newest_first(world: Any, grader: Api) -> None:
    body = grader.get(f"/api/v1/answers/{world.essay.pk}/assessments/").json()
    assert body["count"] >= 1
    current = [a for a in body["results"] if a["is_current"]]
    assert len(current) == 1 and current[0]["scorer"] == "rules"
