"""Who may see and do what. Every view and API endpoint asks here, nowhere else.

Teachers and TAs act only in courses where they hold an active enrollment;
students see only their own work, and grades only once released; everyone
else sees nothing. Site administrators use Django admin, not these pages.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from grading.models import Answer, ApiKey, ApiScope, RegradeRequest, Rubric, Submission

from .models import STAFF_ROLES, Assignment, Course, Enrollment, Question, Role, User


def _is_anonymous(user: User | None) -> bool:
    return user is None or not user.is_authenticated


def course_role(user: User | None, course: Course) -> str | None:
    if _is_anonymous(user):
        return None
    enrollment = Enrollment.objects.active().filter(user=user, course=course).only("role").first()
    return enrollment.role if enrollment else None


def can_teach(user: User | None, course: Course) -> bool:
    """Teachers and TAs: manage, grade and review within this course."""
    return course_role(user, course) in STAFF_ROLES


def can_study(user: User | None, course: Course) -> bool:
    return course_role(user, course) == Role.STUDENT


def teaching_courses(user: User | None) -> QuerySet[Course]:
    if _is_anonymous(user):
        return Course.objects.none()
    return Course.objects.filter(
        enrollments__user=user,
        enrollments__role__in=STAFF_ROLES,
        enrollments__ended_at__isnull=True,
    ).distinct()


def studying_courses(user: User | None) -> QuerySet[Course]:
    if _is_anonymous(user):
        return Course.objects.none()
    return Course.objects.filter(
        enrollments__user=user,
        enrollments__role=Role.STUDENT,
        enrollments__ended_at__isnull=True,
        archived=False,
    ).distinct()


def student_assignments(user: User | None) -> QuerySet[Assignment]:
    """Assignments a student may open: published, in a course they are enrolled in."""
    return Assignment.objects.visible_to_students().filter(course__in=studying_courses(user))


def can_see_released_grades(user: User | None, assignment: Assignment) -> bool:
    """Students see final grades of their own work only after release."""
    return assignment.grades_released and can_study(user, assignment.course)


def can_see_service_details(user: User | None) -> bool:
    """The readiness report's details (dependencies, URLs, errors): site staff only;
    monitoring systems use the READYZ_TOKEN instead of an account."""
    return not _is_anonymous(user) and bool(user and user.is_staff)


def teachable_assignments(user: User | None) -> QuerySet[Assignment]:
    """Assignments a teacher or TA may manage and grade."""
    return Assignment.objects.filter(course__in=teaching_courses(user))


def can_keep_comment_bank(user: User | None) -> bool:
    """Teachers and TAs keep a bank of comments to reuse while reviewing; each bank is its
    owner's alone (the views find entries among the user's own only)."""
    return teaching_courses(user).exists()


def can_release(user: User | None, assignment: Assignment) -> bool:
    """Releasing grades to students, and hiding them again, is the course's teachers'
    decision; teaching assistants review and approve but do not publish."""
    return can_manage(user, assignment.course)


# --- Managing courses (teachers; TAs grade but do not change the course) -------------


def is_teacher(user: User | None) -> bool:
    """May create courses and keep rubrics: granted the permission, or teaching somewhere."""
    if user is None or not user.is_authenticated:
        return False
    return user.has_perm("courses.add_course") or (
        Enrollment.objects.active().filter(user=user, role=Role.TEACHER).exists()
    )


def managed_courses(user: User | None) -> QuerySet[Course]:
    """Courses whose settings, roster, assignments and questions this person may change."""
    if _is_anonymous(user):
        return Course.objects.none()
    return Course.objects.filter(
        enrollments__user=user,
        enrollments__role=Role.TEACHER,
        enrollments__ended_at__isnull=True,
    ).distinct()


def can_manage(user: User | None, course: Course) -> bool:
    return course_role(user, course) == Role.TEACHER


def can_reset_password(user: User | None, course: Course, student: User) -> bool:
    """A teacher who manages the course may give one of its current students a new initial
    password. Never a staff account, nor anyone who teaches or assists anywhere: their
    accounts open other classes' work, and a teacher must not be able to take them over."""
    if not can_manage(user, course) or student.is_staff or student.is_superuser:
        return False
    enrollments = Enrollment.objects.active().filter(user=student)
    return (
        enrollments.filter(course=course, role=Role.STUDENT).exists()
        and not enrollments.filter(role__in=STAFF_ROLES).exists()
    )


def managed_assignments(user: User | None) -> QuerySet[Assignment]:
    return Assignment.objects.filter(course__in=managed_courses(user))


