"""The review workspace in Debian's chromium, on a 1366×768 laptop screen (issue 14).

A refused save shows why where the teacher is looking (it used to do nothing visible);
clicking a level descriptor scores and the running total follows; a teacher's comment on
a passage reaches the student once the release preview has said what will be released;
the comment bank inserts a saved comment. Screenshots go to test-artifacts/ and, for the
README, to docs/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from courses.models import Enrollment, Role
from grading.models import AnswerComment, FinalGrade

from .conftest import CHROMIUM, GOOD, PASSWORD

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs"
LAPTOP = {"width": 1366, "height": 768}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]


def login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def notice(page: Page, text: str, role: str = "status"):
    """A notice (static/js/markwise.js) saying `text`; errors are alerts, the rest status."""
    return page.locator(f"#notices [role={role}]", has_text=text)


def select_in_answer(page: Page, passage: str) -> None:
    """Select `passage` of the answer as a teacher dragging over it would."""
    page.evaluate(
        """(passage) => {
          const box = document.querySelector('#answer-annotations [data-answer-text]');
          const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
          let node;
          while ((node = walker.nextNode())) {
            const at = node.textContent.indexOf(passage);
            if (at >= 0) {
              const range = document.createRange();
              range.setStart(node, at);
              range.setEnd(node, at + passage.length);
              const selection = window.getSelection();
              selection.removeAllRanges();
              selection.addRange(range);
              return;
            }
          }
          throw new Error('passage not found: ' + passage);
        }""",
        passage,
    )


def test_a_refused_save_says_why_and_levels_score_with_a_running_total(
    live_server, browser, graded_essays, teacher
):
    ARTIFACTS.mkdir(exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport=LAPTOP)
    login(page, base, "teacher")
    answer = graded_essays[0]
    page.goto(f"{base}/grading/answers/{answer.pk}/review/")

    # Side by side on a laptop screen: the answer left, the rubric right, Approve in view.
    answer_pane, rubric_pane = page.locator(".answer-pane"), page.locator(".rubric-pane")
    left, right = answer_pane.bounding_box(), rubric_pane.bounding_box()
    assert left and right and left["x"] + left["width"] <= right["x"]
    assert right["x"] + right["width"] <= LAPTOP["width"]
    expect(page.locator("#approve-button")).to_be_in_viewport()
    # The rubric scrolls on its own: the answer stays where it is.
    rubric_pane.evaluate("pane => { pane.scrollTop = 400; }")
    assert answer_pane.bounding_box() == left and page.evaluate("window.scrollY") == 0
    rubric_pane.evaluate("pane => { pane.scrollTop = 0; }")
    page.screenshot(path=str(ARTIFACTS / "workspace.png"))

    # Click-to-score: the first criterion's "一等" level (16 points) instead of the AI's 15.
    first = page.locator("fieldset.criterion-score").first
    expect(first.locator("button.level.ai-level")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#running-total")).to_have_text("75")
    first.locator("button.level[data-level-points='16']").click()
    expect(first.locator(".score-input")).to_have_value("16")
    expect(first.locator("button.level[data-level-points='16']")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(first.locator("[data-changed-mark]")).to_be_visible()
    expect(page.locator("#running-total")).to_have_text("76")
    # Typing follows too, and the level it meets is pressed.
    second = page.locator("fieldset.criterion-score").nth(1)
    second.locator(".score-input").fill("17")
    expect(page.locator("#running-total")).to_have_text("78")
    expect(second.locator("button.level[data-level-points='16']")).to_have_attribute(
        "aria-pressed", "true"
    )

    # Approve without a reason: refused (409), and now the teacher sees why, twice: beside
    # the button and as a notice; nothing typed is lost and the reason field has focus.
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    error = page.locator("#review-error")
    expect(error).to_contain_text("修改 AI 分数需要填写简短理由：内容切题、结构清晰")
    expect(error).to_be_in_viewport()
    expect(notice(page, "修改 AI 分数需要填写简短理由", role="alert")).to_be_visible()
    expect(page.locator("#reason")).to_be_focused()
    expect(first.locator(".score-input")).to_have_value("16")
    expect(page.locator("#running-total")).to_have_text("78")
    page.screenshot(path=str(ARTIFACTS / "workspace-refused.png"))
    assert not FinalGrade.objects.filter(answer=answer).exists()

    # With a reason it saves, says so, and the next answer takes its place.
    page.fill("#reason", "细节具体，结构清楚")
    page.click("#approve-button")
    expect(notice(page, "成绩已审核")).to_be_visible()
    expect(page.locator("#review-title")).not_to_contain_text(
        answer.submission.student.display_name
    )
    grade = FinalGrade.objects.get(answer=answer)
    assert grade.points == 78 and grade.override_reason == "细节具体，结构清楚"

    # The same workspace in English, for the README.
    english = browser.new_page(locale="en-GB", viewport=LAPTOP)
    login(english, base, "teacher")
    english.goto(f"{base}/grading/answers/{graded_essays[1].pk}/review/")
    english.locator("fieldset.criterion-score").first.locator(
        "button.level[data-level-points='16']"
    ).click()
    expect(english.locator("#running-total")).to_have_text("76")
    english.screenshot(path=str(DOCS / "workspace-en.png"))


def test_a_teachers_inline_comment_reaches_the_student_after_the_release_preview(
    live_server, browser, graded_essays, teacher, assignment
):
    ARTIFACTS.mkdir(exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    answer = graded_essays[0]
    writer = answer.submission.student
    Enrollment.objects.create(course=assignment.course, user=writer, role=Role.STUDENT)
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport=LAPTOP)
    login(page, base, "teacher")
    page.goto(f"{base}/grading/answers/{answer.pk}/review/")

    # Select a passage, press c, write, add: the passage is marked and numbered.
    select_in_answer(page, "一个人带她去医院")
    composer = page.locator("#comment-composer")
    expect(composer).to_be_visible()
    expect(composer.locator("[data-composer-quote]")).to_have_text("一个人带她去医院")
    page.locator("#answer-heading").click()  # focus leaves no field; the selection stays
    select_in_answer(page, "一个人带她去医院")
    page.keyboard.press("c")
    expect(page.locator("#comment-body")).to_be_focused()
    page.keyboard.type("这个细节写得好，看得出你的担当。")
    composer.locator("button[type=submit]").click()
    mark = page.locator("#answer-annotations mark.annotation")
    expect(mark).to_have_text("一个人带她去医院")
    expect(page.locator("#answer-annotations .inline-comments")).to_contain_text("看得出你的担当")
    expect(notice(page, "批注已添加")).to_be_visible()
    comment = AnswerComment.objects.get()
    assert GOOD[comment.start : comment.end] == "一个人带她去医院"
    # For the README: the comment, and a criterion the teacher scored by its level.
    page.locator("fieldset.criterion-score").first.locator(
        "button.level[data-level-points='16']"
    ).click()
    expect(page.locator("#running-total")).to_have_text("76")
    page.screenshot(path=str(DOCS / "workspace-zh.png"))
    page.reload()  # back to the AI's scores, to approve them as they are

    # Approve the AI's proposal as it is, then look before releasing.
    page.click("#approve-button")
    expect(notice(page, "成绩已审核")).to_be_visible()
    # The queue shows the grade that counts now and who decided, beside the AI's proposal.
    page.goto(f"{base}/grading/assignments/{assignment.pk}/review/?status=approved")
    row = page.locator(f"tr[data-answer='{answer.pk}']")
    expect(row.locator(".grade-cell")).to_have_text("75/100")
    expect(row).to_contain_text("王老师")
    page.goto(f"{base}/grading/assignments/{assignment.pk}/review/")
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

    page.goto(f"{base}/grading/assignments/{assignment.pk}/")
    preview = page.locator("#release-preview")
    expect(preview.locator("[data-count=approved]")).to_have_text("1")
    expect(preview.locator("[data-count=waiting]")).to_have_text("3")
    expect(preview.locator("[data-count=nothing]")).to_have_text("3")
    expect(preview).to_contain_text("2 份带标记或需人工评分")
    expect(page.locator("#release-button")).to_have_text("发布 1 份已审核的成绩")
    page.screenshot(path=str(ARTIFACTS / "release-preview.png"), full_page=True)
    page.click("#release-button")
    expect(page.locator(".messages")).to_contain_text("尚未审核的答案显示为“待批改”")

    # The student reads the comment beside their own words.
    student_page = browser.new_page(locale="zh-CN", viewport=LAPTOP)
    login(student_page, base, writer.username)
    student_page.goto(f"{base}/assignments/{assignment.pk}/feedback/")
    expect(student_page.locator("mark.annotation")).to_have_text("一个人带她去医院")
    expect(student_page.locator(".inline-comments")).to_contain_text("看得出你的担当")
    student_page.screenshot(path=str(ARTIFACTS / "student-inline-comment.png"), full_page=True)


def test_the_comment_bank_saves_searches_and_inserts(live_server, browser, graded_essays, teacher):
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport=LAPTOP)
    login(page, base, "teacher")
    page.goto(f"{base}/grading/answers/{graded_essays[0].pk}/review/")
    page.fill("#feedback", "开头点题，结尾呼应。")
    page.click("button[data-bank-save='#feedback']")
    bank = page.locator("#comment-bank-list")
    expect(bank).to_contain_text("开头点题，结尾呼应。")
    page.fill("#feedback", "")
    page.locator("#answer-heading").click()
    page.keyboard.press("b")
    expect(page.locator("#bank-query")).to_be_focused()
    page.keyboard.type("呼应")
    expect(bank.locator("button.bank-use")).to_have_count(1)
    page.locator("#feedback").focus()
    bank.locator("button.bank-use").click()
    expect(page.locator("#feedback")).to_have_value("开头点题，结尾呼应。")
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.type("nothing like this")
    expect(bank).to_contain_text("没有匹配的评语")


def test_failures_say_what_happened_where_the_teacher_is_looking(
    live_server, browser, graded_essays, teacher
):
    from grading import services
    from grading.models import CommentBankEntry

    services.comment_bank_save(owner=teacher, text="开头点题。")
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport=LAPTOP)
    login(page, base, "teacher")
    page.goto(f"{base}/grading/answers/{graded_essays[0].pk}/review/")

    # The connection drops as the teacher approves: nothing saved, and they are told.
    page.route("**/review/", lambda route: route.abort())
    page.keyboard.press("a")
    expect(notice(page, "无法连接服务器", role="alert")).to_be_visible()
    page.unroute("**/review/")
    assert not FinalGrade.objects.exists()

    # A saved comment deleted meanwhile (another tab): the 404 page is not swapped into
    # the list; a notice says what happened.
    CommentBankEntry.objects.all().delete()
    page.locator("#comment-bank summary").click()
    page.locator("#comment-bank-list button.link-button").click()
    expect(notice(page, "此内容已不存在", role="alert")).to_be_visible()
    expect(page.locator("#comment-bank-list")).to_contain_text("开头点题。")
