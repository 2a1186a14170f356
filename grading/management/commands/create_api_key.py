"""Create an API key for a school system; the key is printed once, on the last line."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.models import Course
from grading.api.keys import api_key_create
from grading.models import ApiScope


class Command(BaseCommand):
    help = (
        "Create an API key for the named courses (or --site-wide) with the given scopes. "
        "The key is shown once, on the last line; only its hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Which system uses the key.")
        parser.add_argument(
            "--course",
            action="append",
            default=[],
            metavar="CODE",
            help="A course code; repeat for several courses.",
        )
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            choices=ApiScope.values,
            help="read, submit, grade or release; repeat for several (default: read).",
        )
        parser.add_argument("--site-wide", action="store_true", help="Every course, now and later.")

    def handle(self, *args: Any, **options: Any) -> None:
        codes: list[str] = options["course"]
        courses = list(Course.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {c.code for c in courses})
        if missing:
            raise CommandError(f"No course with the code {', '.join(missing)}.")
        try:
            new = api_key_create(
                name=options["name"],
                scopes=options["scope"] or [ApiScope.READ],
                courses=courses,
                site_wide=options["site_wide"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        key = new.api_key
        where = "every course" if key.site_wide else ", ".join(sorted(codes))
        self.stdout.write(
            f"Created API key “{key.name}” ({key.prefix}) for {where} "
            f"with scopes {', '.join(key.scopes)}. Store it now: it is not shown again."
        )
        self.stdout.write(new.raw_key)
