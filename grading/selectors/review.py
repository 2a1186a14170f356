"""Reads for teachers grading: the rubric an answer is graded against, progress, the
review queue and workspace, the release preview, and the raw audit events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils.translation import gettext

from courses.models import (
    SUBJECTIVE_KINDS,
    Assignment,
    AssignmentState,
    Enrollment,
    Role,
)
from courses.models import User as UserModel

from ..models import (
    Answer,
    AnswerComment,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    AuditEvent,
    CommentBankEntry,
    RegradeRequest,
    RegradeStatus,
    Rubric,
    Snapshot,
    Submission,
    SubmissionStatus,
)

REVIEWABLE = (AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL, AnswerStatus.APPROVED)


# --- The rubric an answer is graded against -----------------------------------------------


def grading_proposal(*, answer: Answer) -> Assessment | None:
    """The answer's current AI (or rule) proposal, if its scoring run completed."""
    proposal = answer.current_assessment
    if proposal is None or proposal.status != AssessmentStatus.COMPLETED:
        return None
    return proposal


def grading_rubric(*, answer: Answer) -> dict[str, Any] | None:
    """The rubric snapshot a grade for this answer is given against.

    The snapshot its current proposal was scored with, so a rubric edited since
    never rewrites what the teacher approves; with no proposal (manual grading,
    a failed run), the question's current rubric; None when the question has none.
    """
    proposal = grading_proposal(answer=answer)
    if proposal is not None and proposal.rubric_snapshot is not None:
        return proposal.rubric_snapshot.data
    rubric = answer.question.rubric
    return rubric.snapshot() if rubric is not None else None


# --- Answers scored with an older rubric version -------------------------------------


def rubric_outdated_answers(*, rubric: Rubric) -> QuerySet[Answer]:
    """Answers to questions now on this version whose current proposal was scored with an
    earlier version of the same rubric."""
    older = Snapshot.objects.filter(data__lineage=str(rubric.lineage)).exclude(data__id=rubric.pk)
    return Answer.objects.filter(
        question__rubric=rubric, current_assessment__rubric_snapshot__in=older
    )


def rubric_outdated_by_assignment(*, rubric: Rubric) -> list[dict[str, Any]]:
    """Per assignment: how many answers were scored with an older version, how many of those
    are still awaiting review (a regrade replaces their proposal) and how many are approved
    (their grades stand unless the teacher reopens them)."""
    rows = (
        rubric_outdated_answers(rubric=rubric)
        .values("question__assignment_id")
        .annotate(
            total=Count("pk"),
            approved=Count("pk", filter=Q(status=AnswerStatus.APPROVED)),
        )
    )
    titles = dict(
        Assignment.objects.filter(pk__in=[r["question__assignment_id"] for r in rows]).values_list(
            "pk", "title"
        )
    )
    return [
        {
            "assignment_id": r["question__assignment_id"],
            "title": titles.get(r["question__assignment_id"], ""),
            "total": r["total"],
            "approved": r["approved"],
            "regradable": r["total"] - r["approved"],
        }
        for r in rows
    ]


def assignment_outdated_questions(*, assignment: Assignment) -> list[dict[str, Any]]:
    """Questions of this assignment with answers scored against an older rubric version."""
    rows = []
    for question in assignment.questions.filter(rubric__isnull=False).select_related("rubric"):
        if question.rubric is None:
            continue
        answers = rubric_outdated_answers(rubric=question.rubric).filter(question=question)
        count = answers.count()
        if count:
            waiting = answers.exclude(status=AnswerStatus.APPROVED).count()
            rows.append(
                {
                    "question": question,
                    "rubric": question.rubric,
                    "count": count,
                    "regradable": waiting,
                }
            )
    return rows


# --- Progress -------------------------------------------------------------------------------


def assignment_progress(*, assignment: Assignment) -> dict[str, int]:
    """Answers by status for one assignment (submitted work only)."""
    counts = {status.value: 0 for status in AnswerStatus}
    rows = (
        Answer.objects.filter(
            submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
        )
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    for status, n in rows:
        counts[status] = n
    return counts


def assignment_usage(*, assignment: Assignment, since: datetime | None = None) -> dict[str, int]:
    """Model tokens spent on an assignment (since a moment, e.g. the start of a run), and
    how many prompt tokens the server's prefix cache served."""
    qs = Assessment.objects.filter(answer__submission__assignment=assignment)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    totals = qs.aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens"), k=Sum("cached_tokens")
    )
    return {
        "prompt_tokens": totals["p"] or 0,
        "completion_tokens": totals["c"] or 0,
        "cached_tokens": totals["k"] or 0,
    }


