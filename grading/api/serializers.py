"""What the API reads and writes. Serializers shape data and check its form; every rule
that spans objects is a service's (`grading.services`, `courses.services`,
`grading.rubrics`), and whom a caller may name is `courses.permissions`'."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from courses.http import MAX_ID, parse_id
from courses.models import (
    Assignment,
    Course,
    Enrollment,
    Language,
    Question,
    QuestionKind,
    ReleasePolicy,
    Role,
    User,
)
from courses.text import clean_text

from ..models import (
    Answer,
    AnswerStatus,
    Assessment,
    AuditEvent,
    Criterion,
    CriterionScoring,
    FinalGrade,
    Level,
    RegradeRequest,
    Rubric,
    Submission,
)
from .problems import TYPE_PREFIX

# --- Fields ---------------------------------------------------------------------------


class IdField(serializers.IntegerField):
    """An object's id: a JSON number, or a string of ASCII digits, from 1 to MAX_ID; read
    through `courses.http.parse_id` like every id the pages take. Anything else (true,
    "²", 1.5, 10**30) is a field error, never a database error."""

    default_error_messages = {
        # DRF formats its messages with str.format when the field fails.
        "invalid": gettext_lazy("Give an id: a whole number from 1 to {max}.")
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        number: int | None = None
        if isinstance(data, int) and not isinstance(data, bool):
            number = data if 1 <= data <= MAX_ID else None
        elif isinstance(data, str):
            number = parse_id(data)
        if number is None:
            self.fail("invalid", max=MAX_ID)
        return number  # type: ignore[return-value]


class TextField(serializers.CharField):
    """Text as people type it, cleaned by the one shared rule (`courses.text.clean_text`:
    NUL and other control characters removed, line breaks as "\\n") before any check, as
    the forms do."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, (str, int, float)):
            self.fail("invalid")
        return clean_text(str(data))


class ModelSerializer(serializers.ModelSerializer):
    """Model fields as they are, not as the database stores them: an integer field's upper
    bound comes from the database (2**31 - 1 on PostgreSQL, 2**63 - 1 on SQLite), and the
    published document must not depend on where it was generated."""

    def build_standard_field(self, field_name: str, model_field: Any) -> tuple[Any, dict]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        kwargs.pop("max_value", None)
        return field_class, kwargs


def _label_for(submission: Submission, names: bool) -> str:
    return submission.student.display_name if names else Submission.anonymous_label(submission.pk)


# --- Problems (documentation only: the exception handler writes them) --------------------


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField(
        help_text=f"The kind of problem, a stable URI (`{TYPE_PREFIX}validation-error`, …)."
    )
    title = serializers.CharField(help_text="Short, translated name of the kind of problem.")
    status = serializers.IntegerField(help_text="The HTTP status code.")
    detail = serializers.CharField(help_text="What went wrong this time, for a person.")
    instance = serializers.CharField(help_text="The path of the request.")
    request_id = serializers.CharField(help_text="Quote it when asking for help.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text=(
            "Validation problems only: each field, as a dotted path into the request "
            '(`answers.0.question`), with its messages; `"non_field_errors"` for the rest.'
        ),
    )
    current_version = serializers.IntegerField(
        required=False, help_text="Precondition failures of grades: the version now stored."
    )


# --- People, courses, enrollments -------------------------------------------------------


class PersonSerializer(ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "name", "student_number"]


class CourseSerializer(ModelSerializer):
    class Meta:
        model = Course
        fields = ["id", "code", "title", "term", "language", "archived", "created_at"]


class EnrollmentSerializer(ModelSerializer):
    user = PersonSerializer(read_only=True)
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = Enrollment
        fields = ["id", "course", "user", "role", "active", "created_at", "ended_at"]


class EnrollmentCreateSerializer(serializers.Serializer):
    identifier = TextField(
        max_length=150, help_text="The person's username, e-mail or student number."
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.STUDENT)


# --- Rubrics ---------------------------------------------------------------------------


class LevelSerializer(ModelSerializer):
    class Meta:
        model = Level
        fields = ["points", "title", "descriptor"]


