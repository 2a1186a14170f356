"""Django admin: administrators see everything, and admin is no back door.

History — submissions, answers, scoring runs, criterion scores, final grades, regrade
requests, snapshots and the audit trail — is read-only here, superusers included: grades
change only through the review pages, which audit every change. Rubrics, criteria and
levels change through `grading.rubrics`, as on the teachers' pages: the same validation,
a new version when a rubric that has scored answers changes, the same audit events.
`courses/admin.py` does the same for enrollments, assignments and questions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from courses.models import User

from . import rubrics, webhooks
from .api.keys import api_key_create, api_key_revoke
from .audit import audit_record
from .models import (
    Answer,
    ApiKey,
    ApiScope,
    Assessment,
    AuditEvent,
    Criterion,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    Level,
    RegradeRequest,
    Rubric,
    Snapshot,
    Submission,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise as StrPromise  # gettext_lazy's type

# A service's refusal, kept for the second pass of the request that caused it.
_refusals: WeakKeyDictionary[HttpRequest, ValidationError] = WeakKeyDictionary()


def adopt(obj: models.Model, saved: models.Model) -> None:
    """Give the object admin's form built the identity and values of the row a service saved.

    Admin goes on using its own object after `save_model` — for the redirect, the log entry
    and the inlines' foreign key — so it must become that row (a created one, or the new
    version a change landed on)."""
    obj.__dict__.update(saved.__dict__)


def actor_of(request: HttpRequest) -> User:
    """The administrator acting: admin pages are for signed-in staff (AdminSite checks)."""
    return cast(User, request.user)


def _add_refusal(form: forms.BaseForm, refusal: ValidationError) -> None:
    errors = refusal.error_dict if hasattr(refusal, "error_dict") else {None: refusal.error_list}
    for name, messages_ in errors.items():
        form.add_error(name if name in form.fields else None, messages_)


class ServiceAdmin(admin.ModelAdmin):
    """An admin whose saves and deletes call services.

    Admin validates the forms first and saves afterwards, so a rule only a service knows
    (the course's last teacher, a question students answered, a level above its
    criterion's maximum) refuses during the save. Then everything the save wrote is rolled
    back and the page comes back as posted, with the service's reason: never half a save,
    never a 500.
    """

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as refusal:
            # Admin saves inside transaction.atomic: nothing of this save remains. The
            # second pass validates the same POST, now failing with the refusal, and
            # renders the form as the administrator filled it in.
            _refusals[request] = refusal
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        refusal = _refusals.get(request)
        if refusal is None:
            return form

        def clean(self: forms.ModelForm) -> Any:
            cleaned = form.clean(self)
            _add_refusal(self, refusal)
            return cleaned

        return type(form.__name__, (form,), {"clean": clean})

    # Said when a change lands on another row than the page's (a rubric's new version).
    moved_message: str | StrPromise = ""

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        response = super().response_change(request, obj)
        match = request.resolver_match
        posted_to = match.kwargs.get("object_id") if match else None
        if posted_to is None or str(obj.pk) == str(posted_to):
            return response
        if self.moved_message:
            self.message_user(request, self.moved_message % {"obj": obj}, messages.WARNING)
        if "_continue" in request.POST:
            opts = self.opts
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            )
        return response

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as refusal:
            self.message_user(request, " ".join(refusal.messages), messages.ERROR)
            opts = self.opts
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except ValidationError as refusal:  # from an action such as "delete selected"
            self.message_user(request, " ".join(refusal.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        # "Delete selected" takes the same path as deleting one object, all or nothing.
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class AuditedAdmin(ServiceAdmin):
    """For records no service writes (a course added, an unused rubric deleted): the change
    still enters the audit trail like any other."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=actor_of(request),
            action=f"admin.{obj._meta.model_name}.{'changed' if change else 'added'}",
            target=obj,
            after={name: str(form.cleaned_data.get(name)) for name in form.changed_data},
            assignment_id=getattr(obj, "assignment_id", None)
            or (obj.pk if obj._meta.model_name == "assignment" else None),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(
            actor=actor_of(request),
            action=f"admin.{obj._meta.model_name}.deleted",
            target=obj,
            before={"repr": str(obj)},
        )
        super().delete_model(request, obj)


def save_inline(
    formset: Any,
    *,
    create: Callable[[dict[str, Any]], Any],
    update: Callable[[Any, dict[str, Any]], Any],
    delete: Callable[[Any], Any],
) -> None:
    """Save an inline formset row by row through services instead of `formset.save()`.

    `update` and `delete` get the stored row (the form's instance already carries the
    posted values, and the services compare against what is stored); `create` gets the
    new row's cleaned data. Admin's change message reads what `formset.save()` would
    have recorded, so that is recorded too (the row as posted where a service returns
    something else, as the rubric services do)."""
    model = formset.model
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.initial_forms:
        if form.instance.pk is None:
            continue
        if form in formset.deleted_forms:
            stored = model.objects.get(pk=form.instance.pk)
            delete(stored)
            formset.deleted_objects.append(stored)
        elif form.has_changed():
            saved = update(model.objects.get(pk=form.instance.pk), form.cleaned_data)
            changed = saved if isinstance(saved, model) else form.instance
            formset.changed_objects.append((changed, form.changed_data))
    for form in formset.extra_forms:
        if form.has_changed() and form not in formset.deleted_forms:
            created = create(form.cleaned_data)
            formset.new_objects.append(created if isinstance(created, model) else form.instance)


def _values(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: data[name] for name in names if name in data}


# --- Rubrics ----------------------------------------------------------------------------


@dataclass
class _RubricSave:
    """One admin save applied call by call. The first change to a rubric that has scored
    answers makes a new version; every later change in the same save belongs there."""

    actor: User
    rubric: Rubric
    moved: dict[int, Criterion] = field(default_factory=dict)

    def landed(self, edit: rubrics.Edit) -> None:
        self.rubric = edit.rubric
        if edit.versioned:
            self.moved = edit.criteria

    def criterion(self, stored: Criterion) -> Criterion:
        return self.moved.get(stored.pk, stored)

    def level(self, stored: Level) -> Level:
        copy = self.moved.get(stored.criterion_id)
        # Levels are copied with their points, which are unique within a criterion.
        return stored if copy is None else copy.levels.get(points=stored.points)


class LevelInline(admin.TabularInline):
    model = Level
    extra = 0
    fields = ("order", "points", "title", "descriptor")
    readonly_fields = ("order",)


class CriterionInline(admin.StackedInline):
    model = Criterion
    extra = 0
    fields = (("order", "title", "max_points", "scoring"), "description")
    readonly_fields = ("order",)
    show_change_link = True  # levels are edited on the criterion's own page


@admin.register(Rubric)
class RubricAdmin(AuditedAdmin):
    list_display = ("title", "version", "language", "is_template", "owner", "total", "created_at")
    list_filter = ("is_template", "language")
    search_fields = ("title", "description", "criteria__title")
    fields = ("title", "version", "lineage", "language", "description", "is_template", "owner")
    readonly_fields = ("version", "lineage")  # versions are made by the service
    inlines = (CriterionInline,)

    moved_message = _(
        "This rubric had scored answers, so the change was saved as a new version, "
        "%(obj)s, and its questions now use it. Grades given with the old version keep it."
    )

    # What a rubric is scored with goes through rubrics.py; whether it is offered as a
    # template and whose it is change nothing in any score.
    CATALOGUE_FIELDS = ("is_template", "owner")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("owner").prefetch_related("criteria")

    @admin.display(description="Σ")
    def total(self, rubric: Rubric) -> int:
        return rubric.max_points

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            values = _values(form.cleaned_data, rubrics.RUBRIC_FIELDS)
            created = rubrics.rubric_create(owner=obj.owner, actor=actor_of(request), **values)
            adopt(obj, created)
        # A change is applied in save_related, together with its criteria.

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        actor = actor_of(request)
        save = _RubricSave(actor=actor, rubric=Rubric.objects.get(pk=form.instance.pk))
        if change:
            values = _values(form.cleaned_data, rubrics.RUBRIC_FIELDS)
            save.landed(rubrics.rubric_update(rubric=save.rubric, actor=actor, **values))
        for formset in formsets:
            save_inline(
                formset,
                create=lambda data: save.landed(
                    rubrics.criterion_add(
                        rubric=save.rubric,
                        actor=actor,
                        **_values(data, rubrics.CRITERION_FIELDS),
                    )
                ),
                update=lambda stored, data: save.landed(
                    rubrics.criterion_update(
                        criterion=save.criterion(stored),
                        actor=actor,
                        **_values(data, rubrics.CRITERION_FIELDS),
                    )
                ),
                delete=lambda stored: save.landed(
                    rubrics.criterion_delete(criterion=save.criterion(stored), actor=actor)
                ),
            )
        self._save_catalogue(actor, save.rubric, form.cleaned_data)
        adopt(form.instance, Rubric.objects.get(pk=save.rubric.pk))

    def _save_catalogue(self, actor: User, rubric: Rubric, data: dict[str, Any]) -> None:
        before = {name: getattr(rubric, name) for name in self.CATALOGUE_FIELDS}
        after = _values(data, self.CATALOGUE_FIELDS)
        changed = [name for name in after if after[name] != before[name]]
        if not changed:
            return
        for name in changed:
            setattr(rubric, name, after[name])
        rubric.save(update_fields=changed)

        def plain(value: Any) -> Any:
            return value.pk if isinstance(value, models.Model) else value

        audit_record(
            actor=actor,
            action="rubric.updated",
            target=rubric,
            before={name: plain(before[name]) for name in changed},
            after={name: plain(after[name]) for name in changed},
        )


@admin.register(Criterion)
class CriterionAdmin(ServiceAdmin):
    list_display = ("title", "rubric", "order", "max_points", "scoring")
    list_select_related = ("rubric",)
    search_fields = ("title", "rubric__title")
    fields = ("rubric", "order", "title", "max_points", "scoring", "description")
    readonly_fields = ("rubric", "order")
    inlines = (LevelInline,)
    moved_message = _(
        "This rubric had scored answers, so the change was saved in a new version of it; "
        "this is the criterion there. Grades given with the old version keep it."
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # criteria are added on their rubric's page, in order

    def get_actions(self, request: HttpRequest) -> Any:
        # One at a time: the first deletion from a used rubric makes a new version.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass  # applied in save_related, together with the levels

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        actor = actor_of(request)
        stored = Criterion.objects.select_related("rubric").get(pk=form.instance.pk)
        save = _RubricSave(actor=actor, rubric=stored.rubric)
        values = _values(form.cleaned_data, rubrics.CRITERION_FIELDS)
        save.landed(rubrics.criterion_update(criterion=stored, actor=actor, **values))
        for formset in formsets:
            save_inline(
                formset,
                create=lambda data: save.landed(
                    rubrics.level_add(
                        criterion=save.criterion(stored),
                        actor=actor,
                        **_values(data, rubrics.LEVEL_FIELDS),
                    )
                ),
                update=lambda level, data: save.landed(
                    rubrics.level_update(
                        level=save.level(level), actor=actor, **_values(data, rubrics.LEVEL_FIELDS)
                    )
                ),
                delete=lambda level: save.landed(
                    rubrics.level_delete(level=save.level(level), actor=actor)
                ),
            )
        adopt(form.instance, Criterion.objects.get(pk=save.criterion(stored).pk))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        rubrics.criterion_delete(criterion=obj, actor=actor_of(request))


# --- History: read-only ---------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Scoring runs, grades and the audit trail are history: nobody edits them, admins
    included. Viewing stays possible."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    can_delete = False
    extra = 0

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AnswerInline(ReadOnlyInline):
    model = Answer
    fields = ("question", "text", "choices", "status", "status_reason")
    show_change_link = True


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    list_display = ("assignment", "student", "attempt", "status", "submitted_at", "is_late")
    list_filter = ("status", "is_late", "assignment__course")
    search_fields = ("student__username", "student__name", "assignment__title")
    list_select_related = ("assignment", "student")
    inlines = (AnswerInline,)


class AssessmentInline(ReadOnlyInline):
    model = Assessment
    fk_name = "answer"
    fields = ("scorer", "status", "total", "max_total", "model", "created_at")
    show_change_link = True


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "updated_at")
    list_filter = ("status", "question__assignment__course")
    search_fields = ("submission__student__username", "submission__student__name", "text")
    list_select_related = ("submission__student", "submission__assignment", "question")
    inlines = (AssessmentInline,)


class CriterionScoreInline(ReadOnlyInline):
    model = CriterionScore
    fields = ("criterion", "points", "max_points", "rationale")


@admin.register(Assessment)
class AssessmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "answer", "scorer", "status", "total", "max_total", "model", "created_at")
    list_filter = ("scorer", "status", "model")
    search_fields = ("answer__submission__student__username", "model", "error")
    list_select_related = ("answer__submission__student", "answer__submission__assignment")
    inlines = (CriterionScoreInline,)