def assignment_waiting_for_model(*, assignment: Assignment) -> datetime | None:
    """Since when the assignment's grading has been waiting for the model server to come
    back (its earliest waiting answer), or None when nothing waits."""
    since: datetime | None = Answer.objects.filter(
        submission__assignment=assignment,
        status=AnswerStatus.GRADING,
        waiting_for_model_since__isnull=False,
    ).aggregate(since=Min("waiting_for_model_since"))["since"]
    return since


# --- Review -----------------------------------------------------------------------------------


def review_queue(*, assignment: Assignment, status: str = "") -> QuerySet[Answer]:
    """Subjective answers to review; manual, flagged and low-confidence first."""
    answers = (
        Answer.objects.filter(
            submission__assignment=assignment,
            submission__status=SubmissionStatus.SUBMITTED,
            question__kind__in=SUBJECTIVE_KINDS,
            status__in=REVIEWABLE,
        )
        .select_related(
            "submission__student",
            "question",
            "current_assessment",
            "final_grade__approved_by",
        )
        .annotate(
            attention=Case(
                When(status=AnswerStatus.NEEDS_MANUAL, then=Value(0)),
                When(~Q(current_assessment__flags=[]), then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
    )
    if status in REVIEWABLE:
        answers = answers.filter(status=status)
    return answers.order_by(
        "attention",
        F("current_assessment__confidence").asc(nulls_last=True),
        "question__order",
        "pk",
    )


def review_neighbours(*, answer: Answer, assignment: Assignment) -> dict[str, Any]:
    """Where the answer stands in the review queue, and the answers either side of it."""
    order = list(review_queue(assignment=assignment).values_list("pk", flat=True))
    index = order.index(answer.pk) if answer.pk in order else -1
    return {
        "previous_id": order[index - 1] if index > 0 else None,
        "next_id": order[index + 1] if 0 <= index < len(order) - 1 else None,
        "position": index + 1,
        "queue_length": len(order),
    }


def regrade_requests_open(*, assignment: Assignment) -> QuerySet[RegradeRequest]:
    return RegradeRequest.objects.filter(
        answer__question__assignment=assignment, status=RegradeStatus.OPEN
    ).select_related("answer__question", "answer__submission__student")


# --- The review workspace -------------------------------------------------------------------


def review_waiting(*, assignment: Assignment) -> dict[str, int]:
    """Answers of this assignment still waiting for a teacher, and how many of them are
    flagged or need manual grading: what a bulk approval leaves behind."""
    return Answer.objects.filter(
        submission__assignment=assignment,
        submission__status=SubmissionStatus.SUBMITTED,
        status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL],
    ).aggregate(
        waiting=Count("pk"),
        flagged=Count(
            "pk",
            filter=Q(status=AnswerStatus.NEEDS_MANUAL) | ~Q(current_assessment__flags=[]),
        ),
    )


def answer_comments(*, answer: Answer) -> list[AnswerComment]:
    """The inline comments on one answer, in the order of the passages they cover."""
    return list(answer.comments.select_related("author"))


def comment_bank(
    *, owner: UserModel, query: str = "", language: str = ""
) -> QuerySet[CommentBankEntry]:
    """A teacher's saved comments, the most used first; `query` matches any part of the
    text (Chinese has no words to split on), `language` keeps one language."""
    entries = CommentBankEntry.objects.filter(owner=owner)
    if query.strip():
        entries = entries.filter(text__icontains=query.strip())
    if language:
        entries = entries.filter(language=language)
    return entries.order_by("-uses", "-last_used_at", "-created_at", "-pk")


def assignment_missing_students(*, assignment: Assignment) -> QuerySet[UserModel]:
    """Current students of the course who have not handed in this assignment (nobody can
    hand in a draft, so none are missing from one)."""
    if assignment.state == AssignmentState.DRAFT:
        return UserModel.objects.none()
    handed_in = Submission.objects.filter(
        assignment=assignment, student=OuterRef("pk"), status=SubmissionStatus.SUBMITTED
    )
    return (
        UserModel.objects.filter(
            enrollments__course_id=assignment.course_id,
            enrollments__role=Role.STUDENT,
            enrollments__ended_at__isnull=True,
        )
        .filter(~Exists(handed_in))
        .distinct()
        .order_by("student_number", "username")
    )


@dataclass(frozen=True)
class ReleasePreview:
    """What releasing an assignment's grades shows students now, and what it does not."""

    answers_approved: int  # released: students see these grades
    answers_waiting: int  # not released: awaiting review (proposals, manual grading)
    answers_flagged: int  # of those waiting, flagged or needing manual grading
    answers_in_flight: int  # not released: still being graded
    students_complete: int  # see every question graded
    students_partial: int  # see some grades, the rest marked pending
    students_nothing: int  # handed in, nothing approved yet: see "pending" only
    students_missing: int  # current students who never handed in

    @property
    def students_seeing(self) -> int:
        return self.students_complete + self.students_partial

    @property
    def anything_held_back(self) -> bool:
        return bool(self.answers_waiting or self.answers_in_flight)


def release_preview(*, assignment: Assignment) -> ReleasePreview:
    """Counts for the release button. Once released, an answer approved later shows at once,
    so "held back" means "until a teacher approves it", never "for good". Three queries."""
    answers = Answer.objects.filter(
        submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
    )
    counts = answers.aggregate(
        approved=Count("pk", filter=Q(status=AnswerStatus.APPROVED)),
        waiting=Count("pk", filter=Q(status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL])),
        flagged=Count(
            "pk",
            filter=Q(status=AnswerStatus.NEEDS_MANUAL)
            | (Q(status=AnswerStatus.GRADED) & ~Q(current_assessment__flags=[])),
        ),
        in_flight=Count("pk", filter=Q(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING])),
    )
    # Per student: every handed-in answer, and how many of them are approved.
    complete = partial = nothing = 0
    for total, approved in (
        answers.values("submission__student_id")
        .annotate(total=Count("pk"), approved=Count("pk", filter=Q(status=AnswerStatus.APPROVED)))
        .values_list("total", "approved")
        .order_by()
    ):
        if approved == total:
            complete += 1
        elif approved:
            partial += 1
        else:
            nothing += 1
    return ReleasePreview(
        answers_approved=counts["approved"],
        answers_waiting=counts["waiting"],
        answers_flagged=counts["flagged"],
        answers_in_flight=counts["in_flight"],
        students_complete=complete,
        students_partial=partial,
        students_nothing=nothing,
        students_missing=assignment_missing_students(assignment=assignment).count(),
    )


