"""Management commands an operator runs: llm_check, grade_assignment."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from grading.models import AnswerStatus

from .conftest import make_user, submit


def test_llm_check_offline(no_llm):
    out = io.StringIO()
    call_command("llm_check", stdout=out)
    assert "offline rule engine" in out.getvalue()


def test_llm_check_serving(fake_llm):
    out = io.StringIO()
    call_command("llm_check", stdout=out)
    assert "serves Qwen/Qwen3-4B-Instruct-2507" in out.getvalue()


def test_llm_check_wrong_model_or_down(fake_llm, settings):
    settings.LLM_MODEL = "other/model"
    with pytest.raises(CommandError, match="not served"):
        call_command("llm_check")
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    with pytest.raises(CommandError, match="cannot reach"):
        call_command("llm_check")


def test_grade_assignment_queues_every_submitted_answer(
    fake_llm, assignment, essay_question, django_capture_on_commit_callbacks
):
    for i in range(3):
        submit(assignment, make_user(f"g{i}"), {essay_question: f"答案 {i}"})
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("grade_assignment", str(assignment.pk), stdout=out)
    assert "Queued 3 answers" in out.getvalue()
    assert OrmQ.objects.count() == 1
    assert set(essay_question.answers.values_list("status", flat=True)) == {AnswerStatus.GRADING}


def test_grade_assignment_unknown_id(db):
    with pytest.raises(CommandError, match="No assignment with id 999"):
        call_command("grade_assignment", "999")


def test_seeded_demo_work_is_queued_for_grading(db, settings, django_capture_on_commit_callbacks):
    settings.DEBUG = True
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=io.StringIO())
    assert OrmQ.objects.count() > 0
    queued = OrmQ.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=io.StringIO())
    assert OrmQ.objects.count() == queued  # nothing new to grade the second time
