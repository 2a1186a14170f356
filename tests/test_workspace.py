"""The review workspace over HTTP (issue 14): what a teacher or student met in the first ten
minutes that was wrong, and the workspace itself — levels, running total, inline comments,
the comment bank. The browser half is tests/test_workspace_browser.py."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from courses.models import Enrollment, Question, QuestionKind, Role
from grading import selectors, services
from grading.models import (
    Answer,
    AnswerComment,
    AnswerStatus,
    AuditEvent,
    CommentBankEntry,
    FinalGrade,
    RegradeRequest,
    RegradeStatus,
)
from grading.workspace import Passage, level_met, passages

from .conftest import GOOD, make_user, submit

PLACEHOLDER = "（离线规则引擎自动生成，仅供教师参考，请教师填写评语。）"
HTMX = {"HTTP_HX_REQUEST": "true"}


def notices(response) -> list[dict[str, str]]:
    """The messages an HTMX response carries to the page (courses.middleware)."""
    return json.loads(response.headers.get("HX-Trigger", "{}")).get("markwise:messages", [])


def enroll(*users, course) -> None:
    for user in users:
        Enrollment.objects.get_or_create(course=course, user=user, role=Role.STUDENT)


def criteria_of(answer: Answer) -> list[int]:
    return [s.criterion_id for s in answer.current_assessment.scores.order_by("criterion__order")]


# --- Things that were wrong ----------------------------------------------------------------


def test_a_refused_save_comes_back_with_the_message_and_what_was_typed(
    client, graded_essays, teacher
):
    """The silent 409: htmx swapped nothing, so a score changed without a reason did nothing
    visible. Now the refused form comes back (the page swaps error fragments in), with the
    teacher's score still typed, the reason field focused, and the message as a notice."""
    answer = graded_essays[0]
    first, *rest = criteria_of(answer)
    form = {f"score-{c}": 15 for c in rest} | {f"score-{first}": 19, "version": ""}
    client.force_login(teacher)
    url = reverse("grading:review", args=[answer.pk])
    refused = client.post(url, form, HTTP_ACCEPT_LANGUAGE="zh-hans", **HTMX)
    html = refused.content.decode()
    assert refused.status_code == 409
    assert "修改 AI 分数需要填写简短理由：内容切题" in html
    assert not html.lstrip().lower().startswith(("<!doctype", "<html"))  # a fragment to swap
    assert f'name="score-{first}" min="0" max="20" step="1" value="19"' in html
    assert 'name="reason" maxlength="500" value="" autofocus' in html
    assert notices(refused) == [
        {"level": "error", "message": "修改 AI 分数需要填写简短理由：内容切题"}
    ]
    assert not FinalGrade.objects.filter(answer=answer).exists()


