from django.urls import path

from . import comment_views, rubric_views, views

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
    path(
        "answers/<int:answer_pk>/comments/",
        comment_views.answer_comment_create,
        name="comment_create",
    ),
    path(
        "comments/<int:comment_pk>/delete/",
        comment_views.answer_comment_delete,
        name="comment_delete",
    ),
    path("comment-bank/", comment_views.comment_bank, name="comment_bank"),
    path("comment-bank/save/", comment_views.comment_bank_save, name="comment_bank_save"),
    path("comment-bank/<int:pk>/use/", comment_views.comment_bank_use, name="comment_bank_use"),
    path(
        "comment-bank/<int:pk>/delete/",
        comment_views.comment_bank_delete,
        name="comment_bank_delete",
    ),
    path("assignments/<int:pk>/audit/", views.audit_trail, name="audit"),
    path("assignments/<int:pk>/agreement/", views.assignment_agreement, name="agreement"),
    path("assignments/<int:pk>/calibrate/", views.assignment_calibrate, name="calibrate"),
    path(
        "assignments/<int:pk>/questions/<int:question_pk>/approve-trusted/",
        views.question_bulk_approve,
        name="approve_trusted",
    ),
    path("answers/<int:answer_pk>/exemplar/", views.answer_exemplar, name="exemplar"),
    path("regrades/<int:request_pk>/answer/", views.regrade_answer, name="regrade_answer"),
    path("regrades/", views.regrade_inbox, name="regrade_inbox"),
    path("courses/<int:pk>/gradebook/", views.gradebook, name="gradebook"),
    path("courses/<int:pk>/gradebook.csv", views.gradebook_export, name="gradebook_export"),
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
