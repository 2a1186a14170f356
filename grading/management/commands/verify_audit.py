"""Walk the audit hash chain and report the first broken link (exit status 1)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from grading.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the tamper-evident audit trail."

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_verify()
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events."))
            return
        self.stderr.write(
            self.style.ERROR(
                f"Audit chain broken at event {report.broken_at}: {report.problem}. "
                f"{report.checked} events before it verified."
            )
        )
        raise SystemExit(1)
