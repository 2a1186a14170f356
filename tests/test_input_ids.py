"""Ids from requests: whatever a crafted request puts where an id belongs (a Unicode digit,
a number beyond the database's integers, a sign, hex, blanks), the answer is a 400 or a 404
(or the page again with a message), never a 500."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter

from courses.http import MAX_ID, parse_id
from grading import services
from grading.models import Answer, AnswerStatus, Criterion, FinalGrade, Level

BAD = ["²", "1" * 25, "-1", "0x1", "", " 1"]
# A 400 or 404, or the page again with a message (a form error or a conflict).
REFUSED = (400, 404)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1", 1),
        ("42", 42),
        ("007", 7),
        (str(MAX_ID), MAX_ID),
        (str(MAX_ID + 1), None),
        ("0", None),
        ("²", None),
        ("١٢", None),  # Arabic-Indic digits: int() would accept them
        ("１２", None),  # full-width digits
        ("1" * 25, None),
        ("9" * 5000, None),  # beyond int()'s digit limit, refused before converting
        ("-1", None),
        ("+1", None),
        ("0x1", None),
        ("1_000", None),
        ("1.0", None),
        ("", None),
        (" 1", None),
        ("1\n", None),
        (None, None),
    ],
)
def test_parse_id(value, expected):
    assert parse_id(value) == expected


@pytest.fixture
def teacher_client(client, teacher):
    client.force_login(teacher)
    return client


@pytest.mark.parametrize("value", BAD)
def test_review_page_score_keys(teacher_client, graded_essays, value):
    answer = graded_essays[0]
    response = teacher_client.post(
        reverse("grading:review", args=[answer.pk]), {f"score-{value}": "10", "version": ""}
    )
    assert response.status_code in REFUSED
    assert not FinalGrade.objects.filter(answer=answer).exists()


@pytest.mark.parametrize("value", BAD)
def test_review_page_version(teacher_client, graded_essays, teacher, value):
    answer = graded_essays[0]
    services.grade_approve(answer=answer, actor=teacher)
    response = teacher_client.post(
        reverse("grading:review", args=[answer.pk]), {"version": value, "feedback": "changed"}
    )
    if value == "":  # "I saw no grade", and there is one: the conflict page says so
        assert response.status_code == 409 and response.context["error"]
    else:
        assert response.status_code in REFUSED
    assert FinalGrade.objects.get(answer=answer).feedback != "changed"


@pytest.mark.parametrize("value", BAD)
def test_bulk_approve(teacher_client, graded_essays, assignment, value):
    response = teacher_client.post(
        reverse("grading:bulk_approve", args=[assignment.pk]),
        {"answer": [graded_essays[0].pk, value]},
    )
    assert response.status_code in REFUSED
    assert not Answer.objects.filter(status=AnswerStatus.APPROVED).exists()


@pytest.mark.parametrize(
    "op, field", [("criterion.delete", "criterion"), ("level.delete", "level")]
)
@pytest.mark.parametrize("value", BAD)
def test_rubric_builder(teacher_client, rubric, essay_question, op, field, value):
    response = teacher_client.post(
        reverse("grading:rubric_change", args=[rubric.pk]), {"op": op, field: value}
    )
    assert response.status_code in REFUSED
    assert Criterion.objects.filter(rubric=rubric).count() == 5
    assert Level.objects.filter(criterion__rubric=rubric).count() == 10


@pytest.mark.parametrize("value", BAD)
def test_rubric_regrade(teacher_client, rubric, essay_question, value):
    response = teacher_client.post(
        reverse("grading:rubric_regrade", args=[rubric.pk]), {"assignment": value}
    )
    assert response.status_code in REFUSED


@pytest.mark.parametrize("value", BAD)
def test_question_rubric_choice(teacher_client, assignment, rubric, essay_question, value):
    for kind in ("r", "t"):
        response = teacher_client.post(
            reverse("teach:question_edit", args=[essay_question.pk]),
            {"prompt": "?", "rubric": f"{kind}{value}"},
        )
        assert response.status_code in REFUSED and response.context["form"].errors


def _routes_with_ids(patterns=None, prefix=""):
    """Every URL of the project that takes an integer in its path, as (route, names)."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes_with_ids(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            names = [n for n, c in entry.pattern.converters.items() if isinstance(c, IntConverter)]
            if names:
                yield route, names


ROUTES = sorted(_routes_with_ids())


def test_routes_with_ids_are_found():
    assert len(ROUTES) >= 25, ROUTES


@pytest.mark.parametrize("big", ["1" * 25, str(MAX_ID + 1), str(2**64)])
@pytest.mark.parametrize("route, names", ROUTES)
def test_path_ids_beyond_the_database_are_not_found(
    client, teacher, graded_essays, rubric, route, names, big
):
    client.force_login(teacher)
    path = "/" + route.lstrip("^")
    for name in names:
        path = path.replace(f"<int:{name}>", big)
    assert "<" not in path, path
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code in (404, 405), (method, path, response.status_code)
