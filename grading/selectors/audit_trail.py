"""The audit trail for people: who did what to which answer, and the filters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.utils.translation import gettext

from courses.models import (
    Assignment,
)
from courses.models import User as UserModel

from ..models import (
    Answer,
    AssessmentStatus,
    AuditEvent,
    Criterion,
    CriterionScore,
    Submission,
)
from .review import audit_actor_labels

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
