"""The audit trail tells the truth: every audited action verifies, and every kind of
tampering — an edited event, a deleted one in the middle, the newest ones deleted, the
table emptied, the chain recomputed without the key — is reported by `verify_audit`.

The tampering tests write to the table behind the application's back: with raw SQL on
SQLite, and on PostgreSQL (where a trigger refuses UPDATE and DELETE) as a superuser
with `session_replication_role = replica`, which switches the trigger off.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import io
import json
import re
import zoneinfo
from html.parser import HTMLParser
from importlib import import_module
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse

from courses import rosters
from courses import services as courses
from courses.models import Assignment, AssignmentState, Enrollment, QuestionKind, Role, User
from grading import rubrics, webhooks
from grading import services as grading
from grading.audit import (
    audit_checkpoint_write,
    audit_record,
    audit_verify,
    event_hash,
)
from grading.models import (
    Answer,
    AnswerStatus,
    AuditEvent,
    RegradeRequest,
    WebhookEvent,
    sha256_hex,
)
from grading.services import exemplars

from .conftest import GOOD, make_user

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def verify(*args: str) -> tuple[int, str, str]:
    """`manage.py verify_audit` as an operator runs it: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exit:
        status = int(exit.code or 0)
    return status, out.getvalue(), err.getvalue()


def audited_actions_in_the_code() -> set[str]:
    """Every action name written as a literal next to an audit call in the apps."""
    found = set()
    for path in [*ROOT.glob("courses/**/*.py"), *ROOT.glob("grading/**/*.py")]:
        if "migrations" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        if not re.search(r"\b(audit_record|audit_record_many|_audit)\(", source):
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"[a-z]+\.[a-z_]+", node.value)
                and not node.value.startswith(("grading.", "courses."))  # model labels
            ):
                found.add(node.value)
    return found


