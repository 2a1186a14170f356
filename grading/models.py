"""Rubrics, submissions, scoring runs, final grades and the audit trail.

Only `grading.services` writes grades. AI output is stored as an Assessment
(a proposal); what a student may see is a FinalGrade a teacher approved.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


class UnicodeJSONEncoder(DjangoJSONEncoder):
    """Store Chinese as characters rather than ASCII escapes: a third of the bytes, and far
    cheaper for the database driver to quote in bulk inserts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ensure_ascii"] = False
        super().__init__(*args, **kwargs)


# --- Rubrics -----------------------------------------------------------------------


class Rubric(models.Model):
    """A scoring guide. Versions of one rubric share a lineage.

    Once a rubric has scored answers it is not edited in place: a new version
    is created, and every Assessment keeps the snapshot it was scored with.
    """

    lineage = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    version = models.PositiveIntegerField(_("version"), default=1)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=[("zh-hans", "简体中文"), ("en", "English")],
        default="zh-hans",
    )
    is_template = models.BooleanField(
        _("template"), default=False, help_text=_("Offered to every teacher as a starting point.")
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rubrics",
        verbose_name=_("owner"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["title", "-version"]
        verbose_name = _("rubric")
        verbose_name_plural = _("rubrics")
        constraints = [
            models.UniqueConstraint(fields=["lineage", "version"], name="rubric_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="rubric_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (v{self.version})"

    @property
    def max_points(self) -> int:
        return sum(c.max_points for c in self.criteria.all())

    def snapshot(self) -> dict[str, Any]:
        """Everything a score depends on, as plain data (ids included for mapping back)."""
        return {
            "id": self.pk,
            "lineage": str(self.lineage),
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "criteria": [
                {
                    "id": c.pk,
                    "title": c.title,
                    "description": c.description,
                    "max_points": c.max_points,
                    "scoring": c.scoring,
                    "levels": [
                        {"points": lv.points, "title": lv.title, "descriptor": lv.descriptor}
                        for lv in c.levels.all()
                    ],
                }
                for c in self.criteria.all()
            ],
        }

    def content_hash(self) -> str:
        return sha256_hex(self.snapshot())


class CriterionScoring(models.TextChoices):
    RANGE = "range", _("Any whole number from 0 to the maximum")
    LEVELS = "levels", _("Exactly one of the levels' points")


class Criterion(models.Model):
    """One scored aspect of a rubric.

    With RANGE scoring, levels (if any) describe bands: a level covers its
    points up to the next level's points. With LEVELS scoring the score must
    equal one level's points.
    """

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="criteria")
    order = models.PositiveIntegerField(_("order"), default=0)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    max_points = models.PositiveIntegerField(_("max points"))
    scoring = models.CharField(
        _("scoring"),
        max_length=10,
        choices=CriterionScoring.choices,
        default=CriterionScoring.RANGE,
    )

    class Meta:
        ordering = ["rubric", "order", "id"]
        verbose_name = _("criterion")
        verbose_name_plural = _("criteria")
        constraints = [
            models.CheckConstraint(condition=Q(max_points__gte=1), name="criterion_max_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (0–{self.max_points})"


class Level(models.Model):
    """An optional performance level; without levels a criterion is a 0..max range."""

    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="levels")
    order = models.PositiveIntegerField(_("order"), default=0)
    points = models.PositiveIntegerField(_("points"))
    title = models.CharField(_("title"), max_length=100, blank=True)
    descriptor = models.TextField(_("descriptor"))

    class Meta:
        ordering = ["criterion", "order", "-points", "id"]
        verbose_name = _("level")
        verbose_name_plural = _("levels")
        constraints = [
            models.UniqueConstraint(fields=["criterion", "points"], name="level_points_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.points}: {self.title or self.descriptor[:40]}"

    def clean(self) -> None:
        if self.criterion_id and self.points > self.criterion.max_points:
            message = _("A level cannot exceed the criterion's maximum of %(max)s points.")
            raise ValidationError({"points": message % {"max": self.criterion.max_points}})


# --- Submissions -------------------------------------------------------------------


class SubmissionStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")


class Submission(models.Model):
    assignment = models.ForeignKey(
        "courses.Assignment", on_delete=models.CASCADE, related_name="submissions"
    )
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions"
    )
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    status = models.CharField(
        _("status"), max_length=10, choices=SubmissionStatus.choices, default=SubmissionStatus.DRAFT
    )
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    is_late = models.BooleanField(_("late"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["assignment", "student", "attempt"]
        verbose_name = _("submission")
        verbose_name_plural = _("submissions")
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "student", "attempt"], name="one_submission_per_attempt"
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="attempt_positive"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(submitted_at__isnull=False),
                name="submitted_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment} · {self.student} · #{self.attempt}"


class AnswerStatus(models.TextChoices):
    PENDING = "pending", _("Submitted")
    GRADING = "grading", _("Grading")
    GRADED = "graded", _("Needs review")
    NEEDS_MANUAL = "needs_manual", _("Needs manual grading")
    APPROVED = "approved", _("Approved")


class Answer(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(
        "courses.Question", on_delete=models.PROTECT, related_name="answers"
    )
    text = models.TextField(_("answer"), blank=True)
    choices = models.JSONField(
        _("chosen options"), encoder=UnicodeJSONEncoder, default=list, blank=True
    )
    status = models.CharField(
        _("status"), max_length=20, choices=AnswerStatus.choices, default=AnswerStatus.PENDING
    )
    status_reason = models.TextField(_("status reason"), blank=True)
    current_assessment = models.ForeignKey(
        "Assessment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("current assessment"),
    )
    # When grading was last claimed: the sweeper re-enqueues answers stuck too long.
    grading_started_at = models.DateTimeField(null=True, blank=True)
    grading_requeues = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["submission", "question__order", "id"]
        verbose_name = _("answer")
        verbose_name_plural = _("answers")
        constraints = [
            models.UniqueConstraint(
                fields=["submission", "question"], name="one_answer_per_question"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in AnswerStatus]), name="answer_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "grading_started_at"])]

    def __str__(self) -> str:
        return f"{self.submission} · Q{self.question.order}"


# --- Scoring runs ----------------------------------------------------------------


class Scorer(models.TextChoices):
    LLM = "llm", _("AI model")
    RULES = "rules", _("Offline rule engine")
    OBJECTIVE = "objective", _("Answer key")
    TEACHER = "teacher", _("Teacher")


class AssessmentStatus(models.TextChoices):
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


class Snapshot(models.Model):
    """Content-addressed, immutable JSON: a rubric snapshot or a prompt prefix.

    Thousands of assessments share one rubric and one system prompt; each is
    stored once under its SHA-256 and referenced, never rewritten.
    """

    hash = models.CharField(max_length=64, primary_key=True)
    data = models.JSONField(encoder=UnicodeJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")

    def __str__(self) -> str:
        return self.hash[:12]

    @classmethod
    def store(cls, data: Any) -> Snapshot:
        snapshot = Snapshot(hash=sha256_hex(data), data=data)
        Snapshot.objects.bulk_create([snapshot], ignore_conflicts=True)
        return snapshot


class Assessment(models.Model):
    """One scoring run of one answer. Append-only: a regrade adds a new row.

    The full prompt is `prompt_prefix.data` (identical for every answer to the
    question) followed by `prompt` (the message holding the student's answer).
    """

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="assessments")
    scorer = models.CharField(_("scorer"), max_length=10, choices=Scorer.choices)
    status = models.CharField(_("status"), max_length=10, choices=AssessmentStatus.choices)
    model = models.CharField(_("model"), max_length=200, blank=True)
    prompt_version = models.CharField(_("prompt version"), max_length=40, blank=True)
    prompt_prefix = models.ForeignKey(
        Snapshot, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The message holding the student's answer (the prefix holds everything before it).
    prompt = models.TextField(_("prompt"), blank=True)
    raw_output = models.TextField(_("raw output"), blank=True)
    result = models.JSONField(
        _("parsed result"), encoder=UnicodeJSONEncoder, default=dict, blank=True
    )
    feedback = models.TextField(_("feedback"), blank=True)
    flags = models.JSONField(_("flags"), encoder=UnicodeJSONEncoder, default=list, blank=True)
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    total = models.PositiveIntegerField(_("total"), null=True, blank=True)
    max_total = models.PositiveIntegerField(_("maximum"), null=True, blank=True)
    rubric_snapshot = models.ForeignKey(
        Snapshot,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("rubric snapshot"),
    )
    # answer text + rubric snapshot + prompt version + model: equal hash, equal work.
    input_hash = models.CharField(max_length=64, db_index=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    error = models.TextField(_("error"), blank=True)
    reused_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Identical answer whose result was reused instead of a new model call."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["answer", "-created_at"]
        verbose_name = _("assessment")
        verbose_name_plural = _("assessments")
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="confidence_in_unit_range",
            ),
            models.CheckConstraint(
                condition=Q(total__isnull=True) | Q(total__lte=F("max_total")),
                name="assessment_total_within_max",
            ),
            models.CheckConstraint(
                condition=Q(status="failed") | Q(total__isnull=False),
                name="completed_assessment_has_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_scorer_display()} · {self.answer_id} · {self.total}/{self.max_total}"

    def messages(self) -> list[dict[str, str]]:
        """The exact messages sent to the model."""
        prefix = self.prompt_prefix
        if prefix is None:
            return []
        return [*prefix.data, {"role": "user", "content": self.prompt}]


class CriterionScore(models.Model):
    """A proposed score for one criterion within one assessment."""

    assessment = models.ForeignKey(Assessment, on_delete=models.CASCADE, related_name="scores")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    points = models.PositiveIntegerField(_("points"))
    # Copied from the criterion at scoring time so the bound is checked by the database.
    max_points = models.PositiveIntegerField(_("max points"))
    rationale = models.TextField(_("rationale"), blank=True)

    class Meta:
        ordering = ["assessment", "criterion__order"]
        constraints = [
            models.UniqueConstraint(
                fields=["assessment", "criterion"], name="one_score_per_criterion"
            ),
            models.CheckConstraint(
                condition=Q(points__lte=F("max_points")), name="criterion_score_within_max"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.criterion_id}: {self.points}/{self.max_points}"


# --- Final grades ----------------------------------------------------------------


class GradeSource(models.TextChoices):
    AI_ACCEPTED = "ai_accepted", _("AI proposal accepted")
    OVERRIDE = "override", _("Changed by teacher")
    OBJECTIVE = "objective", _("Answer key")
    MANUAL = "manual", _("Graded by teacher")


class FinalGrade(models.Model):
    """The teacher-approved grade of one answer. Students see it only after release.

    `version` is bumped on every save through the service layer; a save that
    names an older version is refused (optimistic locking, no lost update).
    """

    answer = models.OneToOneField(Answer, on_delete=models.CASCADE, related_name="final_grade")
    points = models.PositiveIntegerField(_("points"))
    max_points = models.PositiveIntegerField(_("max points"))
    feedback = models.TextField(_("feedback"), blank=True)
    source = models.CharField(_("source"), max_length=20, choices=GradeSource.choices)
    override_reason = models.TextField(_("override reason"), blank=True)
    based_on = models.ForeignKey(
        Assessment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("approved by"),
    )
    approved_at = models.DateTimeField(_("approved"), default=timezone.now)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name = _("final grade")
        verbose_name_plural = _("final grades")
        constraints = [
            models.CheckConstraint(
                condition=Q(points__lte=F("max_points")), name="final_grade_within_max"
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1), name="final_grade_version_positive"
            ),
            models.CheckConstraint(
                condition=~Q(source="override") | ~Q(override_reason=""),
                name="override_needs_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.answer_id}: {self.points}/{self.max_points}"


class FinalCriterionGrade(models.Model):
    final_grade = models.ForeignKey(FinalGrade, on_delete=models.CASCADE, related_name="criteria")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    points = models.PositiveIntegerField(_("points"))
    max_points = models.PositiveIntegerField(_("max points"))
    ai_points = models.PositiveIntegerField(_("AI proposal"), null=True, blank=True)
    comment = models.TextField(_("comment"), blank=True)

    class Meta:
        ordering = ["final_grade", "criterion__order"]
        constraints = [
            models.UniqueConstraint(
                fields=["final_grade", "criterion"], name="one_final_score_per_criterion"
            ),
            models.CheckConstraint(
                condition=Q(points__lte=F("max_points")), name="final_criterion_within_max"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.criterion_id}: {self.points}/{self.max_points}"

    @property
    def changed_by_teacher(self) -> bool:
        return self.ai_points is not None and self.ai_points != self.points


# --- Audit trail -------------------------------------------------------------------


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """One state change that matters, hash-chained to the event before it.

    `hash` = SHA-256 over the canonical JSON of the event's content and
    `prev_hash`; changing any stored row breaks the chain from that row on.
    """

    created_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
        help_text=_("Empty for the system (AI grading, scheduled tasks)."),
    )
    actor_label = models.CharField(_("actor name"), max_length=150)
    action = models.CharField(_("action"), max_length=60, db_index=True)
    target_type = models.CharField(_("target type"), max_length=60)
    target_id = models.CharField(_("target id"), max_length=60)
    # Plain ids (not foreign keys) so that the per-assignment and per-submission
    # audit views are cheap and deleting data never cascades into the trail.
    assignment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    submission_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(_("before"), encoder=UnicodeJSONEncoder, null=True, blank=True)
    after = models.JSONField(_("after"), encoder=UnicodeJSONEncoder, null=True, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    GENESIS_HASH = "0" * 64

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")

    def hashed_content(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "assignment_id": self.assignment_id,
            "submission_id": self.submission_id,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        return sha256_hex(self.hashed_content())


class RegradeStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Answered")


class RegradeRequest(models.Model):
    """A student's request to look again at a released grade, and the teacher's answer."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="regrade_requests")
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    comment = models.TextField(_("comment"))
    status = models.CharField(
        _("status"), max_length=10, choices=RegradeStatus.choices, default=RegradeStatus.OPEN
    )
    response = models.TextField(_("response"), blank=True)
    responder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("regrade request")
        verbose_name_plural = _("regrade requests")
        constraints = [
            models.UniqueConstraint(
                fields=["answer"], condition=Q(status="open"), name="one_open_regrade_per_answer"
            ),
            models.CheckConstraint(
                condition=Q(status="open") | ~Q(response=""), name="answered_regrade_has_response"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.answer_id} · {self.get_status_display()}"
