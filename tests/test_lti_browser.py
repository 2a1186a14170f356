"""LTI 1.3 in Debian's chromium: a real launch from the loopback platform lands a teacher on
the link-or-create page; after a hand-in and release, the passback page shows what the
LMS gradebook received. Screenshots go to docs/ for the README.

The browser drives the whole OIDC exchange: it opens the tool's login initiation URL with
the platform's parameters, the tool redirects it to the loopback platform's authorisation
URL, and the platform answers with the auto-submitting form every LMS sends: the signed
id_token, posted cross-site to the tool's launch URL. The tool verifies it against the
platform's JWKS endpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils.module_loading import import_string
from playwright.sync_api import BrowserContext, expect

from grading import services
from grading.models import Answer, AnswerStatus
from lti import hooks, keys, passback
from lti.models import Passback, PassbackStatus, PlatformUser, ResourceLink

from .conftest import CHROMIUM
from .lti_platform import LIS, LoopbackPlatform, registered_platform

DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]

# Every check of the page waits (expect retries until it holds), never a sleep.
expect.set_options(timeout=15_000)


@pytest.fixture
def lms(transactional_db) -> Iterator[LoopbackPlatform]:
    registration = registered_platform()
    platform = next(registration)
    platform.tool_jwks = keys.jwks()  # the platform verifies client assertions with it
    yield platform
    next(registration, None)


@pytest.fixture
def tasks(monkeypatch) -> None:
    """django-q2 tasks the LTI code enqueues run in-process at once (no qcluster here)."""

    def run_now(func: str, *args: Any) -> None:
        import_string(func)(*args)

    monkeypatch.setattr(hooks, "async_task", run_now)
    monkeypatch.setattr(passback, "async_task", run_now)


def launch_in_browser(
    context: BrowserContext, base: str, lms: LoopbackPlatform, **claims: Any
) -> Any:
    """Open Markwise from the LMS in `context`, as a person clicking the activity does."""

    # The platform's /auth page signs the id_token for this person (by login_hint).
    login_hint = str(claims.get("sub", "user-1"))
    lms.browser_claims[login_hint] = claims
    page = context.new_page()
    params = {
        "iss": lms.issuer,
        "client_id": lms.client_id,
        "login_hint": login_hint,
        "target_link_uri": f"{base}/lti/launch/",
        "lti_message_hint": "m",
    }
    page.goto(f"{base}/lti/login/?{urlencode(params)}")
    return page


def test_teacher_launch_link_and_passback_pages(
    live_server, browser, lms, tasks, no_llm, assignment, essay_question
):
    DOCS.mkdir(exist_ok=True)
    base = live_server.url
    viewport = {"width": 1200, "height": 800}
    teacher_context = browser.new_context(locale="en-US", viewport=viewport)

    # (a) The teacher opens the new activity: it is not linked to an assignment yet.
    page = launch_in_browser(
        teacher_context, base, lms, sub="t1", roles=(LIS + "Instructor",), locale="en-US"
    )
    # The launch ends on the link page (the auto-posted form navigates once more).
    expect(page).to_have_url(re.compile(r"/lti/links/\d+/$"))
    link = ResourceLink.objects.get()
    assert page.url == f"{base}/lti/links/{link.pk}/"
    expect(page.get_by_role("heading", name="Link an assignment")).to_be_visible()
    # An assignment of the course the launch created, so the page offers link or create.
    assignment.course = link.context.course
    assignment.save()
    page.reload()
    choice = page.get_by_role("radio", name=assignment.title)
    expect(choice).to_be_visible()
    expect(page.get_by_role("link", name="Create a new assignment")).to_be_visible()
    page.screenshot(path=str(DOCS / "lti-landing.png"), full_page=True)

    # Linking lands on the Grading tab, which now links to the LMS gradebook page.
    choice.check()
    page.get_by_role("button", name="Link this assignment").click()
    expect(page).to_have_url(f"{base}/grading/assignments/{assignment.pk}/")
    gradebook_link = page.locator("#lti-passback-link")
    expect(gradebook_link).to_be_visible()

    # (b) A student opens it from the LMS, hands in; the teacher approves and releases.
    student_context = browser.new_context(locale="en-US", viewport=viewport)
    student_page = launch_in_browser(student_context, base, lms, sub="s1", locale="en-US")
    expect(student_page).to_have_url(f"{base}/assignments/{assignment.pk}/")
    student = PlatformUser.objects.get(sub="s1").user
    teacher = PlatformUser.objects.get(sub="t1").user
    services.submission_save(
        assignment=assignment,
        student=student,
        responses={essay_question.pk: ("春天来了，花开了。我喜欢春天。", [])},
        hand_in=True,
    )
    # Grading runs in-process where the qcluster would run it.
    ids = list(Answer.objects.filter(status=AnswerStatus.GRADING).values_list("pk", flat=True))
    services.answers_grade(answer_ids=ids)
    answer = Answer.objects.get(submission__student=student)
    services.grade_approve(answer=answer, actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    assert Passback.objects.get().status == PassbackStatus.SENT
    assert lms.scores()[-1]["gradingProgress"] == "FullyGraded"

    gradebook_link.click()
    expect(page).to_have_url(f"{base}/lti/assignments/{assignment.pk}/passback/")
    row = page.locator("table.data tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(student.display_name)
    expect(row.locator(".status")).to_have_text("Sent")
    page.screenshot(path=str(DOCS / "lti-passback.png"), full_page=True)
    student_context.close()
    teacher_context.close()
