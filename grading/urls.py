from django.urls import path

from . import rubric_views, views

app_name = "grading"

urlpatterns = [
    path("assignments/<int:pk>/", views.assignment_detail, name="assignment"),
    path("assignments/<int:pk>/progress/", views.assignment_progress, name="progress"),
    path("assignments/<int:pk>/grade/", views.assignment_grade, name="grade"),
    path("assignments/<int:pk>/review/", views.review_queue, name="queue"),
    path("assignments/<int:pk>/release/", views.assignment_release, name="release"),
    path("assignments/<int:pk>/grades.csv", views.assignment_export, name="export"),
    path("assignments/<int:pk>/review/approve/", views.review_bulk_approve, name="bulk_approve"),
    path("answers/<int:answer_pk>/review/", views.review_answer, name="review"),
    path("assignments/<int:pk>/audit/", views.audit_trail, name="audit"),
    path("regrades/<int:request_pk>/answer/", views.regrade_answer, name="regrade_answer"),
    path("rubrics/", rubric_views.rubric_library, name="rubrics"),
    path("rubrics/<int:pk>/", rubric_views.rubric_builder, name="rubric"),
    path("rubrics/<int:pk>/copy/", rubric_views.rubric_copy, name="rubric_copy"),
    path("rubrics/<int:pk>/change/", rubric_views.rubric_change, name="rubric_change"),
    path("rubrics/<int:pk>/regrade/", rubric_views.rubric_regrade, name="rubric_regrade"),
    path(
        "submissions/<int:pk>/audit/",
        views.audit_trail,
        {"scope": "submission"},
        name="submission_audit",
    ),
]
