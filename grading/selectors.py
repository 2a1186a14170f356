"""Reads. Keyword-only functions that return what a page, a command or the API shows.

Nothing here writes. Permission checks stay in `courses.permissions`; callers pass
objects they are allowed to see. One rule lives only here: `grading_rubric`, the
rubric snapshot an answer is graded against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    Prefetch,
    Q,
    QuerySet,
    Sum,
    TextChoices,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from courses.models import (
    SUBJECTIVE_KINDS,
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    QuestionKind,
    Role,
)
from courses.models import User as UserModel

from .models import (
    Answer,
    AnswerComment,
    AnswerStatus,
    Assessment,
    AssessmentStatus,
    AuditEvent,
    CommentBankEntry,
    Criterion,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    RegradeRequest,
    RegradeStatus,
    Rubric,
    Scorer,
    Snapshot,
    Submission,
    SubmissionStatus,
)
from .workspace import level_met

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


# --- What students see ------------------------------------------------------------------------


def submission_current(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's open draft, else their latest handed-in attempt."""
    return (
        Submission.objects.filter(assignment=assignment, student=student)
        .order_by("-attempt")
        .prefetch_related("answers")
        .first()
    )


def submission_handed_in(*, assignment: Assignment, student: UserModel) -> Submission | None:
    """The student's latest handed-in attempt, with its answers."""
    return (
        Submission.objects.filter(
            assignment=assignment, student=student, status=SubmissionStatus.SUBMITTED
        )
        .order_by("-attempt")
        .prefetch_related("answers")
        .first()
    )


def student_visible_grades(*, student: UserModel, assignment: Assignment) -> list[FinalGrade]:
    """The only way a student's grades are read: approved, released, their own."""
    if assignment.grades_released_at is None:
        return []
    return list(
        FinalGrade.objects.filter(
            answer__submission__student=student,
            answer__submission__assignment=assignment,
            answer__status=AnswerStatus.APPROVED,
        )
        .select_related("answer__question")
        .prefetch_related("criteria__criterion", "answer__regrade_requests")
        .order_by("answer__question__order")
    )


def student_pending_answers(*, student: UserModel, assignment: Assignment) -> list[Answer]:
    """Once grades are released, the student's handed-in answers (of their latest attempt)
    that have no approved grade yet: their page marks these "pending", so that a total of
    the approved ones never reads as the final mark."""
    if assignment.grades_released_at is None:
        return []
    latest = (
        Submission.objects.filter(
            assignment=assignment, student=student, status=SubmissionStatus.SUBMITTED
        )
        .order_by("-attempt")
        .values("pk")[:1]
    )
    return list(
        Answer.objects.filter(submission__in=latest)
        .exclude(status=AnswerStatus.APPROVED)
        .select_related("question")
        .order_by("question__order", "question_id")
    )


def student_answer_comments(*, grades: Iterable[FinalGrade]) -> dict[int, list[AnswerComment]]:
    """Answer id → the inline comments a student may read on it: those on the answers of
    grades from `student_visible_grades` (approved, released, their own), by position."""
    comments: dict[int, list[AnswerComment]] = {}
    for comment in AnswerComment.objects.filter(answer_id__in=[g.answer_id for g in grades]):
        comments.setdefault(comment.answer_id, []).append(comment)
    return comments


# --- Export ----------------------------------------------------------------------------------


# A criterion's column: its title, and which of that title it is within its rubric (a
# rubric may hold two criteria of one title; the second exports as "title (2)").
CriterionKey = tuple[str, int]


def _criterion_keys(
    rubric_ids: set[int],
) -> tuple[dict[int, CriterionKey], dict[int, list[int]]]:
    """Criterion id → its column key, and rubric id → its criterion ids in rubric order."""
    keys: dict[int, CriterionKey] = {}
    criteria_of: dict[int, list[int]] = {pk: [] for pk in rubric_ids}
    seen: dict[tuple[int, str], int] = {}
    for pk, rubric_id, title in Criterion.objects.filter(rubric_id__in=rubric_ids).values_list(
        "pk", "rubric_id", "title"
    ):  # the model's ordering: rubric, order, id
        n = seen.get((rubric_id, title), 0) + 1
        seen[(rubric_id, title)] = n
        keys[pk] = (title, n)
        criteria_of[rubric_id].append(pk)
    return keys, criteria_of


