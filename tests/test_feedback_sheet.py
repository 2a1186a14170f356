"""Feedback students read: per criterion the level met and the comment the teacher
approved; objective answers with the key when the teacher shows keys; a PDF of it, and a
bundle of every student's for the teacher. And what a student sees after handing in."""

from __future__ import annotations

import contextlib
import re
import zlib

import pytest
from django.urls import reverse

from courses.models import Question, QuestionKind
from grading import services
from grading.models import Answer, AnswerStatus, FinalCriterionGrade

from .conftest import GOOD, submit


def _weasyprint_works() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):  # OSError: Pango is missing
        return False
    return True


needs_pdf = pytest.mark.skipif(
    not _weasyprint_works(), reason="WeasyPrint needs Pango: apt-get install libpango-1.0-0"
)


@pytest.fixture
def choice_question(assignment) -> Question:
    return Question.objects.create(
        assignment=assignment,
        order=2,
        kind=QuestionKind.SINGLE_CHOICE,
        prompt="“长大”的近义词是？",
        options=[{"key": "A", "text": "成长"}, {"key": "B", "text": "缩小"}],
        answer_key={"correct": ["A"]},
        points=2,
    )


@pytest.fixture
def released(fake_llm, grade_now, assignment, essay_question, choice_question, teacher, student):
    """The student's essay (AI proposal, 15 per criterion; the first changed to 17 by the
    teacher) and a wrong choice, graded and released."""
    submission = submit(assignment, student, {essay_question: GOOD, choice_question: ["B"]})
    grade_now(list(submission.answers.all()))
    essay = submission.answers.get(question=essay_question)
    first = essay.current_assessment.scores.order_by("criterion__order").first()
    services.grade_approve(
        answer=essay, actor=teacher, scores={first.criterion_id: 17}, reason="开头扣题"
    )
    services.grades_release(assignment=assignment, actor=teacher)
    return submission