def audit_events(
    *,
    assignment: Assignment | None = None,
    submission: Submission | None = None,
    student_id: int | None = None,
    submission_id: int | None = None,
    question_id: int | None = None,
    actor_id: int | None = None,
    system: bool = False,
    action: str = "",
) -> QuerySet[AuditEvent]:
    """An assignment's (or one submission's) recorded changes, newest first, optionally
    only those about one student (or one of their submissions), one question (its answers
    and the question itself), by one actor (or by the system), or of one action."""
    events = AuditEvent.objects.select_related("actor")
    if submission is not None:
        events = events.filter(submission_id=submission.pk)
    elif assignment is not None:
        events = events.filter(assignment_id=assignment.pk)
    if student_id is not None and assignment is not None:
        events = events.filter(
            submission_id__in=Submission.objects.filter(
                assignment=assignment, student_id=student_id
            ).values("pk")
        )
    if submission_id is not None:
        events = events.filter(submission_id=submission_id)
    if question_id is not None:
        # Plain ids in the trail (no foreign keys): an answer's events name it as text.
        answers = (
            Answer.objects.filter(question_id=question_id)
            .annotate(id_text=Cast("pk", CharField()))
            .values("id_text")
        )
        events = events.filter(
            Q(target_type="grading.answer", target_id__in=answers)
            | Q(target_type="courses.question", target_id=str(question_id))
        )
    if system:
        events = events.filter(actor__isnull=True)
    elif actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if action:
        events = events.filter(action=action)
    return events.order_by("-id")


def audit_actor_labels(*, assignment: Assignment, events: Iterable[AuditEvent]) -> dict[int, str]:
    """Event id → who did it, as a grader of this assignment may be told: the recorded
    actor, except that while grading is anonymous a student is shown by the anonymous
    label of their submission (`Submission.label_for_graders`, the rule every grading page
    uses), never by the username stored in the event."""
    events = list(events)
    labels = {e.pk: e.actor_label for e in events}
    if not assignment.anonymous_grading:
        return labels
    student_of = dict(
        Submission.objects.filter(assignment=assignment).values_list("pk", "student_id")
    )
    # Everyone who was ever a student of the course, so an event without a submission
    # (none today) still hides its student.
    students = set(student_of.values()) | set(
        Enrollment.objects.filter(course_id=assignment.course_id, role=Role.STUDENT).values_list(
            "user_id", flat=True
        )
    )
    for e in events:
        if e.actor_id is None or e.actor_id not in students:
            continue
        if e.submission_id is not None and student_of.get(e.submission_id) == e.actor_id:
            labels[e.pk] = Submission.anonymous_label(e.submission_id)
        else:
            labels[e.pk] = gettext("A student")
    return labels
