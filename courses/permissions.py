"""Who may see and do what. Every view and API endpoint asks here, nowhere else.

Teachers and TAs act only in courses where they hold an active enrollment;
students see only their own work, and grades only once released; everyone
else sees nothing. Site administrators use Django admin, not these pages.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from grading.models import Rubric

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


def teachable_assignments(user: User | None) -> QuerySet[Assignment]:
    """Assignments a teacher or TA may manage and grade."""
    return Assignment.objects.filter(course__in=teaching_courses(user))


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
