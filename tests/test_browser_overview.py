"""In Debian's chromium: the regrade inbox from the teacher's home page to the review page,
the gradebook and its CSV, and the feedback a student reads; screenshots for the README.

The demo school (`seed_demo`), graded in-process by the offline rule engine."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from courses.models import Assignment, Language, QuestionKind, User
from grading import services
from grading.models import Answer, AnswerStatus

from .conftest import CHROMIUM

DOCS = Path(__file__).resolve().parent.parent / "docs"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]


@pytest.fixture
def school(settings):
    """The demo school with the essay graded: 李明's and four classmates' essays approved
    (李明's first criterion raised by the teacher), the grades released, two regrade
    requests open; the science check-in graded but not reviewed."""
    settings.DEBUG = True
    settings.LLM_BASE_URL = ""
    call_command("seed_demo", stdout=io.StringIO())
    ids = list(Answer.objects.filter(status=AnswerStatus.GRADING).values_list("pk", flat=True))
    services.answers_grade(answer_ids=ids)
    teacher = User.objects.get(username="teacher")
    essay = Assignment.objects.get(questions__kind=QuestionKind.ESSAY)
    essays = list(
        Answer.objects.filter(question__assignment=essay, question__kind=QuestionKind.ESSAY)
        .exclude(status=AnswerStatus.NEEDS_MANUAL)
        .select_related("submission__student", "current_assessment")
        .order_by("submission__student__username")[:5]
    )
    for answer in essays:
        scores = {}
        if answer.submission.student.username == "student":
            first = answer.current_assessment.scores.order_by("criterion__order").first()
            scores = {first.criterion_id: min(first.max_points, first.points + 3)}
        services.grade_approve(
            answer=answer,
            actor=teacher,
            scores=scores,
            reason="开头紧扣题目，细节真实" if scores else "",
            feedback="叙事完整，情感真挚；结尾可以再点题。",
        )
    essay.show_answer_keys = True
    essay.save(update_fields=["show_answer_keys"])
    services.grades_release(assignment=essay, actor=teacher)
    requests = [
        services.regrade_request_create(
            answer=answer, student=answer.submission.student, comment=comment
        )
        for answer, comment in zip(
            essays[:2], ["第二段的细节被忽略了", "结构分是不是太低了？"], strict=True
        )
    ]
    return {"essay": essay, "teacher": teacher, "requests": requests}


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "markwise-demo")
    page.click("button[type=submit]")


def test_regrade_inbox_from_home_to_the_review_page(live_server, browser, school):
    from playwright.sync_api import expect

    first, second = school["requests"]
    page = browser.new_page(locale="en-US", viewport={"width": 1366, "height": 768})
    login(page, live_server.url, "teacher")
    inbox_link = page.locator("#regrade-inbox-link")
    expect(inbox_link.locator(".count")).to_have_text("2")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "teacher-home.png"), full_page=True)
    inbox_link.click()
    expect(page).to_have_url(re.compile(r"/grading/regrades/$"))
    rows = page.locator("#regrade-inbox tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(first.comment)  # the longest waiting first
    expect(rows.first).to_contain_text("CHN-8A")
    page.screenshot(path=str(ARTIFACTS / "regrade-inbox.png"), full_page=True)
    rows.first.get_by_role("link", name="Reply and rescore").click()
    expect(page).to_have_url(re.compile(rf"/grading/answers/{first.answer_id}/review/$"))
    expect(page.locator("main")).to_contain_text(first.comment)

    # Once answered (on that page), the request leaves the inbox and the home count drops.
    services.regrade_request_answer(request=first, actor=school["teacher"], response="已复核")
    page.goto(f"{live_server.url}/grading/regrades/")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(second.comment)
    page.goto(f"{live_server.url}/")
    expect(page.locator("#regrade-inbox-link .count")).to_have_text("1")


@pytest.mark.parametrize("locale, lang", [("en-US", "en"), ("zh-CN", "zh")])
def test_gradebook_statuses_csv_and_screenshot(live_server, browser, school, locale, lang):
    from playwright.sync_api import expect

    page = browser.new_page(locale=locale, viewport={"width": 1366, "height": 768})
    login(page, live_server.url, "teacher")
    page.locator("section.todo-course").filter(has_text="CHN-8A").locator(
        ".todo-head a[href*='/gradebook/']"
    ).click()
    book = page.locator("#gradebook")
    expect(book).to_be_visible()
    li_ming = book.locator("tbody tr").filter(has_text="李明")
    released = "Released" if lang == "en" else "已发布"
    missing = "Missing" if lang == "en" else "未提交"
    expect(li_ming.locator("td").first).to_contain_text(released)
    expect(li_ming.locator("td").first).to_contain_text(re.compile(r"\d+ / \d+"))
    expect(book.locator("td[data-status=missing]").first).to_contain_text(missing)
    expect(book.locator("td[data-status=awaiting_review]").first).to_be_visible()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"gradebook-{lang}.png"), full_page=False)

    with page.expect_download() as download_info:
        page.locator("a[href$='gradebook.csv']").click()
    text = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["username", "name", "student_number"]
    by_user = {row[0]: row for row in rows[1:]}
    assert by_user["student"][3] == "released" and by_user["student"][4].isdigit()
    assert (
        len(rows)
        == 1
        + User.objects.filter(enrollments__course__code="CHN-8A")
        .exclude(username="teacher")
        .count()
    )


@pytest.mark.parametrize("locale, lang", [("en-US", "en"), ("zh-CN", "zh")])
def test_student_reads_feedback_and_screenshot(live_server, browser, school, locale, lang):
    from playwright.sync_api import expect

    User.objects.filter(username="student").update(
        language=Language.EN if lang == "en" else Language.ZH_HANS
    )
    page = browser.new_page(locale=locale, viewport={"width": 1366, "height": 768})
    login(page, live_server.url, "student")
    page.goto(f"{live_server.url}/assignments/{school['essay'].pk}/feedback/")
    table = page.locator("table.criteria-feedback").first
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(5)
    expect(table.locator("tbody tr").first).to_contain_text("内容切题")
    expect(table.locator("tbody tr").first).to_contain_text(
        "Adjusted by your teacher" if lang == "en" else "老师"
    )
    expect(page.locator("main")).to_contain_text("叙事完整，情感真挚")
    expect(page.locator("a[href$='feedback.pdf']")).to_be_visible()
    page.screenshot(path=str(DOCS / f"feedback-{lang}.png"), full_page=True)
