"""Rubrics, submissions, scoring runs, final grades and the audit trail.

Only `grading.services` writes grades. AI output is stored as an Assessment
(a proposal); what a student may see is a FinalGrade a teacher approved.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from courses.models import Assignment


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
    # The random token of the form that handed this attempt in: the same form posted again
    # (a double click, a reload, the back button) returns this submission instead of
    # using another attempt.
    hand_in_token = models.CharField(_("hand-in token"), max_length=32, blank=True, default="")
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
            models.UniqueConstraint(
                fields=["assignment", "student", "hand_in_token"],
                condition=~Q(hand_in_token=""),
                name="one_submission_per_hand_in_form",
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="attempt_positive"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(submitted_at__isnull=False),
                name="submitted_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment} · {self.student} · #{self.attempt}"

    # --- How graders name the student: the one rule for anonymous grading -------------

    @staticmethod
    def anonymous_label(submission_id: int) -> str:
        """The student of this submission, to a grader who must not know who it is. The
        number is the submission's, which is already in the grader's URLs; it says nothing
        about the student (each attempt and each assignment gets its own)."""
        return gettext("Student #%(n)s") % {"n": submission_id}

    def label_for_graders(self, assignment: Assignment | None = None) -> str:
        """The student's name, or while the assignment is graded anonymously the anonymous
        label. Every page a grader sees (queue, review, regrade list, audit) names students
        through this; pass the assignment when it is at hand, to spare a query."""
        if (assignment or self.assignment).anonymous_grading:
            return self.anonymous_label(self.pk)
        return self.student.display_name


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
    # Set while the answer waits for the model server to come back (still GRADING, off the
    # sweeper's clock); cleared when it is queued again.
    waiting_for_model_since = models.DateTimeField(null=True, blank=True)
    # Handed in and waiting in the shared pool: the next pool task to run claims it, with
    # others, into one chunk (a deadline rush then fills chunks, not one task per answer).
    grading_pooled = models.BooleanField(default=False)
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
        indexes = [
            models.Index(fields=["status", "grading_started_at"]),
            models.Index(
                fields=["id"], condition=Q(grading_pooled=True), name="answer_grading_pool"
            ),
        ]

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
    # Prompt tokens the server's prefix cache served (vLLM reports them with
    # --enable-prompt-tokens-details; 0 when the server does not say).
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
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

    @property
    def student_feedback(self) -> str:
        """The comment this proposal offers the student: the model's feedback. The offline
        rule engine writes none (what it has to say is for the teacher: its rationales);
        proposals it stored before it stopped writing a teacher-only placeholder there are
        read the same way, so that text never reaches a student."""
        return "" if self.scorer == Scorer.RULES else self.feedback

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

    `hash` is an HMAC, under a key kept outside the database, of the event's content as
    stored, its position `seq` and `prev_hash` (`grading.audit`); changing, removing or
    re-hashing any stored row breaks the chain from that row on.
    """

    # How `hash` was computed. Events written before the keyed chain keep version 1
    # (unkeyed SHA-256); `grading.audit` accepts them only before the first keyed event and
    # only while a signed seal in the checkpoint store vouches for them.
    HASH_LEGACY_SHA256 = 1
    HASH_HMAC_SHA256 = 2

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
    # 1, 2, 3 … along the chain, inside the hash: a checkpoint names a position, and a
    # gap shows without counting rows. Empty on version-1 events, which predate it.
    seq = models.PositiveBigIntegerField(null=True, blank=True, unique=True, editable=False)
    hash_version = models.PositiveSmallIntegerField(default=HASH_HMAC_SHA256, editable=False)

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


# --- Webhooks ------------------------------------------------------------------------


class WebhookEvent(models.TextChoices):
    """What a course's webhook subscription can ask to be told about (README: Webhooks)."""

    GRADING_FINISHED = "grading.finished", _("Grading finished")
    NEEDS_REVIEW = "grade.needs_review", _("Answers need a teacher's review")
    GRADES_RELEASED = "grades.released", _("Grades released")
    REGRADE_REQUESTED = "regrade.requested", _("Regrade requested")


