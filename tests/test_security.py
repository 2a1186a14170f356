"""Browser-side hardening: the Content-Security-Policy and what the pages may contain under
it; anonymous grading kept on every page a grader sees."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from courses.models import Enrollment, Role
from grading import services
from grading.audit import audit_record
from grading.models import Answer, RegradeRequest, Submission, SubmissionStatus

from .conftest import GOOD, make_user

# --- Content-Security-Policy -------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [d.strip().split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


class _InlineCode(HTMLParser):
    """Everything in a page that a strict policy would block: inline scripts and styles
    without the response's nonce, event-handler attributes, style attributes, javascript:
    links."""

    DATA_TYPES = ("application/json", "application/ld+json")

    def __init__(self, nonce: str | None) -> None:
        super().__init__()
        self.nonce = nonce
        self.problems: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if name == "style":
                self.problems.append(f"<{tag} style=...>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}=javascript:...>")
            if name.startswith("hx-on"):
                self.problems.append(f"<{tag} {name}> (htmx evaluates it as code)")
        if tag == "script":
            self.scripts.append(attributes)
            inline = not attributes.get("src") and attributes.get("type") not in self.DATA_TYPES
            if inline and (self.nonce is None or attributes.get("nonce") != self.nonce):
                self.problems.append("<script> inline without the nonce")
        if tag == "style" and (self.nonce is None or attributes.get("nonce") != self.nonce):
            self.problems.append("<style> without the nonce")


def inline_code(response) -> list[str]:
    nonces = re.findall(r"'nonce-([^']+)'", response.get("Content-Security-Policy", ""))
    parser = _InlineCode(nonces[0] if nonces else None)
    parser.feed(response.content.decode())
    return parser.problems


@pytest.fixture
def school(client, teacher, student, assignment, essay_question, rubric, no_llm):
    """One of everything, so that each main page has content to render."""
    submission = Submission.objects.create(
        assignment=assignment,
        student=student,
        status=SubmissionStatus.SUBMITTED,
        submitted_at=timezone.now(),
    )
    answer = Answer.objects.create(
        submission=submission, question=essay_question, text=GOOD, status="needs_manual"
    )
    return {"submission": submission, "answer": answer}


def _main_pages(school, assignment, course, rubric, essay_question):
    teacher_pages = [
        reverse("home"),
        reverse("teach:courses"),
        reverse("teach:course", args=[course.pk]),
        reverse("teach:roster_import", args=[course.pk]),
        reverse("teach:assignment", args=[assignment.pk]),
        reverse("teach:assignment_edit", args=[assignment.pk]),
        reverse("teach:assignment_preview", args=[assignment.pk]),
        reverse("teach:question_edit", args=[essay_question.pk]),
        reverse("grading:assignment", args=[assignment.pk]),
        reverse("grading:queue", args=[assignment.pk]),
        reverse("grading:review", args=[school["answer"].pk]),
        reverse("grading:audit", args=[assignment.pk]),
        reverse("grading:submission_audit", args=[school["submission"].pk]),
        reverse("grading:rubrics"),
        reverse("grading:rubric", args=[rubric.pk]),
    ]
    student_pages = [
        reverse("home"),
        reverse("assignment_work", args=[assignment.pk]),
        reverse("assignment_feedback", args=[assignment.pk]),
        reverse("password_change"),
    ]
    return teacher_pages, student_pages


def test_every_page_carries_a_strict_policy(
    client, school, teacher, student, assignment, course, rubric, essay_question
):
    teacher_pages, student_pages = _main_pages(school, assignment, course, rubric, essay_question)
    responses = [client.get(reverse("login"))]
    client.force_login(teacher)
    responses += [client.get(url) for url in teacher_pages]
    client.force_login(student)
    responses += [client.get(url) for url in student_pages]
    for response in responses:
        assert response.status_code == 200, response.wsgi_request.path
        rules = policy(response)
        assert rules["default-src"] == ["'self'"]
        for directive in ("script-src", "style-src"):
            sources = rules.get(directive, rules["default-src"])
            assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
            assert "*" not in sources and "https:" not in sources
        assert rules["object-src"] == ["'none'"] and rules["frame-ancestors"] == ["'none'"]
        assert rules["base-uri"] == ["'none'"] and rules["form-action"] == ["'self'"]


def test_main_pages_have_no_inline_code(
    client, school, teacher, student, assignment, course, rubric, essay_question
):
    teacher_pages, student_pages = _main_pages(school, assignment, course, rubric, essay_question)
    found: dict[str, list[str]] = {}
    for user, urls in (
        (None, [reverse("login")]),
        (teacher, teacher_pages),
        (student, student_pages),
    ):
        client.logout()
        if user is not None:
            client.force_login(user)
        for url in urls:
            problems = inline_code(client.get(url))
            if problems:
                found[url] = problems
    # The roster import's result page, with its print button.
    client.force_login(teacher)
    result = client.post(
        reverse("teach:roster_import", args=[course.pk]),
        {"csv_text": "username,name\nnew.pupil,新同学\n", "action": "import"},
    )
    assert "initial-passwords" in result.content.decode()
    if problems := inline_code(result):
        found["roster result"] = problems
    assert not found, found


def test_the_checker_catches_what_a_strict_policy_blocks():
    """The page check above is real: each kind of inline code is reported."""

    class Page:
        def __init__(self, html: str, nonce: str = "abc") -> None:
            self.content = html.encode()
            self._header = f"default-src 'self'; script-src 'self' 'nonce-{nonce}'"

        def get(self, name: str, default: str = "") -> str:
            return self._header if name == "Content-Security-Policy" else default

    assert inline_code(Page('<script src="/static/x.js"></script>')) == []
    assert inline_code(Page('<script nonce="abc">go()</script>')) == []
    assert inline_code(Page('<script type="application/json">{}</script>')) == []
    for markup in (
        "<script>go()</script>",
        '<script nonce="other">go()</script>',
        '<select onchange="this.form.submit()"></select>',
        '<p style="color:red"></p>',
        "<style>p{}</style>",
        '<a href="javascript:go()">x</a>',
        '<button hx-on:click="go()"></button>',
    ):
        assert inline_code(Page(markup)), markup


def test_htmx_does_not_inject_its_indicator_style(client, teacher, assignment):
    """htmx adds a <style> element for its request indicator unless told not to; the
    policy would block it, so the indicator rules live in our stylesheet instead."""
    client.force_login(teacher)
    page = client.get(reverse("grading:assignment", args=[assignment.pk])).content.decode()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'", page)
    assert config is not None
    settings = json.loads(html.unescape(config.group(1)))
    assert settings["includeIndicatorStyles"] is False and settings["allowEval"] is False
    css = Path(finders.find("css/markwise.css")).read_text(encoding="utf-8")
    assert ".htmx-indicator" in css and ".htmx-request .htmx-indicator" in css


def test_inline_handlers_became_data_attributes_the_script_handles(client, teacher, course):
    """What used to be onchange/onclick/onsubmit is now declared with data- attributes, and
    the one site script (loaded on every page) handles each of them."""
    script = Path(finders.find("js/markwise.js")).read_text(encoding="utf-8")
    for hook in ("data-autosubmit", "data-confirm", "data-print", "data-preview"):
        assert f"[{hook}]" in script, hook
    client.force_login(teacher)
    page = client.get(reverse("home")).content.decode()
    assert 'src="/static/js/markwise.js"' in page and "data-autosubmit" in page


# --- Anonymous grading: one label on every page a grader sees ----------------------------


@pytest.fixture
def anonymous_work(assignment, essay_question, course, no_llm, django_capture_on_commit_callbacks):
    """A pupil with a distinctive username hands in through the service (so the audit trail
    records them as the actor) and asks for a regrade."""
    assignment.anonymous_grading = True
    assignment.save(update_fields=["anonymous_grading"])
    pupil = make_user("li.ming.2031", name="李小明")
    Enrollment.objects.create(course=course, user=pupil, role=Role.STUDENT)
    draft = Submission.objects.create(assignment=assignment, student=pupil)
    answer = Answer.objects.create(submission=draft, question=essay_question, text=GOOD)
    with django_capture_on_commit_callbacks(execute=False):
        services.submission_submit(submission=draft, actor=pupil)
    RegradeRequest.objects.create(answer=answer, student=pupil, comment="请再看看第二段")
    audit_record(
        actor=pupil,
        action="regrade.requested",
        target=answer,
        reason="请再看看第二段",
        assignment_id=assignment.pk,
        submission_id=draft.pk,
    )
    return draft


def test_graders_see_one_anonymous_label_everywhere(client, teacher, assignment, anonymous_work):
    submission = anonymous_work
    answer = submission.answers.get()
    label = submission.label_for_graders(assignment)
    assert label == f"Student #{submission.pk}"
    client.force_login(teacher)
    pages = {
        "queue": reverse("grading:queue", args=[assignment.pk]),
        "review": reverse("grading:review", args=[answer.pk]),
        "assignment audit": reverse("grading:audit", args=[assignment.pk]),
        "submission audit": reverse("grading:submission_audit", args=[submission.pk]),
    }
    for name, url in pages.items():
        page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "li.ming.2031" not in page and "李小明" not in page, name
        assert label in page, name
    audit = client.get(pages["submission audit"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert audit.count(label) >= 3  # the heading and both of the pupil's own events
    # The export is how teachers record grades: it keeps names on purpose.
    export = client.get(reverse("grading:export", args=[assignment.pk])).content.decode()
    assert "li.ming.2031" in export


def test_names_show_when_grading_is_not_anonymous(client, teacher, assignment, anonymous_work):
    assignment.anonymous_grading = False
    assignment.save(update_fields=["anonymous_grading"])
    client.force_login(teacher)
    queue = client.get(reverse("grading:queue", args=[assignment.pk])).content.decode()
    assert "李小明" in queue
    audit = client.get(
        reverse("grading:submission_audit", args=[anonymous_work.pk])
    ).content.decode()
    assert "李小明" in audit and "li.ming.2031" in audit
