from __future__ import annotations

from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    """The project package as an app, so that its deployment checks are registered."""

    name = "config"
    verbose_name = "Markwise"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
