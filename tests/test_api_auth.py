"""Who may call the API: API keys (made by the command or in admin, shown once, stored
hashed, scoped, revocable), browser sessions with CSRF, and the rate limit per caller."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from grading.models import ApiKey, AuditEvent

from .api_support import *  # noqa: F403
from .api_support import Api, problem


def _create(*args: str) -> tuple[str, list[str]]:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    return lines[-1], lines


def test_create_api_key_prints_the_key_once_on_the_last_line(course: Any) -> None:
    raw, lines = _create(
        "--name", "SIS", "--course", "CHN-8A", "--scope", "read", "--scope", "submit"
    )
    key = ApiKey.objects.get()
    assert raw.startswith("mw_") and len(raw) > 40
    assert raw not in "\n".join(lines[:-1])
    assert key.hashed_key == ApiKey.hash(raw) and raw not in key.hashed_key
    assert key.scopes == ["read", "submit"] and list(key.courses.all()) == [course]
    assert not key.user.is_active and not key.user.has_usable_password()
    assert AuditEvent.objects.filter(action="api_key.created").exists()
    response = Api(key=raw).get("/api/v1/courses/")
    assert response.status_code == 200 and response.json()["count"] == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_create_api_key_refuses_unknown_courses_and_keys_without_a_place(db: Any) -> None:
    with pytest.raises(CommandError, match="NOPE"):
        _create("--name", "SIS", "--course", "NOPE")
    with pytest.raises(CommandError, match="site-wide"):
        _create("--name", "SIS")
    _create("--name", "Dashboard", "--site-wide")
    assert ApiKey.objects.get().scopes == ["read"]  # read only, unless told otherwise


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer one two",
        "Bearer mw_00000000_wrong",
        "Bearer not-a-markwise-key",
        "Bearer " + "x" * 500,
    ],
)
def test_bad_bearer_credentials_are_401s(db: Any, header: str) -> None:
    response = Client().get(
        "/api/v1/courses/", headers={"Authorization": header, "Accept-Language": "en"}
    )
    problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_key_with_a_right_prefix_and_a_wrong_secret_is_refused(
    course: Any, make_key: Any
) -> None:
    raw = make_key(courses=[course])
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    problem(Api(key=forged).get("/api/v1/courses/"), 401)


def test_session_writes_need_the_csrf_token(
    student: Any, assignment: Any, essay_question: Any
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(student)
    path = f"/api/v1/assignments/{assignment.pk}/submissions/"
    body = {"answers": [{"question": essay_question.pk, "text": "x"}]}
    refused = client.post(
        path, body, content_type="application/json", headers={"Accept-Language": "en"}
    )
    assert "CSRF" in problem(refused, 403, "forbidden")["detail"]
    client.get("/")  # the page sets the CSRF cookie, as a browser would get it
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        path, body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201, accepted.content


def test_admin_creates_a_key_shows_it_once_and_revokes_it(admin_user: Any, course: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:grading_apikey_add"),
        {"name": "LMS", "courses": [course.pk], "scopes": ["read", "grade"]},
    )
    assert response.status_code == 200, response.content[:2000]
    key = ApiKey.objects.get()
    raw = response.context["raw_key"]
    assert raw in response.content.decode() and "no-store" in response["Cache-Control"]
    assert key.hashed_key == ApiKey.hash(raw) and key.created_by == admin_user
    page = client.get(reverse("admin:grading_apikey_change", args=[key.pk])).content.decode()
    assert raw not in page and key.prefix in page
    assert Api(key=raw).get("/api/v1/courses/").status_code == 200

    client.post(
        reverse("admin:grading_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    problem(Api(key=raw).get("/api/v1/courses/"), 401)
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_admin_refuses_a_key_without_courses(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post(reverse("admin:grading_apikey_add"), {"name": "LMS", "scopes": ["read"]})
    assert response.status_code == 200 and not ApiKey.objects.exists()
    assert response.context["adminform"].form.errors


def test_a_keys_writes_are_audited_as_the_key(world: Any, course: Any, make_key: Any) -> None:
    raw = make_key(courses=[course], scopes=["release"], name="Gradebook sync")
    Api(key=raw).post(f"/api/v1/assignments/{world.assignment.pk}/hide/")
    event = AuditEvent.objects.filter(action="grades.hidden").get()
    assert event.actor.api_key.name == "Gradebook sync"


def test_the_rate_limit_counts_per_key(settings: Any, course: Any, make_key: Any) -> None:
    cache.clear()
    settings.API_RATE_KEY = "3/minute"
    first, second = Api(key=make_key(courses=[course])), Api(key=make_key(courses=[course]))
    assert [first.get("/api/v1/courses/").status_code for _ in range(3)] == [200] * 3
    limited = first.get("/api/v1/courses/")
    problem(limited, 429, "rate-limited")
    assert int(limited["Retry-After"]) > 0
    assert second.get("/api/v1/courses/").status_code == 200  # another key, another budget
    cache.clear()
