from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from grading.admin import AuditedAdmin

from .models import Assignment, Course, Enrollment, Question, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "name", "email", "student_number", "is_staff", "is_active")
    search_fields = ("username", "name", "email", "student_number")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        (_("School"), {"fields": ("name", "student_number", "language")}),
    )


class EnrollmentInline(admin.TabularInline):
    model = Enrollment
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at", "ended_at")


class AssignmentInline(admin.TabularInline):
    model = Assignment
    extra = 0
    fields = ("title", "state", "due_at", "grading_mode")
    show_change_link = True


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ("code", "title", "term", "language", "archived", "created_at")
    list_filter = ("archived", "language", "term")
    search_fields = ("code", "title")
    inlines = (EnrollmentInline, AssignmentInline)


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("user", "course", "role", "created_at", "ended_at")
    list_filter = ("role", "course")
    search_fields = ("user__username", "user__name", "course__code", "course__title")
    autocomplete_fields = ("user", "course")
    list_select_related = ("user", "course")


class QuestionInline(admin.StackedInline):
    model = Question
    extra = 0
    autocomplete_fields = ("rubric",)
    fields = (
        ("order", "kind", "points"),
        "prompt",
        "rubric",
        "reference_answer",
        "grader_guidelines",
        "options",
        "answer_key",
    )


@admin.register(Assignment)
class AssignmentAdmin(AuditedAdmin):
    list_display = ("title", "course", "state", "due_at", "grading_mode", "grades_released_at")
    list_filter = ("state", "grading_mode", "release_policy", "language", "course")
    search_fields = ("title", "course__code", "course__title")
    date_hierarchy = "due_at"
    autocomplete_fields = ("course",)
    list_select_related = ("course",)
    inlines = (QuestionInline,)