def managed_questions(user: User | None) -> QuerySet[Question]:
    return Question.objects.filter(assignment__course__in=managed_courses(user))


# --- Rubrics ----------------------------------------------------------------------


def _latest_versions(rubrics: QuerySet[Rubric]) -> QuerySet[Rubric]:
    newer = Rubric.objects.filter(lineage=OuterRef("lineage"), version__gt=OuterRef("version"))
    return rubrics.filter(~Exists(newer))


def editable_rubrics(user: User | None) -> QuerySet[Rubric]:
    """A teacher edits their own rubrics, and a colleague's rubric only while every question
    using it is in a course they manage (co-teachers share the course's rubric; nobody
    reaches into a course they do not teach). Templates belong to the school's
    administrators; teachers edit a copy."""
    if not is_teacher(user):
        return Rubric.objects.none()
    managed = managed_courses(user)
    used_here = Question.objects.filter(rubric=OuterRef("pk"), assignment__course__in=managed)
    used_elsewhere = Question.objects.filter(rubric=OuterRef("pk")).exclude(
        assignment__course__in=managed
    )
    return Rubric.objects.filter(is_template=False).filter(
        Q(owner=user) | (Exists(used_here) & ~Exists(used_elsewhere))
    )


def usable_rubrics(user: User | None) -> QuerySet[Rubric]:
    """What a teacher may attach to a question: the newest version of a rubric they edit."""
    return _latest_versions(editable_rubrics(user))


def library_rubrics(user: User | None) -> QuerySet[Rubric]:
    """What a teacher may read and copy: every rubric in the school, newest versions."""
    if not is_teacher(user):
        return Rubric.objects.none()
    return _latest_versions(Rubric.objects.all())


def readable_rubrics(user: User | None) -> QuerySet[Rubric]:
    """Any version a teacher may look at (old versions explain old grades)."""
    return Rubric.objects.all() if is_teacher(user) else Rubric.objects.none()


# --- The API: people by session, school systems by key ---------------------------------
#
# A person reaches the API as on the pages: teachers and TAs see their courses' work,
# students their own. An API key (`grading.models.ApiKey`) works in its courses (or the
# whole site) as staff, but only as far as its scopes go: `read` for every GET, `submit`
# to hand in for a student of its course, `grade` to grade and approve, `release` to
# release or hide grades. A key never manages a course (roster, rubrics) and never acts as
# a student. Objects of other courses are not found (404); a visible object the caller
# may not act on is refused (403).


def key_courses(key: ApiKey) -> QuerySet[Course]:
    """The courses an API key works in: every course for a site-wide key, none once revoked."""
    if not key.is_active:
        return Course.objects.none()
    if key.site_wide:
        return Course.objects.all()
    return Course.objects.filter(pk__in=key.courses.values("pk"))


def api_staff_courses(user: User | None, key: ApiKey | None) -> QuerySet[Course]:
    """Courses whose work the caller sees as staff: a teacher's or TA's, or a key's."""
    return key_courses(key) if key is not None else teaching_courses(user)


def api_courses(user: User | None, key: ApiKey | None) -> QuerySet[Course]:
    """Every course the caller may see: as staff, or (a person only) as a student."""
    if key is not None:
        return key_courses(key)
    return Course.objects.filter(
        Q(pk__in=teaching_courses(user).values("pk"))
        | Q(pk__in=studying_courses(user).values("pk"))
    )


def api_staff_assignments(user: User | None, key: ApiKey | None) -> QuerySet[Assignment]:
    return Assignment.objects.filter(course__in=api_staff_courses(user, key))


def api_assignments(user: User | None, key: ApiKey | None) -> QuerySet[Assignment]:
    """Assignments the caller may open: every one of their staff courses, and (a person
    only) the published ones of the courses they study."""
    if key is not None:
        return api_staff_assignments(user, key)
    return Assignment.objects.filter(
        Q(pk__in=api_staff_assignments(user, None).values("pk"))
        | Q(pk__in=student_assignments(user).values("pk"))
    )


def api_key_reads(key: ApiKey) -> bool:
    """Every GET of a key needs the read scope; writing scopes do not imply it."""
    return key.has_scope(ApiScope.READ)


def api_key_may(key: ApiKey, scope: str, course: Course) -> bool:
    return key.has_scope(scope) and key_courses(key).filter(pk=course.pk).exists()


def api_can_read_as_staff(user: User | None, key: ApiKey | None, course: Course) -> bool:
    """All work, proposals, grades, rosters and the audit trail of a course."""
    if key is not None:
        return api_key_may(key, ApiScope.READ, course)
    return can_teach(user, course)


