"""/api/v1/ — the resources; /api/schema/ and /api/docs/ are in `docs_urls`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.views import SpectacularAPIView

from .docs import ApiDocs, not_found
from .views import school, webhooks, work

app_name = "api"

urlpatterns: list[URLPattern | URLResolver] = [
    # The school
    path("v1/courses/", school.CourseList.as_view(), name="courses"),
    path("v1/courses/<int:pk>/", school.CourseDetail.as_view(), name="course"),
    path("v1/courses/<int:pk>/enrollments/", school.EnrollmentList.as_view(), name="enrollments"),
    path("v1/enrollments/<int:pk>/end/", school.EnrollmentEnd.as_view(), name="enrollment_end"),
    path("v1/assignments/", school.AssignmentList.as_view(), name="assignments"),
    path("v1/assignments/<int:pk>/", school.AssignmentDetail.as_view(), name="assignment"),
    path("v1/rubrics/", school.RubricList.as_view(), name="rubrics"),
    path("v1/rubrics/<int:pk>/", school.RubricDetail.as_view(), name="rubric"),
    path("v1/rubrics/<int:pk>/copy/", school.RubricCopy.as_view(), name="rubric_copy"),
    # Work and its grading
    path(
        "v1/assignments/<int:pk>/submissions/",
        work.SubmissionListCreate.as_view(),
        name="submissions",
    ),
    path("v1/submissions/<int:pk>/", work.SubmissionDetail.as_view(), name="submission"),
    path("v1/assignments/<int:pk>/answers/", work.AnswerList.as_view(), name="answers"),
    path("v1/answers/<int:pk>/", work.AnswerDetail.as_view(), name="answer"),
    path("v1/answers/<int:pk>/assessments/", work.AssessmentList.as_view(), name="assessments"),
    path("v1/answers/<int:pk>/grade/", work.GradeDetail.as_view(), name="grade"),
    path("v1/assignments/<int:pk>/grades/", work.GradeList.as_view(), name="grades"),
    path(
        "v1/assignments/<int:pk>/grades/bulk-approve/",
        work.BulkApprove.as_view(),
        name="bulk_approve",
    ),
    path("v1/assignments/<int:pk>/grading/", work.Grading.as_view(), name="grading"),
    path("v1/assignments/<int:pk>/release/", work.ReleaseGrades.as_view(), name="release"),
    path("v1/assignments/<int:pk>/hide/", work.HideGrades.as_view(), name="hide"),
    path("v1/regrade-requests/", work.RegradeList.as_view(), name="regrades"),
    path("v1/regrade-requests/<int:pk>/", work.RegradeDetail.as_view(), name="regrade"),
    path(
        "v1/regrade-requests/<int:pk>/answer/",
        work.RegradeAnswer.as_view(),
        name="regrade_answer",
    ),
    path(
        "v1/assignments/<int:pk>/audit-events/", work.AuditEventList.as_view(), name="audit_events"
    ),
    # Webhook subscriptions (grading.webhooks)
    path("v1/courses/<int:pk>/webhooks/", webhooks.CourseWebhookList.as_view(), name="webhooks"),
    path("v1/webhooks/<int:pk>/", webhooks.WebhookDetail.as_view(), name="webhook"),
    path("v1/webhooks/<int:pk>/test/", webhooks.WebhookTest.as_view(), name="webhook_test"),
    path(
        "v1/webhooks/<int:pk>/deliveries/",
        webhooks.WebhookDeliveryList.as_view(),
        name="webhook_deliveries",
    ),
    # The document and its reader
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", ApiDocs.as_view(url_name="api:schema"), name="docs"),
    # Anything else under /api/ is a 404 in the API's error format, not an HTML page.
    re_path(r"^.*$", not_found),
]
