"""What teachers change in their courses: courses, enrollments, assignments, questions.

Views parse and render; every rule is here. Each change is validated (a
ValidationError carries per-field messages for the form) and appended to the
audit trail in the same transaction. Importing a whole roster from CSV is in `rosters`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from grading.audit import audit_record
from grading.services import objective_answers_rescore

from .editing import apply_values, changes, field_state, move, renumber
from .models import (
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    Question,
    Role,
    User,
)
from .text import clean_text

COURSE_FIELDS = ("title", "code", "term", "language")
ASSIGNMENT_FIELDS = (
    "title",
    "instructions",
    "language",
    "due_at",
    "late_policy",
    "attempts_allowed",
    "grading_mode",
    "release_policy",
    "anonymous_grading",
    "show_answer_keys",
)
QUESTION_FIELDS = (
    "prompt",
    "rubric",
    "points",
    "reference_answer",
    "grader_guidelines",
    "options",
    "answer_key",
)


# --- Courses ------------------------------------------------------------------------


def course_create(*, actor: User, **values: Any) -> Course:
    """Create a course; its creator is its first teacher."""
    course = Course()
    apply_values(course, COURSE_FIELDS, values)
    course.full_clean()
    with transaction.atomic():
        course.save()
        Enrollment.objects.create(course=course, user=actor, role=Role.TEACHER)
        audit_record(
            actor=actor,
            action="course.created",
            target=course,
            after=field_state(course, COURSE_FIELDS),
        )
    return course


def course_update(*, course: Course, actor: User, **values: Any) -> Course:
    before = field_state(course, COURSE_FIELDS)
    apply_values(course, COURSE_FIELDS, values)
    course.full_clean()
    old, new = changes(before, field_state(course, COURSE_FIELDS))
    if new:
        with transaction.atomic():
            course.save()
            audit_record(actor=actor, action="course.updated", target=course, before=old, after=new)
    return course


def course_archive(*, course: Course, actor: User, archived: bool = True) -> Course:
    """Archived courses disappear from students' lists; nothing is deleted."""
    if course.archived != archived:
        with transaction.atomic():
            course.archived = archived
            course.save(update_fields=["archived"])
            audit_record(
                actor=actor,
                action="course.archived" if archived else "course.restored",
                target=course,
                after={"archived": archived},
            )
    return course


# --- Enrollments ----------------------------------------------------------------------


def _find_user(identifier: str) -> User | None:
    identifier = identifier.strip()
    if not identifier:
        return None
    matches = list(
        User.objects.filter(
            Q(username=identifier) | Q(email__iexact=identifier) | Q(student_number=identifier)
        )[:2]
    )
    # An e-mail shared by two accounts names nobody in particular.
    return matches[0] if len(matches) == 1 else None


def enrollment_add(*, course: Course, identifier: str, role: str, actor: User) -> Enrollment:
    """Add an existing account (by username, e-mail or student number) as student or TA."""
    if role not in (Role.STUDENT, Role.TA, Role.TEACHER):
        raise ValidationError({"role": _("Choose a role.")})
    identifier = clean_text(identifier)
    user = _find_user(identifier)
    if user is None:
        message = _("No single account has the username, e-mail or student number “%(id)s”.")
        raise ValidationError({"identifier": message % {"id": identifier.strip()}})
    with transaction.atomic():
        current = Enrollment.objects.active().filter(course=course, user=user).first()
        if current is not None:
            raise ValidationError(
                {
                    "identifier": _("%(name)s is already in this course as %(role)s.")
                    % {"name": user.display_name, "role": current.get_role_display()}
                }
            )
        try:
            with transaction.atomic():
                enrollment = Enrollment.objects.create(course=course, user=user, role=role)
        except IntegrityError as exc:  # the same person added twice at once (a double click)
            raise ValidationError(
                {
                    "identifier": _("%(name)s is already in this course.")
                    % {"name": user.display_name}
                }
            ) from exc
        audit_record(
            actor=actor,
            action="enrollment.added",
            target=enrollment,
            after={"course": course.pk, "user": user.username, "role": role},
        )
    return enrollment


def enrollment_end(*, enrollment: Enrollment, actor: User) -> Enrollment:
    """Remove someone from a course. The row stays (with its end date) as history, and so do
    their submissions and grades."""
    with transaction.atomic():
        enrollment = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
        if enrollment.ended_at is not None:
            return enrollment
        if enrollment.role == Role.TEACHER:
            # Lock the course: two teachers removing each other at once must not both see
            # the other still there.
            Course.objects.select_for_update().filter(pk=enrollment.course_id).first()
            teachers = Enrollment.objects.active().filter(
                course_id=enrollment.course_id, role=Role.TEACHER
            )
            if teachers.count() <= 1:
                raise ValidationError(_("A course needs at least one teacher."))
        enrollment.ended_at = timezone.now()
        enrollment.save(update_fields=["ended_at"])
        audit_record(
            actor=actor,
            action="enrollment.ended",
            target=enrollment,
            before={"user": enrollment.user.username, "role": enrollment.role},
        )
    return enrollment


# --- Assignments ----------------------------------------------------------------------


def assignment_create(*, course: Course, actor: User, **values: Any) -> Assignment:
    assignment = Assignment(course=course)
    apply_values(assignment, ASSIGNMENT_FIELDS, values)
    assignment.full_clean()
    with transaction.atomic():
        assignment.save()
        audit_record(
            actor=actor,
            action="assignment.created",
            target=assignment,
            after=field_state(assignment, ASSIGNMENT_FIELDS),
            assignment_id=assignment.pk,
        )
    return assignment