class _FormFields(HTMLParser):
    """The values a browser would post from each form with method=post on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self._fields: dict[str, str] | None = None
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "").lower() == "post":
            self._fields = {}
            self.forms.append(self._fields)
        fields, name = self._fields, a.get("name")
        if fields is None:
            return
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    fields[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "file"):
                fields[name] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""
        elif tag == "select" and name:
            self._select = name
            fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            fields[self._select] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._fields is not None and self._textarea:
            self._fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._fields = None


def form_fields(html: str) -> dict[str, str]:
    """The biggest form on the page (an admin page also has the log-out form)."""
    parser = _FormFields()
    parser.feed(html)
    return max(parser.forms, key=len)


# --- Every audited action, then verify ----------------------------------------------------


def test_every_audited_action_leaves_an_intact_trail(
    client, fake_llm, teacher, student, other_student, admin_user, course, settings
):
    settings.DEBUG = False  # the admin behaves as in production
    now = datetime.datetime.now(SHANGHAI)  # microseconds included, as a form's value may be

    # The course and its people.
    courses.course_update(course=course, actor=teacher, term="2026秋季（上）")
    courses.course_archive(course=course, actor=teacher)
    courses.course_archive(course=course, actor=teacher, archived=False)
    other = courses.course_create(actor=teacher, title="选修课", code="OPT-1", term="2026")
    helper = make_user("helper")
    courses.enrollment_add(course=other, identifier="helper", role=Role.TA, actor=teacher)
    courses.enrollment_end(
        enrollment=Enrollment.objects.get(course=other, user=helper), actor=teacher
    )
    rosters.roster_import(
        course=course,
        text="username,name,email,student_number\nr1,欧阳娜娜,,20260201\nr2,司马光,,20260202\n",
        actor=teacher,
    )
    r1, r2 = User.objects.get(username="r1"), User.objects.get(username="r2")
    rosters.student_password_reset(course=course, student=r2, actor=teacher)
    hook = webhooks.webhook_subscription_create(
        course=course,
        url="https://hooks.school.example/in",
        event_types=WebhookEvent.values[:1],
        actor=teacher,
    )
    webhooks.webhook_subscription_delete(subscription=hook, actor=teacher)

    # A rubric built, edited and copied.
    rubric = rubrics.rubric_create(owner=teacher, actor=teacher, title="作文", language="zh-hans")
    rubrics.criterion_add(rubric=rubric, actor=teacher, title="内容切题", max_points=20)
    rubrics.criterion_add(rubric=rubric, actor=teacher, title="结构", max_points=10)
    rubrics.criterion_add(rubric=rubric, actor=teacher, title="多余", max_points=5)
    content, structure, spare = rubric.criteria.order_by("order")
    rubrics.level_add(criterion=content, actor=teacher, points=16, descriptor="切题")
    rubrics.level_add(criterion=content, actor=teacher, points=8, descriptor="偏题")
    rubrics.level_update(level=content.levels.get(points=8), actor=teacher, descriptor="部分偏题")
    rubrics.level_delete(level=content.levels.get(points=8), actor=teacher)
    rubrics.criterion_update(criterion=structure, actor=teacher, description="段落清楚")
    rubrics.criterion_move(criterion=structure, offset=-1, actor=teacher)
    rubrics.criterion_delete(criterion=spare, actor=teacher)
    rubrics.rubric_update(rubric=rubric, actor=teacher, description="期中用")
    rubrics.rubric_copy(source=rubric, owner=teacher, actor=teacher, title="作文（副本）")

    # An assignment with dates, its questions, edits, published.
    assignment = courses.assignment_create(
        course=course,
        actor=teacher,
        title="期中作文",
        due_at=now + datetime.timedelta(days=2),
        attempts_allowed=2,
    )
    courses.assignment_update(
        assignment=assignment, actor=teacher, due_at=now + datetime.timedelta(days=3, hours=1)
    )
    essay = courses.question_create(
        assignment=assignment,
        kind=QuestionKind.ESSAY,
        actor=teacher,
        prompt="以“那一刻，我长大了”为题写一篇记叙文。",
        rubric=rubric,
        reference_answer="围绕具体的成长瞬间展开。",
    )
    choice = courses.question_create(
        assignment=assignment,
        kind=QuestionKind.SINGLE_CHOICE,
        actor=teacher,
        prompt="《背影》的作者？",
        options=[{"key": "A", "text": "朱自清"}, {"key": "B", "text": "鲁迅"}],
        answer_key={"correct": ["B"]},
        points=2,
    )
    spare_question = courses.question_create(
        assignment=assignment,
        kind=QuestionKind.EXACT_TEXT,
        actor=teacher,
        prompt="删掉我",
        answer_key={"accepted": ["x"]},
    )
    courses.question_move(question=choice, offset=-1, actor=teacher)
    courses.question_delete(question=spare_question, actor=teacher)
    courses.assignment_set_state(
        assignment=assignment, state=AssignmentState.PUBLISHED, actor=teacher
    )

    # Hand-ins, and grading (a model reply, an answer key, a crash to manual grading).
    for who, text in ((student, GOOD), (other_student, GOOD + "第二篇。"), (r1, GOOD + "三")):
        grading.submission_save(
            assignment=assignment,
            student=who,
            responses={essay.pk: (text, []), choice.pk: ("", ["A"])},
            hand_in=True,
        )
    grading.submission_save(
        assignment=assignment,
        student=r2,
        responses={essay.pk: ("没写完", []), choice.pk: ("", ["B"])},
        hand_in=True,
    )
    answers = Answer.objects.filter(submission__assignment=assignment)
    crashed = answers.get(submission__student=r2, question=essay)
    grading.answers_mark_failed(answer_ids=[crashed.pk], reason="worker lost")
    grading.answers_grade(
        answer_ids=list(answers.exclude(pk=crashed.pk).values_list("pk", flat=True))
    )
    # A key correction rescores the choice answers (an edit with side effects).
    courses.question_update(question=choice, actor=teacher, answer_key={"correct": ["A"]})
    grading.assignment_grade(assignment=assignment, actor=teacher)  # the queued tasks' work:
    grading.answers_grade(
        answer_ids=list(answers.filter(status=AnswerStatus.GRADING).values_list("pk", flat=True))
    )

    # Review: approve, override, bulk approve; release; regrade; hide.
    mine = answers.get(submission__student=student, question=essay)
    theirs = answers.get(submission__student=other_student, question=essay)
    grading.grade_approve(answer=mine, actor=teacher)
    # An inline comment on a passage of the answer, and its removal.
    comment = grading.answer_comment_create(
        answer=mine, actor=teacher, start=0, end=3, quote=GOOD[:3], body="开头点题"
    )
    grading.answer_comment_delete(comment=comment, actor=teacher)
    # The approved answer pinned as an exemplar for calibration, then back to its default.
    exemplars.exemplar_choose(answer=mine, actor=teacher, choice="pinned")
    exemplars.exemplar_choose(answer=mine, actor=teacher, choice="default")
    first = theirs.current_assessment.scores.order_by("criterion__order").first()
    grading.grade_approve(
        answer=theirs, actor=teacher, scores={first.criterion_id: 3}, reason="偏题"
    )
    criteria = {c["id"]: 4 for c in rubric_snapshot(crashed)}
    grading.grade_approve(answer=crashed, actor=teacher, scores=criteria, reason="人工评分")
    graded = answers.filter(status=AnswerStatus.GRADED).values_list("pk", flat=True)
    grading.grades_bulk_approve(answer_ids=graded, actor=teacher, include_flagged=graded)
    grading.grades_release(assignment=assignment, actor=teacher)
    grading.regrade_request_create(
        answer=Answer.objects.get(pk=mine.pk), student=student, comment="第二段被忽略了"
    )
    grading.regrade_request_answer(
        request=RegradeRequest.objects.get(),
        actor=teacher,
        response="复核后加分",
        scores={first.criterion_id: 9},
        reason="复核",
    )
    grading.grades_hide(assignment=assignment, actor=teacher)

    # The rubric has scored answers now: an edit makes version 2, then a regrade with it.
    edit = rubrics.criterion_update(criterion=content, actor=teacher, max_points=25)
    rubrics.rubric_regrade_outdated(rubric=edit.rubric, assignment=assignment, actor=teacher)
    courses.assignment_set_state(assignment=assignment, state=AssignmentState.CLOSED, actor=teacher)

    # A change in Django admin, with a date.
    client.force_login(admin_user)
    url = reverse("admin:courses_assignment_change", args=[assignment.pk])
    data = form_fields(client.get(url).content.decode())
    data.update({"due_at_0": "2026-12-24", "due_at_1": "18:30:00", "title": "期中作文（改）"})
    response = client.post(url, data)
    assert response.status_code == 302, [
        response.context["adminform"].form.errors,
        [f.formset.errors for f in response.context["inline_admin_formsets"]],
    ]
    assert Assignment.objects.get(pk=assignment.pk).title == "期中作文（改）"

    recorded = set(AuditEvent.objects.values_list("action", flat=True))
    missing = audited_actions_in_the_code() - recorded
    assert not missing, f"audited in the code but not exercised by this test: {missing}"
    assert {"assignment.published", "assignment.closed"} <= recorded
    assert AuditEvent.objects.filter(actor=admin_user).exists()
    assert AuditEvent.objects.filter(after__has_key="due_at").count() >= 2

    status, out, err = verify()
    assert status == 0, err
    assert out.startswith(f"Audit chain intact: {AuditEvent.objects.count()} events.")
    # And against a checkpoint of it.
    assert audit_checkpoint_write() is not None
    report = audit_verify()
    assert report.ok and report.checkpoints == 1 and report.covered == report.checked


def rubric_snapshot(answer: Answer) -> list[dict]:
    from grading.selectors import grading_rubric

    return grading_rubric(answer=Answer.objects.get(pk=answer.pk))["criteria"]


def test_a_due_date_no_longer_reads_as_an_edit(course, teacher):
    """The false alarm: the hash covered str(datetime), the row holds ISO text."""
    due = datetime.datetime(2026, 11, 3, 9, 30, 15, 123456, tzinfo=SHANGHAI)
    courses.assignment_create(course=course, actor=teacher, title="有截止时间", due_at=due)
    event = AuditEvent.objects.get(action="assignment.created")
    assert event.after["due_at"] == "2026-11-03T09:30:15.123+08:00"  # as the encoder stores it
    assert audit_verify().ok


@pytest.mark.parametrize(
    "value",
    [
        {"n": 1e16, "m": -0.0, "f": 0.1, "big": 2**70, "tiny": 1.5e-07},
        {"d": datetime.date(2026, 1, 2), "t": datetime.time(8, 0, 1, 5000)},
        {"decimal": decimal.Decimal("12.50"), 3: "int key"},
        {"text": "换行\n和\u2028和 emoji 😀", "nested": [[{"a": None}]]},
    ],
    ids=["numbers", "dates", "decimal-and-int-key", "text"],
)
def test_values_hash_as_the_database_returns_them(value, course, teacher):
    audit_record(actor=teacher, action="course.updated", target=course, after=value)
    assert audit_verify().ok


# --- Tampering, on SQLite --------------------------------------------------------------

sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="PostgreSQL's trigger refuses this (see below)"
)


@pytest.fixture
def trail(course, teacher):
    """Ten events, the first eight covered by a checkpoint."""
    events = [
        audit_record(actor=teacher, action="course.updated", target=course, after={"n": i})
        for i in range(8)
    ]
    audit_checkpoint_write()
    events += [
        audit_record(actor=None, action="course.updated", target=course, after={"n": i})
        for i in (8, 9)
    ]
    assert verify()[0] == 0
    return events


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def assert_broken(at: int | None, *words: str) -> str:
    status, out, err = verify()
    assert status == 1, out
    first = err.strip().splitlines()[0]
    if at is not None:
        assert first.startswith(f"Audit chain broken at event {at}:"), first
    for word in words:
        assert word in first, first
    return first


def rechain_from(first: AuditEvent, *, edit_after: dict | None = None) -> None:
    """What an attacker with write access and this code base does: change an event, then
    recompute the hash of it and of every later event with the app's own function — with
    the audit key they have, which is not the server's."""
    prev = AuditEvent.objects.filter(pk__lt=first.pk).order_by("-id").first()
    prev_hash = prev.hash if prev else AuditEvent.GENESIS_HASH
    with override_settings(AUDIT_KEY="an attacker's guess at the audit key, 40+ chars"):
        for event in AuditEvent.objects.filter(pk__gte=first.pk).order_by("id"):
            if event.pk == first.pk and edit_after is not None:
                event.after = edit_after
            event.prev_hash = prev_hash
            event.hash = prev_hash = event_hash(event)
            raw(
                "UPDATE grading_auditevent SET after = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [
                    json.dumps(event.after),
                    event.prev_hash,
                    event.hash,
                    event.pk,
                ],
            )