class CriterionSerializer(ModelSerializer):
    levels = LevelSerializer(many=True, read_only=True)

    class Meta:
        model = Criterion
        fields = ["id", "order", "title", "description", "max_points", "scoring", "levels"]


class RubricSerializer(ModelSerializer):
    criteria = CriterionSerializer(many=True, read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    max_points = serializers.IntegerField(read_only=True)

    class Meta:
        model = Rubric
        fields = [
            "id",
            "lineage",
            "version",
            "title",
            "description",
            "language",
            "is_template",
            "owner",
            "max_points",
            "criteria",
            "created_at",
        ]


class LevelInputSerializer(serializers.Serializer):
    points = serializers.IntegerField(min_value=0, max_value=1000)
    title = TextField(max_length=100, required=False, allow_blank=True, default="")
    descriptor = TextField(max_length=2000)


class CriterionInputSerializer(serializers.Serializer):
    title = TextField(max_length=200)
    description = TextField(max_length=4000, required=False, allow_blank=True, default="")
    max_points = serializers.IntegerField(min_value=1, max_value=1000)
    scoring = serializers.ChoiceField(
        choices=CriterionScoring.choices, default=CriterionScoring.RANGE
    )
    levels = LevelInputSerializer(many=True, required=False, default=list, max_length=20)


class RubricCreateSerializer(serializers.Serializer):
    title = TextField(max_length=200)
    description = TextField(max_length=4000, required=False, allow_blank=True, default="")
    language = serializers.ChoiceField(choices=Language.choices, default=Language.ZH_HANS)
    criteria = CriterionInputSerializer(many=True, required=False, default=list, max_length=50)


class RubricCopySerializer(serializers.Serializer):
    title = TextField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="The copy's title; the original's when empty.",
    )


# --- Assignments and questions -------------------------------------------------------------


class StaffOnlyFieldsMixin:
    """Fields only staff see are null in a student's view (`context["student_view"]`):
    one shape for everyone, so a client reads one schema."""

    staff_only: tuple[str, ...] = ()
    context: dict[str, Any]

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)  # type: ignore[misc]
        if self.context.get("student_view"):
            for name in self.staff_only:
                data[name] = None
        return data


class OptionSerializer(serializers.Serializer):
    key = serializers.CharField()
    text = serializers.CharField()


class QuestionSerializer(StaffOnlyFieldsMixin, ModelSerializer):
    """A question. Students get `rubric`, `answer_key`, `reference_answer` and
    `grader_guidelines` as null, as their page shows none of them."""

    staff_only = ("rubric", "answer_key", "reference_answer", "grader_guidelines")

    max_points = serializers.IntegerField(read_only=True)
    options = OptionSerializer(many=True, read_only=True)
    rubric = RubricSerializer(read_only=True, allow_null=True)
    answer_key = serializers.JSONField(read_only=True, allow_null=True)
    reference_answer = serializers.CharField(read_only=True, allow_null=True)
    grader_guidelines = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = Question
        fields = [
            "id",
            "order",
            "kind",
            "prompt",
            "points",
            "max_points",
            "options",
            "answer_key",
            "rubric",
            "reference_answer",
            "grader_guidelines",
        ]


_ASSIGNMENT_FIELDS = [
    "id",
    "course",
    "title",
    "instructions",
    "language",
    "state",
    "due_at",
    "late_policy",
    "attempts_allowed",
    "grading_mode",
    "release_policy",
    "anonymous_grading",
    "grades_released_at",
    "created_at",
    "updated_at",
]


class AssignmentSerializer(ModelSerializer):
    class Meta:
        model = Assignment
        fields = _ASSIGNMENT_FIELDS


class AssignmentDetailSerializer(ModelSerializer):
    questions = QuestionSerializer(many=True, read_only=True)

    class Meta:
        model = Assignment
        fields = [*_ASSIGNMENT_FIELDS, "questions"]


# --- Submissions ---------------------------------------------------------------------------


class AnswerBriefSerializer(ModelSerializer):
    class Meta:
        model = Answer
        fields = ["id", "question", "text", "choices", "status"]


