from django.urls import path

from . import views

app_name = "grading"

urlpatterns = [
    path("assignments/<int:pk>/", views.assignment_detail, name="assignment"),
    path("assignments/<int:pk>/progress/", views.assignment_progress, name="progress"),
    path("assignments/<int:pk>/grade/", views.assignment_grade, name="grade"),
]
