"""Who may see and do what. Every view and API endpoint asks here, nowhere else.

Teachers and TAs act only in courses where they hold an active enrollment;
students see only their own work, and grades only once released; everyone
else sees nothing. Site administrators use Django admin, not these pages.
"""

from __future__ import annotations

from django.db.models import QuerySet

from .models import STAFF_ROLES, Assignment, Course, Enrollment, Role, User


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
