"""The tool's signing keys: generated on first use, rotatable, published at /lti/jwks/."""

from __future__ import annotations

import json
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction
from django.utils import timezone
from jwt.algorithms import RSAAlgorithm

from grading.audit import audit_record

from .models import ToolKey


def _new_key() -> ToolKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    kid = secrets.token_urlsafe(16)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return ToolKey(kid=kid, private_key_pem=pem, public_jwk=jwk)


def tool_key_current() -> ToolKey:
    """The key that signs now; the first call on a new installation creates it."""
    key = ToolKey.objects.published().filter(superseded_at__isnull=True).first()
    if key is not None:
        return key
    with transaction.atomic():
        # Two workers on a fresh installation: the lock makes the second one reuse the first's.
        list(ToolKey.objects.select_for_update().all()[:1])
        key = ToolKey.objects.published().filter(superseded_at__isnull=True).first()
        if key is None:
            key = _new_key()
            key.save()
            audit_record(actor=None, action="lti.key.created", target=key, after={"kid": key.kid})
    return key


def tool_key_rotate(*, actor: Any | None = None) -> ToolKey:
    """Sign with a new key from now on; the old one stays published until retired."""
    with transaction.atomic():
        now = timezone.now()
        old = list(
            ToolKey.objects.select_for_update().filter(
                superseded_at__isnull=True, retired_at__isnull=True
            )
        )
        ToolKey.objects.filter(pk__in=[key.pk for key in old]).update(superseded_at=now)
        key = _new_key()
        key.save()
        audit_record(
            actor=actor,
            action="lti.key.rotated",
            target=key,
            before={"kids": [k.kid for k in old]},
            after={"kid": key.kid},
        )
    return key


def tool_key_retire(*, key: ToolKey, actor: Any | None = None) -> ToolKey:
    """Stop publishing a superseded key. The signing key cannot be retired: rotate first."""
    if key.superseded_at is None:
        raise ValueError("rotate before retiring the signing key")
    if key.retired_at is None:
        key.retired_at = timezone.now()
        key.save(update_fields=["retired_at"])
        audit_record(actor=actor, action="lti.key.retired", target=key, after={"kid": key.kid})
    return key


def jwks() -> dict[str, list[dict[str, Any]]]:
    tool_key_current()
    return {"keys": [key.public_jwk for key in ToolKey.objects.published()]}
