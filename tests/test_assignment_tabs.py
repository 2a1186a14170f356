"""One assignment, four tabs: Setup, Grading, Review and Audit link its teacher pages."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from courses.models import Enrollment, Role
from grading.models import Submission, SubmissionStatus

from .conftest import make_user

# (tab label, url name, page title suffix)
TABS = [
    ("Setup", "teach:assignment", "Setup"),
    ("Grading", "grading:assignment", "Grading"),
    ("Review", "grading:queue", "Review"),
    ("Audit", "grading:audit", "Audit"),
]


class _Tabs(HTMLParser):
    """The links of the assignment's tab bar: (label, href, aria-current), and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str | None]] = []
        self.title = ""
        self._in_tabs = self._in_title = False
        self._link: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "nav" and "tabs" in (attributes.get("class") or "").split():
            self._in_tabs = True
        elif tag == "a" and self._in_tabs:
            self._link = attributes
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_tabs = False
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            href, current = self._link["href"] or "", self._link.get("aria-current")
            self.links.append((data.strip(), href, current))
            self._link = None
        elif self._in_title:
            self.title += data


def tabs(client, url: str, language: str = "en") -> _Tabs:
    response = client.get(url, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, url
    parsed = _Tabs()
    parsed.feed(response.content.decode())
    return parsed


@pytest.fixture
def ta(course):
    user = make_user("ta", name="助教")
    Enrollment.objects.create(course=course, user=user, role=Role.TA)
    return user


@pytest.mark.parametrize("label,name,suffix", TABS, ids=[t[0] for t in TABS])
def test_a_teacher_sees_every_tab_with_this_page_current(
    client, teacher, assignment, label, name, suffix
):
    client.force_login(teacher)
    page = tabs(client, reverse(name, args=[assignment.pk]))
    assert page.links == [
        (tab, reverse(url, args=[assignment.pk]), "page" if tab == label else None)
        for tab, url, _ in TABS
    ]
    assert page.title.split(" · ")[:2] == [assignment.title, suffix]


@pytest.mark.parametrize("label,name,suffix", TABS[1:], ids=[t[0] for t in TABS[1:]])
def test_a_ta_grades_but_sees_no_setup_tab(client, ta, assignment, label, name, suffix):
    client.force_login(ta)
    page = tabs(client, reverse(name, args=[assignment.pk]))
    assert [(tab, current) for tab, _, current in page.links] == [
        (tab, "page" if tab == label else None) for tab, _, _ in TABS[1:]
    ]
    assert client.get(reverse("teach:assignment", args=[assignment.pk])).status_code == 404


def test_one_submissions_audit_marks_no_tab(client, teacher, student, assignment):
    submission = Submission.objects.create(
        assignment=assignment,
        student=student,
        status=SubmissionStatus.SUBMITTED,
        submitted_at=timezone.now(),
    )
    client.force_login(teacher)
    page = tabs(client, reverse("grading:submission_audit", args=[submission.pk]))
    assert [tab for tab, _, _ in page.links] == [tab for tab, _, _ in TABS]
    assert not [current for _, _, current in page.links if current]


def test_tabs_in_chinese(client, teacher, assignment):
    client.force_login(teacher)
    page = tabs(client, reverse("grading:audit", args=[assignment.pk]), language="zh-hans")
    assert [tab for tab, _, _ in page.links] == ["设置", "评分", "审核", "审计"]
    assert page.title.startswith(f"{assignment.title} · 审计")
