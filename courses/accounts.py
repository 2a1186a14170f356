"""Logging in and choosing a password.

`client_ip` is the address the login throttle (django-axes) counts failures against;
`NotCurrentPasswordValidator` keeps the first-login change from "choosing" the printed
initial password again (Django's own validators do not compare with the current one).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or the entry our own proxies added to
    X-Forwarded-For. Entries left of those were written by the client and are ignored,
    or anyone could dodge the throttle by sending a new address with every guess."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [h for h in hops if h]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # not an address: the column is an inet on PostgreSQL
        return remote


class NotCurrentPasswordValidator:
    """Refuse the password the account has now (above all the printed initial one)."""

    def validate(self, password: str, user: Any = None) -> None:
        if user is None or not getattr(user, "pk", None) or not user.has_usable_password():
            return
        # The plain hash comparison, not user.check_password(): that one may re-hash and
        # save the user halfway through a form.
        if check_password(password, user.password):
            raise ValidationError(
                _("Choose a password different from the one you have now."),
                code="password_unchanged",
            )

    def get_help_text(self) -> str:
        return _("Your new password must be different from the one you have now.")