@sqlite_only
def test_an_edited_event_is_reported(trail):
    raw("UPDATE grading_auditevent SET reason = 'forged' WHERE id = %s", [trail[3].pk])
    assert_broken(trail[3].pk, "content does not match its hash")


@sqlite_only
def test_a_deleted_middle_event_is_reported(trail):
    raw("DELETE FROM grading_auditevent WHERE id = %s", [trail[3].pk])
    assert_broken(trail[4].pk, "previous hash does not match")


@sqlite_only
def test_deleted_newest_events_are_reported(trail):
    raw("DELETE FROM grading_auditevent WHERE id >= %s", [trail[6].pk])
    assert_broken(trail[7].pk, "missing", "counted 8 events", "the trail has 6")


@sqlite_only
def test_an_emptied_table_is_reported(trail):
    raw("DELETE FROM grading_auditevent")  # SQLite's TRUNCATE
    assert_broken(trail[7].pk, "missing", "the trail has 0")


@sqlite_only
def test_a_chain_recomputed_without_the_key_is_reported(trail):
    rechain_from(trail[2], edit_after={"n": 99})
    assert_broken(trail[2].pk, "content does not match its hash", "without the audit key")


@sqlite_only
def test_events_after_the_newest_checkpoint_are_only_as_safe_as_the_chain(trail):
    """The documented limit: deleting events newer than every checkpoint goes unseen."""
    raw("DELETE FROM grading_auditevent WHERE id >= %s", [trail[8].pk])
    status, out, _ = verify()
    assert status == 0 and "Audit chain intact: 8 events." in out


