"""Handing in through the API: students for themselves, school systems for their students,
and every kind of bad input a 400 with field messages — never a 500, never half a hand-in."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from courses.models import Assignment, AssignmentState, Enrollment, Question, QuestionKind, Role
from grading.models import Answer, AuditEvent, Submission

from .api_support import *  # noqa: F403
from .api_support import Api, problem
from .conftest import make_user


def _path(assignment: Assignment) -> str:
    return f"/api/v1/assignments/{assignment.pk}/submissions/"


@pytest.fixture
def hand_in(assignment: Assignment, essay_question: Question, choice_question: Question) -> Any:
    def send(api: Api, answers: Any, **extra: Any) -> Any:
        return api.post(_path(assignment), {"answers": answers, **extra})

    return send


def test_a_student_hands_in_and_the_answers_are_queued(
    student: Any, assignment: Any, essay_question: Any, choice_question: Any, hand_in: Any
) -> None:
    response = hand_in(
        Api(user=student),
        [
            {"question": essay_question.pk, "text": "那一刻，我长大了。"},
            {"question": choice_question.pk, "text": "a, b"},
        ],
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"/api/v1/submissions/{body['id']}/"
    assert body["status"] == "submitted" and body["student"]["username"] == "student"
    answers = {a["question"]: a for a in body["answers"]}
    assert answers[choice_question.pk]["choices"] == ["A", "B"]
    assert answers[essay_question.pk]["text"] == "那一刻，我长大了。"
    assert {a["status"] for a in body["answers"]} == {"grading"}


@pytest.mark.parametrize(
    ("text", "choices"),
    [("B", ["B"]), ("A,B", ["A", "B"]), ("AB", ["A", "B"]), ("b、a", ["B", "A"]), ("地点", ["B"])],
)
def test_choice_answers_take_keys_or_an_options_text(
    student: Any, choice_question: Any, hand_in: Any, text: str, choices: list[str]
) -> None:
    response = hand_in(Api(user=student), [{"question": choice_question.pk, "text": text}])
    assert response.status_code == 201, response.content
    assert Answer.objects.get(question=choice_question).choices == choices


def test_a_key_hands_in_a_transcribed_paper_for_a_student_by_student_number(
    course: Any, assignment: Any, essay_question: Any, make_key: Any, hand_in: Any
) -> None:
    pupil = make_user("zhangsan", name="张三", student_number="20260117")
    Enrollment.objects.create(course=course, user=pupil, role=Role.STUDENT)
    response = hand_in(
        Api(key=make_key(courses=[course], scopes=["submit"])),
        [{"question": essay_question.pk, "text": "纸质答卷的转录。"}],
        student="20260117",
    )
    assert response.status_code == 201, response.content
    submission = Submission.objects.get()
    assert submission.student == pupil
    event = AuditEvent.objects.get(action="submission.submitted")
    assert event.actor_label.startswith("api-key-")  # the key handed in, not the student


def test_a_key_hands_in_only_for_current_students_of_its_course(
    course: Any,
    other_course: Any,
    assignment: Any,
    essay_question: Any,
    make_key: Any,
    hand_in: Any,
    student: Any,
) -> None:
    elsewhere = make_user("elsewhere")
    Enrollment.objects.create(course=other_course, user=elsewhere, role=Role.STUDENT)
    api = Api(key=make_key(courses=[course], scopes=["submit"]))
    answers = [{"question": essay_question.pk, "text": "x"}]
    assert "student" in problem(hand_in(api, answers, student="elsewhere"), 400)["errors"]
    assert "student" in problem(hand_in(api, answers), 400)["errors"]
    Enrollment.objects.filter(user=student).update(ended_at=timezone.now())
    assert "student" in problem(hand_in(api, answers, student="student"), 400)["errors"]
    assert not Submission.objects.exists()


def test_a_student_cannot_hand_in_for_someone_else(
    student: Any, other_student: Any, essay_question: Any, hand_in: Any
) -> None:
    response = hand_in(
        Api(user=student), [{"question": essay_question.pk, "text": "x"}], student="other_student"
    )
    assert "student" in problem(response, 400, "validation-error")["errors"]
    assert not Submission.objects.exists()


def test_nul_bytes_are_removed_by_the_shared_text_rule(
    student: Any, essay_question: Any, hand_in: Any
) -> None:
    response = hand_in(Api(user=student), [{"question": essay_question.pk, "text": "a\x00b\x07c"}])
    assert response.status_code == 201, response.content
    assert Answer.objects.get(question=essay_question).text == "abc"


def test_an_oversize_answer_is_a_field_error_and_nothing_is_saved(
    settings: Any, student: Any, essay_question: Any, hand_in: Any
) -> None:
    settings.ANSWER_MAX_CHARS = 100
    response = hand_in(Api(user=student), [{"question": essay_question.pk, "text": "长" * 101}])
    body = problem(response, 400, "validation-error")
    assert "at most 100" in " ".join(body["errors"]["answers.0.text"]) or body["errors"]
    assert not Submission.objects.exists()


@pytest.mark.parametrize(
    "bad_id", ["abc", "²", "１２", True, 1.5, -1, 0, 10**30, "99999999999999999999999", None]
)
def test_question_ids_that_are_not_ids_are_field_errors(
    student: Any, essay_question: Any, hand_in: Any, bad_id: Any
) -> None:
    response = hand_in(Api(user=student), [{"question": bad_id, "text": "x"}])
    assert "answers.0.question" in problem(response, 400, "validation-error")["errors"]


def test_unknown_questions_and_another_assignments_questions_are_refused(
    course: Any, student: Any, assignment: Any, essay_question: Any, hand_in: Any
) -> None:
    other = Assignment.objects.create(
        course=course, title="另一份", state=AssignmentState.PUBLISHED
    )
    foreign = Question.objects.create(assignment=other, kind=QuestionKind.NUMERIC, prompt="1+1")
    response = hand_in(
        Api(user=student),
        [
            {"question": essay_question.pk, "text": "x"},
            {"question": foreign.pk, "text": "2"},
            {"question": 987654321, "text": "?"},
            {"question": essay_question.pk, "text": "again"},
        ],
    )
    errors = problem(response, 400)["errors"]
    assert set(errors) == {"answers.1.question", "answers.2.question", "answers.3.question"}
    assert not Submission.objects.exists()


def test_options_that_do_not_exist_are_named(
    student: Any, choice_question: Any, hand_in: Any
) -> None:
    response = hand_in(Api(user=student), [{"question": choice_question.pk, "text": "A, E"}])
    message = problem(response, 400)["errors"]["answers.0.text"][0]
    assert "E" in message and "A, B, C" in message


@pytest.mark.parametrize(
    "body",
    [{}, {"answers": "x"}, {"answers": [{"question": 1}]}, [], "text", {"answers": [None]}],
)
def test_malformed_bodies_are_field_errors(student: Any, assignment: Any, body: Any) -> None:
    response = Api(user=student).post(_path(assignment), body)
    assert problem(response, 400, "validation-error")["errors"]


def test_not_json_is_a_400_and_a_form_is_a_415(student: Any, assignment: Any) -> None:
    api = Api(user=student)
    problem(api.post(_path(assignment), b"{not json"), 400, "malformed-request")
    response = api.client.post(_path(assignment), {"answers": "x"}, headers=api.headers)
    problem(response, 415, "unsupported-media-type")


def test_a_closed_assignment_refuses_with_its_reason(
    student: Any, assignment: Any, essay_question: Any, hand_in: Any
) -> None:
    assignment.state = AssignmentState.CLOSED
    assignment.save()
    body = problem(hand_in(Api(user=student), [{"question": essay_question.pk, "text": "x"}]), 400)
    assert "closed" in body["detail"]


def test_a_past_deadline_refuses(
    student: Any, assignment: Any, essay_question: Any, hand_in: Any
) -> None:
    assignment.due_at = timezone.now() - datetime.timedelta(minutes=1)
    assignment.save()
    body = problem(hand_in(Api(user=student), [{"question": essay_question.pk, "text": "x"}]), 400)
    assert "deadline" in body["detail"]


def test_an_unpublished_assignment_is_not_found_by_students_and_refused_for_keys(
    course: Any, student: Any, assignment: Any, essay_question: Any, make_key: Any, hand_in: Any
) -> None:
    assignment.state = AssignmentState.DRAFT
    assignment.save()
    answers = [{"question": essay_question.pk, "text": "x"}]
    problem(hand_in(Api(user=student), answers), 404)
    key = Api(key=make_key(courses=[course], scopes=["submit"]))
    assert "not open" in problem(hand_in(key, answers, student="student"), 400)["detail"]
    assert not Submission.objects.exists()


def test_attempts_run_out(student: Any, assignment: Any, essay_question: Any, hand_in: Any) -> None:
    api = Api(user=student)
    assert hand_in(api, [{"question": essay_question.pk, "text": "1"}]).status_code == 201
    body = problem(hand_in(api, [{"question": essay_question.pk, "text": "2"}]), 400)
    assert "attempt" in body["detail"]


def test_a_body_over_the_limit_is_a_413(
    settings: Any, student: Any, essay_question: Any, hand_in: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = hand_in(Api(user=student), [{"question": essay_question.pk, "text": "长" * 2000}])
    problem(response, 413, "request-too-large")
    assert not Submission.objects.exists()


@pytest.mark.parametrize("path", ["abc", "99999999999999999999999", "-1", "%C2%B2"])
def test_ids_in_paths_that_are_not_ids_are_404s(teacher: Any, path: str) -> None:
    problem(Api(user=teacher).get(f"/api/v1/assignments/{path}/"), 404, "not-found")


def test_questions_left_out_are_handed_in_blank(
    student: Any, essay_question: Any, choice_question: Any, hand_in: Any
) -> None:
    assert (
        hand_in(Api(user=student), [{"question": essay_question.pk, "text": "x"}]).status_code
        == 201
    )
    assert Answer.objects.get(question=choice_question).choices == []
