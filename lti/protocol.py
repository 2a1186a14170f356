"""pylti1p3 wired to Markwise's database: registrations, the tool key, and launch checks
that pylti1p3 leaves out (audience/azp, required times, single-use nonce bound to state).

django-lti is not used: its login URL carries a registration UUID (/init/<uuid>/), while
Markwise's published interface is one /lti/login/ for every platform, and its own
LtiUser / LtiContext / LtiMembership tables would be a second record of who is in which
course next to courses.Enrollment. pylti1p3 (which django-lti wraps) does the protocol.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from django.db import transaction
from django.utils import timezone
from pylti1p3.contrib.django import DjangoMessageLaunch, DjangoOIDCLogin
from pylti1p3.contrib.django.session import DjangoSessionService
from pylti1p3.deployment import Deployment as PyDeployment
from pylti1p3.exception import LtiException
from pylti1p3.registration import Registration
from pylti1p3.tool_config.abstract import ToolConfAbstract

from .keys import tool_key_current
from .models import Deployment, LaunchState, Platform

# How long a login may wait for its launch. Platforms post the launch within seconds.
LAUNCH_STATE_TTL = datetime.timedelta(minutes=10)
# Clock skew allowed between the platform and us when checking iat / exp.
CLOCK_LEEWAY_SECONDS = 60
LTI_VERSION = "1.3.0"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"


class MarkwiseRegistration(Registration):
    """A registration whose key id is our ToolKey's (platforms pick our key by it)."""

    kid: str | None = None

    def get_kid(self) -> str | None:
        return self.kid


def registration_for(platform: Platform) -> MarkwiseRegistration:
    key = tool_key_current()
    registration = MarkwiseRegistration()
    registration.set_issuer(platform.issuer).set_client_id(platform.client_id)
    registration.set_key_set_url(platform.keyset_url)
    registration.set_auth_login_url(platform.auth_login_url)
    registration.set_auth_token_url(platform.auth_token_url)
    if platform.auth_audience:
        registration.set_auth_audience(platform.auth_audience)
    registration.set_tool_private_key(key.private_key_pem)
    registration.kid = key.kid
    return registration


class DatabaseToolConf(ToolConfAbstract[Any]):
    """Registrations from lti.Platform; every issuer may have many client ids."""

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def platform(self, iss: str, client_id: str | None) -> Platform | None:
        platforms = Platform.objects.filter(issuer=iss, active=True)
        if client_id:
            platforms = platforms.filter(client_id=client_id)
        found = list(platforms[:2])
        # An issuer with two registrations and no client id names neither.
        return found[0] if len(found) == 1 else None

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Any:
        platform = self.platform(iss, None)
        return registration_for(platform) if platform else None

    def find_registration_by_params(
        self, iss: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Any:
        platform = self.platform(iss, client_id)
        return registration_for(platform) if platform else None

    def find_deployment(self, iss: str, deployment_id: str) -> PyDeployment | None:
        return self.find_deployment_by_params(iss, deployment_id, "")

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: Any, **kwargs: Any
    ) -> PyDeployment | None:
        platform = self.platform(iss, client_id or None)
        if platform is None:
            return None
        if not Deployment.objects.filter(platform=platform, deployment_id=deployment_id).exists():
            return None
        return PyDeployment().set_deployment_id(deployment_id)


class DatabaseSessionService(DjangoSessionService):
    """Nonces live in LaunchState (shared by every worker), not in the browser session:
    an LMS posts the launch cross-site, where the Lax session cookie is not sent."""

    def save_nonce(self, nonce: str) -> None:
        # The nonce is stored with its state in MarkwiseLogin.redirect_url, bound to it.
        return None

    def check_nonce(self, nonce: str) -> bool:
        return True  # checked against the state in MarkwiseLaunch.validate_nonce


class MarkwiseLogin(DjangoOIDCLogin):
    def __init__(self, request: Any, platform: Platform) -> None:
        super().__init__(
            request, DatabaseToolConf(), session_service=DatabaseSessionService(request)
        )
        self.platform_row = platform

    def _prepare_redirect_url(self, launch_url: str) -> str:
        url: str = super()._prepare_redirect_url(launch_url)
        query = parse_qs(urlsplit(url).query)
        now = timezone.now()
        # Logins past their expiry can never be launched; an unknown state is refused just
        # the same, so old rows go (indexed, a few per login).
        LaunchState.objects.filter(expires_at__lt=now - LAUNCH_STATE_TTL).delete()
        LaunchState.objects.create(
            state=query["state"][0],
            nonce=query["nonce"][0],
            platform=self.platform_row,
            created_at=now,
            expires_at=now + LAUNCH_STATE_TTL,
        )
        return url


class MarkwiseLaunch(DjangoMessageLaunch):
    def __init__(self, request: Any) -> None:
        super().__init__(
            request, DatabaseToolConf(), session_service=DatabaseSessionService(request)
        )

    def _state(self) -> LaunchState | None:
        return (
            LaunchState.objects.filter(state=self._get_request_param("state") or "")
            .select_related("platform")
            .first()
        )

    def validate_nonce(self) -> MarkwiseLaunch:
        nonce = self._get_jwt_body().get("nonce")
        record = self._state()
        if not nonce or record is None or record.nonce != nonce:
            raise LtiException("Invalid Nonce")
        if record.used_at is not None:
            raise LtiException("This launch was already used")
        if record.expires_at <= timezone.now():
            raise LtiException("This launch has expired")
        return self

    def validate_jwt_signature(self) -> MarkwiseLaunch:
        """Signature, and what pylti1p3 leaves unchecked: aud contains our client id (and
        azp names it when there are several audiences), exp and iat present and current."""
        registration = self._registration
        if registration is None:  # validate_registration runs first and sets it
            raise LtiException("Registration not found.")
        public_key, key_alg = self.get_public_key()
        client_id = registration.get_client_id()
        try:
            body = jwt.decode(
                self._get_id_token(),
                public_key,
                algorithms=[key_alg],
                audience=client_id,
                issuer=registration.get_issuer(),
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "nonce"]},
            )
        except jwt.InvalidTokenError as exc:
            raise LtiException(f"Can't decode id_token: {exc}") from exc
        audiences = body["aud"] if isinstance(body["aud"], list) else [body["aud"]]
        if (len(audiences) > 1 or "azp" in body) and body.get("azp") != client_id:
            raise LtiException("azp does not name this tool")
        if body.get(CLAIM + "version") != LTI_VERSION:
            raise LtiException("Unsupported LTI version")
        return self

    def consume(self) -> LaunchState:
        """Mark the login used, exactly once: a replayed id_token + state is refused here
        even when two replays race (the conditional UPDATE lets one of them through)."""
        record = self._state()
        if record is None:
            raise LtiException("Invalid Nonce")
        with transaction.atomic():
            used = LaunchState.objects.filter(
                pk=record.pk, used_at__isnull=True, expires_at__gt=timezone.now()
            ).update(used_at=timezone.now())
        if used != 1:
            raise LtiException("This launch was already used")
        return record
