from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from courses import views as course_views
from grading import views as grading_views

urlpatterns = [
    path("", course_views.home, name="home"),
    path("assignments/<int:pk>/", course_views.assignment_work, name="assignment_work"),
    path("answers/<int:answer_pk>/regrade/", course_views.regrade_request, name="regrade_request"),
    path(
        "assignments/<int:pk>/feedback/",
        course_views.assignment_feedback,
        name="assignment_feedback",
    ),
    path(
        "assignments/<int:pk>/feedback.pdf",
        course_views.assignment_feedback_pdf,
        name="assignment_feedback_pdf",
    ),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        course_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path("teach/", include("courses.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("grading/", include("grading.urls")),
    path("api/", include("grading.api.urls")),
    path("lti/", include("lti.urls")),
    path("healthz", grading_views.healthz, name="healthz"),
    path("readyz", grading_views.readyz, name="readyz"),
]

# A request Django refuses before any view (a form body over DATA_UPLOAD_MAX_MEMORY_SIZE,
# a bad Host header) gets a page in the site's layout that explains itself.
handler400 = "courses.views.bad_request"
