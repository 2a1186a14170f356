"""/healthz, /readyz and the staff banner report each dependency truthfully."""

from __future__ import annotations

import datetime

from django.core.cache import cache
from django.utils import timezone

from grading.models import Answer, AnswerStatus

from .conftest import submit


def test_healthz_is_cheap_and_public(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_with_model_up(client, fake_llm, db):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200 and body["ready"] is True
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["migrations"] == {"ok": True, "pending": []}
    assert checks["llm"]["ok"] is True
    assert checks["llm"]["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert checks["grading"]["answers_waiting"] == 0


def test_readyz_with_model_down(client, settings, db):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    body = client.get("/readyz").json()
    assert body["ready"] is True  # reviewing and manual grading still work
    assert body["checks"]["llm"]["ok"] is False
    assert "cannot reach" in body["checks"]["llm"]["error"]


def test_readyz_with_model_not_served(client, fake_llm, settings, db):
    settings.LLM_MODEL = "Qwen/Other"
    llm = client.get("/readyz").json()["checks"]["llm"]
    assert llm["ok"] is False and "not served" in llm["error"]


def test_readyz_offline_rule_engine(client, no_llm, db):
    llm = client.get("/readyz").json()["checks"]["llm"]
    assert llm == {"ok": True, "mode": "offline rule engine", "model": None}


def test_readyz_reports_a_grading_backlog(client, fake_llm, assignment, essay_question, student):
    submit(assignment, student, {essay_question: "作文"})
    stale = timezone.now() - datetime.timedelta(hours=1)
    Answer.objects.update(status=AnswerStatus.GRADING)
    Answer.objects.update(updated_at=stale)
    grading = client.get("/readyz").json()["checks"]["grading"]
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
