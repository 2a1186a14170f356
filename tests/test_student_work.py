"""Students answer, keep drafts and hand in within the assignment's rules."""

from __future__ import annotations

import datetime

from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from courses.models import LatePolicy, Question, QuestionKind
from grading.models import AnswerStatus, Submission, SubmissionStatus


def post(client, assignment, data):
    return client.post(reverse("assignment_work", args=[assignment.pk]), data)


def test_draft_then_hand_in_queues_grading(
    client, student, assignment, essay_question, django_capture_on_commit_callbacks
):
    choice = Question.objects.create(
        assignment=assignment,
        order=2,
        kind=QuestionKind.SINGLE_CHOICE,
        prompt="?",
        options=[{"key": "A", "text": "a"}, {"key": "B", "text": "b"}],
        answer_key={"correct": ["B"]},
    )
    client.force_login(student)
    page = client.get(reverse("assignment_work", args=[assignment.pk])).content.decode()
    assert essay_question.prompt in page and "参考" not in page  # no reference answer leaks
    post(client, assignment, {f"text-{essay_question.pk}": "草稿", "action": "save"})
    draft = Submission.objects.get(student=student)
    assert (
        draft.status == SubmissionStatus.DRAFT
        and draft.answers.get(question=essay_question).text == "草稿"
    )
    assert "草稿" in client.get(reverse("assignment_work", args=[assignment.pk])).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        final = {f"text-{essay_question.pk}": "终稿", f"choice-{choice.pk}": ["B", "Z"]}
        response = post(client, assignment, {**final, "action": "submit"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == SubmissionStatus.SUBMITTED and draft.submitted_at
    assert draft.answers.get(question=choice).choices == ["B"]  # unknown option dropped
    assert set(draft.answers.values_list("status", flat=True)) == {AnswerStatus.GRADING}
    assert OrmQ.objects.count() == 1


def test_deadline_refused_with_a_clear_message(client, student, assignment, essay_question):
    assignment.due_at = timezone.now() - datetime.timedelta(hours=1)
    assignment.save()
    client.force_login(student)
    response = post(client, assignment, {f"text-{essay_question.pk}": "迟交", "action": "submit"})
    assert response.status_code == 400 and 'role="alert"' in response.content.decode()
    assert not Submission.objects.exists()


def test_late_work_accepted_and_marked(
    client, student, assignment, essay_question, django_capture_on_commit_callbacks
):
    assignment.due_at = timezone.now() - datetime.timedelta(hours=1)
    assignment.late_policy = LatePolicy.ACCEPT
    assignment.save()
    client.force_login(student)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, assignment, {f"text-{essay_question.pk}": "迟交", "action": "submit"})
    assert Submission.objects.get().is_late


def test_attempts_are_limited(
    client, student, assignment, essay_question, django_capture_on_commit_callbacks
):
    client.force_login(student)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, assignment, {f"text-{essay_question.pk}": "一", "action": "submit"})
        again = post(client, assignment, {f"text-{essay_question.pk}": "二", "action": "submit"})
    assert again.status_code == 400 and 'role="alert"' in again.content.decode()
    assert Submission.objects.count() == 1
    assignment.attempts_allowed = 2
    assignment.save()
    with django_capture_on_commit_callbacks(execute=True):
        post(client, assignment, {f"text-{essay_question.pk}": "二", "action": "submit"})
    assert list(Submission.objects.order_by("attempt").values_list("attempt", flat=True)) == [1, 2]


def test_outsiders_cannot_open_or_post(client, outsider, other_teacher, assignment, essay_question):
    for user in (outsider, other_teacher):
        client.force_login(user)
        assert client.get(reverse("assignment_work", args=[assignment.pk])).status_code == 404
        assert post(client, assignment, {"action": "submit"}).status_code == 404
    assert not Submission.objects.exists()
