"""What teachers change in their courses: courses, rosters, assignments, questions.

Views parse and render; every rule is here. Each change is validated (a
ValidationError carries per-field messages for the form) and appended to the
audit trail in the same transaction.
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from grading.audit import audit_record

from .editing import apply_values, changes, field_state, move, renumber
from .hashers import InitialPasswordHasher
from .models import (
    Assignment,
    AssignmentState,
    Course,
    Enrollment,
    Question,
    Role,
    User,
)

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


# --- Roster import ----------------------------------------------------------------------

MAX_ROSTER_BYTES = 1_000_000
MAX_ROSTER_ROWS = 2000

# Header names as schools write them, in both languages; matched after normalising case,
# spaces, dashes and underscores.
ROSTER_HEADERS = {
    "username": ("username", "user", "login", "用户名", "账号", "帐号"),
    "name": ("name", "fullname", "姓名", "名字"),
    "email": ("email", "mail", "emailaddress", "邮箱", "电子邮件", "电子邮箱"),
    "student_number": ("studentnumber", "studentid", "studentno", "number", "学号"),
}

# Unambiguous characters only: the list is printed and typed by hand.
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class RosterError(ValueError):
    """The file as a whole cannot be read (encoding, size, no usable columns)."""


class RowStatus:
    NEW = "new"  # an account will be created and enrolled
    EXISTING = "existing"  # the account exists and will be enrolled
    ENROLLED = "enrolled"  # already a student here: nothing to do
    INVALID = "invalid"  # reported, skipped


@dataclass
class RosterRow:
    line: int
    username: str
    name: str
    email: str
    student_number: str
    username_given: bool = True  # False: the student number stands in for the username
    status: str = RowStatus.NEW
    problems: list[str] = field(default_factory=list)
    user: User | None = None

    def invalid(self, problem: str) -> None:
        self.status = RowStatus.INVALID
        self.problems.append(problem)


@dataclass
class RosterPreview:
    rows: list[RosterRow]

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def counts(self) -> dict[str, int]:
        return {
            s: self.count(s)
            for s in (RowStatus.NEW, RowStatus.EXISTING, RowStatus.ENROLLED, RowStatus.INVALID)
        }

    @property
    def has_changes(self) -> bool:
        return any(row.status in (RowStatus.NEW, RowStatus.EXISTING) for row in self.rows)


@dataclass
class RosterResult:
    created: list[tuple[User, str]]  # new accounts with their one-time initial passwords
    enrolled: list[User]
    unchanged: int
    invalid: list[RosterRow]


def roster_decode(data: bytes) -> str:
    """UTF-8 with or without a BOM; else GB18030, which is what Excel on a Chinese Windows
    writes when it saves "CSV"."""
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(_("The file is larger than 1 MB. Split it into smaller files."))
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise RosterError(_("The file is not text in UTF-8 or GB18030. Save it as “CSV UTF-8”."))


def _header_key(title: str) -> str | None:
    normal = "".join(title.strip().lower().replace("-", "").replace("_", "").split())
    normal = normal.lstrip("\ufeff")
    for key, names in ROSTER_HEADERS.items():
        if normal in names:
            return key
    return None


def _read_rows(text: str) -> list[RosterRow]:
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise RosterError(_("The file is empty."))
    first = next(line for line in lines if line.strip())
    delimiter = max((",", "\t", ";", "，"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str | None] | None = None
    rows: list[RosterRow] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if header is None:
                header = _read_header(values)
                continue
            cells = dict.fromkeys(ROSTER_HEADERS, "")
            for key, value in zip(header, values, strict=False):
                if key:
                    cells[key] = value.strip()
            rows.append(
                RosterRow(
                    line=reader.line_num,
                    username=cells["username"],
                    name=cells["name"],
                    email=cells["email"],
                    student_number=cells["student_number"],
                    username_given=bool(cells["username"]),
                )
            )
            if len(rows) > MAX_ROSTER_ROWS:
                raise RosterError(
                    _("More than %(n)s rows. Split the file.") % {"n": MAX_ROSTER_ROWS}
                )
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise RosterError(
            _("Line %(n)s cannot be read as CSV (%(e)s).") % {"n": reader.line_num, "e": exc}
        ) from exc
    return rows


def _read_header(values: list[str]) -> list[str | None]:
    header = [_header_key(v) for v in values]
    if "username" not in header and "student_number" not in header:
        raise RosterError(
            _(
                "The first row must name the columns; a “username” or “student number” "
                "column is required. Found: %(found)s"
            )
            % {"found": ", ".join(values)}
        )
    return header


def roster_preview(*, course: Course, text: str) -> RosterPreview:
    """Classify every row as new / existing / already enrolled / invalid. Changes nothing."""
    rows = _read_rows(text)
    validate_username = UnicodeUsernameValidator()
    seen_usernames: dict[str, int] = {}
    seen_numbers: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for row in rows:
        row.username = row.username or row.student_number
        if not row.username:
            row.invalid(_("No username and no student number."))
            continue
        try:
            validate_username(row.username)
        except ValidationError:
            row.invalid(
                _("“%(u)s” is not a valid username (letters, digits and @/./+/-/_ only).")
                % {"u": row.username}
            )
        if (
            len(row.username) > 150
            or len(row.name) > 150
            or len(row.student_number) > 40
            or len(row.email) > 254
        ):
            row.invalid(_("A value is too long."))
        if row.email:
            try:
                validate_email(row.email)
            except ValidationError:
                row.invalid(_("“%(e)s” is not a valid e-mail address.") % {"e": row.email})
        if row.username in seen_usernames:
            row.invalid(_("Repeats row %(n)s.") % {"n": seen_usernames[row.username]})
        elif row.student_number and row.student_number in seen_numbers:
            row.invalid(
                _("Student number %(s)s is also on row %(n)s.")
                % {"s": row.student_number, "n": seen_numbers[row.student_number]}
            )
        elif row.email and row.email.lower() in seen_emails:
            row.invalid(
                _("E-mail %(e)s is also on row %(n)s.")
                % {"e": row.email, "n": seen_emails[row.email.lower()]}
            )
        seen_usernames.setdefault(row.username, row.line)
        if row.student_number:
            seen_numbers.setdefault(row.student_number, row.line)
        if row.email:
            seen_emails.setdefault(row.email.lower(), row.line)

    # Three queries for the whole file, whatever its length.
    candidates = [r for r in rows if r.status != RowStatus.INVALID]
    by_username = {
        u.username: u for u in User.objects.filter(username__in=[r.username for r in candidates])
    }
    by_number = {
        u.student_number: u
        for u in User.objects.filter(
            student_number__in=[r.student_number for r in candidates if r.student_number]
        )
    }
    emails = [r.email.lower() for r in candidates if r.email]
    by_email = (
        {u.email.lower(): u for u in User.objects.annotate(e=Lower("email")).filter(e__in=emails)}
        if emails
        else {}
    )
    roles = dict(
        Enrollment.objects.active()
        .filter(course=course, user__in=[*by_username.values(), *by_number.values()])
        .values_list("user_id", "role")
    )
    for row in candidates:
        user = by_username.get(row.username)
        owner_of_number = by_number.get(row.student_number) if row.student_number else None
        if user is None and not row.username_given and owner_of_number is not None:
            # Only a student number was given: it names the account, whatever its username.
            user = owner_of_number
        if owner_of_number is not None and owner_of_number != user:
            row.invalid(
                _("Student number %(s)s belongs to another account (%(u)s).")
                % {"s": row.student_number, "u": owner_of_number.username}
            )
            continue
        if user is None:
            holder = by_email.get(row.email.lower()) if row.email else None
            if holder is not None:
                row.invalid(
                    _("E-mail %(e)s is already used by account %(u)s.")
                    % {"e": row.email, "u": holder.username}
                )
            continue
        row.user = user
        role = roles.get(user.pk)
        if role == Role.STUDENT:
            row.status = RowStatus.ENROLLED
        elif role is not None:
            row.invalid(_("%(u)s teaches this course.") % {"u": user.username})
        else:
            row.status = RowStatus.EXISTING
    return RosterPreview(rows=rows)


def _initial_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(10))


def roster_import(*, course: Course, text: str, actor: User) -> RosterResult:
    """Create the new accounts, enroll new and existing students; skip invalid rows.

    Importing the same file twice changes nothing the second time. New accounts get a
    random initial password, shown once to the teacher (to print and hand out) and stored
    only as a hash; the student must choose their own at first login.
    """
    try:
        with transaction.atomic():
            preview = roster_preview(course=course, text=text)
            created: list[tuple[User, str]] = []
            enrolled: list[User] = []
            for row in preview.rows:
                if row.status == RowStatus.NEW:
                    password = _initial_password()
                    user = User(
                        username=row.username,
                        name=row.name,
                        email=row.email,
                        student_number=row.student_number or None,
                        must_change_password=True,
                    )
                    user.password = make_password(password, hasher=InitialPasswordHasher())
                    user.save()
                    created.append((user, password))
                elif row.status == RowStatus.EXISTING and row.user is not None:
                    user = row.user
                else:
                    continue
                Enrollment.objects.create(course=course, user=user, role=Role.STUDENT)
                enrolled.append(user)
            if enrolled:
                audit_record(
                    actor=actor,
                    action="roster.imported",
                    target=course,
                    after={
                        "created": [u.username for u, _ in created],
                        "enrolled": [u.username for u in enrolled],
                        "invalid_rows": [
                            r.line for r in preview.rows if r.status == RowStatus.INVALID
                        ],
                    },
                )
    except IntegrityError as exc:
        # Another import or an administrator created one of these accounts meanwhile.
        raise RosterError(
            _("The roster changed while importing; nothing was saved. Preview the file again.")
        ) from exc
    return RosterResult(
        created=created,
        enrolled=enrolled,
        unchanged=preview.count(RowStatus.ENROLLED),
        invalid=[r for r in preview.rows if r.status == RowStatus.INVALID],
    )


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
        Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
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
                from grading.services import objective_answers_rescore

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
        Assignment.objects.select_for_update().filter(pk=question.assignment_id).first()
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