def feedback(client, assignment, lang="en"):
    return client.get(
        reverse("assignment_feedback", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE=lang
    ).content.decode()


def test_each_criterion_with_the_level_met_and_the_approved_comment(
    client, released, assignment, student, rubric
):
    client.force_login(student)
    html = feedback(client, assignment)
    # 17 reaches the "一等" level (16 points and up); 15 reaches "四等" (0 and up).
    row = re.search(r"<th scope=\"row\">内容切题</th>.*?</tr>", html, re.S).group(0)
    assert "17 / 20" in row and "一等" in row and "Adjusted by your teacher" in row
    # The model's rationale is shown where the teacher kept its score, not where they changed it.
    assert "Rationale for" not in row
    kept = re.search(r"<th scope=\"row\">结构清晰</th>.*?</tr>", html, re.S).group(0)
    assert "四等" in kept and "Rationale for" in kept
    assert "Clear answer; add one more example." in html  # the overall comment


def test_a_teachers_own_criterion_comment_comes_first(client, released, assignment, student):
    row = FinalCriterionGrade.objects.filter(final_grade__answer__submission=released).first()
    FinalCriterionGrade.objects.filter(pk=row.pk).update(comment="开头很好，紧扣题目。")
    client.force_login(student)
    assert "开头很好，紧扣题目。" in feedback(client, assignment)


def test_the_rule_engines_notes_never_reach_students(
    client, no_llm, grade_now, assignment, essay_question, teacher, student
):
    answer = submit(assignment, student, {essay_question: GOOD}).answers.get()
    grade_now([answer])
    services.grade_approve(answer=Answer.objects.get(pk=answer.pk), actor=teacher, feedback="")
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(student)
    html = feedback(client, assignment, lang="zh-hans")
    assert "离线规则引擎" not in html and "四等" in html


def test_objective_answer_and_key_only_when_the_teacher_shows_keys(
    client, released, assignment, student
):
    client.force_login(student)
    html = feedback(client, assignment)
    assert "B. 缩小" in html and "A. 成长" not in html.split("Your answer")[-1]
    assert 'class="correct-answer"' not in html
    assignment.show_answer_keys = True
    assignment.save()
    html = feedback(client, assignment)
    assert re.search(r'class="correct-answer">A\. 成长<', html)


def test_show_answer_keys_is_an_assignment_setting(client, teacher, assignment):
    client.force_login(teacher)
    url = reverse("teach:assignment_edit", args=[assignment.pk])
    form = client.get(url).content.decode()
    assert 'name="show_answer_keys"' in form
    data = {
        "title": assignment.title,
        "language": assignment.language,
        "late_policy": assignment.late_policy,
        "attempts_allowed": 1,
        "grading_mode": assignment.grading_mode,
        "release_policy": assignment.release_policy,
        "show_answer_keys": "on",
    }
    assert client.post(url, data).status_code == 302
    assignment.refresh_from_db()
    assert assignment.show_answer_keys


def _pdf_objects(pdf: bytes) -> bytes:
    """The PDF with its compressed streams (object streams included) inflated."""
    streams = b""
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            streams += zlib.decompress(m.group(1))
    return pdf + streams


def _pdf_text_fonts(pdf: bytes) -> set[bytes]:
    return set(re.findall(rb"/(?:BaseFont|FontName)\s*/([^\s/<>\[\]]+)", _pdf_objects(pdf)))


def _page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", _pdf_objects(pdf)))


@needs_pdf
def test_student_downloads_their_feedback_as_a_pdf_with_cjk_fonts(
    client, released, assignment, student, other_student
):
    url = reverse("assignment_feedback_pdf", args=[assignment.pk])
    client.force_login(student)
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert any(b"CJK" in font for font in _pdf_text_fonts(response.content))
    # A classmate with nothing released gets their (empty) page, never someone else's PDF.
    client.force_login(other_student)
    assert client.get(url)["Location"] == reverse("assignment_feedback", args=[assignment.pk])


@needs_pdf
def test_the_renderer_fetches_nothing(monkeypatch):
    """Students' text is in the document: no URL in it may make the server read a file or
    call an address."""
    from courses import pdf

    asked: list[str] = []

    def refuse(url: str) -> None:
        asked.append(url)
        raise pdf.ExternalResourceRefused(url)

    monkeypatch.setattr(pdf, "_refuse", refuse)
    document = pdf.html_to_pdf(
        '<p>作文</p><img src="file:///etc/hostname"><link rel="stylesheet" '
        'href="http://169.254.169.254/latest/meta-data/">'
    )
    assert document.startswith(b"%PDF")
    assert set(asked) == {"file:///etc/hostname", "http://169.254.169.254/latest/meta-data/"}


def test_without_pango_the_pdf_says_to_print_from_the_browser(
    client, released, assignment, student, monkeypatch
):
    from courses import pdf

    def unavailable(html: str) -> bytes:
        raise pdf.PdfUnavailable("no pango")

    monkeypatch.setattr(pdf, "html_to_pdf", unavailable)
    client.force_login(student)
    response = client.get(
        reverse("assignment_feedback_pdf", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 503 and "Print command" in response.content.decode()


def test_feedback_html_for_paper_marks_inline_passages(released, assignment, student):
    from django.template.loader import render_to_string

    from courses.views import feedback_context, feedback_sheet

    sheet = feedback_sheet(feedback_context(assignment, student))
    html = render_to_string(
        "courses/feedback_pdf.html", {"assignment": assignment, "sheets": [sheet]}
    )
    assert "内容切题" in html and "一等" in html and GOOD[:10] in html
    assert "缩小" in html


@needs_pdf
def test_teacher_prints_every_students_feedback_a_page_each(
    client, released, assignment, teacher, essay_question, other_student, course
):
    answer = submit(assignment, other_student, {essay_question: GOOD + "另一篇"}).answers.get()
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.NEEDS_MANUAL)
    services.grade_approve(
        answer=answer,
        actor=teacher,
        scores={c.pk: 12 for c in essay_question.rubric.criteria.all()},
    )
    url = reverse("teach:feedback_bundle", args=[assignment.pk])
    client.force_login(teacher)
    assert url in client.get(reverse("grading:assignment", args=[assignment.pk])).content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    sheets = response.context["sheets"]
    assert [s["student"].username for s in sheets] == ["other_student", "student"]
    # One sheet a student, each starting on a page of its own.
    assert _page_count(response.content) >= 2


def test_bundle_waits_for_release_and_is_for_staff(
    client, released, assignment, teacher, student, other_teacher
):
    url = reverse("teach:feedback_bundle", args=[assignment.pk])
    services.grades_hide(assignment=assignment, actor=teacher)
    client.force_login(teacher)
    assert client.get(url)["Location"] == reverse("grading:assignment", args=[assignment.pk])
    for user in (student, other_teacher):
        client.force_login(user)
        assert client.get(url).status_code == 404


# --- After hand-in -------------------------------------------------------------------


def test_after_hand_in_the_page_shows_what_was_handed_in_and_its_status(
    client, student, assignment, essay_question, choice_question, django_capture_on_commit_callbacks
):
    url = reverse("assignment_work", args=[assignment.pk])
    client.force_login(student)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "This is your only attempt" in page and "data-confirm=" in page
    token = re.search(r'name="hand_in_token" value="([^"]+)"', page)[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url,
            {
                f"text-{essay_question.pk}": "我的作文<b>",
                f"choice-{choice_question.pk}": ["A"],
                "action": "submit",
                "hand_in_token": token,
            },
        )
    assert response["Location"] == url
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    receipt = page[page.index('id="receipt"') :]
    assert "我的作文&lt;b&gt;" in receipt and "A. 成长" in receipt
    assert "With your teacher" in receipt and "<textarea" not in page  # read-only now
    assert 'value="submit"' not in page  # no attempt left


def test_with_attempts_left_the_next_one_is_offered_and_confirmed(
    client, student, assignment, essay_question
):
    assignment.attempts_allowed = 3
    assignment.save()
    submit(assignment, student, {essay_question: "第一次"})
    client.force_login(student)
    page = client.get(reverse("assignment_work", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert "第一次" in html[html.index('id="receipt"') :]
    assert "Hand in again: attempt 2 of 3" in html
    assert "This uses attempt 2 of 3." in html
    assignment.attempts_allowed = 2
    assignment.save()
    html = client.get(
        reverse("assignment_work", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "This is your last attempt of 2" in html


def test_receipt_links_the_feedback_once_released(client, released, assignment, student):
    client.force_login(student)
    html = client.get(
        reverse("assignment_work", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Feedback ready" in html
    assert reverse("assignment_feedback", args=[assignment.pk]) in html


def test_the_teachers_preview_shows_no_receipt(
    client, teacher, assignment, essay_question, student
):
    submit(assignment, student, {essay_question: "学生的作文"})
    client.force_login(teacher)
    html = client.get(reverse("teach:assignment_preview", args=[assignment.pk])).content.decode()
    assert 'id="receipt"' not in html and "学生的作文" not in html