def assignment_update(*, assignment: Assignment, actor: User, **values: Any) -> Assignment:
    before = field_state(assignment, ASSIGNMENT_FIELDS)
    apply_values(assignment, ASSIGNMENT_FIELDS, values)
    assignment.full_clean()
    old, new = changes(before, field_state(assignment, ASSIGNMENT_FIELDS))
    if new:
        with transaction.atomic():
            assignment.save()
            audit_record(
                actor=actor,
                action="assignment.updated",
                target=assignment,
                before=old,
                after=new,
                assignment_id=assignment.pk,
            )
    return assignment


def assignment_set_state(*, assignment: Assignment, state: str, actor: User) -> Assignment:
    """Publish (students see it), close (no more hand-ins) or take back to draft."""
    if state not in AssignmentState.values:
        raise ValidationError(_("Unknown state."))
    if state == assignment.state:
        return assignment
    if state == AssignmentState.PUBLISHED:
        problems = assignment_publish_problems(assignment)
        if problems:
            raise ValidationError(problems)
    if state == AssignmentState.DRAFT and assignment.submissions.exists():
        raise ValidationError(
            _("Students have already started this assignment; close it instead of hiding it.")
        )
    with transaction.atomic():
        before = assignment.state
        assignment.state = state
        assignment.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=f"assignment.{state}",
            target=assignment,
            before={"state": before},
            after={"state": state},
            assignment_id=assignment.pk,
        )
    return assignment


def assignment_publish_problems(assignment: Assignment) -> list[str]:
    """What stops students from answering this assignment, in words a teacher can act on."""
    problems = []
    questions = list(assignment.questions.select_related("rubric"))
    if not questions:
        problems.append(_("Add at least one question."))
    for q in questions:
        try:
            q.full_clean()
        except ValidationError as exc:
            problems.append(
                _("Question %(n)s: %(e)s") % {"n": q.order, "e": " ".join(exc.messages)}
            )
            continue
        if q.is_subjective and q.rubric is not None and not q.rubric.criteria.exists():
            problems.append(_("Question %(n)s: its rubric has no criteria.") % {"n": q.order})
    return problems


# --- Questions ------------------------------------------------------------------------


def _question_state(question: Question) -> dict[str, Any]:
    return {"kind": question.kind, **field_state(question, QUESTION_FIELDS)}


def _normalise_question(question: Question) -> None:
    # Fields that do not apply to the kind are emptied, so that nothing stale (say, an
    # answer key on an essay) lingers or leaks.
    if question.is_subjective:
        question.options, question.answer_key = [], {}
    else:
        question.rubric = None
        question.reference_answer = question.grader_guidelines = ""
        if not question.is_choice:
            question.options = []


def question_create(*, assignment: Assignment, kind: str, actor: User, **values: Any) -> Question:
    with transaction.atomic():
        # Lock the assignment so that two questions added at once get distinct places.
        Assignment.objects.select_for_update(of=("self",)).filter(pk=assignment.pk).first()
        last = assignment.questions.aggregate(m=Max("order"))["m"] or 0
        question = Question(assignment=assignment, kind=kind, order=last + 1)
        apply_values(question, QUESTION_FIELDS, values)
        _normalise_question(question)
        question.full_clean()
        question.save()
        audit_record(
            actor=actor,
            action="question.created",
            target=question,
            after=_question_state(question),
            assignment_id=assignment.pk,
        )
    return question


def question_update(*, question: Question, actor: User, **values: Any) -> Question:
    """Edit a question. A changed answer key or point value rescores the objective answers
    at once; a changed rubric applies to the next grading run (the grading page offers a
    regrade)."""
    before = _question_state(question)
    apply_values(question, QUESTION_FIELDS, values)
    _normalise_question(question)
    question.full_clean()
    old, new = changes(before, _question_state(question))
    if new:
        with transaction.atomic():
            question.save()
            audit_record(
                actor=actor,
                action="question.updated",
                target=question,
                before=old,
                after=new,
                assignment_id=question.assignment_id,
            )
            if {"answer_key", "points", "options"} & set(new):
                # A corrected key applies to what students already handed in.
                objective_answers_rescore(question=question)
    return question


def question_delete(*, question: Question, actor: User) -> None:
    if question.answers.exists():
        raise ValidationError(
            _(
                "Students have answered this question; it cannot be deleted. "
                "Close the assignment or create a new one instead."
            )
        )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="question.deleted",
            target=question,
            before=_question_state(question),
            assignment_id=question.assignment_id,
        )
        assignment_id = question.assignment_id
        question.delete()
        renumber(Question.objects.filter(assignment_id=assignment_id))


def question_move(*, question: Question, offset: int, actor: User) -> None:
    """Move a question up (-1) or down (+1) among its siblings."""
    with transaction.atomic():
        Assignment.objects.select_for_update(of=("self",)).filter(pk=question.assignment_id).first()
        moved = move(
            Question.objects.filter(assignment_id=question.assignment_id), question.pk, offset
        )
        if moved is not None:
            audit_record(
                actor=actor,
                action="question.moved",
                target=question,
                before={"order": moved[0]},
                after={"order": moved[1]},
                assignment_id=question.assignment_id,
            )