# Sent by the "send test event" action only; no subscription chooses it.
WEBHOOK_TEST_EVENT = "webhook.test"


def webhook_secret_new() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class WebhookSubscription(models.Model):
    """A receiver of a course's events: an HTTPS URL, the events it wants, its secret.

    The secret signs every delivery (`grading.webhooks`). It must be readable to sign, so
    it is stored as is; it is shown once when a subscription is created through the API.
    """

    course = models.ForeignKey(
        "courses.Course",
        on_delete=models.CASCADE,
        related_name="webhook_subscriptions",
        verbose_name=_("course"),
    )
    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    secret = models.CharField(
        _("signing secret"), max_length=100, default=webhook_secret_new, editable=False
    )
    event_types = models.JSONField(_("events"), default=list)
    active = models.BooleanField(_("active"), default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["course", "-created_at"]
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self) -> str:
        return f"{self.course} → {self.url}"

    def clean(self) -> None:
        from .webhooks import webhook_event_types_clean, webhook_url_check

        errors: dict[str, list[str]] = {}
        try:
            webhook_url_check(self.url)
        except ValidationError as exc:
            errors["url"] = exc.messages
        try:
            self.event_types = webhook_event_types_clean(self.event_types)
        except ValidationError as exc:
            errors["event_types"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def wants(self, event_type: str) -> bool:
        return self.active and event_type in (self.event_types or [])


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event on its way to one subscription: the log of its attempts.

    `event_id` is the `webhook-id` header, the same on every retry so that a receiver
    can drop duplicates; one subscription never gets two deliveries of one event.
    """

    subscription = models.ForeignKey(
        WebhookSubscription,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("subscription"),
    )
    event_id = models.CharField(_("event id"), max_length=64)
    event_type = models.CharField(_("event"), max_length=40)
    payload = models.JSONField(_("payload"), encoder=UnicodeJSONEncoder)
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_response_code = models.PositiveSmallIntegerField(
        _("last response code"), null=True, blank=True
    )
    last_error = models.TextField(_("last error"), blank=True)
    # One entry per attempt: {"at", "code", "error", "ms"}; bounded by WEBHOOK_MAX_ATTEMPTS.
    history = models.JSONField(_("attempt history"), default=list, blank=True)
    # While pending: when the next attempt is due (a claimed attempt pushes it past its
    # timeout, so a second copy of the task waits instead of sending twice).
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="one_delivery_per_event"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in DeliveryStatus]),
                name="webhook_delivery_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.subscription_id}"


# --- Integrations: API keys and idempotent requests ------------------------------------


class ApiScope(models.TextChoices):
    """What an API key may do in its courses (README: API)."""

    READ = "read", _("Read courses, work and grades")
    SUBMIT = "submit", _("Hand in work for students")
    GRADE = "grade", _("Start grading, approve and override")
    RELEASE = "release", _("Release and hide grades")


API_KEY_PREFIX = "mw_"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A school system's key to the API, for its courses (or the whole site) and scopes.

    The key itself is shown once and never stored: only its SHA-256 (a key has 256 random
    bits, so a fast hash is as safe as a slow one) and the public `prefix` that finds the
    row. Each key acts as its own service account (`user`, which cannot log in), so the
    audit trail and every grade it approves name the key, not a person.
    """

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="api_key",
        editable=False,
        verbose_name=_("service account"),
    )
    site_wide = models.BooleanField(
        _("whole site"), default=False, help_text=_("Every course, now and later.")
    )
    courses = models.ManyToManyField(
        "courses.Course", blank=True, related_name="api_keys", verbose_name=_("courses")
    )
    scopes = models.JSONField(_("scopes"), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in (self.scopes or [])

    def clean(self) -> None:
        unknown = sorted(set(self.scopes or []) - set(ApiScope.values))
        if unknown or not self.scopes:
            raise ValidationError(
                {"scopes": _("Choose one or more of: %(s)s.") % {"s": ", ".join(ApiScope.values)}}
            )

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


class IdempotencyRecord(models.Model):
    """The first response to a POST sent with an `Idempotency-Key`, kept for 24 hours.

    The row is inserted before the request's work starts (`status_code` empty), so the
    unique constraint makes the database pick one winner among racing retries; the others
    wait for its response and replay it (`grading.api.idempotency`).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of method, path, query and (canonical JSON) body: the same key with another
    # request is the client's mistake, not a retry.
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(encoder=UnicodeJSONEncoder, null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("idempotent request")
        verbose_name_plural = _("idempotent requests")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_key_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.key}"


# --- The review workspace: inline comments and each teacher's comment bank ------------


class AnswerComment(models.Model):
    """A teacher's comment on one passage of a student's answer (an annotation).

    `start` and `end` count characters (code points) of the answer's text, as the service
    checked them against `quote`; the student sees these beside their answer once grades
    are released, as they see the grade's feedback.
    """

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    start = models.PositiveIntegerField(_("start"))
    end = models.PositiveIntegerField(_("end"))
    quote = models.TextField(_("passage"))
    body = models.TextField(_("comment"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["answer", "start", "end", "id"]
        verbose_name = _("inline comment")
        verbose_name_plural = _("inline comments")
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=F("start")), name="comment_passage_nonempty"
            ),
            models.CheckConstraint(condition=~Q(body=""), name="comment_has_body"),
        ]

    def __str__(self) -> str:
        return f"{self.answer_id} [{self.start}:{self.end}]"


class CommentBankEntry(models.Model):
    """A comment a teacher saved to reuse: in feedback, or on a passage of an answer."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comment_bank"
    )
    text = models.TextField(_("comment"))
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=[("zh-hans", "简体中文"), ("en", "English")],
        default="zh-hans",
    )
    uses = models.PositiveIntegerField(_("times used"), default=0)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["owner", "-uses", "-created_at"]
        verbose_name = _("saved comment")
        verbose_name_plural = _("saved comments")
        constraints = [
            models.UniqueConstraint(fields=["owner", "text"], name="one_bank_entry_per_text"),
            models.CheckConstraint(condition=~Q(text=""), name="bank_entry_has_text"),
        ]

    def __str__(self) -> str:
        return self.text[:40]


