"""Query-string filters of the lists (django-filter). A value that does not parse is a 400
with the parameter's message, never a database error."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from courses.models import Assignment, AssignmentState, Course, Enrollment, Role
from courses.text import clean_text

from ..models import (
    Answer,
    AnswerStatus,
    AuditEvent,
    FinalGrade,
    RegradeRequest,
    RegradeStatus,
    Rubric,
    Submission,
    SubmissionStatus,
)


class IdFilter(django_filters.NumberFilter):
    """An id in the query string: digits only, within the database's integers."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)


class CleanCharField(forms.CharField):
    def to_python(self, value: Any) -> str:
        return clean_text(super().to_python(value) or "")


class TextFilter(django_filters.CharFilter):
    """Text in the query string, cleaned by the shared rule before it is checked: a NUL
    byte is dropped, as in every form, and reaches no query (PostgreSQL refuses it)."""

    field_class = CleanCharField


class CourseFilter(django_filters.FilterSet):
    code = TextFilter()

    class Meta:
        model = Course
        fields = ["code", "archived", "language"]


class EnrollmentFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)
    active = django_filters.BooleanFilter(
        method="filter_active", label="Current enrollments only (true) or ended ones (false)."
    )

    class Meta:
        model = Enrollment
        fields = ["role", "active"]

    def filter_active(self, queryset: QuerySet[Enrollment], name: str, value: bool) -> QuerySet:
        return queryset.filter(ended_at__isnull=value)


class AssignmentFilter(django_filters.FilterSet):
    course = IdFilter(field_name="course_id")
    state = django_filters.ChoiceFilter(choices=AssignmentState.choices)

    class Meta:
        model = Assignment
        fields = ["course", "state"]


class SubmissionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SubmissionStatus.choices)
    attempt = django_filters.NumberFilter(min_value=1, max_value=1000, decimal_places=0)

    class Meta:
        model = Submission
        fields = ["status", "attempt", "is_late"]


class AnswerFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AnswerStatus.choices)
    question = IdFilter(field_name="question_id")
    flagged = django_filters.BooleanFilter(
        method="filter_flagged", label="Answers whose current proposal carries flags."
    )

    class Meta:
        model = Answer
        fields = ["status", "question", "flagged"]

    def filter_flagged(self, queryset: QuerySet[Answer], name: str, value: bool) -> QuerySet:
        flagged = Q(current_assessment__isnull=False) & ~Q(current_assessment__flags=[])
        return queryset.filter(flagged) if value else queryset.exclude(flagged)


class GradeFilter(django_filters.FilterSet):
    question = IdFilter(field_name="answer__question_id")
    submission = IdFilter(field_name="answer__submission_id")

    class Meta:
        model = FinalGrade
        fields = ["question", "submission", "source"]


class RegradeFilter(django_filters.FilterSet):
    assignment = IdFilter(field_name="answer__question__assignment_id")
    status = django_filters.ChoiceFilter(choices=RegradeStatus.choices)

    class Meta:
        model = RegradeRequest
        fields = ["assignment", "status"]


class AuditEventFilter(django_filters.FilterSet):
    action = TextFilter()
    submission = IdFilter(field_name="submission_id")

    class Meta:
        model = AuditEvent
        fields = ["action", "submission"]


class RubricFilter(django_filters.FilterSet):
    class Meta:
        model = Rubric
        fields = ["is_template", "language", "lineage"]
