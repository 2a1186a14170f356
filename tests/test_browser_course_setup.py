"""End to end in Debian's chromium: a teacher sets up a class and an exam without Django
admin; an imported student logs in with the printed password and finds the exam."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from courses.models import Assignment, AssignmentState, Course, Enrollment, Role
from grading.models import AuditEvent, Rubric

from .conftest import CHROMIUM, PASSWORD, make_user

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="apt-get install chromium"),
]

# Every check of the page waits (expect retries until it holds): a bare read races the
# page's scripts and requests, and fails whenever the machine is busy.
expect.set_options(timeout=15_000)

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程"
GIVEN = "子涵浩然雨桐梓轩欣怡宇航思琪俊杰佳怡博文诗涵一鸣梦瑶天宇可欣"


def roster_csv(path: Path) -> Path:
    """Thirty students as Excel writes "CSV UTF-8" (with a BOM), plus one bad e-mail."""
    lines = ["用户名,姓名,邮箱,学号"]
    for i in range(30):
        name = SURNAMES[i] + GIVEN[(2 * i) % len(GIVEN) : (2 * i) % len(GIVEN) + 2]
        lines.append(f"s2026{i:03d},{name},s2026{i:03d}@school.cn,2026{i:04d}")
    lines.append("s2026999,错误邮箱,not-an-address,20269999")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path


def test_teacher_sets_up_a_course_and_a_student_finds_the_exam(
    live_server, browser, tmp_path, rubric_templates
):
    teacher = make_user("zhanglaoshi", name="张老师")
    # What a school administrator grants teachers once, in Django admin.
    teacher.user_permissions.add(Permission.objects.get(codename="add_course"))
    ARTIFACTS.mkdir(exist_ok=True)
    base = live_server.url
    page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 1000})

    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "zhanglaoshi")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")

    # A new course.
    page.click("header a[href='/teach/']")
    page.click("a[href='/teach/courses/new/']")
    page.fill("#id_title", "七年级语文（三班）")
    page.fill("#id_code", "CHN-7C")
    page.fill("#id_term", "2026秋季")
    page.select_option("#id_language", "zh-hans")
    page.click("form button.primary")
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/teach/courses/\d+/$"))
    course = Course.objects.get(code="CHN-7C")
    expect(page).to_have_url(f"{base}/teach/courses/{course.pk}/")

    # The roster: preview shows 30 new and 1 invalid row; nothing is saved until import.
    page.click(f"a[href='/teach/courses/{course.pk}/roster/import/']")
    page.set_input_files("#id_file", str(roster_csv(tmp_path / "名单.csv")))
    page.click("button[name=action][value=preview]")
    expect(page.locator("#roster-preview tr.row-new")).to_have_count(30)
    invalid = page.locator("#roster-preview tr.row-invalid")
    expect(invalid).to_have_count(1)
    expect(invalid).to_contain_text("not-an-address")
    assert not Enrollment.objects.filter(course=course, role=Role.STUDENT).exists()
    page.click("button[name=action][value=import]")
    expect(page.locator("#initial-passwords tbody tr")).to_have_count(30)
    page.screenshot(path=str(ARTIFACTS / "roster-passwords.png"), full_page=True)
    first = page.locator("#initial-passwords tbody tr").first.locator("td")
    username, password = first.nth(2).inner_text(), first.nth(3).inner_text()
    assert Enrollment.objects.filter(course=course, role=Role.STUDENT).count() == 30

    # An assignment with an essay from the Chinese rubric template and two objective items.
    page.goto(f"{base}/teach/courses/{course.pk}/")
    page.click(f"a[href='/teach/courses/{course.pk}/assignments/new/']")
    page.fill("#id_title", "第一单元测验")
    page.fill("#id_instructions", "先完成选择题，再写作文。")
    page.fill("#id_due_at", "2026-12-20T18:00")
    page.click("form button.primary")
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/teach/assignments/\d+/$"))
    assignment = Assignment.objects.get(title="第一单元测验")
    expect(page).to_have_url(f"{base}/teach/assignments/{assignment.pk}/")

    template = Rubric.objects.get(title="中文作文评分标准（五项）", is_template=True)
    page.select_option("#new-kind", "essay")
    page.click("#add-heading + form button")
    page.fill("#id_prompt", "以“秋天的校园”为题，写一篇不少于400字的记叙文。")
    page.select_option("#id_rubric", f"t{template.pk}")
    page.fill("#id_reference_answer", "抓住秋天校园的景物特点，写出真情实感。")
    page.click("form button.primary")
    page.wait_for_url(f"{base}/teach/assignments/{assignment.pk}/")

    page.select_option("#new-kind", "single_choice")
    page.click("#add-heading + form button")
    page.fill("#id_prompt", "《春》的作者是谁？")
    page.fill("#id_options", "A. 朱自清\nB. 老舍\nC. 冰心")
    page.fill("#id_correct", "A")
    page.click("form button.primary")
    page.wait_for_url(f"{base}/teach/assignments/{assignment.pk}/")

    page.select_option("#new-kind", "numeric")
    page.click("#add-heading + form button")
    page.fill("#id_prompt", "《论语》共有多少篇？")
    page.fill("#id_value", "20")
    page.click("form button.primary")
    page.wait_for_url(f"{base}/teach/assignments/{assignment.pk}/")
    expect(page.locator(".question-row")).to_have_count(3)

    # The essay's rubric is the teacher's own copy; the builder shows its total live.
    essay = assignment.questions.get(kind="essay")
    assert essay.rubric.owner == teacher and essay.rubric.max_points == 100
    page.click(f"a[href='/grading/rubrics/{essay.rubric_id}/']")
    total = page.locator("#rubric-total")
    expect(total).to_have_text("100")
    first_max = page.locator(".criterion-form:not(.new-criterion) input[name=max_points]").first
    first_max.fill("25")
    expect(total).to_have_text("105")  # live, before saving
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.locator("button[name=op][value='criterion.update']").first.click()
    expect(total).to_have_text("105")  # still, once the saved builder is swapped in
    assert Rubric.objects.get(pk=essay.rubric_id).max_points == 105
    page.screenshot(path=str(ARTIFACTS / "rubric-builder.png"))

    # Publish, and preview exactly what students will see.
    page.goto(f"{base}/teach/assignments/{assignment.pk}/")
    with page.expect_navigation():
        page.click("button[name=state][value=published]")
    expect(page.locator(".messages")).to_be_visible()
    assignment.refresh_from_db()
    assert assignment.state == AssignmentState.PUBLISHED
    page.click(f"a[href='/teach/assignments/{assignment.pk}/preview/']")
    expect(page.locator(".preview-banner")).to_be_visible()
    main = page.locator("main")
    for shown in ("秋天的校园", "朱自清", "论语"):
        expect(main).to_contain_text(shown)
    expect(main).not_to_contain_text("抓住秋天校园的景物特点")  # for graders only
    expect(page.locator("button[name=action][value=submit]")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)

    # A student from the printed list logs in, chooses a password and sees the exam.
    student_page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 1000})
    student_page.goto(f"{base}/accounts/login/")
    student_page.fill("#id_username", username)
    student_page.fill("#id_password", password)
    student_page.click("button[type=submit]")
    student_page.wait_for_selector("#id_new_password1")
    student_page.fill("#id_old_password", password)
    student_page.fill("#id_new_password1", "Qiutian-xiaoyuan-2026")
    student_page.fill("#id_new_password2", "Qiutian-xiaoyuan-2026")
    student_page.click("form button.primary")
    expect(student_page.locator(f"a[href='/assignments/{assignment.pk}/']")).to_be_visible()
    expect(student_page.locator("main")).to_contain_text("第一单元测验")
    assert (
        AuditEvent.objects.filter(
            action__in=[
                "course.created",
                "roster.imported",
                "assignment.created",
                "question.created",
                "rubric.copied",
                "assignment.published",
            ]
        )
        .values("action")
        .distinct()
        .count()
        == 6
    )