def test_a_save_says_so_at_once_and_not_on_the_next_page(client, graded_essays, teacher):
    client.force_login(teacher)
    answer = graded_essays[0]
    done = client.post(
        reverse("grading:review", args=[answer.pk]),
        {"version": "", "feedback": "好"},
        HTTP_ACCEPT_LANGUAGE="en",
        **HTMX,
    )
    assert done.status_code == 200 and notices(done) == [
        {"level": "success", "message": "Grade approved."}
    ]
    # Delivered with the swap, the message does not wait for the next full page.
    later = client.get(reverse("grading:review", args=[answer.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert "Grade approved." not in later.content.decode()


def test_a_redirecting_htmx_response_leaves_its_messages_for_the_next_page(
    client, fake_llm, grade_now, assignment, essay_question, teacher
):
    answer = submit(assignment, make_user("solo"), {essay_question: GOOD}).answers.get()
    grade_now([answer])
    client.force_login(teacher)
    last = client.post(
        reverse("grading:review", args=[answer.pk]),
        {"version": ""},
        HTTP_ACCEPT_LANGUAGE="en",
        **HTMX,
    )
    assert "HX-Redirect" in last.headers and notices(last) == []
    queue = client.get(reverse("grading:queue", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert "Grade approved." in queue.content.decode()


def test_teacher_only_text_of_the_rule_engine_never_reaches_students(
    client, no_llm, grade_now, assignment, essay_question, teacher, student
):
    answer = submit(assignment, student, {essay_question: GOOD}).answers.get()
    grade_now([answer])
    answer.refresh_from_db()
    proposal = answer.current_assessment
    assert proposal.feedback == "" and "离线规则引擎" in proposal.scores.first().rationale
    # A proposal stored before the fix still carries the placeholder; it stays the teacher's.
    type(proposal).objects.filter(pk=proposal.pk).update(feedback=PLACEHOLDER)
    client.force_login(teacher)
    review = client.get(reverse("grading:review", args=[answer.pk])).content.decode()
    assert PLACEHOLDER not in review  # not pre-filled as the student's feedback either
    client.post(
        reverse("grading:bulk_approve", args=[assignment.pk]),
        {"answer": [answer.pk], "include_low_confidence": "1"},
    )
    grade = FinalGrade.objects.get(answer=answer)
    assert grade.feedback == ""
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(student)
    page = client.get(reverse("assignment_feedback", args=[assignment.pk])).content.decode()
    assert "仅供教师参考" not in page and "离线规则引擎" not in page
    assert "<h3>评语</h3>" not in page and "<h3>Feedback</h3>" not in page  # no empty comment


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
def half_graded(fake_llm, grade_now, assignment, essay_question, choice_question, student):
    """The student's choice answer is scored by the key (approved); the essay awaits review."""
    submission = submit(assignment, student, {essay_question: GOOD, choice_question: ["A"]})
    grade_now(list(submission.answers.all()))
    return submission


def test_a_student_sees_pending_questions_and_a_total_that_is_not_final(
    client, half_graded, assignment, teacher, student
):
    services.grades_release(assignment=assignment, actor=teacher)
    client.force_login(student)
    url = reverse("assignment_feedback", args=[assignment.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Total: 2 / 2" in page  # what is approved so far …
    assert "not final: 1 question still being graded" in page  # … and that it is not all
    assert "Pending" in page and "以“那一刻，我长大了”为题" in page
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "待批改" in chinese


def test_export_marks_incomplete_rows_and_lists_students_who_never_handed_in(
    client, half_graded, assignment, teacher, student, other_student
):
    client.force_login(teacher)

    def export(**params):
        response = client.get(reverse("grading:export", args=[assignment.pk]), params)
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8").lstrip("\ufeff"))))
        return rows[0], {row[0]: row for row in rows[1:]}

    header, rows = export()
    status, pending, total = header.index("status"), header.index("pending"), len(header) - 1
    mine = rows[student.username]
    assert mine[status] == "incomplete" and mine[pending] == "Q1" and mine[total] == "2"
    missing = rows[other_student.username]
    assert missing[status] == "missing" and missing[total] == ""
    assert missing[header.index("Q1 total")] == ""
    _, zeroed = export(missing="zero")
    assert zeroed[other_student.username][total] == "0"
    services.grade_approve(answer=half_graded.answers.get(question__order=1), actor=teacher)
    _, rows = export()
    assert rows[student.username][status] == "complete" and rows[student.username][pending] == ""


def test_release_shows_what_it_will_and_will_not_release_before_it_happens(
    client, half_graded, assignment, teacher, other_student, graded_essays
):
    client.force_login(teacher)
    page = client.get(
        reverse("grading:assignment", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    # Approved: the choice answer. Waiting: the student's essay and the four unenrolled
    # writers' essays (two of them flagged). Missing: other_student.
    assert '<strong data-count="approved">1</strong>' in page
    assert '<strong data-count="waiting">5</strong>' in page and "2 flagged" in page
    assert '<strong data-count="nothing">4</strong>' in page
    assert '<strong data-count="missing">1</strong>' in page
    assert "Release 1 approved grade" in page
    counts = selectors.release_preview(assignment=assignment)
    assert (counts.students_complete, counts.students_partial, counts.students_nothing) == (0, 1, 4)


def test_queue_shows_the_current_grade_and_who_decided(client, graded_essays, teacher, assignment):
    answer = graded_essays[0]
    first = criteria_of(answer)[0]
    services.grade_approve(answer=answer, actor=teacher, scores={first: 18}, reason="切题更好")
    client.force_login(teacher)
    page = client.get(
        reverse("grading:queue", args=[assignment.pk]) + "?status=approved",
        HTTP_ACCEPT_LANGUAGE="en",
    ).content.decode()
    row = page[page.index(f'data-answer="{answer.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "75/100" in row  # the AI's proposal …
    assert "<strong>78/100</strong>" in row and "changed" in row  # … the grade that counts
    assert "王老师" in row and "Changed by teacher" in row  # … and who decided


def test_teacher_home_counts_the_students_of_each_course(client, teacher, student, other_student):
    client.force_login(teacher)
    page = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "2 students" in page and "0 students" not in page


@pytest.fixture
def rule_engine_essays(no_llm, grade_now, assignment, essay_question):
    """Five ordinary essays and a blank one, all scored by the offline rule engine, which
    flags every proposal low-confidence (and the blank one blank)."""
    answers = [
        submit(assignment, make_user(f"w{i}"), {essay_question: f"{GOOD}{i}"}).answers.get()
        for i in range(5)
    ]
    answers.append(submit(assignment, make_user("w5"), {essay_question: ""}).answers.get())
    grade_now(answers)
    return [Answer.objects.get(pk=a.pk) for a in answers]


def test_bulk_approval_says_what_it_did_and_takes_low_confidence_only_when_asked(
    client, rule_engine_essays, teacher, assignment
):
    *ordinary, blank = rule_engine_essays
    assert all("low_confidence" in a.current_assessment.flags for a in ordinary)
    assert "blank" in blank.current_assessment.flags
    client.force_login(teacher)
    queue = client.get(reverse("grading:queue", args=[assignment.pk])).content.decode()
    # "Select all" ticks the low-confidence rows; the blank one has no box at all.
    assert queue.count('class="bulk-box low-confidence"') == 5
    assert f'value="{blank.pk}"' not in queue
    url = reverse("grading:bulk_approve", args=[assignment.pk])
    ids = [a.pk for a in rule_engine_essays]
    first = client.post(url, {"answer": ids}, HTTP_ACCEPT_LANGUAGE="en", follow=True)
    said = [str(m) for m in first.context["messages"]]
    assert said == [
        "0 answers approved. 5 low-confidence proposals were not approved: use “Approve "
        "selected, low-confidence too” to approve them. 1 blank, off-topic or suspected "
        "prompt-injection answer is never approved in bulk: open it to grade it. 6 answers "
        "still wait for review (6 flagged or to grade by hand)."
    ]
    second = client.post(
        url,
        {"answer": ids, "include_low_confidence": "1"},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
        follow=True,
    )
    said = [str(m) for m in second.context["messages"]]
    assert len(said) == 1 and said[0].startswith("已采纳 5 份答案。")
    assert "其中 5 份是低置信度建议" in said[0] and "仍有 1 份答案待审核" in said[0]
    assert Answer.objects.filter(status=AnswerStatus.APPROVED).count() == 5
    assert Answer.objects.get(pk=blank.pk).status == AnswerStatus.GRADED


def test_bulk_approval_with_nothing_ticked_says_so(client, graded_essays, teacher, assignment):
    client.force_login(teacher)
    response = client.post(
        reverse("grading:bulk_approve", args=[assignment.pk]),
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == ["Tick the answers to approve first."]


@pytest.fixture
def regrade(graded_essays, teacher, assignment):
    answer = graded_essays[0]
    enroll(answer.submission.student, course=assignment.course)
    services.grade_approve(answer=answer, actor=teacher)
    services.grades_release(assignment=assignment, actor=teacher)
    return services.regrade_request_create(
        answer=Answer.objects.get(pk=answer.pk),
        student=answer.submission.student,
        comment="第二段被忽略了",
    )


def test_the_regrade_reply_is_labelled_a_reply_and_goes_with_the_new_score(
    client, regrade, teacher
):
    answer = Answer.objects.get(pk=regrade.answer_id)
    first, *rest = criteria_of(answer)
    client.force_login(teacher)
    url = reverse("grading:review", args=[answer.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "答案:" not in page and "答案：" not in page
    assert "你对学生复核申请的回复" in page and "回复并保存成绩" in page
    form = {f"score-{c}": 15 for c in rest} | {
        f"score-{first}": 18,
        "version": "1",
        "feedback": "第二段写得具体。",
        "regrade": regrade.pk,
        "regrade_response": "复核后加 3 分：第二段有细节。",
        "action": "reply",
    }
    client.post(url, form)
    regrade.refresh_from_db()
    grade = FinalGrade.objects.get(answer=answer)
    assert regrade.status == RegradeStatus.ANSWERED and regrade.responder == teacher
    assert grade.points == 78 and grade.version == 2 and grade.feedback == "第二段写得具体。"
    assert grade.override_reason == "复核后加 3 分：第二段有细节。"  # the reply is the reason
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions[-2:] == ["grade.overridden", "regrade.answered"]


def test_a_regrade_reply_without_changes_leaves_the_grade_alone(client, regrade, teacher):
    client.force_login(teacher)
    response = client.post(
        reverse("grading:regrade_answer", args=[regrade.pk]),
        {"response": "分数无误。"},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    assert "Your reply was sent to the student." in response.content.decode()
    assert FinalGrade.objects.get(answer_id=regrade.answer_id).version == 1
    assert RegradeRequest.objects.get(pk=regrade.pk).status == RegradeStatus.ANSWERED


def test_the_reply_view_rescores_in_the_same_step(client, regrade, teacher):
    """The regrade inbox posts here: the reply and a new score together."""
    answer = Answer.objects.get(pk=regrade.answer_id)
    first = criteria_of(answer)[0]
    client.force_login(teacher)
    client.post(
        reverse("grading:regrade_answer", args=[regrade.pk]),
        {"response": "已加分", f"score-{first}": 17, "version": "1"},
    )
    grade = FinalGrade.objects.get(answer=answer)
    assert grade.points == 77 and grade.override_reason == "已加分"
    assert RegradeRequest.objects.get(pk=regrade.pk).status == RegradeStatus.ANSWERED


# --- The workspace --------------------------------------------------------------------------


def test_level_descriptors_score_and_show_the_ai_level_and_the_teachers_change(
    client, graded_essays, teacher
):
    answer = graded_essays[0]
    first = criteria_of(answer)[0]
    client.force_login(teacher)
    url = reverse("grading:review", args=[answer.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # The AI proposed 15 of 20: the "四等" level (0–15) is the AI's and the chosen one.
    assert page.count('class="level ai-level"') == 5
    assert f'data-level-points="0" data-score="score-{first}" aria-pressed="true"' in page
    assert f'data-level-points="16" data-score="score-{first}" aria-pressed="false"' in page
    assert '<output id="running-total"' in page and ">75</output> / 100" in page
    services.grade_approve(answer=answer, actor=teacher, scores={first: 16}, reason="具体")
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f'data-level-points="16" data-score="score-{first}" aria-pressed="true"' in page
    assert page.count('class="criterion-score changed"') == 1
    assert "changed by you · AI proposed 15" in page and ">76</output> / 100" in page


def test_inline_comments_are_the_teachers_until_release_then_the_students(
    client, graded_essays, teacher, other_teacher, assignment
):
    answer = graded_essays[0]
    student = answer.submission.student
    enroll(student, course=assignment.course)
    start = GOOD.index("一个人")
    form = {"start": start, "end": start + 3, "quote": "一个人", "body": "这个细节写得好。"}
    url = reverse("grading:comment_create", args=[answer.pk])
    client.force_login(other_teacher)
    assert client.post(url, form, **HTMX).status_code == 404
    client.force_login(teacher)
    wrong = client.post(url, {**form, "quote": "妈妈生"}, HTTP_ACCEPT_LANGUAGE="en", **HTMX)
    assert wrong.status_code == 409 and notices(wrong)[0]["level"] == "error"
    made = client.post(url, form, HTTP_ACCEPT_LANGUAGE="en", **HTMX)
    assert made.status_code == 200
    assert '<mark class="annotation" data-label="1">一个人</mark>' in made.content.decode()
    comment = AnswerComment.objects.get()
    assert (comment.start, comment.end, comment.author) == (start, start + 3, teacher)
    assert AuditEvent.objects.filter(action="comment.added").count() == 1
    feedback = reverse("assignment_feedback", args=[assignment.pk])
    services.grade_approve(answer=answer, actor=teacher)
    client.force_login(student)
    assert "这个细节写得好" not in client.get(feedback).content.decode()  # not released yet
    services.grades_release(assignment=assignment, actor=teacher)
    page = client.get(feedback).content.decode()
    assert "这个细节写得好" in page and '<mark class="annotation" data-label="1">一个人' in page
    # A classmate never sees it.
    enroll(graded_essays[1].submission.student, course=assignment.course)
    client.force_login(graded_essays[1].submission.student)
    assert "这个细节写得好" not in client.get(feedback).content.decode()
    client.force_login(teacher)
    client.post(reverse("grading:comment_delete", args=[comment.pk]), **HTMX)
    assert not AnswerComment.objects.exists()
    assert AuditEvent.objects.filter(action="comment.removed").count() == 1


def test_a_comment_needs_words_and_a_real_passage(graded_essays, teacher):
    answer = graded_essays[0]
    with pytest.raises(services.GradeError, match="Write the comment"):
        services.answer_comment_create(
            answer=answer, actor=teacher, start=0, end=2, quote=GOOD[:2], body="  "
        )
    for start, end in ((5, 5), (0, len(GOOD) + 1), (3, 1)):
        with pytest.raises(services.GradeError, match="Select a passage"):
            services.answer_comment_create(
                answer=answer, actor=teacher, start=start, end=end, quote="x", body="好"
            )


def test_the_comment_bank_is_each_teachers_own_searchable_in_both_languages(
    client, teacher, other_teacher, student
):
    client.force_login(teacher)
    save = reverse("grading:comment_bank_save")
    texts = (
        "结构清晰，段落分明。",
        "Vivid details in the second paragraph.",
        "结构清晰，段落分明。",
    )
    for text in texts:
        assert client.post(save, {"text": text}, **HTMX).status_code == 200
    assert CommentBankEntry.objects.filter(owner=teacher).count() == 2  # saved once each
    zh, en = (CommentBankEntry.objects.get(text__startswith=p) for p in ("结构", "Vivid"))
    assert (zh.language, en.language) == ("zh-hans", "en")
    bank = reverse("grading:comment_bank")
    found = client.get(bank, {"q": "段落"}).content.decode()
    assert "结构清晰" in found and "Vivid" not in found
    assert "Vivid" in client.get(bank, {"q": "DETAILS"}).content.decode()  # any case
    only_en = client.get(bank, {"language": "en"}).content.decode()
    assert "Vivid" in only_en and "结构清晰" not in only_en
    assert client.post(reverse("grading:comment_bank_use", args=[en.pk])).status_code == 204
    assert client.get(bank).content.decode().index("Vivid") < client.get(
        bank
    ).content.decode().index("结构清晰")  # the most used first
    # Another teacher neither sees nor touches it; a student has no bank.
    client.force_login(other_teacher)
    assert "结构清晰" not in client.get(bank).content.decode()
    assert client.post(reverse("grading:comment_bank_delete", args=[zh.pk])).status_code == 404
    client.force_login(student)
    assert client.get(bank).status_code == 404
    assert client.post(save, {"text": "x"}).status_code == 404
    client.force_login(teacher)
    client.post(reverse("grading:comment_bank_delete", args=[zh.pk]), **HTMX)
    assert not CommentBankEntry.objects.filter(pk=zh.pk).exists()


def test_the_workspace_offers_the_bank_on_the_review_page(client, graded_essays, teacher):
    services.comment_bank_save(owner=teacher, text="开头扣题。")
    client.force_login(teacher)
    page = client.get(reverse("grading:review", args=[graded_essays[0].pk])).content.decode()
    assert 'data-text="开头扣题。"' in page and 'id="comment-bank"' in page


# --- The pure parts -------------------------------------------------------------------------


class _C:
    def __init__(self, pk: int, start: int, end: int) -> None:
        self.pk, self.start, self.end = pk, start, end


def test_passages_cut_text_at_every_comment_and_number_overlaps():
    text = "abcdefghij"
    runs = passages(text, [_C(1, 2, 6), _C(2, 4, 8), _C(3, 20, 30)])  # the last one is outside
    assert runs == [
        Passage("ab", []),
        Passage("cd", [1]),
        Passage("ef", [1, 2]),
        Passage("gh", [2]),
        Passage("ij", []),
    ]
    assert "".join(r.text for r in runs) == text
    assert passages("", []) == []
    assert passages("ab", []) == [Passage("ab", [])]


def test_level_met_is_the_highest_level_not_above_the_score():
    levels = [{"points": 16}, {"points": 10}, {"points": 0}]
    assert [level_met(levels, p) for p in (20, 16, 15, 10, 9, 0, None)] == [0, 0, 1, 1, 2, 2, None]
    assert level_met([{"points": 5}], 3) is None


def test_level_band_is_what_a_level_covers_with_range_scoring():
    from grading.workspace import level_band

    levels = [{"points": 16}, {"points": 10}, {"points": 0}]
    assert [level_band(levels, i, 20) for i in range(3)] == ["16–20", "10–15", "0–9"]
    assert level_band([{"points": 20}, {"points": 19}], 0, 20) == ""  # one score only


def test_htmx_messages_join_the_triggers_a_view_already_set(rf):
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.http import HttpResponse
    from django_htmx.middleware import HtmxMiddleware

    from courses.middleware import HtmxMessagesMiddleware

    def view(request):
        from django.contrib import messages

        messages.success(request, "保存了")
        response = HttpResponse("<p>x</p>")
        response["HX-Trigger"] = json.dumps({"refresh-list": {"n": 1}})
        return response

    request = rf.post("/x", HTTP_HX_REQUEST="true")
    request.session = {}
    request._messages = FallbackStorage(request)
    response = HtmxMiddleware(HtmxMessagesMiddleware(view))(request)
    header = response["HX-Trigger"]
    assert header.isascii()  # Chinese travels as JSON escapes in a Latin-1 header
    assert json.loads(header) == {
        "refresh-list": {"n": 1},
        "markwise:messages": [{"level": "success", "message": "保存了"}],
    }