# --- Tampering, on PostgreSQL (the trigger switched off, as a superuser can) -------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="session_replication_role is PostgreSQL's"
)


def behind_the_trigger(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params or [])
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


@postgresql_only
@pytest.mark.parametrize(
    "kind", ["edit", "delete middle", "delete newest", "truncate", "recompute"]
)
def test_tampering_past_the_trigger_is_reported(trail, kind):
    if kind == "edit":
        behind_the_trigger(
            "UPDATE grading_auditevent SET reason = 'forged' WHERE id = %s", [trail[3].pk]
        )
        assert_broken(trail[3].pk, "content does not match its hash")
    elif kind == "delete middle":
        behind_the_trigger("DELETE FROM grading_auditevent WHERE id = %s", [trail[3].pk])
        assert_broken(trail[4].pk, "previous hash does not match")
    elif kind == "delete newest":
        behind_the_trigger("DELETE FROM grading_auditevent WHERE id >= %s", [trail[6].pk])
        assert_broken(trail[7].pk, "missing", "the trail has 6")
    elif kind == "truncate":
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # check the deferred actor keys first
        raw("TRUNCATE grading_auditevent")  # no row trigger fires on TRUNCATE
        assert_broken(trail[7].pk, "missing", "the trail has 0")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            rechain_from(trail[2], edit_after={"n": 99})
        finally:
            raw("SET session_replication_role = DEFAULT")
        assert_broken(trail[2].pk, "content does not match its hash")


