"""End to end in Debian's chromium: grade, override, bulk-approve, release; the student reads it.

Grading itself runs in-process where a qcluster would run it (the live server and
this test share one test database; tests/test_cluster.py covers the real cluster).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from courses.models import Assignment, QuestionKind
from grading import services
from grading.audit import audit_verify
from grading.models import Answer, AnswerStatus, AuditEvent

from .conftest import CHROMIUM

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]


def run_queued_grading() -> None:
    """What the qcluster does with the queued chunks."""
    ids = list(Answer.objects.filter(status=AnswerStatus.GRADING).values_list("pk", flat=True))
    services.answers_grade(answer_ids=ids)


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "markwise-demo")
    page.click("button[type=submit]")


def test_teacher_grades_and_releases_student_reads(live_server, browser, settings):
    settings.DEBUG = True
    settings.LLM_BASE_URL = ""  # the offline rule engine, labelled as such
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())
    essay = Assignment.objects.get(questions__kind=QuestionKind.ESSAY)
    ARTIFACTS.mkdir(exist_ok=True)
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 1000})

    # The teacher watches the handed-in work being graded, then asks for a regrade.
    login(page, base, "teacher")
    page.click(f"a[href='/grading/assignments/{essay.pk}/']")
    run_queued_grading()  # the submissions seed_demo queued
    page.wait_for_selector("#grading-progress button.primary:not([disabled])", timeout=15000)
    page.click("#grading-progress button.primary")
    page.wait_for_selector("#grading-progress[hx-trigger]")  # polling while it runs
    run_queued_grading()
    page.wait_for_selector("#grading-progress:not([hx-trigger])", timeout=15000)
    assert page.locator("#progress-bar").get_attribute("value") == "75"

    # Review one essay: override the first criterion with a reason.
    page.click(f"a[href='/grading/assignments/{essay.pk}/review/']")
    first_row = page.locator("table.queue tbody tr").first
    first_row.locator("td a").first.click()
    page.wait_for_selector("#review-form")
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    score = page.locator(".score-input").first
    new_value = str(min(20, int(score.input_value()) + 2))
    score.fill(new_value)
    page.fill("#reason", "开头扣题，细节生动")
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.click("#approve-button")  # HTMX: the next essay replaces this one in place
    assert Answer.objects.filter(final_grade__source="override").count() == 1

    # Bulk-approve the rest: flagged rows must be ticked one by one.
    page.goto(f"{base}/grading/assignments/{essay.pk}/review/")
    page.check("#select-unflagged")
    for box in page.locator("input[name=flagged]").all():
        box.check()
    with page.expect_navigation():
        page.click("text=采纳所选的 AI 建议")
    waiting = Answer.objects.filter(
        submission__assignment=essay, status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL]
    )
    assert not waiting.exists()

    # Release, then the student reads the feedback.
    page.goto(f"{base}/grading/assignments/{essay.pk}/")
    with page.expect_navigation():
        page.click("text=发布已审核的成绩")
    essay.refresh_from_db()
    assert essay.grades_released

    student_page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 1000})
    login(student_page, base, "student")
    student_page.click(f"a[href='/assignments/{essay.pk}/feedback/']")
    text = student_page.inner_text("main")
    assert "内容切题" in text and re.search(r"\d+ / 100", text)
    student_page.screenshot(path=str(ARTIFACTS / "student-feedback.png"), full_page=True)

    # The audit view shows every step, and the chain verifies.
    page.goto(f"{base}/grading/assignments/{essay.pk}/audit/")
    audit = page.inner_text("main")
    for action in ("assessment.created", "grade.overridden", "grade.approved", "grades.released"):
        assert action in audit
    assert AuditEvent.objects.filter(action="grade.overridden").get().reason == "开头扣题，细节生动"
    assert audit_verify().ok