def api_can_grade(user: User | None, key: ApiKey | None, course: Course) -> bool:
    """Start grading, approve or override, answer regrade requests: as on the review pages."""
    if key is not None:
        return api_key_may(key, ApiScope.GRADE, course)
    return can_teach(user, course)


def api_can_release(user: User | None, key: ApiKey | None, assignment: Assignment) -> bool:
    if key is not None:
        return api_key_may(key, ApiScope.RELEASE, assignment.course)
    return can_release(user, assignment)


def api_can_manage(user: User | None, key: ApiKey | None, course: Course) -> bool:
    """Change the roster: the course's teachers, never a key."""
    return key is None and can_manage(user, course)


def api_can_manage_webhooks(user: User | None, key: ApiKey | None, course: Course) -> bool:
    """Subscribe to a course's events, read the delivery log, send a test event: the
    course's teachers, never a key (a key cannot send a course's events somewhere new)."""
    return key is None and can_manage(user, course)


def api_can_keep_rubrics(user: User | None, key: ApiKey | None) -> bool:
    """Create and copy rubrics: teachers, never a key."""
    return key is None and is_teacher(user)


def api_hand_in_students(key: ApiKey, assignment: Assignment) -> QuerySet[User]:
    """Whom a key with the submit scope may hand in for: the course's current students."""
    if not api_key_may(key, ApiScope.SUBMIT, assignment.course):
        return User.objects.none()
    return User.objects.filter(
        enrollments__course=assignment.course,
        enrollments__role=Role.STUDENT,
        enrollments__ended_at__isnull=True,
    ).distinct()


def api_can_hand_in(user: User | None, key: ApiKey | None, assignment: Assignment) -> bool:
    """A student hands in their own work; a key with the submit scope, a student's."""
    if key is not None:
        return api_key_may(key, ApiScope.SUBMIT, assignment.course)
    return student_assignments(user).filter(pk=assignment.pk).exists()


def api_sees_student_names(user: User | None, key: ApiKey | None, assignment: Assignment) -> bool:
    """While an assignment is graded anonymously its graders see the anonymous label
    (`Submission.label_for_graders`), through the API as on the pages. A key is the
    school's own system (the one that hands in for a named student), not a grader."""
    return key is not None or not assignment.anonymous_grading


def api_submissions(user: User | None, key: ApiKey | None) -> QuerySet[Submission]:
    """Submissions the caller may see: all of their staff courses', and a student's own of
    the assignments they may open. (A key reads only with the read scope: `api_key_reads`.)"""
    staff = Submission.objects.filter(assignment__in=api_staff_assignments(user, key))
    if key is not None:
        return staff
    own = Submission.objects.filter(student=user, assignment__in=student_assignments(user))
    return Submission.objects.filter(Q(pk__in=staff.values("pk")) | Q(pk__in=own.values("pk")))


def api_regrade_requests(user: User | None, key: ApiKey | None) -> QuerySet[RegradeRequest]:
    """Regrade requests: those of the caller's staff courses, and a student's own."""
    staff = RegradeRequest.objects.filter(
        answer__question__assignment__in=api_staff_assignments(user, key)
    )
    if key is not None:
        return staff
    own = RegradeRequest.objects.filter(
        student=user, answer__question__assignment__in=student_assignments(user)
    )
    return RegradeRequest.objects.filter(Q(pk__in=staff.values("pk")) | Q(pk__in=own.values("pk")))


def api_own_answers(user: User | None, key: ApiKey | None) -> QuerySet[Answer]:
    """A student's own answers, of assignments they may open: what they may ask a regrade
    of. A key asks nothing for a student."""
    if key is not None or _is_anonymous(user):
        return Answer.objects.none()
    return Answer.objects.filter(
        submission__student=user, question__assignment__in=student_assignments(user)
    )


def api_staff_answers(user: User | None, key: ApiKey | None) -> QuerySet[Answer]:
    """Answers the caller reviews as staff (proposals, grades): their staff courses'."""
    return Answer.objects.filter(submission__assignment__in=api_staff_assignments(user, key))


def api_rubrics(user: User | None, key: ApiKey | None) -> QuerySet[Rubric]:
    """Rubrics the caller may read: a teacher's as on the pages (`readable_rubrics`); a
    key's, those its courses' questions use."""
    if key is not None:
        return Rubric.objects.filter(questions__assignment__course__in=key_courses(key)).distinct()
    return readable_rubrics(user)
