"""What every worker process on every host shares about the model endpoints.

Two things, kept in one store: Redis when REDIS_URL is set (the broker's server),
else the database (the ORM broker case; PostgreSQL in production, SQLite for a
laptop):

- the **request budget**: LLM_MAX_CONCURRENCY slots per endpoint. A worker
  leases slots in batches for the chunk it is grading (and gives back what its
  chunk no longer needs), so the budget costs a few round trips per chunk, never
  one per request. Leases expire unless renewed: a worker that dies frees its
  slots after LLM_SLOT_LEASE_SECONDS.
- the **circuit breaker** of each endpoint: open since when, when to probe next,
  the last error. The process that sees an outage opens it; a probe of /models
  closes it (`grading.llm.endpoints_probe`).

Only `grading.llm` and the pages that report the state use this module; the
event loop never does (all of it runs in the worker's own thread).
"""

from __future__ import annotations

import datetime
import functools
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from .models import ModelEndpointState, ModelSlot

# The first probe after an outage is seen; each failed probe doubles the wait, up to
# LLM_OUTAGE_MAX_WAIT.
FIRST_PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class BreakerState:
    url: str
    open_since: datetime.datetime | None = None
    next_probe_at: datetime.datetime | None = None
    probe_interval: float = 0.0
    last_error: str = ""

    @property
    def open(self) -> bool:
        return self.open_since is not None

    def due(self, now: datetime.datetime) -> bool:
        return self.open and (self.next_probe_at is None or self.next_probe_at <= now)

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "open": self.open,
            "open_since": self.open_since.isoformat() if self.open_since else None,
            "next_probe_at": self.next_probe_at.isoformat() if self.next_probe_at else None,
            "last_error": self.last_error[:300],
        }


def _next_interval(previous: float) -> float:
    return min(max(FIRST_PROBE_SECONDS, previous * 2), max(1.0, settings.LLM_OUTAGE_MAX_WAIT))


