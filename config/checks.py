"""Deployment checks that Django's own `check --deploy` does not make.

Django warns (security.W009) about a short or "django-insecure-" key, but happily accepts
the development key from this repository: anyone who reads it can sign session cookies
and password-reset links for any account. With DEBUG off these are errors, and they run
with every management command that checks (migrate, qcluster, check), not only with
--deploy, so a container started with a published key stops at `migrate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

MIN_SECRET_KEY_LENGTH = 50  # what Django's own W009 asks for

# Keys that are written down somewhere public: the settings default and the placeholder
# in docker/.env.example (short anyway, but named so the message says why).
PUBLISHED_KEYS = frozenset({"change-me-to-a-long-random-string"})


def _published(key: str) -> bool:
    return key in PUBLISHED_KEYS or key == getattr(settings, "DEVELOPMENT_SECRET_KEY", None)


@register(Tags.security)
def check_secret_key(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    keys = [("SECRET_KEY", settings.SECRET_KEY)] + [
        (f"SECRET_KEY_FALLBACKS[{i}]", key)
        for i, key in enumerate(getattr(settings, "SECRET_KEY_FALLBACKS", []))
    ]
    hint = (
        'Generate one: python3 -c "import secrets; print(secrets.token_urlsafe(50))" and '
        "set it as SECRET_KEY (or SECRET_KEY_FILE)."
    )
    for name, key in keys:
        if _published(key):
            errors.append(
                Error(
                    f"{name} is the development key from the repository; anyone can forge "
                    "sessions with it.",
                    hint=hint,
                    id="markwise.E001",
                )
            )
        elif len(key) < MIN_SECRET_KEY_LENGTH:
            errors.append(
                Error(
                    f"{name} has {len(key)} characters; production needs at least "
                    f"{MIN_SECRET_KEY_LENGTH} random ones.",
                    hint=hint,
                    id="markwise.E002",
                )
            )
    return errors
