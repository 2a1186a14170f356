"""Assignment and Grade Services: hand-in, release and hide reach the loopback platform's
line item with a client-credentials token obtained by a signed client assertion."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.utils.module_loading import import_string
from django_q.models import Schedule

from grading import services
from grading.models import FinalGrade
from lti import hooks, keys, passback
from lti.models import Passback, PassbackStatus, PlatformUser, ResourceLink

from .lti_platform import LIS, LoopbackPlatform, launch_via_oidc, registered_platform


@pytest.fixture
def client(client):
    # Pages before a launch follow the browser's language; these tests read English.
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def lms(db) -> Iterator[LoopbackPlatform]:
    platform = next(registered_platform_iter := registered_platform())
    platform.tool_jwks = keys.jwks()  # the platform verifies client assertions with it
    yield platform
    next(registered_platform_iter, None)


@pytest.fixture
def tasks(monkeypatch) -> list[tuple[Any, ...]]:
    """django-q2 tasks the LTI code enqueues, run in-process at once (recorded too)."""
    ran: list[tuple[Any, ...]] = []

    def run_now(func: str, *args: Any) -> None:
        ran.append((func, *args))
        import_string(func)(*args)

    monkeypatch.setattr(hooks, "async_task", run_now)
    monkeypatch.setattr(passback, "async_task", run_now)
    return ran


@pytest.fixture
def placed(client, lms, teacher, assignment, essay_question):
    """The assignment placed in the LMS course: the teacher launched and linked it; the
    student `s1` launched it too."""
    launch_via_oidc(client, lms, sub="t1", roles=(LIS + "Instructor",))
    link = ResourceLink.objects.get()
    assignment.course = link.context.course
    assignment.save()
    essay_question.refresh_from_db()
    link.assignment = assignment
    link.save()
    client.logout()
    response, _t, _q = launch_via_oidc(client, lms, sub="s1")
    assert response["Location"] == f"/assignments/{assignment.pk}/"
    return link


def _lms_user(sub: str):
    return PlatformUser.objects.get(sub=sub).user


def _hand_in(placed, django_capture_on_commit_callbacks):
    student = _lms_user("s1")
    question = placed.assignment.questions.get()
    with django_capture_on_commit_callbacks(execute=True):
        submission = services.submission_save(
            assignment=placed.assignment,
            student=student,
            responses={question.pk: ("春天来了，花开了。我喜欢春天。", [])},
            hand_in=True,
        )
    return student, submission


def test_hand_in_release_and_hide_reach_the_platform_gradebook(
    lms, placed, tasks, no_llm, grade_now, django_capture_on_commit_callbacks
):
    teacher = _lms_user("t1")
    student, submission = _hand_in(placed, django_capture_on_commit_callbacks)
    assert ("lti.tasks.passback_plan", placed.assignment_id, [student.pk]) in tasks
    # No line item came with the launch: one was created for the assignment, then scored.
    [item] = lms.lineitems
    assert item["resourceId"] == str(placed.assignment_id)
    assert item["scoreMaximum"] == placed.assignment.questions.get().max_points
    [pending] = lms.scores()
    assert pending["userId"] == "s1"
    assert (pending["activityProgress"], pending["gradingProgress"]) == (
        "Submitted",
        "PendingManual",
    )
    assert "scoreGiven" not in pending

    [answer] = submission.answers.all()
    grade_now([answer])
    answer.refresh_from_db()
    services.grade_approve(answer=answer, actor=teacher)
    with django_capture_on_commit_callbacks(execute=True):
        services.grades_release(assignment=placed.assignment, actor=teacher)
    graded = lms.scores()[-1]
    final = FinalGrade.objects.get(answer=answer)
    assert graded["scoreGiven"] == final.points
    assert graded["scoreMaximum"] == final.max_points
    assert (graded["activityProgress"], graded["gradingProgress"]) == ("Completed", "FullyGraded")
    assert graded["comment"]
    row = Passback.objects.get()
    assert row.status == PassbackStatus.SENT
    assert row.sent_score["scoreGiven"] == final.points

    with django_capture_on_commit_callbacks(execute=True):
        services.grades_hide(assignment=placed.assignment, actor=teacher)
    hidden = lms.scores()[-1]
    assert hidden["gradingProgress"] == "PendingManual" and "scoreGiven" not in hidden

    # Three sends, one access token: cached until it expires. The platform accepted it
    # only after verifying the tool's signed client assertion against /lti/jwks/.
    assert len(lms.tokens_issued) == 1
    assert lms.tokens_issued[0]["iss"] == lms.client_id
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in lms.tokens_issued[0]["scope"]


def test_failed_passback_retries_then_fails_visibly_and_can_be_sent_again(
    client, lms, placed, tasks, django_capture_on_commit_callbacks
):
    lms.fail_next = 10
    _hand_in(placed, django_capture_on_commit_callbacks)
    row = Passback.objects.get()
    assert row.status == PassbackStatus.QUEUED and row.attempts == 1
    assert "503" in row.message
    assert Schedule.objects.filter(func="lti.tasks.passback_send").count() == 1
    for _ in range(passback.MAX_ATTEMPTS - 1):
        passback.passback_send(passback_id=row.pk)
    row.refresh_from_db()
    assert row.status == PassbackStatus.FAILED

    client.force_login(_lms_user("t1"))
    page = client.get(f"/lti/assignments/{placed.assignment_id}/passback/")
    assert page.status_code == 200
    assert b"platform busy" in page.content
    lms.fail_next = 0
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/lti/passbacks/{row.pk}/retry/")
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.status == PassbackStatus.SENT


def test_passback_page_is_for_the_course_teachers_only(client, placed, teacher):
    # `teacher` teaches another course; s1 is a student of this one.
    for user in (teacher, _lms_user("s1")):
        client.force_login(user)
        assert client.get(f"/lti/assignments/{placed.assignment_id}/passback/").status_code == 404


def test_grading_tab_links_to_the_passback_page_only_when_placed(client, lms, placed, tasks):
    # The Grading tab of a placed assignment shows the link, and it opens the page.
    client.force_login(_lms_user("t1"))
    page = client.get(f"/grading/assignments/{placed.assignment_id}/")
    passback_url = f"/lti/assignments/{placed.assignment_id}/passback/"
    assert page.status_code == 200
    assert f'href="{passback_url}"'.encode() in page.content
    assert client.get(passback_url).status_code == 200

    # Unplaced (the link now opens nothing here): no link on the tab.
    ResourceLink.objects.update(assignment=None)
    page = client.get(f"/grading/assignments/{placed.assignment_id}/")
    assert page.status_code == 200
    assert passback_url.encode() not in page.content
    assert b'id="lti-passback-link"' not in page.content


def test_lti_passback_command_resends(lms, placed, tasks, django_capture_on_commit_callbacks):
    _hand_in(placed, django_capture_on_commit_callbacks)
    before = len(lms.scores())
    out = io.StringIO()
    call_command("lti_passback", "--assignment", str(placed.assignment_id), stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "sent=1 retrying=0 failed=0"
    assert len(lms.scores()) == before + 1


def test_a_grade_changed_after_release_reaches_the_platform(
    lms, placed, tasks, no_llm, grade_now, django_capture_on_commit_callbacks
):
    teacher = _lms_user("t1")
    _student, submission = _hand_in(placed, django_capture_on_commit_callbacks)
    [answer] = submission.answers.all()
    grade_now([answer])
    services.grade_approve(answer=answer, actor=teacher)
    with django_capture_on_commit_callbacks(execute=True):
        services.grades_release(assignment=placed.assignment, actor=teacher)
    first = lms.scores()[-1]["scoreGiven"]

    # A regrade (or a correction) after release: the LMS gradebook follows.
    grade = FinalGrade.objects.get(answer=answer)
    criterion = grade.criteria.first()
    new_points = 0 if criterion.points else criterion.max_points
    with django_capture_on_commit_callbacks(execute=True):
        services.grade_approve(
            answer=answer,
            actor=teacher,
            scores={criterion.criterion_id: new_points},
            reason="second look",
            expected_version=grade.version,
        )
    latest = lms.scores()[-1]
    assert latest["scoreGiven"] == FinalGrade.objects.get(answer=answer).points != first
    assert latest["gradingProgress"] == "FullyGraded"
