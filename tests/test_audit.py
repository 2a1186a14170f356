"""The audit trail is append-only and hash-chained; tampering is detected."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse

from grading.audit import RequestIdMiddleware, audit_record, audit_verify
from grading.models import AppendOnlyError, AuditEvent


@pytest.fixture
def events(course, teacher):
    return [
        audit_record(actor=teacher, action="course.update", target=course, after={"n": i})
        for i in range(3)
    ] + [audit_record(actor=None, action="grading.assessed", target=course, reason="系统")]


def test_events_chain_and_verify(events):
    assert events[0].prev_hash == AuditEvent.GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert events[-1].actor_label == "system"
    report = audit_verify()
    assert report.ok and report.checked == 4


def test_model_refuses_update_and_delete(events):
    event = AuditEvent.objects.get(pk=events[0].pk)
    event.reason = "edited"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="edited")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL refuses the edit itself")
def test_raw_sql_tampering_is_detected(events, capsys):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE grading_auditevent SET reason = %s WHERE id = %s", ["forged", events[1].pk]
        )
    report = audit_verify()
    assert not report.ok and report.broken_at == events[1].pk
    with pytest.raises(SystemExit):
        call_command("verify_audit")
    assert f"event {events[1].pk}" in capsys.readouterr().err


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL refuses the delete itself")
def test_raw_sql_deletion_is_detected(events):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM grading_auditevent WHERE id = %s", [events[1].pk])
    report = audit_verify()
    assert report.broken_at == events[2].pk


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigger exists on PostgreSQL")
def test_postgresql_trigger_refuses_update_and_delete(events):
    for sql in (
        "UPDATE grading_auditevent SET reason = 'forged' WHERE id = %s",
        "DELETE FROM grading_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [events[1].pk])
    assert audit_verify().ok


def test_verify_audit_command_reports_ok(events, capsys):
    call_command("verify_audit")
    assert "4 events" in capsys.readouterr().out


def test_request_id_is_recorded(rf, teacher, course):
    def view(request):
        audit_record(actor=teacher, action="course.update", target=course)
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(rf.get("/", HTTP_X_REQUEST_ID="req-123"))
    assert response["X-Request-ID"] == "req-123"
    assert AuditEvent.objects.get().request_id == "req-123"

    RequestIdMiddleware(view)(rf.get("/"))
    generated = AuditEvent.objects.order_by("-id").first().request_id
    assert len(generated) == 32 and generated != "req-123"