class ExportStatus:
    """The `status` column of the grade export: whether a row's total is final."""

    COMPLETE = "complete"  # every question has an approved grade
    INCOMPLETE = "incomplete"  # some question has none yet (listed in `pending`)
    MISSING = "missing"  # a current student who never handed in


def assignment_grade_table(
    *, assignment: Assignment, missing_as_zero: bool = False
) -> tuple[list[str], list[list[Any]]]:
    """Approved grades of every submission, per criterion and in total, for export.

    A cell is empty where no grade was approved: an export never shows a proposal, and an
    answer marked approved without a grade behind it (old data) exports as ungraded.
    Every grade keeps the criteria it was given with: a question's criterion columns are
    the titles of its current rubric and of every rubric version its grades used, so a
    grade from an earlier version is exported in full, beside the newer columns.

    No row looks final unless it is: `status` says complete, incomplete (its total adds
    up only the approved questions; `pending` names the others) or missing, a current
    student who never handed in. A missing student's totals are empty, or 0 with
    `missing_as_zero` (the teacher's choice when exporting).
    """
    questions = list(assignment.questions.order_by("order", "pk"))
    submissions = list(
        Submission.objects.filter(assignment=assignment, status=SubmissionStatus.SUBMITTED)
        .select_related("student")
        .prefetch_related(
            Prefetch(
                "answers",
                queryset=Answer.objects.filter(
                    status=AnswerStatus.APPROVED, final_grade__isnull=False
                ).select_related("final_grade"),
            ),
            Prefetch(
                "answers__final_grade__criteria",
                queryset=FinalCriterionGrade.objects.select_related("criterion"),
            ),
        )
        .order_by("student__username", "attempt")
    )
    # The rubrics each question's columns come from: its current one, then those graded with.
    used: dict[int, set[int]] = {
        q.pk: {q.rubric_id} if q.is_subjective and q.rubric_id else set() for q in questions
    }
    for s in submissions:
        for answer in s.answers.all():
            for row in answer.final_grade.criteria.all():
                used.setdefault(answer.question_id, set()).add(row.criterion.rubric_id)
    keys, criteria_of = _criterion_keys(set().union(*used.values()))

    header = [
        "username",
        "name",
        "student_number",
        "attempt",
        "submitted_at",
        "late",
        "status",
        "pending",
    ]
    columns: list[tuple[int, CriterionKey | None]] = []  # (question id, criterion or total)
    for q in questions:
        # The current rubric first, then older ones newest first (a later version has a
        # higher id); a title takes the place it has in the newest rubric that has it, and
        # titles at the same place sit side by side, newest first.
        ranked = sorted(used.get(q.pk, ()), key=lambda pk: (pk != q.rubric_id, -pk))
        place: dict[CriterionKey, tuple[int, int]] = {}
        for rank, rubric_id in enumerate(ranked):
            for position, criterion_id in enumerate(criteria_of[rubric_id]):
                place.setdefault(keys[criterion_id], (position, rank))
        for title, n in sorted(place, key=place.__getitem__):
            header.append(f"Q{q.order} {title}" if n == 1 else f"Q{q.order} {title} ({n})")
            columns.append((q.pk, (title, n)))
        header.append(f"Q{q.order} total")
        columns.append((q.pk, None))
    header.append("total")
    rows = []
    for s in submissions:
        cells: dict[tuple[int, CriterionKey | None], int] = {}
        for answer in s.answers.all():
            grade = answer.final_grade
            cells[(answer.question_id, None)] = grade.points
            for row in grade.criteria.all():
                cells[(answer.question_id, keys[row.criterion_id])] = row.points
        totals = [cells[k] for k in columns if k[1] is None and k in cells]
        pending = [f"Q{q.order}" for q in questions if (q.pk, None) not in cells]
        rows.append(
            [
                s.student.username,
                s.student.display_name,
                s.student.student_number or "",
                s.attempt,
                timezone.localtime(s.submitted_at).isoformat() if s.submitted_at else "",
                "yes" if s.is_late else "",
                ExportStatus.INCOMPLETE if pending else ExportStatus.COMPLETE,
                " ".join(pending),
                *[cells.get(k, "") for k in columns],
                sum(totals) if totals else "",
            ]
        )
    missing_total: int | str = 0 if missing_as_zero else ""
    for student in assignment_missing_students(assignment=assignment):
        rows.append(
            [
                student.username,
                student.display_name,
                student.student_number or "",
                "",
                "",
                "",
                ExportStatus.MISSING,
                "",
                *["" if k[1] is not None else missing_total for k in columns],
                missing_total,
            ]
        )
    return header, rows


