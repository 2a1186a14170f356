"""Roster import: a class list as CSV, previewed row by row, then enrolled.

Schools export rosters from whatever they have, so the reader accepts headers in Chinese
or English, UTF-8 or GB18030 and the common delimiters. A preview changes nothing; an
import creates the new accounts with one-time initial passwords, enrolls everyone valid
and is safe to repeat.
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass, field

from axes.utils import reset as axes_reset
from django.contrib.auth.hashers import make_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils.translation import gettext as _

from grading.audit import audit_record

from . import permissions
from .hashers import InitialPasswordHasher
from .models import Course, Enrollment, Role, User
from .text import clean_text

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
            return clean_text(data.decode(encoding))
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
    # The text may come from the confirm form rather than from `roster_decode`.
    text = clean_text(text)
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


def student_password_reset(*, course: Course, student: User, actor: User) -> str:
    """Give a student of this course a new random initial password and return it, to be
    shown once to the teacher; only its hash is stored. The student must choose their own
    at the next login, as after a roster import; their open sessions end (the password
    hash changed) and any login lockout on their name is lifted. Audited, never with the
    password. Who may do this for whom is `permissions.can_reset_password`."""
    if not permissions.can_reset_password(actor, course, student):
        raise PermissionDenied
    password = _initial_password()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=student.pk)
        user.password = make_password(password, hasher=InitialPasswordHasher())
        user.must_change_password = True
        user.save(update_fields=["password", "must_change_password"])
        audit_record(
            actor=actor,
            action="user.password_reset",
            target=user,
            after={"user": user.username, "course": course.pk, "must_change_password": True},
        )
        axes_reset(username=user.username)
    student.password, student.must_change_password = user.password, True
    return password
