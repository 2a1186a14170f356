"""/healthz, /readyz and the staff banner report each dependency truthfully."""

from __future__ import annotations

import datetime

import pytest
from django.core.cache import cache
from django.utils import timezone

from grading.models import Answer, AnswerStatus

from .conftest import submit

TOKEN = "probe-Zx9q-k3y-0123456789"


def detailed(client, settings, path: str = "/readyz"):
    """/readyz as the monitoring system reads it: with its token."""
    settings.READYZ_TOKEN = TOKEN
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def test_healthz_is_cheap_and_public(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_with_model_up(client, fake_llm, settings, db):
    response = detailed(client, settings)
    body = response.json()
    assert response.status_code == 200 and body["ready"] is True
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["migrations"] == {"ok": True, "pending": []}
    assert checks["llm"]["ok"] is True
    assert checks["llm"]["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert checks["grading"]["answers_waiting"] == 0


def test_readyz_with_model_down(client, settings, db):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    body = detailed(client, settings).json()
    assert body["ready"] is True  # reviewing and manual grading still work
    assert body["checks"]["llm"]["ok"] is False
    assert "cannot reach" in body["checks"]["llm"]["error"]


def test_readyz_with_model_not_served(client, fake_llm, settings, db):
    settings.LLM_MODEL = "Qwen/Other"
    llm = detailed(client, settings).json()["checks"]["llm"]
    assert llm["ok"] is False and "not served" in llm["error"]


def test_readyz_offline_rule_engine(client, no_llm, settings, db):
    llm = detailed(client, settings).json()["checks"]["llm"]
    assert llm == {"ok": True, "mode": "offline rule engine", "model": None}


def test_readyz_reports_a_grading_backlog(
    client, fake_llm, settings, assignment, essay_question, student
):
    submit(assignment, student, {essay_question: "作文"})
    stale = timezone.now() - datetime.timedelta(hours=1)
    Answer.objects.update(status=AnswerStatus.GRADING)
    Answer.objects.update(updated_at=stale)
    grading = detailed(client, settings).json()["checks"]["grading"]
    assert grading["ok"] is False and grading["answers_waiting"] == 1
    assert grading["oldest_waiting_seconds"] >= 3600


def test_banner_for_teachers_when_model_down(client, settings, teacher, student):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    cache.clear()
    client.force_login(teacher)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'class="service-banner"' in page and "AI model is unreachable" in page
    client.force_login(student)
    assert 'class="service-banner"' not in client.get("/").content.decode()


def test_no_banner_when_healthy(client, fake_llm, teacher):
    cache.clear()
    client.force_login(teacher)
    assert 'class="service-banner"' not in client.get("/").content.decode()


# --- Who may read the details ------------------------------------------------------------


def test_readyz_tells_anonymous_callers_only_ready_or_not(client, settings, db):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"  # details would include this URL
    settings.READYZ_TOKEN = TOKEN
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"ready": True}
    assert "127.0.0.1:9" not in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0")


def test_readyz_status_code_still_says_not_ready(client, settings, db, monkeypatch):
    from grading import health

    monkeypatch.setattr(health, "_migrations", lambda: {"ok": False, "pending": ["x.0002"]})
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json() == {"ready": False}
    assert "x.0002" not in response.content.decode()


@pytest.mark.parametrize("how", ["bearer", "query"])
def test_readyz_details_with_the_token(client, no_llm, settings, db, how):
    settings.READYZ_TOKEN = TOKEN
    if how == "bearer":
        response = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    else:
        response = client.get("/readyz", {"token": TOKEN})
    assert response.status_code == 200 and set(response.json()) == {"ready", "checks"}


@pytest.mark.parametrize(
    "token,offered",
    [
        (TOKEN, "Bearer wrong"),
        (TOKEN, f"Basic {TOKEN}"),
        (TOKEN, f"Bearer {TOKEN[:-1]}"),
        ("", "Bearer "),  # no token configured: no empty token matches it
    ],
)
def test_readyz_wrong_or_missing_token_gets_no_details(client, settings, db, token, offered):
    settings.READYZ_TOKEN = token
    assert client.get("/readyz", HTTP_AUTHORIZATION=offered).json() == {"ready": True}
    assert client.get("/readyz", {"token": ""}).json() == {"ready": True}


def test_readyz_details_for_staff_not_for_teachers(client, no_llm, teacher, admin_user):
    client.force_login(teacher)
    assert client.get("/readyz").json() == {"ready": True}
    client.force_login(admin_user)
    assert "checks" in client.get("/readyz").json()


def test_anonymous_readyz_does_not_call_the_model(client, settings, db, monkeypatch):
    """Anyone may ask: an anonymous probe must not make the server call out."""
    from grading import health

    def refuse(**kwargs):
        raise AssertionError("the model endpoint was called for an anonymous probe")

    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    monkeypatch.setattr(health, "check_health", refuse)
    assert client.get("/readyz").json() == {"ready": True}
