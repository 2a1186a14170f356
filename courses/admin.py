"""Django admin for the school: changes go through `courses.services`, as on the teachers'
pages — the same validation, the same rescoring after a corrected answer key, the same
audit events. Enrollments are added with `enrollment_add` and ended, never deleted;
questions students answered cannot be deleted (see `grading/admin.py` for the rest)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from grading.admin import AuditedAdmin, ServiceAdmin, actor_of, adopt, save_inline

from . import services
from .models import Assignment, Course, Enrollment, Question, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "name", "email", "student_number", "is_staff", "is_active")
    search_fields = ("username", "name", "email", "student_number")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        (_("School"), {"fields": ("name", "student_number", "language")}),
    )


class ViewOnlyInline(admin.TabularInline):
    """Rows listed on their parent's page; each is changed on its own page, through its
    service."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EnrollmentInline(ViewOnlyInline):
    model = Enrollment
    fields = ("user", "role", "created_at", "ended_at")


class AssignmentInline(ViewOnlyInline):
    model = Assignment
    fields = ("title", "state", "due_at", "grading_mode")


@admin.register(Course)
class CourseAdmin(AuditedAdmin):
    list_display = ("code", "title", "term", "language", "archived", "created_at")
    list_filter = ("archived", "language", "term")
    search_fields = ("code", "title")
    inlines = (EnrollmentInline, AssignmentInline)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            # An administrator's new course has no teacher yet (course_create would make
            # the administrator its teacher); teachers are then enrolled like anyone.
            super().save_model(request, obj, form, change)
            return
        course = Course.objects.get(pk=obj.pk)
        data = form.cleaned_data
        course = services.course_update(
            course=course,
            actor=actor_of(request),
            **{name: data[name] for name in services.COURSE_FIELDS if name in data},
        )
        if "archived" in data:
            course = services.course_archive(
                course=course, actor=actor_of(request), archived=data["archived"]
            )
        adopt(obj, course)


class EnrollmentAddForm(forms.ModelForm):
    """Someone is added to a course as on the roster page: by username, e-mail or student
    number, through `enrollment_add` (who is already in the course, and as what)."""

    identifier = forms.CharField(label=_("Username, e-mail or student number"), max_length=254)

    class Meta:
        model = Enrollment
        fields = ("course", "role")


@admin.register(Enrollment)
class EnrollmentAdmin(ServiceAdmin):
    list_display = ("user", "course", "role", "created_at", "ended_at")
    list_filter = ("role", "course")
    search_fields = ("user__username", "user__name", "course__code", "course__title")
    autocomplete_fields = ("course",)
    list_select_related = ("user", "course")
    actions = ("end_enrollments",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A role is not edited in place (a student made teacher would see every grade):
        # end the enrollment and add the person again, both audited.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # ended, never deleted: the row is the course's history

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = EnrollmentAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("course", "identifier", "role")
        return ("user", "course", "role", "created_at", "ended_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        enrollment = services.enrollment_add(
            course=obj.course,
            identifier=form.cleaned_data["identifier"],
            role=obj.role,
            actor=actor_of(request),
        )
        adopt(obj, enrollment)

    @admin.action(description=_("End the selected enrollments (their work and grades are kept)"))
    def end_enrollments(self, request: HttpRequest, queryset: QuerySet[Enrollment]) -> None:
        ended = 0
        for enrollment in queryset.select_related("user", "course"):
            if not enrollment.is_active:
                continue
            try:
                services.enrollment_end(enrollment=enrollment, actor=actor_of(request))
            except ValidationError as refusal:
                self.message_user(
                    request, f"{enrollment}: {' '.join(refusal.messages)}", messages.ERROR
                )
            else:
                ended += 1
        if ended:
            self.message_user(
                request,
                ngettext("%(n)d enrollment ended.", "%(n)d enrollments ended.", ended)
                % {"n": ended},
                messages.SUCCESS,
            )


class QuestionInlineForm(forms.ModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # question_update keeps the kind: answers handed in to a choice question
            # cannot be read as an essay.
            self.fields["kind"].disabled = True


class QuestionInline(admin.StackedInline):
    model = Question
    form = QuestionInlineForm
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
    readonly_fields = ("order",)  # new questions go last; question_move reorders


@admin.register(Assignment)
class AssignmentAdmin(AuditedAdmin):
    list_display = ("title", "course", "state", "due_at", "grading_mode", "grades_released_at")
    list_filter = ("state", "grading_mode", "release_policy", "language", "course")
    search_fields = ("title", "course__code", "course__title")
    date_hierarchy = "due_at"
    autocomplete_fields = ("course",)
    list_select_related = ("course",)
    inlines = (QuestionInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Grades are released and hidden on the grading pages (grades_release, audited);
        # an assignment does not move to another course with its students' work.
        return ("course", "grades_released_at") if obj else ("grades_released_at",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        values = {name: data[name] for name in services.ASSIGNMENT_FIELDS if name in data}
        if change:
            stored = Assignment.objects.get(pk=obj.pk)
            services.assignment_update(assignment=stored, actor=actor_of(request), **values)
        else:
            created = services.assignment_create(
                course=obj.course, actor=actor_of(request), **values
            )
            adopt(obj, created)
        # The state changes in save_related, once the questions are saved: publishing
        # needs them.

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        actor, assignment = actor_of(request), form.instance

        def values(data: dict[str, Any]) -> dict[str, Any]:
            return {name: data[name] for name in services.QUESTION_FIELDS if name in data}

        save_inline(
            formset,
            create=lambda data: services.question_create(
                assignment=assignment, kind=data["kind"], actor=actor, **values(data)
            ),
            update=lambda question, data: services.question_update(
                question=question, actor=actor, **values(data)
            ),
            delete=lambda question: services.question_delete(question=question, actor=actor),
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        state = form.cleaned_data.get("state")
        assignment = Assignment.objects.get(pk=form.instance.pk)
        if state and state != assignment.state:
            assignment = services.assignment_set_state(
                assignment=assignment, state=state, actor=actor_of(request)
            )
        adopt(form.instance, assignment)
