"""API keys: created once, shown once, stored hashed, revocable.

A key reads `mw_<prefix>_<secret>`: the prefix (8 hex characters) is public and finds
the row, the secret (43 URL-safe characters, 256 random bits) is never stored; the row
keeps the SHA-256 of the whole key. Each key acts as its own service account, a user that
cannot log in, so that the audit trail and every grade it approves name the key.
"""

from __future__ import annotations

import datetime
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from courses.models import Course, User

from ..audit import audit_record
from ..models import API_KEY_PREFIX, ApiKey, ApiScope

# A key's last use is written at most this often: a busy integration would otherwise
# turn every read into a write.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: the row, and the key itself, which exists nowhere else."""

    api_key: ApiKey
    raw_key: str


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def api_key_create(
    *,
    name: str,
    scopes: Iterable[str],
    courses: Iterable[Course] = (),
    site_wide: bool = False,
    actor: User | None = None,
) -> NewApiKey:
    """Make a key for `courses` (or the whole site) with `scopes`; returns it once."""
    courses = list(courses)
    scopes = sorted(set(scopes))
    name = name.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = _("Give the key a name that says which system uses it.")
    if not scopes or set(scopes) - set(ApiScope.values):
        errors["scopes"] = _("Choose one or more of: %(s)s.") % {"s": ", ".join(ApiScope.values)}
    if not site_wide and not courses:
        errors["courses"] = _("Choose the key's courses, or make it site-wide.")
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        prefix, raw = _new_secret()
        while ApiKey.objects.filter(prefix=prefix).exists():  # 1 in 4 billion, but cheap
            prefix, raw = _new_secret()
        account = User(username=f"api-key-{prefix}", name=f"API: {name}"[:150], is_active=False)
        account.set_unusable_password()
        account.save()
        key = ApiKey.objects.create(
            name=name,
            prefix=prefix,
            hashed_key=ApiKey.hash(raw),
            user=account,
            site_wide=site_wide,
            scopes=scopes,
            created_by=actor,
        )
        key.courses.set(courses)
        audit_record(
            actor=actor,
            action="api_key.created",
            target=key,
            after={
                "name": name,
                "prefix": prefix,
                "scopes": scopes,
                "site_wide": site_wide,
                "courses": sorted(c.code for c in courses),
            },
        )
    return NewApiKey(key, raw)


def api_key_revoke(*, api_key: ApiKey, actor: User | None) -> ApiKey:
    """The key stops working at once; the row stays as history of what it did."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="api_key.revoked",
                target=locked,
                before={"prefix": locked.prefix},
                after={"revoked_at": locked.revoked_at.isoformat()},
            )
    api_key.revoked_at = locked.revoked_at
    return locked


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key `raw_key` is, or None. Compares hashes in constant time."""
    if not raw_key.startswith(API_KEY_PREFIX) or len(raw_key) > 100:
        return None
    prefix = raw_key[len(API_KEY_PREFIX) :].split("_", 1)[0]
    key = ApiKey.objects.active().select_related("user").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.hashed_key, ApiKey.hash(raw_key)):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