def new_holder() -> str:
    """Names one process's leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Store(Protocol):
    """The operations both stores offer. Slots are counted per endpoint URL."""

    def acquire(self, endpoint: str, count: int, budget: int) -> int: ...
    def release(self, endpoint: str, count: int) -> None: ...
    def renew(self) -> dict[str, int]: ...
    def release_all(self) -> None: ...
    def held(self, endpoint: str) -> int: ...
    def breaker_states(self, urls: list[str]) -> dict[str, BreakerState]: ...
    def breaker_open(self, url: str, error: str) -> BreakerState: ...
    def breaker_close(self, url: str) -> None: ...
    def breaker_probe_failed(self, url: str, error: str) -> BreakerState: ...


# --- The database ---------------------------------------------------------------------------


class DatabaseStore:
    """Slot rows leased with SELECT … FOR UPDATE SKIP LOCKED (PostgreSQL).

    SQLite has no row locks, but it runs one writer at a time: the UPDATE re-checks
    that each slot is still free, so two processes never hold the same slot there either.
    Expiry is the database's clock, so hosts whose clocks differ agree on it.
    """

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self._held: dict[str, list[int]] = {}

    @staticmethod
    def _lease_end() -> Any:
        return Now() + datetime.timedelta(seconds=settings.LLM_SLOT_LEASE_SECONDS)

    @staticmethod
    def _free() -> Q:
        return Q(expires_at__isnull=True) | Q(expires_at__lt=Now())

    def held(self, endpoint: str) -> int:
        return len(self._held.get(endpoint, []))

    def acquire(self, endpoint: str, count: int, budget: int) -> int:
        if count <= 0:
            return 0
        ids = self._lease(endpoint, count, budget)
        if ids is None:
            # No free slot: all leased, or the rows are not there yet (a new endpoint or
            # budget). Making them is idempotent.
            if ModelSlot.objects.filter(endpoint=endpoint, number=budget - 1).exists():
                return 0
            ModelSlot.objects.bulk_create(
                [ModelSlot(endpoint=endpoint, number=n) for n in range(budget)],
                ignore_conflicts=True,
            )
            ids = self._lease(endpoint, count, budget) or []
        self._held.setdefault(endpoint, []).extend(ids)
        return len(ids)

    def _lease(self, endpoint: str, count: int, budget: int) -> list[int] | None:
        with transaction.atomic():
            ids = list(
                ModelSlot.objects.select_for_update(skip_locked=True)
                .filter(self._free(), endpoint=endpoint, number__lt=budget)
                .order_by("number")
                .values_list("pk", flat=True)[:count]
            )
            if not ids:
                return None
            leased = (
                ModelSlot.objects.filter(self._free(), pk__in=ids)
                .exclude(holder=self.holder)
                .update(holder=self.holder, expires_at=self._lease_end())
            )
        if leased != len(ids):  # SQLite: another process took some between read and write
            ids = list(
                ModelSlot.objects.filter(
                    pk__in=ids, holder=self.holder, expires_at__gt=Now()
                ).values_list("pk", flat=True)
            )
        return ids

    def release(self, endpoint: str, count: int) -> None:
        held = self._held.get(endpoint, [])
        if count <= 0 or not held:
            return
        ids, self._held[endpoint] = held[-count:], held[:-count]
        ModelSlot.objects.filter(pk__in=ids, holder=self.holder).update(holder="", expires_at=None)

    def renew(self) -> dict[str, int]:
        """Extend every lease; returns how many slots per endpoint were lost (expired and
        taken by another process while this one was too slow to renew)."""
        ids = [pk for held in self._held.values() for pk in held]
        if not ids:
            return {}
        renewed = ModelSlot.objects.filter(pk__in=ids, holder=self.holder).update(
            expires_at=self._lease_end()
        )
        if renewed == len(ids):
            return {}
        kept = set(
            ModelSlot.objects.filter(pk__in=ids, holder=self.holder).values_list("pk", flat=True)
        )
        lost: dict[str, int] = {}
        for endpoint, held in self._held.items():
            self._held[endpoint] = [pk for pk in held if pk in kept]
            if len(held) != len(self._held[endpoint]):
                lost[endpoint] = len(held) - len(self._held[endpoint])
        return lost

    def release_all(self) -> None:
        ids = [pk for held in self._held.values() for pk in held]
        self._held = {}
        if ids:
            ModelSlot.objects.filter(pk__in=ids, holder=self.holder).update(
                holder="", expires_at=None
            )

    # -- the breaker --------------------------------------------------------------------------

    @staticmethod
    def _state(row: ModelEndpointState) -> BreakerState:
        return BreakerState(
            row.url, row.open_since, row.next_probe_at, row.probe_interval, row.last_error
        )

    def breaker_states(self, urls: list[str]) -> dict[str, BreakerState]:
        found = {
            row.url: self._state(row) for row in ModelEndpointState.objects.filter(url__in=urls)
        }
        return {url: found.get(url, BreakerState(url)) for url in urls}

    def breaker_open(self, url: str, error: str) -> BreakerState:
        now = timezone.now()
        with transaction.atomic():
            row, _ = ModelEndpointState.objects.select_for_update().get_or_create(url=url)
            if row.open_since is None:
                row.open_since = now
                row.probe_interval = FIRST_PROBE_SECONDS
                row.next_probe_at = now + datetime.timedelta(seconds=FIRST_PROBE_SECONDS)
            row.last_error = error[:2000]
            row.save()
        return self._state(row)

    def breaker_close(self, url: str) -> None:
        ModelEndpointState.objects.filter(url=url).update(
            open_since=None, next_probe_at=None, probe_interval=0, last_error=""
        )

    def breaker_probe_failed(self, url: str, error: str) -> BreakerState:
        now = timezone.now()
        with transaction.atomic():
            row, _ = ModelEndpointState.objects.select_for_update().get_or_create(url=url)
            row.open_since = row.open_since or now
            row.probe_interval = _next_interval(row.probe_interval)
            row.next_probe_at = now + datetime.timedelta(seconds=row.probe_interval)
            row.last_error = error[:2000]
            row.save()
        return self._state(row)


# --- Redis -------------------------------------------------------------------------------------

# KEYS[1]: the endpoint's sorted set of leases (member: holder#n, score: expiry in ms);
# KEYS[2]: its lease counter. ARGV: holder, count, budget, lease ms. Expired leases are
# dropped, then at most budget - leased new ones are added. Redis's own clock decides.
_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1]))
if grant <= 0 then return {} end
local last = redis.call('INCRBY', KEYS[2], grant)
local members = {}
for i = last - grant + 1, last do
  local member = ARGV[1] .. '#' .. i
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), member)
  members[#members + 1] = member
end
return members
"""
# KEYS[1]: the sorted set; ARGV[1]: lease ms; ARGV[2..]: members. Extends the leases that
# are still there and returns how many were.
_RENEW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local kept = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    kept = kept + 1
  end
