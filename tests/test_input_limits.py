"""No input ends in a 500 or loses a student's work: control characters, length, size.

PostgreSQL refuses a NUL byte in text (and in JSON); these tests pass on SQLite too, and
on PostgreSQL they are the ones that used to fail with a 500.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from courses import rosters, services
from courses.models import Assignment, Course, Question, QuestionKind, User
from courses.text import clean_text
from grading import services as grading_services
from grading.models import Answer, AuditEvent, FinalGrade, RegradeRequest, Rubric, Submission

ROOT = Path(__file__).resolve().parent.parent
DIRTY = "开头\x00中间\x01\x08\x0b\x0c\x0e\x1b\x1f\x7f结尾"


# --- One rule for text -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, clean",
    [
        (DIRTY, "开头中间结尾"),
        ("keep\ttabs\nand lines", "keep\ttabs\nand lines"),
        ("windows\r\nline\rends", "windows\nline\nends"),
        ("全角　空格 and émojis 🙂", "全角　空格 and émojis 🙂"),
        ("", ""),
    ],
)
def test_clean_text_removes_control_characters_and_keeps_the_rest(raw, clean):
    assert clean_text(raw) == clean
    assert clean_text(clean_text(raw)) == clean_text(raw)  # idempotent


# --- Everywhere text enters ----------------------------------------------------------------


def test_nul_in_an_answer_is_cleaned_and_the_draft_kept(
    client, student, assignment, essay_question
):
    client.force_login(student)
    response = client.post(
        reverse("assignment_work", args=[assignment.pk]),
        {f"text-{essay_question.pk}": DIRTY + "\r\n第二行", "action": "save"},
    )
    assert response.status_code == 302
    assert Answer.objects.get().text == "开头中间结尾\n第二行"


def test_nul_in_review_feedback_and_override_reason(client, graded_essays, teacher):
    answer = graded_essays[0]
    first = answer.current_assessment.scores.order_by("criterion__order").first()
    client.force_login(teacher)
    response = client.post(
        reverse("grading:review", args=[answer.pk]),
        {
            f"score-{first.criterion_id}": str((first.points + 1) % 21),
            "feedback": "写得好\x00继续努力",
            "reason": "复核\x00加分",
            "version": "",
        },
    )
    assert response.status_code == 302
    grade = FinalGrade.objects.get(answer=answer)
    assert grade.feedback == "写得好继续努力" and grade.override_reason == "复核加分"
    event = AuditEvent.objects.filter(action="grade.overridden").get()
    assert event.reason == "复核加分" and "\x00" not in json.dumps(event.after)


@pytest.fixture
def released(graded_essays, teacher, assignment):
    from courses.models import Enrollment, Role

    answer = graded_essays[0]
    Enrollment.objects.create(
        course=assignment.course, user=answer.submission.student, role=Role.STUDENT
    )
    grading_services.grade_approve(answer=answer, actor=teacher)
    grading_services.grades_release(assignment=assignment, actor=teacher)
    return answer


def test_nul_in_a_regrade_request_and_its_answer(client, released, teacher):
    client.force_login(released.submission.student)
    response = client.post(
        reverse("regrade_request", args=[released.pk]), {"comment": "请\x00再看看"}
    )
    assert response.status_code == 302
    request = RegradeRequest.objects.get()
    assert request.comment == "请再看看"
    client.force_login(teacher)
    response = client.post(
        reverse("grading:regrade_answer", args=[request.pk]), {"response": "已\x00复核"}
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.response == "已复核" and request.status == "answered"


def test_a_regrade_request_sent_twice_is_one_request(client, released):
    client.force_login(released.submission.student)
    url = reverse("regrade_request", args=[released.pk])
    first = client.post(url, {"comment": "请再看看"}, HTTP_ACCEPT_LANGUAGE="en")
    second = client.post(url, {"comment": "请再看看"}, HTTP_ACCEPT_LANGUAGE="en")
    assert first.status_code == second.status_code == 302
    assert RegradeRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="regrade.requested").count() == 1
    with pytest.raises(grading_services.SubmissionError, match="not answered"):
        grading_services.regrade_request_create(
            answer=released, student=released.submission.student, comment="另一个问题"
        )


def test_a_comment_of_only_control_characters_is_refused_with_a_message(released):
    with pytest.raises(grading_services.SubmissionError, match="Say briefly"):
        grading_services.regrade_request_create(
            answer=released, student=released.submission.student, comment="\x00\x01 "
        )


def test_nul_in_a_roster_file(client, course, teacher):
    data = "username,name,email,student_number\ns1,李\x00明,,2026\x00001\n".encode()
    client.force_login(teacher)
    url = reverse("teach:roster_import", args=[course.pk])
    preview = client.post(url, {"file": SimpleUploadedFile("r.csv", data)})
    assert preview.status_code == 200
    text = preview.context["text"]
    assert "\x00" not in text
    # The confirm step posts the text back; a NUL put into it there is cleaned as well.
    replayed = text.replace("李明", "李\x00明")
    result = client.post(url, {"csv_text": replayed, "action": "import"})
    assert result.status_code == 200
    user = User.objects.get(username="s1")
    assert user.name == "李明" and user.student_number == "2026001"


def test_nul_in_roster_text_given_to_the_service(course, teacher):
    text = "username,name\ns3,王\x00芳\n"
    result = rosters.roster_import(course=course, text=text, actor=teacher)
    assert [u.name for u in result.enrolled] == ["王芳"]


def test_nul_in_teacher_forms_is_cleaned_not_a_500(client, teacher, course, rubric):
    client.force_login(teacher)
    response = client.post(
        reverse("teach:course_create"),
        {"title": "九年级\x00语文", "code": "CHN\x00-9A", "term": "", "language": "zh-hans"},
    )
    assert response.status_code == 302
    created = Course.objects.get(code="CHN-9A")
    assert created.title == "九年级语文"
    response = client.post(
        reverse("teach:assignment_create", args=[course.pk]),
        {
            "title": "作文\x00一",
            "instructions": "请\x00写",
            "language": "zh-hans",
            "due_at": "",
            "late_policy": "refuse",
            "attempts_allowed": "1",
            "grading_mode": "ai_review",
            "release_policy": "manual",
        },
    )
    assert response.status_code == 302
    assignment = Assignment.objects.get(title="作文一")
    assert assignment.instructions == "请写"


def test_nul_reaching_the_services_directly_is_cleaned(teacher, course, rubric):
    """What the API and any other caller get: the services apply the same rule."""
    new = services.course_create(actor=teacher, title="物\x00理", code="PHY\x00-1", language="en")
    assert (new.title, new.code) == ("物理", "PHY-1")
    assignment = services.assignment_create(course=course, actor=teacher, title="测\x00验")
    question = services.question_create(
        assignment=assignment,
        kind=QuestionKind.SINGLE_CHOICE,
        actor=teacher,
        prompt="选\x00择",
        options=[{"key": "A", "text": "甲\x00"}, {"key": "B", "text": "乙"}],
        answer_key={"correct": ["A"]},
    )
    question = Question.objects.get(pk=question.pk)
    assert question.prompt == "选择" and question.options[0]["text"] == "甲"
    from grading import rubrics

    edit = rubrics.criterion_add(
        rubric=Rubric.objects.create(title="r"), actor=teacher, title="内容\x00", max_points=10
    )
    assert edit.rubric.criteria.get().title == "内容"


def test_nul_in_an_enrollment_identifier_is_a_message(teacher, course):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.enrollment_add(
            course=course, identifier="gh\x00ost", role="student", actor=teacher
        )


# --- How long an answer may be -------------------------------------------------------------


def test_default_limits_hold_a_full_paper_of_essays():
    assert django_settings.ANSWER_MAX_CHARS == 20_000
    # A form-encoded CJK character is 9 bytes (%E4%B8%AD): room for 40 answers at the limit.
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= 9 * django_settings.ANSWER_MAX_CHARS * 40


def test_limits_come_from_the_environment():
    code = "import config.settings as s; print(s.ANSWER_MAX_CHARS, s.DATA_UPLOAD_MAX_MEMORY_SIZE)"
    env = {**os.environ, "ANSWER_MAX_CHARS": "5000", "DATA_UPLOAD_MAX_MEMORY_SIZE": "3000000"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5000", "3000000"]


def test_an_answer_over_the_limit_is_refused_and_kept_on_the_page(
    client, student, assignment, essay_question, settings
):
    settings.ANSWER_MAX_CHARS = 100
    client.force_login(student)
    url = reverse("assignment_work", args=[assignment.pk])
    client.post(url, {f"text-{essay_question.pk}": "已保存的草稿", "action": "save"})
    too_long = "长" * 100 + "尾巴"
    response = client.post(
        url, {f"text-{essay_question.pk}": too_long, "action": "submit"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert 'role="alert"' in html and "102 characters" in html and "100" in html
    assert too_long in html  # everything the student typed is still in the form
    submission = Submission.objects.get()
    assert submission.status == "draft"
    assert submission.answers.get().text == "已保存的草稿"  # what was saved before is intact


def test_an_answer_at_the_limit_is_accepted(client, student, assignment, essay_question, settings):
    settings.ANSWER_MAX_CHARS = 100
    client.force_login(student)
    text = "字" * 99 + "\r\n"  # a browser's line break is one character
    response = client.post(
        reverse("assignment_work", args=[assignment.pk]),
        {f"text-{essay_question.pk}": text, "action": "save"},
    )
    assert response.status_code == 302
    assert len(Answer.objects.get().text) == 100


def test_the_limit_is_shown_next_to_the_answer(client, student, assignment, essay_question):
    client.force_login(student)
    html = client.get(
        reverse("assignment_work", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "20,000 characters" in html or "20000 characters" in html


@pytest.mark.parametrize(
    "language, words",
    [("en", "Too long to send"), ("zh-hans", "内容太长")],
)
def test_a_request_too_large_to_read_explains_itself(
    client, student, assignment, essay_question, settings, language, words
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client.force_login(student)
    url = reverse("assignment_work", args=[assignment.pk])
    response = client.post(
        url,
        {f"text-{essay_question.pk}": "长" * 5_000, "action": "save"},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    html = response.content.decode()
    assert response.status_code == 413
    assert words in html and f'href="{url}"' in html
    assert not Submission.objects.exists()


def test_other_bad_requests_get_a_page_too(client, student):
    client.force_login(student)
    response = client.get(reverse("home"), HTTP_HOST="evil.example", HTTP_ACCEPT_LANGUAGE="en")
    html = response.content.decode()
    assert response.status_code == 400
    assert "Bad request" in html and 'class="site-header"' in html  # the site's own page
