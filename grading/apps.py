from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GradingConfig(AppConfig):
    name = "grading"
    verbose_name = _("Grading")

    def ready(self) -> None:
        # Load the grading stack (httpx, pydantic, the task module) before
        # `qcluster` forks its workers, so the first chunk each worker takes
        # does not pay a second of imports while the model server sits idle.
        from . import tasks  # noqa: F401
