"""Rate limits per API key and per person, counted in Django's cache.

Set `CACHE_URL` to a shared cache (Redis, Memcached, the database) when more than one
process serves the API, or each process counts on its own.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from ..models import ApiKey


class PrincipalRateThrottle(SimpleRateThrottle):
    """One budget per key (`API_RATE_KEY`), per signed-in person (`API_RATE_USER`) and per
    address for anonymous callers (`API_RATE_ANON`); read on each request so that tests
    and operators can change them without restarting anything."""

    def get_rate(self) -> str | None:
        return None  # chosen per request in allow_request

    def allow_request(self, request: Any, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            self.rate, ident = settings.API_RATE_KEY, f"key:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            self.rate, ident = settings.API_RATE_USER, f"user:{request.user.pk}"
        else:
            self.rate, ident = settings.API_RATE_ANON, f"anon:{self.get_ident(request)}"
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = f"throttle_api_{ident}"
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return bool(self.throttle_failure())
        return bool(self.throttle_success())

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return getattr(self, "key", None)
