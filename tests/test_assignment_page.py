"""The teacher's assignment page: counts by status, Grade with AI, live progress."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from grading import services
from grading.models import AnswerStatus

from .conftest import submit


@pytest.fixture
def handed_in(assignment, essay_question, student, other_student):
    submit(assignment, student, {essay_question: "那一刻，我长大了。我第一次自己做饭。"})
    submit(assignment, other_student, {essay_question: ""})
    return assignment


def urls(assignment):
    return [
        reverse("grading:assignment", args=[assignment.pk]),
        reverse("grading:progress", args=[assignment.pk]),
    ]


def test_only_the_courses_teachers_may_open_it(
    client, handed_in, teacher, student, other_teacher, outsider
):
    for url in urls(handed_in):
        assert client.get(url).status_code == 302  # anonymous: to the login page
        for user, status in ((teacher, 200), (student, 404), (other_teacher, 404), (outsider, 404)):
            client.force_login(user)
            assert client.get(url).status_code == status, (user, url)
            client.logout()
    client.force_login(student)
    grade_url = reverse("grading:grade", args=[handed_in.pk])
    assert client.post(grade_url).status_code == 404
    assert OrmQ.objects.count() == 0


def test_counts_and_labelled_scorer(client, handed_in, teacher, no_llm):
    client.force_login(teacher)
    page = client.get(reverse("grading:assignment", args=[handed_in.pk]), HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert "Offline rule engine" in html  # never passed off as a model
    assert 'max="2" value="0"' in html and "Grade with AI" in html
    assert 'hx-trigger="every 2s"' in html  # submitted work is waiting: keep polling


def test_grade_with_ai_queues_and_polling_stops_when_done(
    client, handed_in, teacher, no_llm, django_capture_on_commit_callbacks
):
    client.force_login(teacher)
    grade_url = reverse("grading:grade", args=[handed_in.pk])
    with django_capture_on_commit_callbacks(execute=True):
        fragment = client.post(grade_url, HTTP_HX_REQUEST="true").content.decode()
    assert OrmQ.objects.count() == 1
    assert 'id="grading-progress"' in fragment and "<html" not in fragment  # a partial
    assert 'hx-trigger="every 2s"' in fragment and "disabled" in fragment
    # The cluster's work, done in-process here.
    ids = list(handed_in.submissions.values_list("answers__pk", flat=True))
    services.answers_grade(answer_ids=ids)
    progress = client.get(reverse("grading:progress", args=[handed_in.pk])).content.decode()
    assert 'max="2" value="2"' in progress
    assert "every 2s" not in progress  # done: the region stops polling
    assert set(handed_in.submissions.values_list("answers__status", flat=True)) == {
        AnswerStatus.GRADED
    }


def test_teacher_home_links_to_the_assignment(client, handed_in, teacher):
    client.force_login(teacher)
    html = client.get(reverse("home")).content.decode()
    assert reverse("grading:assignment", args=[handed_in.pk]) in html