class SubmissionSerializer(ModelSerializer):
    student = serializers.SerializerMethodField()
    student_label = serializers.SerializerMethodField()
    answers = AnswerBriefSerializer(many=True, read_only=True)

    class Meta:
        model = Submission
        fields = [
            "id",
            "assignment",
            "student",
            "student_label",
            "attempt",
            "status",
            "submitted_at",
            "is_late",
            "answers",
            "created_at",
            "updated_at",
        ]

    def _names(self, submission: Submission) -> bool:
        return bool(self.context.get("names", True)) or (
            self.context.get("self_id") == submission.student_id
        )

    @extend_schema_field(PersonSerializer(allow_null=True))
    def get_student(self, submission: Submission) -> dict[str, Any] | None:
        if not self._names(submission):
            return None  # anonymous grading: graders do not learn who it is
        return dict(PersonSerializer(submission.student).data)

    def get_student_label(self, submission: Submission) -> str:
        """The student's name, or the anonymous label while grading is anonymous."""
        return _label_for(submission, self._names(submission))


class AnswerInputSerializer(serializers.Serializer):
    question = IdField(help_text="The question's id (see the assignment's `questions`).")
    text = TextField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=(
            "The answer. Choice questions take the option key(s), e.g. `B` or `A,C` "
            "(or the option's text); numeric questions the number; text questions the text."
        ),
    )


_SEPARATORS = re.compile(r"[\s,，、;；/|]+")


def choices_from_text(question: Question, text: str) -> list[str]:
    """The option keys a choice answer written as text names: `B`, `a, c`, `AC`, or an
    option's text. Raises ValidationError naming the options when it names none."""
    options = [o for o in question.options or [] if isinstance(o, dict)]
    by_key = {str(o.get("key", "")).casefold(): str(o.get("key", "")) for o in options}
    by_text = {str(o.get("text", "")).strip().casefold(): str(o.get("key", "")) for o in options}
    wanted = text.strip()
    if not wanted:
        return []
    if wanted.casefold() in by_text and wanted.casefold() not in by_key:
        return [by_text[wanted.casefold()]]
    tokens = [t for t in _SEPARATORS.split(wanted) if t]
    if len(tokens) == 1 and tokens[0].casefold() not in by_key:
        tokens = list(tokens[0])  # "AC": two one-letter keys written together
    chosen: list[str] = []
    for token in tokens:
        key = by_key.get(token.casefold())
        if key is None:
            raise serializers.ValidationError(
                _("“%(t)s” is not an option of this question (%(keys)s).")
                % {"t": token, "keys": ", ".join(by_key.values())}
            )
        if key not in chosen:
            chosen.append(key)
    if question.kind == QuestionKind.SINGLE_CHOICE and len(chosen) > 1:
        raise serializers.ValidationError(_("This question takes one option."))
    return chosen


