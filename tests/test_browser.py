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
from playwright.sync_api import expect

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

# Every check of the page waits (expect retries until it holds): a bare read races the
# page's scripts and requests, and fails whenever the machine is busy.
expect.set_options(timeout=15_000)


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
    expect(page.locator("#progress-bar")).to_have_attribute("value", "75")

    # Review one essay: override the first criterion with a reason.
    page.click(f"a[href='/grading/assignments/{essay.pk}/review/']")
    first_row = page.locator("table.queue tbody tr").first
    first_row.locator("td a").first.click()
    score = page.locator("#review-form .score-input").first
    expect(score).to_be_editable()
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    new_value = str(min(20, int(score.input_value()) + 2))
    score.fill(new_value)
    page.fill("#reason", "开头扣题，细节生动")
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.click("#approve-button")  # HTMX: the next essay replaces this one in place
    assert Answer.objects.filter(final_grade__source="override").count() == 1

    # Bulk-approve the rest, low-confidence proposals included on purpose (the offline rule
    # engine's all are); blank, off-topic and suspected injections are approved one by one.
    page.goto(f"{base}/grading/assignments/{essay.pk}/review/")
    page.check("#select-all")
    with page.expect_navigation():
        page.click("text=采纳所选（含低置信度）")
    waiting = Answer.objects.filter(
        submission__assignment=essay, status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL]
    )
    for pk in list(waiting.values_list("pk", flat=True)):
        page.goto(f"{base}/grading/answers/{pk}/review/")
        with page.expect_response(lambda r: r.request.method == "POST"):
            page.click("#approve-button")
        # The approval swaps in the next answer or redirects to the queue (HX-Redirect):
        # let that navigation finish, or the next goto aborts it (net::ERR_ABORTED).
        page.wait_for_load_state("networkidle")
    assert not waiting.exists()

    # Release, then the student reads the feedback.
    page.goto(f"{base}/grading/assignments/{essay.pk}/")
    with page.expect_navigation():
        page.click("#release-button")
    essay.refresh_from_db()
    assert essay.grades_released

    student_page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 1000})
    login(student_page, base, "student")
    student_page.click(f"a[href='/assignments/{essay.pk}/feedback/']")
    expect(student_page).to_have_url(f"{base}/assignments/{essay.pk}/feedback/")
    feedback = student_page.locator("main")
    expect(feedback).to_contain_text("内容切题")
    expect(feedback).to_contain_text(re.compile(r"\d+ / 100"))
    student_page.screenshot(path=str(ARTIFACTS / "student-feedback.png"), full_page=True)

    # The audit view shows every step, and the chain verifies.
    page.goto(f"{base}/grading/assignments/{essay.pk}/audit/")
    audit = page.locator("main")
    for action in ("assessment.created", "grade.overridden", "grade.approved", "grades.released"):
        expect(audit).to_contain_text(action)
    assert AuditEvent.objects.filter(action="grade.overridden").get().reason == "开头扣题，细节生动"
    assert audit_verify().ok
