"""Every API resource for every kind of caller: the same rules as the pages.

Anonymous callers get 401; objects of another course are 404; visible objects a caller
may not act on are 403; a key's GET needs the read scope. Each case runs on a fresh
school (`world`), so a write allowed to one caller never changes what the next one sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from .api_support import *  # noqa: F403
from .api_support import CALLERS, problem

IN, OUT = "in", "out"  # a list answers 200 and includes (or leaves out) the object


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Callable[[Any], str]
    expected: dict[str, int | str]
    body: Callable[[Any, str], Any] | None = None
    headers: dict[str, str] | None = None
    listed: Callable[[Any], int] | None = None  # the object a list should (not) include


def _row(*codes: int | str) -> dict[str, int | str]:
    assert len(codes) == len(CALLERS)
    return dict(zip(CALLERS, codes, strict=True))


#               anon student other teacher other_t  ta  key  key_oc  key_ro key_nr
CASES = [
    Case(
        "courses list",
        "get",
        lambda w: "/api/v1/courses/",
        _row(401, IN, IN, IN, OUT, IN, IN, OUT, IN, 403),
        listed=lambda w: w.assignment.course_id,
    ),
    Case(
        "course",
        "get",
        lambda w: f"/api/v1/courses/{w.assignment.course_id}/",
        _row(401, 200, 200, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "enrollments",
        "get",
        lambda w: f"/api/v1/courses/{w.assignment.course_id}/enrollments/",
        _row(401, 403, 403, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "enroll",
        "post",
        lambda w: f"/api/v1/courses/{w.assignment.course_id}/enrollments/",
        _row(401, 403, 403, 201, 404, 403, 403, 404, 403, 403),
        body=lambda w, who: {"identifier": "outsider", "role": "student"},
    ),
    Case(
        "end enrollment",
        "post",
        lambda w: f"/api/v1/enrollments/{w.enrollment.pk}/end/",
        _row(401, 403, 403, 200, 404, 403, 403, 404, 403, 403),
    ),
    Case(
        "assignments list",
        "get",
        lambda w: "/api/v1/assignments/",
        _row(401, IN, IN, IN, OUT, IN, IN, OUT, IN, 403),
        listed=lambda w: w.assignment.pk,
    ),
    Case(
        "assignment",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/",
        _row(401, 200, 200, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "rubrics list",
        "get",
        lambda w: "/api/v1/rubrics/",
        _row(401, OUT, OUT, IN, IN, OUT, IN, OUT, IN, 403),
        listed=lambda w: w.essay.question.rubric_id,
    ),
    Case(
        "rubric",
        "get",
        lambda w: f"/api/v1/rubrics/{w.essay.question.rubric_id}/",
        _row(401, 404, 404, 200, 200, 404, 200, 404, 200, 403),
    ),
    Case(
        "create rubric",
        "post",
        lambda w: "/api/v1/rubrics/",
        _row(401, 403, 403, 201, 201, 403, 403, 403, 403, 403),
        body=lambda w, who: {"title": "新标准"},
    ),
    Case(
        "copy rubric",
        "post",
        lambda w: f"/api/v1/rubrics/{w.essay.question.rubric_id}/copy/",
        _row(401, 404, 404, 201, 201, 404, 403, 404, 403, 403),
    ),
    Case(
        "submissions list",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/submissions/",
        _row(401, IN, OUT, IN, 404, IN, IN, 404, IN, 403),
        listed=lambda w: w.submission.pk,
    ),
    Case(
        "hand in",
        "post",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/submissions/",
        _row(401, 201, 201, 403, 404, 403, 201, 404, 403, 201),
        body=lambda w, who: {
            "answers": [{"question": w.essay.question_id, "text": "又一篇。"}],
            **({"student": "other_student"} if who.startswith("key") else {}),
        },
    ),
    Case(
        "submission",
        "get",
        lambda w: f"/api/v1/submissions/{w.submission.pk}/",
        _row(401, 200, 404, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "answers list",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/answers/",
        _row(401, 403, 403, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "answer",
        "get",
        lambda w: f"/api/v1/answers/{w.essay.pk}/",
        _row(401, 404, 404, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "assessments",
        "get",
        lambda w: f"/api/v1/answers/{w.essay.pk}/assessments/",
        _row(401, 404, 404, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "grade",
        "get",
        lambda w: f"/api/v1/answers/{w.essay.pk}/grade/",
        _row(401, 404, 404, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "approve",
        "put",
        lambda w: f"/api/v1/answers/{w.essay.pk}/grade/",
        _row(401, 404, 404, 200, 404, 200, 200, 404, 403, 403),
        body=lambda w, who: {},
        headers={"If-Match": "*"},
    ),
    Case(
        "grades list",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/grades/",
        _row(401, IN, OUT, IN, 404, IN, IN, 404, IN, 403),
        listed=lambda w: w.essay.final_grade.pk,
    ),
    Case(
        "bulk approve",
        "post",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/grades/bulk-approve/",
        _row(401, 403, 403, 200, 404, 200, 200, 404, 403, 403),
        body=lambda w, who: {"answers": []},
    ),
    Case(
        "progress",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/grading/",
        _row(401, 403, 403, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "start grading",
        "post",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/grading/",
        _row(401, 403, 403, 202, 404, 202, 202, 404, 403, 403),
    ),
    Case(
        "release",
        "post",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/release/",
        _row(401, 403, 403, 200, 404, 403, 200, 404, 403, 403),
    ),
    Case(
        "hide",
        "post",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/hide/",
        _row(401, 403, 403, 200, 404, 403, 200, 404, 403, 403),
    ),
    Case(
        "regrade requests list",
        "get",
        lambda w: "/api/v1/regrade-requests/",
        _row(401, IN, OUT, IN, OUT, IN, IN, OUT, IN, 403),
        listed=lambda w: w.regrade.pk,
    ),
    Case(
        "regrade request",
        "get",
        lambda w: f"/api/v1/regrade-requests/{w.regrade.pk}/",
        _row(401, 200, 404, 200, 404, 200, 200, 404, 200, 403),
    ),
    Case(
        "ask for a regrade",
        "post",
        lambda w: "/api/v1/regrade-requests/",
        _row(401, 201, 400, 400, 400, 400, 403, 403, 403, 403),
        body=lambda w, who: {"answer": w.choice.pk, "comment": "选择题也请看看。"},
    ),
    Case(
        "answer a regrade request",
        "post",
        lambda w: f"/api/v1/regrade-requests/{w.regrade.pk}/answer/",
        _row(401, 403, 404, 200, 404, 200, 200, 404, 403, 403),
        body=lambda w, who: {"response": "已复核，维持原分。"},
    ),
    Case(
        "audit events",
        "get",
        lambda w: f"/api/v1/assignments/{w.assignment.pk}/audit-events/",
        _row(401, 403, 403, 200, 404, 200, 200, 404, 200, 403),
    ),
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_resource_for_every_caller(case: Case, who: str, world: Any, caller: Any) -> None:
    api = caller(who)
    path = case.path(world)
    if case.method == "get":
        response = api.get(path)
    else:
        body = case.body(world, who) if case.body else {}
        response = getattr(api, case.method)(path, body, **(case.headers or {}))
    expected = case.expected[who]
    if expected in (IN, OUT):
        assert response.status_code == 200, (response.status_code, response.content[:300])
        assert case.listed is not None
        ids = [item["id"] for item in response.json()["results"]]
        assert (case.listed(world) in ids) is (expected == IN), (ids, case.listed(world))
    elif expected >= 400:
        body = problem(response, expected)
        if expected == 401:
            assert response["WWW-Authenticate"].startswith("Bearer")
        assert "errors" in body or expected != 400
    else:
        assert response.status_code == expected, (response.status_code, response.content[:500])


def test_students_see_questions_without_keys_or_rubrics(world: Any, caller: Any) -> None:
    body = caller("student").get(f"/api/v1/assignments/{world.assignment.pk}/").json()
    for question in body["questions"]:
        assert question["answer_key"] is None
        assert question["rubric"] is None
        assert question["reference_answer"] is None
    staff = caller("ta").get(f"/api/v1/assignments/{world.assignment.pk}/").json()
    essay = next(q for q in staff["questions"] if q["kind"] == "essay")
    assert essay["rubric"]["criteria"] and essay["reference_answer"]


def test_students_read_only_their_own_released_grades(world: Any, caller: Any) -> None:
    path = f"/api/v1/assignments/{world.assignment.pk}/grades/"
    mine = caller("student").get(path).json()["results"]
    assert {g["answer"] for g in mine} == {world.essay.pk, world.choice.pk}
    assert all(g["source"] is None and g["override_reason"] is None for g in mine)
    assert all(c["ai_points"] is None for g in mine for c in g["criteria"])
    world.assignment.grades_released_at = None
    world.assignment.save()
    assert caller("student").get(path).json()["results"] == []


def test_anonymous_grading_hides_students_from_graders_not_from_keys(
    world: Any, caller: Any
) -> None:
    world.assignment.anonymous_grading = True
    world.assignment.save()
    path = f"/api/v1/submissions/{world.submission.pk}/"
    seen_by_ta = caller("ta").get(path).json()
    assert seen_by_ta["student"] is None
    assert seen_by_ta["student_label"] == f"Student #{world.submission.pk}"
    answers = caller("teacher").get(f"/api/v1/assignments/{world.assignment.pk}/answers/")
    assert "李明" not in answers.content.decode()
    events = caller("teacher").get(f"/api/v1/assignments/{world.assignment.pk}/audit-events/")
    assert '"student"' not in events.content.decode()  # the actor label, not the username
    assert caller("key").get(path).json()["student"]["username"] == "student"
    assert caller("student").get(path).json()["student"]["username"] == "student"


def test_a_revoked_key_is_refused_at_once(world: Any, course: Any) -> None:
    from grading.api.keys import api_key_create, api_key_revoke

    from .api_support import Api

    new = api_key_create(name="LMS", scopes=["read"], courses=[course])
    api = Api(key=new.raw_key)
    assert api.get("/api/v1/courses/").status_code == 200
    api_key_revoke(api_key=new.api_key, actor=None)
    problem(api.get("/api/v1/courses/"), 401, "unauthenticated")


def test_a_site_wide_key_sees_every_course(world: Any, other_course: Any, make_key: Any) -> None:
    from .api_support import Api

    api = Api(key=make_key(site_wide=True, scopes=["read"]))
    codes = {c["code"] for c in api.get("/api/v1/courses/").json()["results"]}
    assert codes == {world.assignment.course.code, other_course.code}
