from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .audit import audit_record
from .models import (
    Answer,
    Assessment,
    AuditEvent,
    Criterion,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    Level,
    Rubric,
    Submission,
)


class AuditedAdmin(admin.ModelAdmin):
    """Changes made in Django admin enter the audit trail like any other change."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action=f"admin.{obj._meta.model_name}.{'changed' if change else 'added'}",
            target=obj,
            after={field: str(form.cleaned_data.get(field)) for field in form.changed_data},
            assignment_id=getattr(obj, "assignment_id", None)
            or (obj.pk if obj._meta.model_name == "assignment" else None),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(
            actor=request.user,
            action=f"admin.{obj._meta.model_name}.deleted",
            target=obj,
            before={"repr": str(obj)},
        )
        super().delete_model(request, obj)


class LevelInline(admin.TabularInline):
    model = Level
    extra = 0
    fields = ("order", "points", "title", "descriptor")


class CriterionInline(admin.StackedInline):
    model = Criterion
    extra = 0
    fields = (("order", "title", "max_points", "scoring"), "description")
    show_change_link = True  # levels are edited on the criterion's own page


@admin.register(Rubric)
class RubricAdmin(AuditedAdmin):
    list_display = ("title", "version", "language", "is_template", "owner", "total", "created_at")
    list_filter = ("is_template", "language")
    search_fields = ("title", "description", "criteria__title")
    readonly_fields = ("lineage",)
    inlines = (CriterionInline,)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("owner").prefetch_related("criteria")

    @admin.display(description="Σ")
    def total(self, rubric: Rubric) -> int:
        return rubric.max_points


@admin.register(Criterion)
class CriterionAdmin(AuditedAdmin):
    list_display = ("title", "rubric", "order", "max_points", "scoring")
    list_select_related = ("rubric",)
    search_fields = ("title", "rubric__title")
    inlines = (LevelInline,)


class AnswerInline(admin.StackedInline):
    model = Answer
    extra = 0
    fields = ("question", "text", "choices", "status", "status_reason")
    readonly_fields = ("question",)


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("assignment", "student", "attempt", "status", "submitted_at", "is_late")
    list_filter = ("status", "is_late", "assignment__course")
    search_fields = ("student__username", "student__name", "assignment__title")
    list_select_related = ("assignment", "student")
    autocomplete_fields = ("student", "assignment")
    inlines = (AnswerInline,)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Scoring runs and the audit trail are history: nobody edits them, admins included."""

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


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "action", "target_type", "target_id", "reason")
    list_filter = ("action", "target_type")
    search_fields = ("actor_label", "action", "target_id", "reason", "request_id")
    date_hierarchy = "created_at"