# --- Checkpoints ------------------------------------------------------------------------


def test_a_checkpoint_is_written_every_n_events_after_the_commit(
    course, teacher, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_CHECKPOINT_EVERY = 3
    directory = Path(settings.AUDIT_CHECKPOINT_DIR)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(2):
            audit_record(actor=teacher, action="course.updated", target=course, after={"n": i})
    assert not directory.exists()  # 2 events: no multiple of 3 crossed yet
    with django_capture_on_commit_callbacks(execute=True):
        grading_events = [
            {"action": "answer.needs_manual", "target_type": "grading.answer", "target_id": i}
            for i in range(5)
        ]
        from grading.audit import audit_record_many

        audit_record_many(grading_events)  # events 3..7: crosses 3 and 6
    [file] = directory.glob("checkpoints-*.jsonl")
    lines = file.read_text().splitlines()
    assert len(lines) == 1 and '"count": 7' in lines[0]
    report = audit_verify()
    assert report.ok and report.covered == 7 == report.checked


def test_the_schedule_writes_only_when_there_is_something_new(course, teacher, settings):
    from django.apps import apps
    from django_q.models import Schedule

    # What migration 0009 registers (run again: a flushed test database has lost it).
    migration = import_module("grading.migrations.0009_audit_keyed_chain")
    migration.schedule_checkpoints(apps, None)
    schedule = Schedule.objects.get(func="grading.audit.audit_checkpoint_write")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 5
    assert audit_checkpoint_write() is None  # nothing to vouch for yet
    audit_record(actor=teacher, action="course.updated", target=course)
    assert audit_checkpoint_write() is not None
    assert audit_checkpoint_write() is None  # unchanged since the last one
    audit_record(actor=teacher, action="course.updated", target=course)
    assert audit_checkpoint_write().count == 2


def test_a_copy_kept_elsewhere_is_read_with_checkpoints_path(trail, settings, tmp_path):
    [file] = Path(settings.AUDIT_CHECKPOINT_DIR).glob("*.jsonl")
    copy = tmp_path / "offsite.jsonl"
    copy.write_bytes(file.read_bytes())
    file.unlink()  # whoever emptied the table would delete the local store too
    status, out, _ = verify()
    assert status == 0 and "No checkpoints of this database" in out
    status, out, _ = verify("--checkpoints", str(copy))
    assert status == 0 and "covers 8 of the 10 events" in out
    assert "deleting them would not show" in out


def test_a_forged_checkpoint_is_reported(trail, settings):
    [file] = Path(settings.AUDIT_CHECKPOINT_DIR).glob("*.jsonl")
    file.write_text(file.read_text().replace('"count": 8', '"count": 5'))
    assert_broken(None, "wrong signature")


def test_checkpoints_of_another_database_are_ignored(trail, course, monkeypatch):
    # Staging shares the directory: its checkpoint (of a longer trail) is signed with the
    # same key but names its own database, so it neither vouches for nor accuses this one.
    # (Its eleventh event is one this database rolls back.)
    with monkeypatch.context() as patch, pytest.raises(RuntimeError), transaction.atomic():
        patch.setattr("grading.audit.database_label", lambda using="default": "postgresql:staging")
        audit_record(actor=None, action="course.updated", target=course, after={"n": 10})
        assert audit_checkpoint_write().count == 11
        raise RuntimeError("roll back")
    status, out, err = verify()
    assert status == 0, err
    assert "1 checkpoints of other databases there were ignored" in out


def test_write_checkpoint_command(course, teacher, settings):
    audit_record(actor=teacher, action="course.updated", target=course)
    status, out, _ = verify("--write-checkpoint")
    assert status == 0 and "Checkpoint written to" in out and "1 events up to event" in out
    status, out, _ = verify("--write-checkpoint")
    assert "No new checkpoint" in out
    status, out, _ = verify()
    assert "Checked against 1 signed checkpoints" in out


def test_another_audit_key_cannot_verify_the_trail(trail):
    with override_settings(AUDIT_KEY="a different key of at least thirty-two chars"):
        assert_broken(trail[0].pk, "content does not match its hash")


def test_the_key_defaults_to_one_derived_from_secret_key(course, teacher, settings):
    settings.AUDIT_KEY = ""
    audit_record(actor=teacher, action="course.updated", target=course)
    assert audit_verify().ok
    settings.SECRET_KEY = "another secret key entirely, long enough for django"
    assert not audit_verify().ok


# --- Events from before the key: the upgrade ---------------------------------------------


def record_the_old_way(*, actor: User | None, target, after: dict | None = None) -> AuditEvent:
    """What audit_record did before the keyed chain: an unkeyed SHA-256 over the content,
    datetimes as str(), while the row stores them through the JSON encoder."""
    prev = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event = AuditEvent(
        actor=actor,
        actor_label=getattr(actor, "username", "") or "system",
        action="assignment.updated",
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        after=after,
        prev_hash=prev or AuditEvent.GENESIS_HASH,
        hash_version=AuditEvent.HASH_LEGACY_SHA256,
    )
    content = {
        "created_at": event.created_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "assignment_id": None,
        "submission_id": None,
        "before": None,
        "after": after,
        "reason": "",
        "request_id": "",
        "prev_hash": event.prev_hash,
    }
    event.hash = sha256_hex(content)
    event.save()
    return event


@pytest.fixture
def old_events(assignment, teacher):
    """A trail written before the upgrade: whole-second and fractional due dates."""
    return [
        record_the_old_way(actor=teacher, target=assignment, after={"title": "期中"}),
        record_the_old_way(
            actor=teacher,
            target=assignment,
            after={"due_at": datetime.datetime(2026, 11, 3, 9, 30, tzinfo=SHANGHAI)},
        ),
        record_the_old_way(
            actor=None,
            target=assignment,
            after={"due_at": datetime.datetime(2026, 11, 4, 9, 30, 1, 250_000, tzinfo=SHANGHAI)},
        ),
        record_the_old_way(actor=teacher, target=assignment, after=None),
    ]


def run_the_upgrade_seal() -> None:
    from types import SimpleNamespace

    from django.apps import apps

    migration = import_module("grading.migrations.0009_audit_keyed_chain")
    migration.seal_existing_events(apps, SimpleNamespace(connection=connection))


def test_the_upgrade_seals_old_events_and_the_keyed_chain_follows(old_events, course, teacher):
    run_the_upgrade_seal()
    assert audit_checkpoint_write() is None  # the schedule does not seal them again
    new = audit_record(actor=teacher, action="course.updated", target=course)
    assert new.prev_hash == old_events[-1].hash and new.seq == 5
    status, out, err = verify()
    assert status == 0, err
    assert "Audit chain intact: 5 events." in out
    assert "4 events are from before the audit key (unkeyed hashes), sealed on" in out
    # Only the fractional datetime defeats the old rule; whole seconds are recomputed.
    assert f"1 of them do not reproduce their old hash (events {old_events[2].pk})" in out


def test_old_events_without_a_seal_are_reported_until_sealed(old_events, course, teacher):
    audit_record(actor=teacher, action="course.updated", target=course)
    assert_broken(old_events[-1].pk, "no signed seal", "--write-checkpoint")
    status, out, err = verify("--write-checkpoint")
    assert status == 0, err
    assert "sealing the 4 events from before the audit key" in out
    assert verify()[0] == 0


@sqlite_only
def test_an_old_event_edited_after_the_seal_is_reported(old_events):
    run_the_upgrade_seal()
    raw("UPDATE grading_auditevent SET reason = 'forged' WHERE id = %s", [old_events[1].pk])
    assert_broken(None, "do not match their seal")


@sqlite_only
def test_a_keyed_event_rewritten_with_the_old_rule_is_reported(old_events, course, teacher):
    """Downgrading an event to the unkeyed rule (no key needed) is not a way round."""
    run_the_upgrade_seal()
    audit_record(actor=teacher, action="course.updated", target=course)
    last = audit_record(actor=teacher, action="course.updated", target=course, after={"n": 1})
    raw("DELETE FROM grading_auditevent WHERE id = %s", [last.pk])
    forged = record_the_old_way(actor=teacher, target=course, after={"n": 2})
    assert forged.prev_hash == last.prev_hash  # a well-formed link, by the old rule
    assert_broken(forged.pk, "old unkeyed hash after keyed events")