# --- The model endpoints: circuit breaker and concurrency budget ----------------------------
# Used when REDIS_URL is empty; with Redis the same state lives there (grading/llm_state.py).


class ModelEndpointState(models.Model):
    """The shared circuit breaker of one model endpoint: open while the server is down.

    Every worker process reads it before sending a chunk; the one that sees the outage
    opens it, and a probe of /models closes it again.
    """

    url = models.CharField(max_length=500, unique=True)
    open_since = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    probe_interval = models.FloatField(default=0)  # seconds; doubled per failed probe
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("model endpoint")
        verbose_name_plural = _("model endpoints")

    def __str__(self) -> str:
        return self.url


class ModelSlot(models.Model):
    """One request slot of an endpoint's cluster-wide budget (LLM_MAX_CONCURRENCY rows).

    A worker leases free or expired rows in batches and renews them while it sends; a
    worker that dies leaves leases that expire, never a budget that shrinks for good.
    """

    endpoint = models.CharField(max_length=500)
    number = models.PositiveIntegerField()
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("model request slot")
        verbose_name_plural = _("model request slots")
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "number"], name="one_slot_per_number")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} #{self.number}"


# --- Calibration ---------------------------------------------------------------------


class ExemplarChoice(models.Model):
    """A teacher's say on whether a graded answer teaches the AI its question's standard.

    Every answer a teacher graded (accepted, overrode or graded by hand) is an exemplar
    for its question by default. `pinned` answers go first into the model's prompt;
    `excluded` ones (an odd answer, a grade given for reasons the text does not show)
    are never used. No row: the default.
    """

    answer = models.OneToOneField(Answer, on_delete=models.CASCADE, related_name="exemplar_choice")
    pinned = models.BooleanField(_("pinned as exemplar"))
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    chosen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("exemplar choice")
        verbose_name_plural = _("exemplar choices")

    def __str__(self) -> str:
        return f"{self.answer_id}: {'pinned' if self.pinned else 'excluded'}"
