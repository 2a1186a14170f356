"""Every admin page an administrator uses loads; history stays read-only."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from grading.audit import audit_record
from grading.models import Assessment, AuditEvent, FinalGrade


@pytest.fixture
def demo_school(db, settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())


def _admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_changelist_and_change_page_loads(client, admin_user, demo_school):
    client.force_login(admin_user)
    assert client.get(reverse("admin:index")).status_code == 200
    for model, model_admin in admin.site._registry.items():
        changelist = client.get(_admin_url(model, "changelist"))
        assert changelist.status_code == 200, model
        search = client.get(_admin_url(model, "changelist"), {"q": "作文"})
        assert search.status_code == 200, model
        obj = model.objects.first()
        if obj is not None:
            assert client.get(_admin_url(model, "change", obj.pk)).status_code == 200, model
        if model_admin.has_add_permission(_request_for(admin_user)):
            assert client.get(_admin_url(model, "add")).status_code == 200, model


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


@pytest.mark.parametrize("model", [AuditEvent, Assessment, FinalGrade])
def test_history_is_read_only_for_superusers(client, admin_user, course, model):
    client.force_login(admin_user)
    model_admin = admin.site._registry[model]
    request = _request_for(admin_user)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert client.get(_admin_url(model, "add")).status_code == 403


def test_audit_event_cannot_be_deleted_through_admin(client, admin_user, course):
    event = audit_record(actor=admin_user, action="course.update", target=course)
    client.force_login(admin_user)
    assert client.get(_admin_url(AuditEvent, "change", event.pk)).status_code == 200
    response = client.post(_admin_url(AuditEvent, "delete", event.pk), {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_rubric_admin_edits_criteria_inline(client, admin_user, rubric):
    client.force_login(admin_user)
    page = client.get(_admin_url(type(rubric), "change", rubric.pk)).content.decode()
    assert "内容切题" in page and "书写规范" in page


def test_admin_changes_are_audited(client, admin_user, assignment):
    from grading.models import AuditEvent

    client.force_login(admin_user)
    url = _admin_url(type(assignment), "change", assignment.pk)
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        {
            "title": "期中作文（修订）",
            "course": assignment.course.pk,
            "due_at_0": "2026-12-01",
            "due_at_1": "08:00:00",
            "questions-TOTAL_FORMS": "0",
            "questions-INITIAL_FORMS": "0",
        }
    )
    data.pop("due_at", None)
    data.pop("grades_released_at", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="admin.assignment.changed")
    assert event.actor == admin_user and event.after["title"] == "期中作文（修订）"
    assert event.assignment_id == assignment.pk
