from __future__ import annotations

from django.urls import path

from . import views

app_name = "lti"
urlpatterns = [
    path("login/", views.oidc_login, name="login"),
    path("launch/", views.launch, name="launch"),
    path("jwks/", views.jwks, name="jwks"),
    path("links/<int:pk>/", views.resource_link, name="link"),
    path("deep-link/", views.deep_link, name="deep_link"),
    path("courses/<int:pk>/sync-roster/", views.roster_sync, name="roster_sync"),
    path("assignments/<int:pk>/passback/", views.passback_status, name="passback"),
    path("passbacks/<int:pk>/retry/", views.passback_retry_view, name="passback_retry"),
]