class SubmissionCreateSerializer(serializers.Serializer):
    """A hand-in. The view passes the assignment as context; questions it does not name
    are handed in blank, as on the page."""

    student = TextField(
        required=False,
        max_length=150,
        help_text=(
            "API keys only: the student's username or student number. "
            "A student's own session leaves it out."
        ),
    )
    answers = AnswerInputSerializer(many=True, max_length=500)

    def validate_answers(self, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assignment: Assignment = self.context["assignment"]
        questions = {q.pk: q for q in assignment.questions.all()}
        limit = settings.ANSWER_MAX_CHARS
        errors: list[dict[str, list[str]]] = []
        seen: set[int] = set()
        for item in answers:
            error: dict[str, list[str]] = {}
            question = questions.get(item["question"])
            if question is None:
                error["question"] = [_("Not a question of this assignment.")]
            elif item["question"] in seen:
                error["question"] = [_("Answered twice; send one answer per question.")]
            elif len(item["text"]) > limit:
                error["text"] = [
                    _("This answer has %(count)s characters; at most %(max)s fit.")
                    % {"count": len(item["text"]), "max": limit}
                ]
            elif question.is_choice:
                try:
                    item["choices"] = choices_from_text(question, item["text"])
                except serializers.ValidationError as exc:
                    error["text"] = [str(m) for m in exc.detail]
                item["text"] = ""
            seen.add(item["question"])
            errors.append(error)
        if any(errors):
            raise serializers.ValidationError(errors)
        return answers


# --- Answers, proposals and grades ---------------------------------------------------------


class CriterionScoreSerializer(serializers.Serializer):
    criterion = serializers.IntegerField(source="criterion_id")
    points = serializers.IntegerField()
    max_points = serializers.IntegerField()
    rationale = serializers.CharField()


class AssessmentSerializer(ModelSerializer):
    """One scoring run (a proposal): by the model, the offline rules or the answer key."""

    scores = CriterionScoreSerializer(many=True, read_only=True)
    is_current = serializers.SerializerMethodField()
    flags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Assessment
        fields = [
            "id",
            "answer",
            "scorer",
            "status",
            "is_current",
            "model",
            "prompt_version",
            "total",
            "max_total",
            "confidence",
            "flags",
            "feedback",
            "scores",
            "error",
            "latency_ms",
            "prompt_tokens",
            "completion_tokens",
            "attempt",
            "created_at",
        ]

    def get_is_current(self, assessment: Assessment) -> bool:
        return bool(assessment.answer.current_assessment_id == assessment.pk)


class GradeCriterionSerializer(StaffOnlyFieldsMixin, serializers.Serializer):
    staff_only = ("ai_points",)

    criterion = serializers.IntegerField(source="criterion_id")
    title = serializers.CharField(source="criterion.title")
    points = serializers.IntegerField()
    max_points = serializers.IntegerField()
    ai_points = serializers.IntegerField(
        allow_null=True, help_text="The AI's proposal (null for students and manual grades)."
    )


class GradeSerializer(StaffOnlyFieldsMixin, ModelSerializer):
    """An approved grade. `version` is its ETag: send it back in If-Match to change it.
    Students see their own released grades, with `source`, `override_reason` and
    `approved_by` null."""

    staff_only = ("source", "override_reason", "approved_by")

    criteria = GradeCriterionSerializer(many=True, read_only=True)
    approved_by = serializers.SerializerMethodField()
    question = serializers.IntegerField(source="answer.question_id", read_only=True)
    submission = serializers.IntegerField(source="answer.submission_id", read_only=True)
    source = serializers.CharField(read_only=True, allow_null=True)
    override_reason = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = FinalGrade
        fields = [
            "id",
            "answer",
            "question",
            "submission",
            "points",
            "max_points",
            "feedback",
            "source",
            "override_reason",
            "criteria",
            "approved_by",
            "approved_at",
            "version",
        ]

    @extend_schema_field(OpenApiTypes.STR)
    def get_approved_by(self, grade: FinalGrade) -> str | None:
        return grade.approved_by.display_name if grade.approved_by else ""


class ReviewAnswerSerializer(ModelSerializer):
    """An answer as its graders see it: the text, the current proposal, the grade."""

    submission = serializers.IntegerField(source="submission_id", read_only=True)
    student_label = serializers.SerializerMethodField()
    proposal = AssessmentSerializer(source="current_assessment", read_only=True, allow_null=True)
    grade = serializers.SerializerMethodField()

    class Meta:
        model = Answer
        fields = [
            "id",
            "submission",
            "student_label",
            "question",
            "text",
            "choices",
            "status",
            "status_reason",
            "proposal",
            "grade",
            "updated_at",
        ]

    def get_student_label(self, answer: Answer) -> str:
        return _label_for(answer.submission, bool(self.context.get("names", True)))

    @extend_schema_field(GradeSerializer(allow_null=True))
    def get_grade(self, answer: Answer) -> dict[str, Any] | None:
        grade = getattr(answer, "final_grade", None)
        return dict(GradeSerializer(grade).data) if grade is not None else None


def scores_by_criterion(scores: list[dict[str, int]]) -> dict[int, int]:
    ids = [s["criterion"] for s in scores]
    if len(set(ids)) != len(ids):
        raise serializers.ValidationError(_("Give each criterion once."))
    return {s["criterion"]: s["points"] for s in scores}


class ScoreInputSerializer(serializers.Serializer):
    criterion = IdField(help_text="A criterion of the rubric the answer is graded against.")
    points = serializers.IntegerField(min_value=0, max_value=100_000)


class GradeApproveSerializer(serializers.Serializer):
    scores = ScoreInputSerializer(
        many=True,
        required=False,
        default=list,
        max_length=100,
        help_text="Per-criterion points; criteria left out keep the AI proposal.",
    )
    feedback = TextField(
        required=False,
        allow_null=True,
        default=None,
        max_length=20_000,
        help_text="Feedback for the student; the proposal's when left out.",
    )
    reason = TextField(
        required=False,
        allow_blank=True,
        default="",
        max_length=4000,
        help_text="Why a score differs from the proposal (required for an override).",
    )
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_ID,
        help_text="The grade's version you saw (alternative to If-Match); null for none.",
    )

    def validate_scores(self, scores: list[dict[str, int]]) -> dict[int, int]:
        return scores_by_criterion(scores)


