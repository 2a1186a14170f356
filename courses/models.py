"""People, courses and what is asked of students.

Invariants live in database constraints so that no code path (admin, API,
LTI, a shell) can break them.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Language(models.TextChoices):
    ZH_HANS = "zh-hans", "简体中文"
    EN = "en", "English"


class User(AbstractUser):
    """A school account. Chinese names do not split into first/last, so `name` is whole."""

    name = models.CharField(_("full name"), max_length=150, blank=True)
    student_number = models.CharField(
        _("student number"), max_length=40, blank=True, null=True, unique=True
    )
    language = models.CharField(
        _("preferred language"), max_length=10, choices=Language.choices, blank=True
    )
    # Accounts created with an initial password (a roster import) must choose their own
    # before they can do anything else.
    must_change_password = models.BooleanField(_("must change password"), default=False)

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.get_full_name() or self.username


class CourseQuerySet(models.QuerySet["Course"]):
    def with_counts(self) -> CourseQuerySet:
        """Annotate `student_count` (current students) and `assignment_count`.

        Counted in subqueries, not with Count() over a join: the querysets that choose a
        person's courses (`permissions.teaching_courses`) already join the enrollments to
        filter on the person, and an aggregate over that join counts only their own row —
        every course then showed 0 students."""
        students = (
            Enrollment.objects.filter(
                course=OuterRef("pk"), role=Role.STUDENT, ended_at__isnull=True
            )
            .order_by()
            .values("course")
            .annotate(n=models.Count("pk"))
            .values("n")
        )
        assignments = (
            Assignment.objects.filter(course=OuterRef("pk"))
            .order_by()
            .values("course")
            .annotate(n=models.Count("pk"))
            .values("n")
        )
        return self.annotate(
            student_count=Coalesce(Subquery(students), 0),
            assignment_count=Coalesce(Subquery(assignments), 0),
        )


class Course(models.Model):
    title = models.CharField(_("title"), max_length=200)
    code = models.CharField(_("code"), max_length=50, unique=True)
    term = models.CharField(_("term"), max_length=50, blank=True)
    language = models.CharField(
        _("language"), max_length=10, choices=Language.choices, default=Language.ZH_HANS
    )
    archived = models.BooleanField(_("archived"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = CourseQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "title"]
        verbose_name = _("course")
        verbose_name_plural = _("courses")

    def __str__(self) -> str:
        return f"{self.code} {self.title}"


class Role(models.TextChoices):
    TEACHER = "teacher", _("Teacher")
    TA = "ta", _("Teaching assistant")
    STUDENT = "student", _("Student")


STAFF_ROLES = (Role.TEACHER, Role.TA)


class EnrollmentQuerySet(models.QuerySet["Enrollment"]):
    def active(self) -> EnrollmentQuerySet:
        return self.filter(ended_at__isnull=True)


class Enrollment(models.Model):
    """A person's role in a course. Removing someone ends the enrollment; the row stays."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="enrollments")
    role = models.CharField(_("role"), max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(_("enrolled"), default=timezone.now)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        ordering = ["course", "role", "user__username"]
        verbose_name = _("enrollment")
        verbose_name_plural = _("enrollments")
        constraints = [
            models.UniqueConstraint(
                fields=["course", "user"],
                condition=Q(ended_at__isnull=True),
                name="one_active_enrollment_per_course_user",
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in Role]), name="enrollment_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("created_at")),
                name="enrollment_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.get_role_display()} · {self.course.code}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None


class LatePolicy(models.TextChoices):
    REFUSE = "refuse", _("Refuse late submissions")
    ACCEPT = "accept", _("Accept and mark late")


class GradingMode(models.TextChoices):
    AI_REVIEW = "ai_review", _("AI-assisted, teacher reviews")
    MANUAL = "manual", _("Manual only")


class ReleasePolicy(models.TextChoices):
    MANUAL = "manual", _("Teacher releases grades")
    AUTOMATIC = "automatic", _("Release each grade when approved")


class AssignmentState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    PUBLISHED = "published", _("Published")
    CLOSED = "closed", _("Closed")


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def visible_to_students(self) -> AssignmentQuerySet:
        return self.exclude(state=AssignmentState.DRAFT).filter(course__archived=False)


class Assignment(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="assignments")
    title = models.CharField(_("title"), max_length=200)
    instructions = models.TextField(_("instructions"), blank=True)
    language = models.CharField(
        _("language"), max_length=10, choices=Language.choices, default=Language.ZH_HANS
    )
    state = models.CharField(
        _("state"), max_length=10, choices=AssignmentState.choices, default=AssignmentState.DRAFT
    )
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    late_policy = models.CharField(
        _("late policy"), max_length=10, choices=LatePolicy.choices, default=LatePolicy.REFUSE
    )
    attempts_allowed = models.PositiveSmallIntegerField(_("attempts allowed"), default=1)
    grading_mode = models.CharField(
        _("grading mode"), max_length=10, choices=GradingMode.choices, default=GradingMode.AI_REVIEW
    )
    release_policy = models.CharField(
        _("release policy"),
        max_length=10,
        choices=ReleasePolicy.choices,
        default=ReleasePolicy.MANUAL,
    )
    anonymous_grading = models.BooleanField(_("anonymous grading"), default=False)
    # Whether released feedback shows the answer key of objective items beside the
    # student's own answer (off by default: the same items may be set again).
    show_answer_keys = models.BooleanField(_("show answer keys"), default=False)
    # Set when the teacher releases grades; cleared when they are hidden again.
    grades_released_at = models.DateTimeField(_("grades released"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["course", "due_at", "id"]
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        constraints = [
            models.CheckConstraint(
                condition=Q(attempts_allowed__gte=1), name="attempts_at_least_one"
            ),
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in AssignmentState]),
                name="assignment_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def grades_released(self) -> bool:
        return self.grades_released_at is not None

    def is_past_due(self, at: datetime.datetime | None = None) -> bool:
        return self.due_at is not None and (at or timezone.now()) > self.due_at


class QuestionKind(models.TextChoices):
    ESSAY = "essay", _("Essay")
    SHORT_ANSWER = "short_answer", _("Short answer")
    SINGLE_CHOICE = "single_choice", _("Single choice")
    MULTIPLE_CHOICE = "multiple_choice", _("Multiple choice")
    NUMERIC = "numeric", _("Numeric")
    EXACT_TEXT = "exact_text", _("Exact text")


SUBJECTIVE_KINDS = (QuestionKind.ESSAY, QuestionKind.SHORT_ANSWER)
CHOICE_KINDS = (QuestionKind.SINGLE_CHOICE, QuestionKind.MULTIPLE_CHOICE)


class Question(models.Model):
    """One item of an assignment.

    Subjective questions (essay, short answer) are scored against a rubric;
    the reference answer and grader guidelines are for graders only. Objective
    questions carry an answer key and are scored without any model:
      choice:  options = [{"key": "A", "text": "..."}], answer_key = {"correct": ["A"]}
      numeric: answer_key = {"value": 9.8, "tolerance": 0.1}
      exact:   answer_key = {"accepted": ["..."], "regex": false, "case_sensitive": false}
    """

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="questions")
    order = models.PositiveIntegerField(_("order"), default=0)
    kind = models.CharField(_("kind"), max_length=20, choices=QuestionKind.choices)
    prompt = models.TextField(_("question"))
    rubric = models.ForeignKey(
        "grading.Rubric",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="questions",
        verbose_name=_("rubric"),
    )
    points = models.PositiveIntegerField(
        _("points"), default=1, help_text=_("Objective questions only; a rubric sets its own.")
    )
    reference_answer = models.TextField(_("reference answer"), blank=True)
    grader_guidelines = models.TextField(_("grader guidelines"), blank=True)
    options = models.JSONField(_("options"), default=list, blank=True)
    answer_key = models.JSONField(_("answer key"), default=dict, blank=True)

    class Meta:
        ordering = ["assignment", "order", "id"]
        verbose_name = _("question")
        verbose_name_plural = _("questions")
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in QuestionKind]), name="question_kind_valid"
            ),
            # Objective items are never scored against a rubric.
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in SUBJECTIVE_KINDS]) | Q(rubric__isnull=True),
                name="objective_question_has_no_rubric",
            ),
            models.CheckConstraint(condition=Q(points__gte=1), name="question_points_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.order}. {self.prompt[:60]}"

    @property
    def is_subjective(self) -> bool:
        return self.kind in SUBJECTIVE_KINDS

    @property
    def max_points(self) -> int:
        if self.is_subjective and self.rubric is not None:
            return self.rubric.max_points
        return self.points

    @property
    def is_choice(self) -> bool:
        return self.kind in CHOICE_KINDS

    def clean(self) -> None:
        """An answer key must be able to score: the key parses, the regex compiles, the
        correct choices exist among the options. Checked for every writer (forms, admin, API)."""
        errors: dict[str, Any] = {}
        if self.is_subjective:
            if self.rubric_id is None:
                errors["rubric"] = _("Choose a rubric: subjective answers are scored against one.")
        elif self.is_choice:
            errors.update(self._clean_choice())
        elif self.kind == QuestionKind.NUMERIC:
            errors.update(self._clean_numeric())
        elif self.kind == QuestionKind.EXACT_TEXT:
            errors.update(self._clean_exact())
        if errors:
            raise ValidationError(errors)

    def _clean_choice(self) -> dict[str, Any]:
        options = self.options if isinstance(self.options, list) else []
        keys = [str(o.get("key", "")) for o in options if isinstance(o, dict)]
        if len(keys) < 2 or any(not o.get("text", "").strip() for o in options):
            return {"options": _("Give at least two options, each with a text.")}
        if len(set(keys)) != len(keys) or "" in keys:
            return {"options": _("Each option needs its own key.")}
        correct = (self.answer_key or {}).get("correct") or []
        if not correct:
            return {"answer_key": _("Mark the correct option.")}
        missing = [k for k in correct if k not in keys]
        if missing:
            return {
                "answer_key": _("“%(keys)s” is not one of the options (%(options)s).")
                % {"keys": ", ".join(map(str, missing)), "options": ", ".join(keys)}
            }
        if self.kind == QuestionKind.SINGLE_CHOICE and len(correct) != 1:
            return {"answer_key": _("A single-choice question has exactly one correct option.")}
        return {}

    def _clean_numeric(self) -> dict[str, Any]:
        key = self.answer_key or {}
        try:
            value = float(key["value"])
            tolerance = float(key.get("tolerance", 0))
        except (KeyError, TypeError, ValueError):
            return {"answer_key": _("The correct value must be a number.")}
        if not math.isfinite(value) or not math.isfinite(tolerance) or tolerance < 0:
            return {"answer_key": _("Give a finite value and a tolerance of zero or more.")}
        return {}

    def _clean_exact(self) -> dict[str, Any]:
        key = self.answer_key or {}
        accepted = [a for a in key.get("accepted") or [] if str(a).strip()]
        if not accepted:
            return {"answer_key": _("Give at least one accepted answer.")}
        if key.get("regex"):
            for pattern in accepted:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    return {
                        "answer_key": _(
                            "“%(pattern)s” is not a valid regular expression: %(error)s"
                        )
                        % {"pattern": pattern, "error": exc}
                    }
        return {}
