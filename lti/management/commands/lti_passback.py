"""Send an assignment's results to the LMS gradebooks again, now, and report each."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.models import Assignment
from lti.passback import passback_plan, passback_send


class Command(BaseCommand):
    help = "Re-send an assignment's scores (or pending status) to every linked LMS placement."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--assignment", type=int, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        if not Assignment.objects.filter(pk=options["assignment"]).exists():
            raise CommandError(f"no assignment {options['assignment']}")
        counts: dict[str, int] = {}
        for pk in passback_plan(assignment_id=options["assignment"], enqueue=False):
            outcome = passback_send(passback_id=pk)
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = " ".join(f"{k}={counts.get(k, 0)}" for k in ("sent", "retrying", "failed"))
        self.stdout.write(summary)
