"""Bring LMS rosters (LTI Names and Role Provisioning Services) into the linked courses."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lti.models import Context
from lti.roster import RosterSyncError, roster_sync


class Command(BaseCommand):
    help = "Sync every LMS-linked course's roster, or one course's (--course CODE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--course", help="the Markwise course code")

    def handle(self, *args: Any, **options: Any) -> None:
        contexts = Context.objects.select_related("platform", "course").exclude(memberships_url="")
        if options["course"]:
            contexts = contexts.filter(course__code=options["course"])
            if not contexts.exists():
                raise CommandError(f"no LMS-linked course with code {options['course']}")
        failed = 0
        for context in contexts:
            try:
                result = roster_sync(context=context, actor=None)
            except RosterSyncError as exc:
                failed += 1
                self.stderr.write(f"{context.course.code}: {exc}")
                continue
            counts = " ".join(f"{k}={v}" for k, v in result.items())
            self.stdout.write(f"{context.course.code}: {counts}")
        if failed:
            raise CommandError(f"{failed} course(s) could not be synced")
