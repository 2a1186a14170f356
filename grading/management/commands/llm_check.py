"""Is the model endpoint reachable, and does it serve the configured model?"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from grading.llm import check_health, endpoints


class Command(BaseCommand):
    help = "Check LLM_BASE_URL: GET /models and look for LLM_MODEL."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.LLM_BASE_URL:
            self.stdout.write(
                "LLM_BASE_URL is empty: subjective answers are scored by the offline rule engine."
            )
            return
        for url in endpoints():  # each replica when several are listed
            report = check_health(base_url=url)
            if not report.reachable:
                raise CommandError(f"{url}: {report.error}")
            if not report.serving_model:
                raise CommandError(report.error)
            self.stdout.write(self.style.SUCCESS(f"{url} serves {report.model}."))
