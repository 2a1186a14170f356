"""Fixtures and a small client for the API tests (`from .api_support import *`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from courses.models import Course, Enrollment, Question, QuestionKind, Role, User
from grading.api.keys import api_key_create
from grading.models import ApiScope

from .conftest import make_user

ALL_SCOPES = tuple(ApiScope.values)


class Api:
    """One caller: a session (force-logged-in person), an API key, or nobody."""

    def __init__(self, *, user: User | None = None, key: str | None = None) -> None:
        self.client = Client()
        # English, as the tests read messages (a caller may ask for zh-hans instead).
        self.headers: dict[str, str] = {"Accept-Language": "en"}
        if user is not None:
            self.client.force_login(user)
        if key is not None:
            self.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self.headers)

    def post(self, path: str, data: Any = None, *, idem: str | None = None, **headers: str) -> Any:
        return self._send("post", path, data, idem=idem, **headers)

    def put(self, path: str, data: Any = None, **headers: str) -> Any:
        return self._send("put", path, data, **headers)

    def _send(
        self, method: str, path: str, data: Any, *, idem: str | None = None, **headers: str
    ) -> Any:
        all_headers = {**self.headers, **headers}
        if idem is not None:
            all_headers["Idempotency-Key"] = idem
        body = data if isinstance(data, bytes) else json.dumps({} if data is None else data)
        return getattr(self.client, method)(
            path, body, content_type="application/json", headers=all_headers
        )


def problem(response: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    """Assert `response` is a problem-details error of `status` (and type `kind`)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:markwise:problem:")
    assert body["title"] and body["detail"]
    if kind is not None:
        assert body["type"] == f"urn:markwise:problem:{kind}", body
    return body


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Any:
    """The rate limits count in the cache, by caller id; ids repeat from test to test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ta(course: Course) -> User:
    user = make_user("ta", name="助教")
    Enrollment.objects.create(course=course, user=user, role=Role.TA)
    return user


@pytest.fixture
def make_key(db: Any) -> Callable[..., str]:
    def make(
        *,
        courses: Iterable[Course] = (),
        scopes: Iterable[str] = ALL_SCOPES,
        site_wide: bool = False,
        name: str = "School information system",
    ) -> str:
        return api_key_create(
            name=name, scopes=scopes, courses=courses, site_wide=site_wide
        ).raw_key

    return make


@pytest.fixture
def choice_question(assignment: Any) -> Question:
    return Question.objects.create(
        assignment=assignment,
        order=2,
        kind=QuestionKind.MULTIPLE_CHOICE,
        prompt="哪些是记叙文的要素？",
        options=[
            {"key": "A", "text": "时间"},
            {"key": "B", "text": "地点"},
            {"key": "C", "text": "韵脚"},
        ],
        answer_key={"correct": ["A", "B"]},
        points=2,
    )


CALLERS = (
    "anonymous",
    "student",
    "other_student",
    "teacher",
    "other_teacher",
    "ta",
    "key",
    "key_other_course",
    "key_read_only",
    "key_no_read",
)


@pytest.fixture
def caller(
    request: Any, course: Course, other_course: Course, make_key: Callable[..., str]
) -> Callable[[str], Api]:
    """caller(name) → an Api acting as that caller (see CALLERS); people come from the
    shared fixtures, keys are made on demand: all scopes on the course, all scopes on
    another course, read only, and submit without read."""

    def make(name: str) -> Api:
        if name == "anonymous":
            return Api()
        if name == "key":
            return Api(key=make_key(courses=[course]))
        if name == "key_other_course":
            return Api(key=make_key(courses=[other_course]))
        if name == "key_read_only":
            return Api(key=make_key(courses=[course], scopes=["read"]))
        if name == "key_no_read":
            return Api(key=make_key(courses=[course], scopes=["submit"]))
        return Api(user=request.getfixturevalue(name))

    return make


@pytest.fixture
def world(
    no_llm: Any,
    grade_now: Any,
    assignment: Any,
    essay_question: Question,
    choice_question: Question,
    student: User,
    other_student: User,
    teacher: User,
    ta: User,
    other_teacher: User,
    outsider: User,
) -> SimpleNamespace:
    """The course's assignment after a round of grading: the student's essay graded by
    the offline rules and approved, their choice answer scored by the key, grades released,
    a regrade request open; the other student's essay handed in, not yet graded."""
    from grading import services

    from .conftest import GOOD, submit

    assignment.attempts_allowed = 5
    assignment.save()
    mine = submit(assignment, student, {essay_question: GOOD, choice_question: ["A", "B"]})
    grade_now(list(mine.answers.all()))
    essay = mine.answers.get(question=essay_question)
    choice = mine.answers.get(question=choice_question)
    services.grade_approve(answer=essay, actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    regrade = services.regrade_request_create(answer=essay, student=student, comment="请再看看。")
    theirs = submit(assignment, other_student, {essay_question: GOOD + "另一篇。"})
    return SimpleNamespace(
        assignment=assignment,
        submission=mine,
        essay=essay,
        choice=choice,
        regrade=regrade,
        other_submission=theirs,
        enrollment=Enrollment.objects.get(course=assignment.course, user=student),
    )
