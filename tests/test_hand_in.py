"""Handing in: a closed assignment takes no work, and a double click hands in once (and
asks for a regrade once).

The concurrency tests need a database that runs two writers at once; they are skipped
on SQLite (whose test database serialises every transaction anyway) and run on
PostgreSQL in CI.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from courses.models import AssignmentState, Enrollment, Role
from grading.models import (
    Answer,
    AnswerStatus,
    AuditEvent,
    RegradeRequest,
    Submission,
    SubmissionStatus,
)
from grading.services import SubmissionError, regrade_request_create, submission_save

from .conftest import make_user, submit

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs two concurrent writers (PostgreSQL)"
)


def work_url(assignment) -> str:
    return reverse("assignment_work", args=[assignment.pk])


def token_in(html: str) -> str:
    match = re.search(r'name="hand_in_token" value="([0-9a-f]{32})"', html)
    assert match, "the work form carries a hand-in token"
    return match.group(1)


# --- Closed means closed ----------------------------------------------------------------


@pytest.mark.parametrize(
    "state, words", [(AssignmentState.CLOSED, "closed"), (AssignmentState.DRAFT, "not open")]
)
@pytest.mark.parametrize("hand_in", [True, False])
def test_only_a_published_assignment_takes_work(
    student, assignment, essay_question, state, words, hand_in
):
    assignment.state = state
    assignment.save()
    with pytest.raises(SubmissionError, match=words):
        submission_save(
            assignment=assignment,
            student=student,
            responses={essay_question.pk: ("我的作文", [])},
            hand_in=hand_in,
        )
    assert not Submission.objects.exists()


def test_closing_while_the_student_types_keeps_their_text(
    client, student, teacher, assignment, essay_question
):
    client.force_login(student)
    token = token_in(client.get(work_url(assignment)).content.decode())
    assignment.state = AssignmentState.CLOSED  # the teacher closes it meanwhile
    assignment.save()
    typed = "我写了一个小时的作文 <b>不要丢</b>"
    response = client.post(
        work_url(assignment),
        {f"text-{essay_question.pk}": typed, "action": "submit", "hand_in_token": token},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert 'role="alert"' in html and "This assignment is closed" in html
    assert "我写了一个小时的作文 &lt;b&gt;不要丢&lt;/b&gt;" in html  # shown back, escaped
    assert 'value="submit"' not in html  # nothing to press any more
    assert not Submission.objects.exists()


def test_a_closed_assignment_shows_the_saved_draft_read_only(
    client, student, assignment, essay_question
):
    submission_save(
        assignment=assignment, student=student, responses={essay_question.pk: ("草稿一段", [])}
    )
    assignment.state = AssignmentState.CLOSED
    assignment.save()
    client.force_login(student)
    response = client.get(work_url(assignment), HTTP_ACCEPT_LANGUAGE="zh-hans")
    html = response.content.decode()
    assert response.status_code == 200
    assert "此作业已关闭" in html and "草稿一段" in html and "readonly" in html
    assert 'value="save"' not in html and 'value="submit"' not in html


def test_the_teachers_preview_of_a_draft_shows_the_open_form(
    client, teacher, assignment, essay_question
):
    assignment.state = AssignmentState.DRAFT
    assignment.save()
    client.force_login(teacher)
    html = client.get(
        reverse("teach:assignment_preview", args=[assignment.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "not open yet" not in html and "readonly" not in html
    assert 'value="submit"' in html  # as students will see it, the button disabled


def test_the_service_reads_the_state_at_hand_in_not_the_callers_copy(
    student, assignment, essay_question
):
    stale = type(assignment).objects.get(pk=assignment.pk)
    type(assignment).objects.filter(pk=assignment.pk).update(state=AssignmentState.CLOSED)
    with pytest.raises(SubmissionError, match="closed"):
        submission_save(
            assignment=stale,
            student=student,
            responses={essay_question.pk: ("x", [])},
            hand_in=True,
        )


# --- A double click hands in once --------------------------------------------------------


def test_double_post_of_one_form_hands_in_once(
    client, student, assignment, essay_question, django_capture_on_commit_callbacks
):
    assignment.attempts_allowed = 2
    assignment.save()
    client.force_login(student)
    token = token_in(client.get(work_url(assignment)).content.decode())
    data = {f"text-{essay_question.pk}": "终稿", "action": "submit", "hand_in_token": token}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(work_url(assignment), data, HTTP_ACCEPT_LANGUAGE="en")
        second = client.post(work_url(assignment), data, HTTP_ACCEPT_LANGUAGE="en")
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    handed = Submission.objects.get()
    assert handed.attempt == 1 and handed.status == SubmissionStatus.SUBMITTED
    assert AuditEvent.objects.filter(action="submission.submitted").count() == 1
    # Both requests tell the student the same thing.
    page = client.get(first["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.count("Handed in.") == 2


def test_a_new_form_is_a_new_attempt(client, student, assignment, essay_question):
    assignment.attempts_allowed = 2
    assignment.save()
    client.force_login(student)
    for text in ("第一次", "第二次"):
        token = token_in(client.get(work_url(assignment)).content.decode())
        client.post(
            work_url(assignment),
            {f"text-{essay_question.pk}": text, "action": "submit", "hand_in_token": token},
        )
    attempts = Submission.objects.order_by("attempt")
    assert [s.attempt for s in attempts] == [1, 2]
    assert [s.answers.get().text for s in attempts] == ["第一次", "第二次"]


def test_a_replayed_form_never_touches_a_later_attempt(student, assignment, essay_question):
    assignment.attempts_allowed = 3
    assignment.save()
    first = submission_save(
        assignment=assignment,
        student=student,
        responses={essay_question.pk: ("一", [])},
        hand_in=True,
        hand_in_token="a" * 32,
    )
    submission_save(
        assignment=assignment,
        student=student,
        responses={essay_question.pk: ("二", [])},
        hand_in=True,
        hand_in_token="b" * 32,
    )
    replay = submission_save(
        assignment=assignment,
        student=student,
        responses={essay_question.pk: ("一", [])},
        hand_in=True,
        hand_in_token="a" * 32,
    )
    assert replay.pk == first.pk and Submission.objects.count() == 2
    # An old page edited and handed in again (the back button) is neither lost silently
    # nor a new attempt: the student is told to reload, and their text stays on the page.
    with pytest.raises(SubmissionError, match="already handed in"):
        submission_save(
            assignment=assignment,
            student=student,
            responses={essay_question.pk: ("一, edited", [])},
            hand_in=True,
            hand_in_token="a" * 32,
        )
    assert Submission.objects.count() == 2
    assert [s.answers.get().text for s in Submission.objects.order_by("attempt")] == ["一", "二"]


def test_a_token_is_per_student(student, other_student, assignment, essay_question):
    token = "c" * 32
    mine = submission_save(
        assignment=assignment,
        student=student,
        responses={essay_question.pk: ("mine", [])},
        hand_in=True,
        hand_in_token=token,
    )
    theirs = submission_save(
        assignment=assignment,
        student=other_student,
        responses={essay_question.pk: ("theirs", [])},
        hand_in=True,
        hand_in_token=token,
    )
    assert mine.pk != theirs.pk and theirs.student == other_student


def test_a_malformed_token_is_ignored_not_stored(client, student, assignment, essay_question):
    client.force_login(student)
    response = client.post(
        work_url(assignment),
        {f"text-{essay_question.pk}": "x", "action": "submit", "hand_in_token": "'; drop --"},
    )
    assert response.status_code == 302
    assert Submission.objects.get().hand_in_token == ""


# --- Two requests at the same moment (PostgreSQL) ----------------------------------------


def _race(calls: list) -> list:
    """Run the calls in threads released together; each result or exception, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except Exception as exc:  # the test inspects what each request met
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_simultaneous_hand_ins_of_one_form_use_one_attempt(assignment, essay_question):
    assignment.attempts_allowed = 2
    assignment.save()
    for round_ in range(8):  # the race is timing-dependent; a few rounds meet it reliably
        student = make_user(f"racer{round_}")

        def hand_in(student=student, round_=round_):
            return submission_save(
                assignment=assignment,
                student=student,
                responses={essay_question.pk: (f"终稿 {round_}", [])},
                hand_in=True,
                hand_in_token=f"{round_:032x}",
            )

        results = _race([hand_in, hand_in])
        assert all(isinstance(r, Submission) for r in results), results
        assert results[0].pk == results[1].pk
        assert Submission.objects.filter(student=student).count() == 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_simultaneous_hand_ins_without_a_token_never_fail_with_500(assignment, essay_question):
    for round_ in range(8):
        student = make_user(f"racer{round_}")

        def hand_in(student=student):
            with translation.override("en"):  # the language is per thread
                return submission_save(
                    assignment=assignment,
                    student=student,
                    responses={essay_question.pk: ("终稿", [])},
                    hand_in=True,
                )

        results = _race([hand_in, hand_in])
        handed = [r for r in results if isinstance(r, Submission)]
        refused = [r for r in results if isinstance(r, SubmissionError)]
        # One hand-in; the other request is told the only attempt is used (no IntegrityError).
        assert len(handed) == 1 and len(refused) == 1, results
        assert "every attempt" in str(refused[0])
        assert Submission.objects.filter(student=student).count() == 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_simultaneous_double_click_over_http_shows_both_the_same_result(assignment, essay_question):
    student = make_user("clicker")
    Enrollment.objects.create(course=assignment.course, user=student, role=Role.STUDENT)
    clients = [Client(HTTP_ACCEPT_LANGUAGE="en"), Client(HTTP_ACCEPT_LANGUAGE="en")]
    for c in clients:
        c.force_login(student)
    token = token_in(clients[0].get(work_url(assignment)).content.decode())
    data = {f"text-{essay_question.pk}": "终稿", "action": "submit", "hand_in_token": token}
    responses = _race([lambda c=c: c.post(work_url(assignment), data) for c in clients])
    assert [r.status_code for r in responses] == [302, 302], responses
    assert responses[0]["Location"] == responses[1]["Location"] == work_url(assignment)
    assert Submission.objects.get().status == SubmissionStatus.SUBMITTED


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_simultaneous_regrade_requests_make_one(assignment, essay_question):
    type(assignment).objects.filter(pk=assignment.pk).update(grades_released_at=timezone.now())
    for round_ in range(8):
        student = make_user(f"asker{round_}")
        answer = submit(assignment, student, {essay_question: "作文"}).answers.get()
        Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.APPROVED)

        def ask(answer=answer, student=student):
            return regrade_request_create(answer=answer, student=student, comment="请再看看")

        results = _race([ask, ask])
        assert all(isinstance(r, RegradeRequest) for r in results), results
        assert results[0].pk == results[1].pk