class BulkApproveSerializer(serializers.Serializer):
    answers = serializers.ListField(
        child=IdField(), max_length=1000, help_text="Answers whose proposals to accept."
    )
    include_flagged = serializers.ListField(
        child=IdField(),
        required=False,
        default=list,
        max_length=1000,
        help_text="Low-confidence answers to accept anyway, each named on purpose.",
    )
    include_low_confidence = serializers.BooleanField(
        default=False, help_text="Accept every low-confidence proposal among `answers` too."
    )


class BulkApproveResultSerializer(serializers.Serializer):
    approved = serializers.IntegerField()
    approved_low_confidence = serializers.IntegerField(
        help_text="Of `approved`: low-confidence proposals accepted on purpose."
    )
    skipped_low_confidence = serializers.IntegerField(
        help_text="Low-confidence proposals not asked for: left for review."
    )
    refused = serializers.IntegerField(
        help_text="Blank, off-topic or suspected prompt-injection answers: one by one only."
    )
    skipped = serializers.IntegerField(help_text="skipped_low_confidence + refused.")


# --- Grading and release -------------------------------------------------------------------


class GradingStartSerializer(serializers.Serializer):
    force = serializers.BooleanField(
        default=False, help_text="Regrade even answers whose inputs did not change."
    )


class ProgressSerializer(serializers.Serializer):
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Handed-in answers by status: " + ", ".join(AnswerStatus.values) + ".",
    )
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Answers no longer waiting for a scorer.")
    in_flight = serializers.IntegerField(help_text="Answers queued or being graded.")
    finished = serializers.BooleanField()


class GradingStartedSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Answers sent to the grading queue.")
    progress = ProgressSerializer()


class ReleaseSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    grades_released_at = serializers.DateTimeField(allow_null=True)
    release_policy = serializers.ChoiceField(choices=ReleasePolicy.choices)


# --- Regrade requests -----------------------------------------------------------------------


class RegradeRequestSerializer(ModelSerializer):
    assignment = serializers.IntegerField(source="answer.question.assignment_id", read_only=True)
    question = serializers.IntegerField(source="answer.question_id", read_only=True)

    class Meta:
        model = RegradeRequest
        fields = [
            "id",
            "answer",
            "assignment",
            "question",
            "comment",
            "status",
            "response",
            "created_at",
            "answered_at",
        ]


class RegradeCreateSerializer(serializers.Serializer):
    answer = IdField(help_text="Your answer whose released grade you would like looked at.")
    comment = TextField(max_length=4000)


class RegradeAnswerSerializer(serializers.Serializer):
    response = TextField(max_length=4000, help_text="Your answer to the student.")
    scores = ScoreInputSerializer(
        many=True,
        required=False,
        default=list,
        max_length=100,
        help_text="New per-criterion points, if the grade changes.",
    )
    reason = TextField(required=False, allow_blank=True, default="", max_length=4000)

    def validate_scores(self, scores: list[dict[str, int]]) -> dict[int, int]:
        return scores_by_criterion(scores)


# --- Audit trail ------------------------------------------------------------------------------


class AuditEventSerializer(ModelSerializer):
    actor = serializers.SerializerMethodField()
    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "submission_id",
            "before",
            "after",
            "reason",
            "request_id",
            "prev_hash",
            "hash",
        ]

    def get_actor(self, event: AuditEvent) -> str:
        """Who did it, named as graders of the assignment may see (anonymous grading)."""
        labels: dict[int, str] = self.context.get("actors", {})
        return labels.get(event.pk, event.actor_label)