# --- A teacher's overview: the to-do list, the regrade inbox, the gradebook -------------------


@dataclass
class AssignmentTodo:
    """What one assignment still asks of its teachers."""

    assignment: Assignment
    students: int = 0  # current students of the course
    handed_in: int = 0  # of them, how many handed in (any attempt)
    in_flight: int = 0  # answers handed in and not graded yet
    waiting: int = 0  # answers awaiting a teacher's review (proposals and manual grading)
    flagged: int = 0  # of the waiting proposals, those with a flag
    regrades: int = 0  # open regrade requests
    ready: int = 0  # submissions graded in full whose grades students cannot see yet

    @property
    def missing(self) -> int:
        """Current students who have not handed in (none for a draft: nobody can)."""
        if self.assignment.state == AssignmentState.DRAFT:
            return 0
        return max(0, self.students - self.handed_in)

    @property
    def unreleased(self) -> int:
        return 0 if self.assignment.grades_released else self.ready

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.regrades or self.unreleased)


@dataclass
class CourseTodo:
    course: Course
    students: int
    assignments: list[AssignmentTodo] = field(default_factory=list)

    @property
    def regrades(self) -> int:
        return sum(a.regrades for a in self.assignments)

    @property
    def waiting(self) -> int:
        return sum(a.waiting for a in self.assignments)