class FinalCriterionInline(ReadOnlyInline):
    model = FinalCriterionGrade
    fields = ("criterion", "points", "max_points", "ai_points", "comment")


@admin.register(FinalGrade)
class FinalGradeAdmin(ReadOnlyAdmin):
    """Grades change only through the review pages, which audit every change."""

    list_display = ("answer", "points", "max_points", "source", "approved_by", "approved_at")
    list_filter = ("source",)
    list_select_related = ("approved_by", "answer__submission__student")
    inlines = (FinalCriterionInline,)


@admin.register(RegradeRequest)
class RegradeRequestAdmin(ReadOnlyAdmin):
    list_display = ("answer", "student", "status", "created_at", "answered_at")
    list_filter = ("status",)
    search_fields = ("student__username", "student__name", "comment", "response")
    list_select_related = (
        "student",
        "answer__question",
        "answer__submission__assignment",
        "answer__submission__student",
    )


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ("hash", "created_at")
    search_fields = ("hash",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "action", "target_type", "target_id", "reason")
    list_filter = ("action", "target_type")
    search_fields = ("actor_label", "action", "target_id", "reason", "request_id")
    date_hierarchy = "created_at"


# --- Webhooks ---------------------------------------------------------------------------


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        label=_("events"), choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookSubscription
        fields = ("course", "url", "description", "event_types", "active")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(AuditedAdmin):
    """Receivers of a course's events. The URL and the events are checked as in the API
    (`WebhookSubscription.clean`); the secret is generated, shown here to administrators."""

    form = WebhookSubscriptionForm
    list_display = ("course", "url", "event_types", "active", "created_by", "created_at")
    list_filter = ("active", "course")
    search_fields = ("url", "description", "course__code", "course__title")
    list_select_related = ("course", "created_by")
    readonly_fields = ("secret", "created_by", "created_at", "delivery_log")
    actions = ("send_test_event",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = actor_of(request)
        super().save_model(request, obj, form, change)

    @admin.display(description=_("delivery log"))
    def delivery_log(self, obj: WebhookSubscription) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:grading_webhookdelivery_changelist")
        return format_html(
            '<a href="{}?subscription__id__exact={}">{}</a>', url, obj.pk, _("Deliveries")
        )

    @admin.action(description=_("Send a test event"))
    def send_test_event(
        self, request: HttpRequest, queryset: models.QuerySet[WebhookSubscription]
    ) -> None:
        sent = 0
        for subscription in queryset.select_related("course"):
            webhooks.webhook_test_send(subscription=subscription)
            sent += 1
        self.message_user(
            request,
            ngettext(
                "%(n)d test event is on its way; see the delivery log.",
                "%(n)d test events are on their way; see the delivery log.",
                sent,
            )
            % {"n": sent},
            messages.SUCCESS,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: what was sent where, and what each attempt got back."""

    list_display = (
        "created_at",
        "event_type",
        "subscription",
        "status",
        "attempts",
        "last_response_code",
        "next_attempt_at",
    )
    list_filter = ("status", "event_type", "subscription__course")
    search_fields = ("event_id", "subscription__url")
    list_select_related = ("subscription__course",)
    date_hierarchy = "created_at"


# --- API keys -------------------------------------------------------------------------


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("A key reads only with the read scope; writing scopes do not include it."),
    )

    class Meta:
        model = ApiKey
        fields = ("name", "site_wide", "courses", "scopes")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if not data.get("site_wide") and not data.get("courses"):
            raise ValidationError(_("Choose the key's courses, or make it site-wide."))
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Create keys (the key is shown once, on the page after saving) and revoke them.

    A key is never edited: revoke it and make a new one, so that what a key did is always
    what it was made for. Keys are not deleted either; the audit trail names them."""

    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "scope_list",
        "where",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("site_wide", ("revoked_at", admin.EmptyFieldListFilter), "courses")
    search_fields = ("name", "prefix")
    filter_horizontal = ("courses",)
    actions = ("revoke",)
    readonly_fields = (
        "prefix",
        "user",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    @admin.display(description=_("scopes"))
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes or [])

    @admin.display(description=_("courses"))
    def where(self, key: ApiKey) -> str:
        if key.site_wide:
            return str(_("whole site"))
        return ", ".join(key.courses.values_list("code", flat=True))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("name", "site_wide", "courses", "scopes", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return  # nothing of a key changes; revoking is an action
        new = api_key_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            courses=form.cleaned_data["courses"],
            site_wide=form.cleaned_data["site_wide"],
            actor=actor_of(request),
        )
        adopt(obj, new.api_key)
        obj._raw_key = new.raw_key

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # api_key_create set the courses

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        """The key, once: it is not stored, so this page is the only place it appears
        (admin pages are never cached)."""
        return TemplateResponse(
            request,
            "admin/grading/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("API key created"),
                "key": obj,
                "raw_key": obj._raw_key,
            },
        )

    @admin.action(description=_("Revoke selected API keys"))
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        actor = actor_of(request)
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key, actor=actor)
            count += 1
        self.message_user(
            request,
            ngettext("%(n)d key revoked.", "%(n)d keys revoked.", count) % {"n": count},
            messages.SUCCESS,
        )
