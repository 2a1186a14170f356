"""Enqueue (or regrade) every answer of an assignment; optionally wait for the result."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from courses.models import Assignment
from grading.models import AnswerStatus, Assessment, AssessmentStatus
from grading.selectors import assignment_progress, assignment_usage
from grading.services import assignment_grade

IN_FLIGHT = (AnswerStatus.PENDING, AnswerStatus.GRADING)


class Command(BaseCommand):
    help = "Grade every submitted answer of an assignment through the task cluster."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("assignment_id", type=int)
        parser.add_argument("--wait", action="store_true", help="Block until every answer ends.")
        parser.add_argument(
            "--force", action="store_true", help="Regrade even answers whose inputs are unchanged."
        )
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds to wait at most.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            assignment = Assignment.objects.get(pk=options["assignment_id"])
        except Assignment.DoesNotExist as exc:
            raise CommandError(f"No assignment with id {options['assignment_id']}.") from exc
        started_at = timezone.now()
        started = time.monotonic()
        queued = assignment_grade(assignment=assignment, force=options["force"])
        self.stdout.write(f"Queued {queued} answers of “{assignment.title}”.")
        if not options["wait"]:
            return
        last = ""
        while True:
            progress = assignment_progress(assignment=assignment)
            open_count = sum(progress[s] for s in IN_FLIGHT)
            line = " ".join(f"{k}={v}" for k, v in progress.items())
            if line != last:
                self.stdout.write(f"[{time.monotonic() - started:6.1f}s] {line}")
                last = line
            if open_count == 0:
                break
            if time.monotonic() - started > options["timeout"]:
                raise CommandError(f"Timed out with {open_count} answers still grading.")
            time.sleep(0.5)
        usage = assignment_usage(assignment=assignment, since=started_at)
        failed = Assessment.objects.filter(
            answer__submission__assignment=assignment,
            created_at__gte=started_at,
            status=AssessmentStatus.FAILED,
        ).count()
        self.stdout.write(
            f"graded={progress[AnswerStatus.GRADED] + progress[AnswerStatus.APPROVED]} "
            f"needs_manual={progress[AnswerStatus.NEEDS_MANUAL]} failed={failed} "
            f"prompt_tokens={usage['prompt_tokens']} "
            f"completion_tokens={usage['completion_tokens']} "
            f"seconds={time.monotonic() - started:.1f}"
        )