def _by_assignment(rows: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {row["assignment_id"]: row for row in rows}


def teacher_todo(*, courses: QuerySet[Course]) -> list[CourseTodo]:
    """Per course and assignment: answers waiting for review (and how many are flagged),
    open regrade requests, students who have not handed in, and grades ready but not
    released. Seven queries, however many courses, assignments and students there are
    (the home page of a teacher with ten classes must not read a thousand rows one by one).
    """
    course_list = list(courses.order_by("code", "pk"))
    course_ids = [c.pk for c in course_list]
    students = dict(
        Enrollment.objects.active()
        .filter(course_id__in=course_ids, role=Role.STUDENT)
        .values_list("course_id")
        .annotate(n=Count("user_id", distinct=True))
    )
    assignments = list(Assignment.objects.filter(course_id__in=course_ids).order_by("due_at", "pk"))
    ids = [a.pk for a in assignments]
    handed = Submission.objects.filter(assignment_id__in=ids, status=SubmissionStatus.SUBMITTED)
    answers = _by_assignment(
        Answer.objects.filter(submission__in=handed)
        .values(assignment_id=F("submission__assignment_id"))
        .annotate(
            in_flight=Count(
                "pk", filter=Q(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING])
            ),
            waiting=Count(
                "pk", filter=Q(status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL])
            ),
            flagged=Count(
                "pk", filter=Q(status=AnswerStatus.GRADED) & ~Q(current_assessment__flags=[])
            ),
        )
        .order_by()
    )
    ready = dict(
        handed.filter(
            ~Exists(
                Answer.objects.filter(submission=OuterRef("pk")).exclude(
                    status=AnswerStatus.APPROVED
                )
            )
        )
        .values_list("assignment_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    # Only current students count as handed in: someone who left keeps their work, but
    # the missing count is about the class as it is now.
    current = Enrollment.objects.active().filter(
        course_id=OuterRef("assignment__course_id"),
        user_id=OuterRef("student_id"),
        role=Role.STUDENT,
    )
    handed_in = dict(
        handed.filter(Exists(current))
        .values_list("assignment_id")
        .annotate(n=Count("student_id", distinct=True))
        .order_by()
    )
    regrades = dict(
        RegradeRequest.objects.filter(
            status=RegradeStatus.OPEN, answer__question__assignment_id__in=ids
        )
        .values_list("answer__question__assignment_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    todo = {c.pk: CourseTodo(course=c, students=students.get(c.pk, 0)) for c in course_list}
    for a in assignments:
        row = answers.get(a.pk, {})
        todo[a.course_id].assignments.append(
            AssignmentTodo(
                assignment=a,
                students=students.get(a.course_id, 0),
                handed_in=handed_in.get(a.pk, 0),
                in_flight=row.get("in_flight", 0),
                waiting=row.get("waiting", 0),
                flagged=row.get("flagged", 0),
                regrades=regrades.get(a.pk, 0),
                ready=ready.get(a.pk, 0),
            )
        )
        a.course = todo[a.course_id].course  # spare a query per row in the template
    return list(todo.values())


def regrade_inbox(*, assignments: QuerySet[Assignment]) -> QuerySet[RegradeRequest]:
    """Open regrade requests of these assignments (a teacher's, across all their courses),
    the oldest first: a student has waited longest for that answer."""
    return (
        RegradeRequest.objects.filter(
            status=RegradeStatus.OPEN, answer__question__assignment__in=assignments
        )
        .select_related(
            "answer__question__assignment__course",
            "answer__submission__student",
            "answer__final_grade",
        )
        .order_by("created_at", "pk")
    )


class GradebookStatus(TextChoices):
    """Where one student's work on one assignment stands, from hand-in to release."""

    MISSING = "missing", _("Missing")
    SUBMITTED = "submitted", _("Submitted")
    GRADING = "grading", _("Grading")
    AWAITING_REVIEW = "awaiting_review", _("Awaiting review")
    APPROVED = "approved", _("Approved")
    RELEASED = "released", _("Released")


@dataclass(frozen=True)
class GradebookCell:
    status: GradebookStatus
    submission_id: int | None = None
    attempt: int | None = None
    late: bool = False
    # The approved total once every answer is approved; None while anything is open, and
    # while an anonymously graded assignment is unreleased (a named total would undo the
    # anonymity of the review pages, whose queue shows totals).
    points: int | None = None
    max_points: int | None = None


@dataclass
class Gradebook:
    assignments: list[Assignment]
    rows: list[tuple[UserModel, list[GradebookCell]]]


def course_gradebook(*, course: Course) -> Gradebook:
    """Current students × the course's assignments (drafts left out: nobody can hand them
    in), each cell the state of the student's latest handed-in attempt. Three queries."""
    assignments = list(
        course.assignments.exclude(state=AssignmentState.DRAFT).order_by("due_at", "pk")
    )
    students = list(
        UserModel.objects.filter(
            enrollments__course=course,
            enrollments__role=Role.STUDENT,
            enrollments__ended_at__isnull=True,
        )
        .distinct()
        .order_by("student_number", "username")
    )
    approved = Q(answers__status=AnswerStatus.APPROVED)
    latest: dict[tuple[int, int], Mapping[str, Any]] = {}
    for row in (
        Submission.objects.filter(assignment__in=assignments, status=SubmissionStatus.SUBMITTED)
        .values("pk", "assignment_id", "student_id", "attempt", "is_late")
        .annotate(
            answers_n=Count("answers"),
            pending=Count("answers", filter=Q(answers__status=AnswerStatus.PENDING)),
            grading=Count("answers", filter=Q(answers__status=AnswerStatus.GRADING)),
            waiting=Count(
                "answers",
                filter=Q(answers__status__in=[AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL]),
            ),
            points=Sum("answers__final_grade__points", filter=approved),
            max_points=Sum("answers__final_grade__max_points", filter=approved),
        )
        .order_by("attempt")
    ):
        latest[(row["student_id"], row["assignment_id"])] = row  # the last attempt wins
    rows = []
    for student in students:
        cells = []
        for a in assignments:
            cells.append(_gradebook_cell(a, latest.get((student.pk, a.pk))))
        rows.append((student, cells))
    return Gradebook(assignments=assignments, rows=rows)


def _gradebook_cell(assignment: Assignment, row: Mapping[str, Any] | None) -> GradebookCell:
    if row is None:
        return GradebookCell(GradebookStatus.MISSING)
    # The least advanced answer decides: a submission is only as far along as its slowest part.
    if row["pending"] or not row["answers_n"]:
        status = GradebookStatus.SUBMITTED
    elif row["grading"]:
        status = GradebookStatus.GRADING
    elif row["waiting"]:
        status = GradebookStatus.AWAITING_REVIEW
    elif assignment.grades_released:
        status = GradebookStatus.RELEASED
    else:
        status = GradebookStatus.APPROVED
    complete = status in (GradebookStatus.APPROVED, GradebookStatus.RELEASED)
    show_points = complete and (assignment.grades_released or not assignment.anonymous_grading)
    return GradebookCell(
        status=status,
        submission_id=row["pk"],
        attempt=row["attempt"],
        late=row["is_late"],
        points=(row["points"] or 0) if show_points else None,
        max_points=(row["max_points"] or 0) if show_points else None,
    )


def gradebook_table(*, gradebook: Gradebook) -> tuple[list[str], list[list[Any]]]:
    """The gradebook as export rows: per assignment its status code and approved points."""
    header = ["username", "name", "student_number"]
    for a in gradebook.assignments:
        header += [f"{a.title} status", f"{a.title} points", f"{a.title} max"]
    rows = []
    for student, cells in gradebook.rows:
        row: list[Any] = [student.username, student.display_name, student.student_number or ""]
        for cell in cells:
            row += [
                cell.status.value,
                "" if cell.points is None else cell.points,
                "" if cell.max_points is None else cell.max_points,
            ]
        rows.append(row)
    return header, rows


# --- The audit trail, for people ---------------------------------------------------------------


@dataclass
class AuditContext:
    """What a page of audit events needs to be told in words: who did it (as a grader of the
    assignment may be told), criterion titles, which question and student an answer
    belongs to, and the proposal a first approval was measured against."""

    actors: dict[int, str]  # event id → name
    logins: dict[int, str]  # event id → the actor's username, where they may be named
    criteria: dict[int, str]  # criterion id → title
    answers: dict[int, tuple[int, int]]  # answer id → (question order, submission id)
    questions: dict[int, int]  # question id → order
    students: dict[int, str]  # submission id → the student as graders see them
    proposals: dict[int, dict[int, int]]  # event id → criterion id → the AI's points


def _event_answer_id(event: AuditEvent) -> int | None:
    if event.target_type != "grading.answer":
        return None
    return int(event.target_id) if event.target_id.isdigit() else None


def audit_context(*, assignment: Assignment, events: Iterable[AuditEvent]) -> AuditContext:
    """Everything `grading.audit_text` needs for these events, in six queries whatever
    their number. Pass the events with their actors (`audit_events` selects them)."""
    events = list(events)
    anonymised = audit_actor_labels(assignment=assignment, events=events)
    actors, logins = {}, {}
    for e in events:
        if e.actor is None:
            actors[e.pk] = gettext("System")
        elif anonymised[e.pk] != e.actor_label:  # a student, while grading is anonymous
            actors[e.pk] = anonymised[e.pk]
        else:
            actors[e.pk] = e.actor.display_name
            logins[e.pk] = e.actor_label
    criterion_ids: set[int] = set()
    for e in events:
        for state in (e.before, e.after):
            if isinstance(state, dict) and isinstance(state.get("criteria"), dict):
                criterion_ids |= {int(k) for k in state["criteria"] if str(k).isdigit()}
    answer_ids = {pk for pk in map(_event_answer_id, events) if pk is not None}
    answers = {
        pk: (order, submission_id)
        for pk, order, submission_id in Answer.objects.filter(pk__in=answer_ids).values_list(
            "pk", "question__order", "submission_id"
        )
    }
    submission_ids = {e.submission_id for e in events if e.submission_id is not None}
    submission_ids |= {s for _, s in answers.values()}
    students = {
        s.pk: s.label_for_graders(assignment)
        for s in Submission.objects.filter(pk__in=submission_ids).select_related("student")
    }
    # A first approval has no grade before it: its "from" is the proposal in force then,
    # the newest completed assessment of the answer created before the event.
    first = [
        e for e in events if e.action in ("grade.approved", "grade.overridden") and not e.before
    ]
    runs: dict[int, list[tuple[datetime, int, int, int]]] = {}
    for answer_id, created, assessment_id, criterion_id, points in CriterionScore.objects.filter(
        assessment__answer_id__in={_event_answer_id(e) for e in first},
        assessment__status=AssessmentStatus.COMPLETED,
    ).values_list(
        "assessment__answer_id", "assessment__created_at", "assessment_id", "criterion_id", "points"
    ):
        runs.setdefault(answer_id, []).append((created, assessment_id, criterion_id, points))
    proposals: dict[int, dict[int, int]] = {}
    for e in first:
        earlier = [r for r in runs.get(_event_answer_id(e) or 0, []) if r[0] <= e.created_at]
        if earlier:
            newest = max((r[0], r[1]) for r in earlier)[1]
            proposals[e.pk] = {r[2]: r[3] for r in earlier if r[1] == newest}
    return AuditContext(
        actors=actors,
        logins=logins,
        criteria=dict(Criterion.objects.filter(pk__in=criterion_ids).values_list("pk", "title")),
        answers=answers,
        questions=dict(assignment.questions.values_list("pk", "order")),
        students=students,
        proposals=proposals,
    )


@dataclass
class AuditFilterChoices:
    students: list[tuple[str, str]]  # (value, label); value "s<id>" is one submission
    questions: list[tuple[int, str]]
    actors: list[tuple[str, str]]  # value "system" or a user id
    actions: list[str]


def audit_filter_choices(
    *, assignment: Assignment, submission: Submission | None = None
) -> AuditFilterChoices:
    """What the audit page (of an assignment, or of one submission) can be filtered by:
    the actors and actions its trail holds. While grading is anonymous, students are
    offered one submission at a time by its anonymous label (a student's attempts are not
    linked), and never as actors."""
    submissions = list(
        Submission.objects.filter(assignment=assignment)
        .select_related("student")
        .order_by("student__username", "attempt")
    )
    if assignment.anonymous_grading:
        students = [(f"s{s.pk}", s.label_for_graders(assignment)) for s in submissions]
    else:
        names = {s.student_id: s.student.display_name for s in submissions}
        students = [(str(pk), name) for pk, name in sorted(names.items(), key=lambda i: i[1])]
    trail = AuditEvent.objects.filter(assignment_id=assignment.pk).order_by()
    if submission is not None:
        trail = AuditEvent.objects.filter(submission_id=submission.pk).order_by()
    actor_ids = set(trail.exclude(actor__isnull=True).values_list("actor_id", flat=True))
    if assignment.anonymous_grading:
        actor_ids -= {s.student_id for s in submissions}
    actors = [("system", gettext("System"))] + [
        (str(u.pk), u.display_name)
        for u in UserModel.objects.filter(pk__in=actor_ids).order_by("name", "username")
    ]
    return AuditFilterChoices(
        students=students,
        questions=[
            (pk, f"{order}. {prompt[:40]}")
            for pk, order, prompt in assignment.questions.values_list("pk", "order", "prompt")
        ],
        actors=actors,
        actions=sorted(set(trail.values_list("action", flat=True).distinct())),
    )


# --- Feedback a student reads (the page, its PDF, the teacher's printed bundle) ---------------


@dataclass(frozen=True)
class CriterionFeedback:
    title: str
    points: int
    max_points: int
    level: str  # the descriptor of the level the score met ("" when the criterion has none)
    level_title: str
    comment: str  # what the teacher approved as the explanation ("" when nothing)
    changed_by_teacher: bool


@dataclass(frozen=True)
class ObjectiveFeedback:
    given: str  # the student's answer, as they gave it
    correct: str  # the key ("" when the teacher does not show keys, or it is a pattern)


def _criterion_comment(row: FinalCriterionGrade, rationale: dict[int, str], by_model: bool) -> str:
    # The teacher's own comment first. The model's rationale explains its score, so it is
    # the explanation the teacher approved only where they kept that score; the offline
    # rule engine's "rationale" is a note for teachers (term coverage), never for students.
    if row.comment:
        return row.comment
    if by_model and not row.changed_by_teacher:
        return rationale.get(row.criterion_id, "")
    return ""


def _objective_feedback(answer: Answer, *, show_key: bool) -> ObjectiveFeedback:
    question = answer.question
    key = question.answer_key or {}
    if question.is_choice:
        options = {o.get("key"): o.get("text", "") for o in question.options or []}
        given = "; ".join(f"{k}. {options.get(k, '')}" for k in answer.choices)
        correct = "; ".join(f"{k}. {options.get(k, '')}" for k in key.get("correct") or [])
    elif question.kind == QuestionKind.NUMERIC:
        given = answer.text
        tolerance = key.get("tolerance") or 0
        value = key.get("value", "")
        correct = f"{value} ± {tolerance}" if tolerance else str(value)
    else:
        given = answer.text
        # A pattern is the teacher's tool for accepting variants, not an answer to show.
        accepted = [] if key.get("regex") else [str(a) for a in key.get("accepted") or []]
        correct = " / ".join(accepted)
    return ObjectiveFeedback(given=given, correct=correct if show_key else "")


def feedback_details(*, grades: list[FinalGrade], assignment: Assignment) -> list[FinalGrade]:
    """Adds to each of these grades (from `student_visible_grades`) what the student's
    feedback shows beside the score: `criterion_feedback`, each criterion with the level
    descriptor its score met and the comment the teacher approved; and `objective`, for an
    objective item, the student's answer and — when the assignment shows answer keys —
    the correct one. A fixed number of queries (prefetches), however many grades."""
    prefetch_related_objects(
        grades,
        Prefetch(
            "criteria",
            queryset=FinalCriterionGrade.objects.select_related("criterion").prefetch_related(
                "criterion__levels"
            ),
        ),
        Prefetch("based_on", queryset=Assessment.objects.prefetch_related("scores")),
    )
    for grade in grades:
        proposal = grade.based_on
        by_model = proposal is not None and proposal.scorer == Scorer.LLM
        rationale = (
            {s.criterion_id: s.rationale for s in proposal.scores.all()}
            if proposal is not None and by_model
            else {}
        )
        rows = []
        for row in grade.criteria.all():
            criterion = row.criterion
            levels = list(criterion.levels.all())
            met = level_met([{"points": lv.points} for lv in levels], row.points)
            level = levels[met] if met is not None else None
            rows.append(
                CriterionFeedback(
                    title=criterion.title,
                    points=row.points,
                    max_points=row.max_points,
                    level=level.descriptor if level else "",
                    level_title=level.title if level else "",
                    comment=_criterion_comment(row, rationale, by_model),
                    changed_by_teacher=row.changed_by_teacher,
                )
            )
        grade.criterion_feedback = rows  # type: ignore[attr-defined]
        question = grade.answer.question
        grade.objective = (  # type: ignore[attr-defined]
            None
            if question.is_subjective
            else _objective_feedback(grade.answer, show_key=assignment.show_answer_keys)
        )
    return grades