end
return kept
"""


@functools.cache
def _redis(url: str) -> Any:
    import redis  # the `redis` extra; only needed with REDIS_URL

    return redis.Redis.from_url(url, decode_responses=True)


class RedisStore:
    """The same budget and breaker in Redis: one sorted set of leases per endpoint, and
    one hash per breaker. Each operation is one round trip (a Lua script where it must
    be atomic)."""

    PREFIX = "markwise:llm"

    def __init__(self, holder: str, url: str) -> None:
        self.holder = holder
        self.redis = _redis(url)
        self._held: dict[str, list[str]] = {}
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)

    def _slots_key(self, endpoint: str) -> str:
        return f"{self.PREFIX}:slots:{endpoint}"

    def _breaker_key(self, url: str) -> str:
        return f"{self.PREFIX}:breaker:{url}"

    def _lease_ms(self) -> int:
        return int(settings.LLM_SLOT_LEASE_SECONDS * 1000)

    def held(self, endpoint: str) -> int:
        return len(self._held.get(endpoint, []))

    def acquire(self, endpoint: str, count: int, budget: int) -> int:
        if count <= 0:
            return 0
        key = self._slots_key(endpoint)
        members = self._acquire(
            keys=[key, f"{key}:seq"], args=[self.holder, count, budget, self._lease_ms()]
        )
        self._held.setdefault(endpoint, []).extend(members)
        return len(members)

    def release(self, endpoint: str, count: int) -> None:
        held = self._held.get(endpoint, [])
        if count <= 0 or not held:
            return
        members, self._held[endpoint] = held[-count:], held[:-count]
        self.redis.zrem(self._slots_key(endpoint), *members)

    def renew(self) -> dict[str, int]:
        lost: dict[str, int] = {}
        for endpoint, members in self._held.items():
            if not members:
                continue
            kept = int(
                self._renew(keys=[self._slots_key(endpoint)], args=[self._lease_ms(), *members])
            )
            if kept != len(members):
                still = self.redis.zmscore(self._slots_key(endpoint), members)
                self._held[endpoint] = [m for m, score in zip(members, still, strict=True) if score]
                lost[endpoint] = len(members) - len(self._held[endpoint])
        return lost

    def release_all(self) -> None:
        for endpoint in list(self._held):
            self.release(endpoint, len(self._held[endpoint]))
        self._held = {}

    # -- the breaker --------------------------------------------------------------------------

    @staticmethod
    def _time(value: str | None) -> datetime.datetime | None:
        return datetime.datetime.fromisoformat(value) if value else None

    def _state(self, url: str, data: dict[str, str]) -> BreakerState:
        return BreakerState(
            url,
            self._time(data.get("open_since")),
            self._time(data.get("next_probe_at")),
            float(data.get("probe_interval") or 0),
            data.get("last_error", ""),
        )

    def breaker_states(self, urls: list[str]) -> dict[str, BreakerState]:
        pipe = self.redis.pipeline(transaction=False)
        for url in urls:
            pipe.hgetall(self._breaker_key(url))
        return {url: self._state(url, data) for url, data in zip(urls, pipe.execute(), strict=True)}

    def breaker_open(self, url: str, error: str) -> BreakerState:
        key, now = self._breaker_key(url), timezone.now()
        if self.redis.hsetnx(key, "open_since", now.isoformat()):
            self.redis.hset(
                key,
                mapping={
                    "probe_interval": FIRST_PROBE_SECONDS,
                    "next_probe_at": (
                        now + datetime.timedelta(seconds=FIRST_PROBE_SECONDS)
                    ).isoformat(),
                },
            )
        self.redis.hset(key, "last_error", error[:2000])
        return self._state(url, self.redis.hgetall(key))

    def breaker_close(self, url: str) -> None:
        self.redis.delete(self._breaker_key(url))

    def breaker_probe_failed(self, url: str, error: str) -> BreakerState:
        key, now = self._breaker_key(url), timezone.now()
        state = self._state(url, self.redis.hgetall(key))
        interval = _next_interval(state.probe_interval)
        self.redis.hset(
            key,
            mapping={
                "open_since": (state.open_since or now).isoformat(),
                "probe_interval": interval,
                "next_probe_at": (now + datetime.timedelta(seconds=interval)).isoformat(),
                "last_error": error[:2000],
            },
        )
        return self._state(url, self.redis.hgetall(key))


def store(holder: str | None = None) -> Store:
    """The store for the current settings: Redis with REDIS_URL, else the database."""
    holder = holder or new_holder()
    url = getattr(settings, "REDIS_URL", "")
    if url:
        return RedisStore(holder, url)
    return DatabaseStore(holder)
