"""Register an LMS and print what to paste into it; rotate the tool's key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.urls import reverse

from grading.audit import audit_record
from lti.keys import tool_key_current, tool_key_rotate
from lti.models import Deployment, Platform


class Command(BaseCommand):
    help = "Register an LTI 1.3 platform (add) or rotate the tool's signing key (rotate-key)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a platform and print the tool's values")
        add.add_argument("--issuer", required=True)
        add.add_argument("--client-id", required=True)
        add.add_argument("--deployment-id", action="append", default=[], required=True)
        add.add_argument("--auth-url", required=True)
        add.add_argument("--token-url", required=True)
        add.add_argument("--keyset-url", required=True)
        add.add_argument("--name", default="")
        add.add_argument("--frame-origin", action="append", default=[])
        sub.add_parser("rotate-key", help="sign with a new key; the old one stays published")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rotate-key":
            key = tool_key_rotate()
            self.stdout.write(f"kid={key.kid}")
            return
        with transaction.atomic():
            platform, created = Platform.objects.update_or_create(
                issuer=options["issuer"],
                client_id=options["client_id"],
                defaults={
                    "name": options["name"],
                    "auth_login_url": options["auth_url"],
                    "auth_token_url": options["token_url"],
                    "keyset_url": options["keyset_url"],
                    "frame_origins": " ".join(options["frame_origin"]),
                    "active": True,
                },
            )
            try:
                platform.full_clean()
            except Exception as exc:
                raise CommandError(str(exc)) from exc
            for deployment_id in options["deployment_id"]:
                Deployment.objects.get_or_create(platform=platform, deployment_id=deployment_id)
            audit_record(
                actor=None,
                action="lti.platform.added" if created else "lti.platform.updated",
                target=platform,
                after={
                    "issuer": platform.issuer,
                    "client_id": platform.client_id,
                    "deployments": options["deployment_id"],
                },
            )
        tool_key_current()
        base = settings.LTI_TOOL_URL.rstrip("/")
        self.stdout.write(f"Platform {platform.pk} {'registered' if created else 'updated'}.")
        self.stdout.write("Paste these into the platform's tool registration:")
        self.stdout.write(f"tool_url={base}/")
        self.stdout.write(f"login_url={base}{reverse('lti:login')}")
        self.stdout.write(f"redirect_uri={base}{reverse('lti:launch')}")
        self.stdout.write(f"jwks_url={base}{reverse('lti:jwks')}")
        self.stdout.write(f"deep_linking_url={base}{reverse('lti:launch')}")
