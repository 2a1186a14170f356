"""Teachers' pages for running their courses (mounted at /teach/)."""

from django.urls import path

from . import roster_views
from . import teacher_views as views

app_name = "teach"

urlpatterns = [
    path("", views.course_list, name="courses"),
    path("courses/new/", views.course_create, name="course_create"),
    path("courses/<int:pk>/", views.course_detail, name="course"),
    path("courses/<int:pk>/edit/", views.course_edit, name="course_edit"),
    path("courses/<int:pk>/archive/", views.course_archive, name="course_archive"),
    path("courses/<int:pk>/roster/add/", roster_views.roster_add, name="roster_add"),
    path("courses/<int:pk>/roster/import/", roster_views.roster_import, name="roster_import"),
    path("enrollments/<int:pk>/end/", roster_views.enrollment_end, name="enrollment_end"),
    path(
        "courses/<int:pk>/students/<int:user_pk>/password/",
        views.student_password_reset,
        name="student_password_reset",
    ),
    path("courses/<int:pk>/assignments/new/", views.assignment_create, name="assignment_create"),
    path("assignments/<int:pk>/", views.assignment_manage, name="assignment"),
    path("assignments/<int:pk>/edit/", views.assignment_edit, name="assignment_edit"),
    path("assignments/<int:pk>/state/", views.assignment_state, name="assignment_state"),
    path("assignments/<int:pk>/preview/", views.assignment_preview, name="assignment_preview"),
    path(
        "assignments/<int:pk>/feedback.pdf",
        views.assignment_feedback_bundle,
        name="feedback_bundle",
    ),
    path("assignments/<int:pk>/questions/new/", views.question_create, name="question_create"),
    path("questions/<int:pk>/edit/", views.question_edit, name="question_edit"),
    path("questions/<int:pk>/delete/", views.question_delete, name="question_delete"),
    path("questions/<int:pk>/move/", views.question_move, name="question_move"),
]
