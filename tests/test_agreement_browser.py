"""The AI agreement page in Debian's chromium, on the demo data of
tests/test_calibration.py::test_agreement_page_on_the_demo_assignment; the screenshot goes
to docs/agreement.png for the README."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from grading import analytics
from grading.models import Answer

from .conftest import CHROMIUM, approve_all

DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]

# Every check of the page waits (expect retries until it holds), never a sleep.
expect.set_options(timeout=15_000)


def test_agreement_page_screenshot(live_server, browser, settings, no_llm, grade_now):
    from courses.models import User

    settings.DEBUG = True  # seed_demo refuses to run otherwise
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())
    teacher = User.objects.get(username="teacher")
    answer = (
        Answer.objects.filter(question__rubric__isnull=False, question__kind="short_answer")
        .select_related("question__assignment")
        .first()
    )
    assert answer is not None
    assignment = answer.question.assignment
    answers = list(Answer.objects.filter(question=answer.question).exclude(text="")[:6])
    grade_now(answers)
    approve_all(answers[:4], teacher, change={answers[0].pk})
    exact = analytics.assignment_agreement(assignment=assignment).totals.exact or 0.0

    DOCS.mkdir(exist_ok=True)
    base = live_server.url
    page = browser.new_page(locale="en-US", viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "teacher")
    page.fill("#id_password", "markwise-demo")
    page.click("button[type=submit]")
    expect(page).not_to_have_url(f"{base}/accounts/login/")
    page.goto(f"{base}/grading/assignments/{assignment.pk}/agreement/")
    expect(page.get_by_text("Computed from 4 grades")).to_be_visible()
    expect(page.locator('[data-figure="exact"]').first).to_have_text(f"{round(100 * exact)}%")
    page.screenshot(path=str(DOCS / "agreement.png"), full_page=True)
