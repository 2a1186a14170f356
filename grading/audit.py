"""The tamper-evident audit trail: append events, checkpoint the chain, verify both.

Events are written by the service layer only (`audit_record`, `audit_record_many`).

The chain. Each event's `hash` is HMAC-SHA256, under the audit key, of the canonical JSON
of the event *as the database stores it* (JSON values after the field's encoder, so a
datetime is hashed as the ISO text that is stored), its position `seq` and the previous
event's hash. The key is settings.AUDIT_KEY, or one derived from SECRET_KEY, and is never
stored in the database: whoever can write the table can neither edit an event nor
recompute the chain after an edit without `audit_verify` seeing it from that event on.

The checkpoints. A chain alone cannot show that its newest events, or all of them, were
deleted. So its length and newest hash are signed with the same key and appended to a
daily file outside the database (settings.AUDIT_CHECKPOINT_DIR), which operators copy
elsewhere: once a transaction crosses a multiple of AUDIT_CHECKPOINT_EVERY events, every
five minutes from the django-q2 schedule while there are new events, and on
`verify_audit --write-checkpoint`. `audit_verify` checks the chain against each of them.

Events from before the key (hash_version 1: unkeyed SHA-256 over the old serialisation)
stay as they are, the trail being append-only. The upgrade's migration signs a *seal* over
them into the checkpoint store: their number and a keyed digest of their stored content.
From then on they are checked against the seal, and a version-1 event after a keyed one,
or without a seal, is reported.
"""

from __future__ import annotations

import contextvars
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import AuditEvent, UnicodeJSONEncoder, sha256_hex

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 0x6D61726B  # "mark"

CHECKPOINT_FORMAT = 1
LEGACY = AuditEvent.HASH_LEGACY_SHA256
KEYED = AuditEvent.HASH_HMAC_SHA256


class RequestIdMiddleware:
    """Tags each request with an id (the proxy's X-Request-ID if it sent one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")[:64]
        request_id = incoming if incoming.isprintable() and incoming else uuid.uuid4().hex
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


def current_request_id() -> str:
    return _request_id.get()


# --- Keys and the canonical form ---------------------------------------------------------


def _audit_key() -> bytes:
    configured: str = getattr(settings, "AUDIT_KEY", "")
    if configured:
        return configured.encode()
    # Derived rather than SECRET_KEY itself, so nothing the chain publishes (hashes,
    # signatures) is made with the key Django signs sessions and reset links with.
    return hmac.new(settings.SECRET_KEY.encode(), b"markwise audit key", hashlib.sha256).digest()


def _subkey(purpose: bytes) -> bytes:
    # One key per use: a checkpoint signature can never pass for an event hash, or back.
    return hmac.new(_audit_key(), purpose, hashlib.sha256).digest()


def _canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8. No fallback for other types: everything hashed is
    already JSON as the database returns it, so writer and verifier hash the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(key: bytes, value: Any) -> str:
    return hmac.new(key, _canonical(value), hashlib.sha256).hexdigest()


def _settled(value: Any) -> Any:
    """JSON numbers as every database gives them back: PostgreSQL's jsonb returns the float
    1e16 as the integer 10000000000000000 and has no -0.0."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1e16:
            return int(value)
        return 0.0 if value == 0 else value
    if isinstance(value, dict):
        return {key: _settled(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_settled(item) for item in value]
    return value


def json_as_stored(value: Any) -> Any:
    """`value` as an audit event's JSON field reads it back: through the field's encoder
    (datetimes and dates become ISO text, Decimals and UUIDs strings, keys strings)."""
    if value is None:
        return None
    return _settled(json.loads(json.dumps(value, cls=UnicodeJSONEncoder)))


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _content(event: Any) -> dict[str, Any]:
    """What an event's hash covers: every stored column but `hash` and the row id."""
    return {
        "version": event.hash_version,
        "seq": event.seq,
        "created_at": _utc(event.created_at),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "assignment_id": event.assignment_id,
        "submission_id": event.submission_id,
        "before": _settled(event.before),
        "after": _settled(event.after),
        "reason": event.reason,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }


def event_hash(event: AuditEvent) -> str:
    """The keyed hash of an event, with the audit key of the running settings."""
    return _mac(_subkey(b"chain"), _content(event))


# --- Events from before the key (hash_version 1) ------------------------------------------

# How DjangoJSONEncoder writes a datetime with whole seconds. The old rule hashed
# str(datetime) instead; for such values the stored text still says exactly what that was.
_ENCODED_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})")


def _as_old_rule_saw_it(value: Any) -> Any:
    if isinstance(value, str) and _ENCODED_DATETIME.fullmatch(value):
        parsed = parse_datetime(value)
        return str(parsed) if parsed else value
    if isinstance(value, dict):
        return {key: _as_old_rule_saw_it(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_old_rule_saw_it(item) for item in value]
    return value


def _legacy_hash(event: Any, before: Any, after: Any) -> str:
    return sha256_hex(
        {
            "created_at": event.created_at.isoformat(),
            "actor_id": event.actor_id,
            "actor_label": event.actor_label,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "assignment_id": event.assignment_id,
            "submission_id": event.submission_id,
            "before": before,
            "after": after,
            "reason": event.reason,
            "request_id": event.request_id,
            "prev_hash": event.prev_hash,
        }
    )


def _legacy_hash_reproduces(event: Any) -> bool:
    """Whether the old unkeyed rule gives the stored hash. It cannot for an event that held
    a datetime with fractions of a second (the encoder stored milliseconds, the old rule
    hashed microseconds): that was the false alarm the keyed chain fixes."""
    if hmac.compare_digest(_legacy_hash(event, event.before, event.after), event.hash):
        return True
    before, after = _as_old_rule_saw_it(event.before), _as_old_rule_saw_it(event.after)
    if (before, after) == (event.before, event.after):
        return False
    return hmac.compare_digest(_legacy_hash(event, before, after), event.hash)


class _LegacyDigest:
    """A keyed digest of the stored version-1 events, in chain order: what a seal signs."""

    def __init__(self) -> None:
        self.count = 0
        self._mac = hmac.new(_subkey(b"legacy seal"), digestmod=hashlib.sha256)

    def add(self, event: Any) -> None:
        self.count += 1
        self._mac.update(_canonical([event.pk, event.hash, _content(event)]) + b"\n")

    def hexdigest(self) -> str:
        return self._mac.hexdigest()


# --- Appending ----------------------------------------------------------------------------


def audit_record(
    *,
    actor: Any | None,
    action: str,
    target: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    assignment_id: int | None = None,
    submission_id: int | None = None,
) -> AuditEvent:
    """Append one event to the chain. `actor=None` means the system did it."""
    [event] = _append(
        [
            {
                "actor": actor,
                "action": action,
                "target_type": target._meta.label_lower,
                "target_id": target.pk,
                "before": before,
                "after": after,
                "reason": reason,
                "assignment_id": assignment_id,
                "submission_id": submission_id,
            }
        ]
    )
    return event


def audit_record_many(events: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append many system events at once (a grading batch): one lock, one insert.

    Each dict has action, target_type, target_id and optionally actor,
    assignment_id, submission_id, before, after, reason.
    """
    if not events:
        return []
    return _append(events)


def _append(specs: list[dict[str, Any]]) -> list[AuditEvent]:
    key = _subkey(b"chain")
    with transaction.atomic():
        _lock_chain()
        prev, seq = _chain_tail()
        first = seq + 1
        request_id = current_request_id()
        rows = []
        for spec in specs:
            actor = spec.get("actor")
            seq += 1
            event = AuditEvent(
                actor=actor,
                actor_label=getattr(actor, "username", "") or "system",
                action=str(spec["action"]),
                target_type=str(spec["target_type"]),
                target_id=str(spec["target_id"]),
                assignment_id=_id_or_none(spec.get("assignment_id")),
                submission_id=_id_or_none(spec.get("submission_id")),
                # Hashed exactly as stored: the same value the verifier reads back.
                before=json_as_stored(spec.get("before")),
                after=json_as_stored(spec.get("after")),
                reason=str(spec.get("reason") or ""),
                request_id=request_id,
                prev_hash=prev,
                seq=seq,
                hash_version=KEYED,
            )
            event.hash = prev = _mac(key, _content(event))
            rows.append(event)
        saved = AuditEvent.objects.bulk_create(rows)
        every: int = getattr(settings, "AUDIT_CHECKPOINT_EVERY", 0)
        if every > 0 and seq // every > (first - 1) // every:
            # After the commit, and of what is committed: a checkpoint of events that were
            # then rolled back would read as deleted events.
            transaction.on_commit(_checkpoint_after_commit, robust=True)
    return saved


def _id_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _chain_tail() -> tuple[str, int]:
    """The newest event's hash and position; the genesis hash and 0 for an empty trail."""
    newest = AuditEvent.objects.order_by("-id").values_list("hash", "seq").first()
    if newest is None:
        return AuditEvent.GENESIS_HASH, 0
    head, seq = newest
    if seq is None:
        # The newest event predates positions (version 1): count once, then carry on.
        seq = AuditEvent.objects.count()
    return head, seq


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        # Serialise writers so that two events never claim the same predecessor. Held to
        # the commit, so events also commit in id order: what is visible is a prefix.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


# --- Checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The chain of `database` had `count` events, the newest `last_id` with hash `head`,
    at `written_at`. A seal also vouches for the first `legacy_count` (version-1) events
    through `legacy_digest`."""

    database: str
    count: int
    last_id: int
    head: str
    written_at: str
    legacy_count: int | None = None
    legacy_digest: str | None = None
    source: str = ""  # file:line, for messages

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "database": self.database,
            "count": self.count,
            "last_id": self.last_id,
            "head": self.head,
            "written_at": self.written_at,
        }
        if self.legacy_count is not None:
            record["legacy_count"] = self.legacy_count
            record["legacy_digest"] = self.legacy_digest
        return record


@dataclass(frozen=True)
class CheckpointStore:
    path: Path
    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]
    other_databases: int


def database_label(using: str = DEFAULT_DB_ALIAS) -> str:
    """Which database a checkpoint belongs to, so that one directory may hold the
    checkpoints of several (production and staging, or development and the tests)."""
    db = connections[using]
    name = str(db.settings_dict["NAME"])
    return f"{db.vendor}:{Path(name).name if db.vendor == 'sqlite' else name}"


def checkpoint_dir() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


def checkpoints_read(
    path: Path | str | None = None, *, using: str = DEFAULT_DB_ALIAS
) -> CheckpointStore:
    """Every checkpoint of this database in a directory of `*.jsonl` files (or in one
    such file), with what could not be trusted."""
    path = Path(path) if path is not None else checkpoint_dir()
    label = database_label(using)
    key = _subkey(b"checkpoint")
    found: list[Checkpoint] = []
    problems: list[str] = []
    others = 0
    try:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.is_file() else []
    except OSError as exc:
        return CheckpointStore(path, (), (f"checkpoints in {path} cannot be listed ({exc})",), 0)
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"checkpoint file {file} cannot be read ({exc})")
            continue
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            source = f"{file.name}:{number}"
            try:
                record = json.loads(line)
                signature = record.pop("sig")
                legacy_count = record.get("legacy_count")
                checkpoint = Checkpoint(
                    database=str(record["database"]),
                    count=int(record["count"]),
                    last_id=int(record["last_id"]),
                    head=str(record["head"]),
                    written_at=str(record["written_at"]),
                    legacy_count=None if legacy_count is None else int(legacy_count),
                    legacy_digest=record.get("legacy_digest"),
                    source=source,
                )
            except (ValueError, TypeError, KeyError, AttributeError):
                problems.append(f"checkpoint {source} is unreadable")
                continue
            if checkpoint.database != label:
                # Another database's (staging, say), perhaps under another key: not ours
                # to judge. Relabelling one of ours only hides it, as deleting it would.
                others += 1
            elif isinstance(signature, str) and hmac.compare_digest(_mac(key, record), signature):
                found.append(checkpoint)
            else:
                problems.append(
                    f"checkpoint {source} has a wrong signature (forged, or signed with "
                    "another audit key)"
                )
    return CheckpointStore(path, tuple(found), tuple(problems), others)


def audit_checkpoint_write(
    *,
    directory: Path | str | None = None,
    seal: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    model: Any = AuditEvent,
) -> Checkpoint | None:
    """Sign the chain's current length and newest hash into today's checkpoint file.

    Nothing is written for an empty trail, or when the newest checkpoint already says the
    same. Version-1 events are sealed with it when `seal` is set, or while one is still
    the newest event (right after the upgrade: the migration that introduced the keyed
    chain calls this with its own `model` and `using`).
    """
    directory = Path(directory) if directory is not None else checkpoint_dir()
    events = model._default_manager.using(using)
    newest = events.order_by("-id").values_list("id", "hash", "seq", "hash_version").first()
    if newest is None:
        return None
    last_id, head, seq, version = newest
    # Events commit in id order, so every id up to last_id is committed too.
    count = seq if seq is not None else events.filter(id__lte=last_id).count()
    sealing = seal or version == LEGACY
    if not seal:
        previous = _newest_checkpoint(directory, using=using)
        if (
            previous is not None
            and (previous.count, previous.head) == (count, head)
            and (not sealing or previous.legacy_count is not None)
        ):
            return None
    legacy_count = legacy_digest = None
    if sealing:
        digest = _LegacyDigest()
        for event in events.filter(hash_version=LEGACY).order_by("id").iterator(2000):
            digest.add(event)
        if digest.count:
            legacy_count, legacy_digest = digest.count, digest.hexdigest()
    now = timezone.now()
    checkpoint = Checkpoint(
        database=database_label(using),
        count=count,
        last_id=last_id,
        head=head,
        written_at=_utc(now),
        legacy_count=legacy_count,
        legacy_digest=legacy_digest,
    )
    record = checkpoint.record()
    line = json.dumps({**record, "sig": _mac(_subkey(b"checkpoint"), record)}, sort_keys=True)
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = directory / f"checkpoints-{now:%Y-%m-%d}.jsonl"  # the UTC date
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as file:
        # Web and worker processes append to the same file: one whole line each.
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())
    return checkpoint


def _newest_checkpoint(directory: Path, *, using: str) -> Checkpoint | None:
    """The newest checkpoint of this database in the newest file that has one."""
    files = sorted(directory.glob("checkpoints-*.jsonl")) if directory.is_dir() else []
    for file in reversed(files):
        mine = checkpoints_read(file, using=using).checkpoints
        if mine:
            return max(mine, key=lambda c: c.count)
    return None


def _checkpoint_after_commit() -> None:
    audit_checkpoint_write()


# --- Verifying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    problem: str = ""
    checkpoint_path: str = ""
    checkpoints: int = 0  # checkpoints of this database the chain was checked against
    covered: int = 0  # events the newest of them vouches for
    newest_checkpoint_at: str = ""
    other_databases: int = 0
    legacy: int = 0  # version-1 events, from before the key
    legacy_unreproduced: tuple[int, ...] = ()  # ... whose old hash the old rule cannot give
    sealed_at: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def audit_verify(
    *, checkpoints: Path | str | None = None, require_seal: bool = True
) -> ChainReport:
    """Walk the chain in id order against the checkpoints; report the first thing that
    does not hold. `require_seal=False` accepts version-1 events that no seal covers yet,
    to verify them before sealing."""
    store = checkpoints_read(checkpoints)
    by_count: dict[int, list[Checkpoint]] = {}
    for checkpoint in store.checkpoints:
        by_count.setdefault(checkpoint.count, []).append(checkpoint)
    seals = [c for c in store.checkpoints if c.legacy_count is not None]
    newest = max(store.checkpoints, key=lambda c: c.count, default=None)
    key = _subkey(b"chain")
    legacy = _LegacyDigest()
    last_legacy_id: int | None = None
    unreproduced: list[int] = []
    expected_prev = AuditEvent.GENESIS_HASH
    checked = 0

    def report(broken_at: int | None = None, problem: str = "") -> ChainReport:
        return ChainReport(
            checked=checked,
            broken_at=broken_at,
            problem=problem,
            checkpoint_path=str(store.path),
            checkpoints=len(store.checkpoints),
            covered=newest.count if newest else 0,
            newest_checkpoint_at=newest.written_at if newest else "",
            other_databases=store.other_databases,
            legacy=legacy.count,
            legacy_unreproduced=tuple(unreproduced),
            sealed_at=seals[0].written_at if seals else "",
        )

    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        position = checked + 1
        if event.prev_hash != expected_prev:
            return report(event.pk, "previous hash does not match (an event was removed or moved)")
        if event.hash_version == KEYED:
            if event.seq != position:
                return report(
                    event.pk,
                    f"it is number {event.seq} of the chain but comes as number {position} "
                    "(events before it were removed)",
                )
            if not hmac.compare_digest(_mac(key, _content(event)), event.hash):
                return report(
                    event.pk,
                    "content does not match its hash (edited, or the chain was recomputed "
                    "without the audit key)",
                )
        elif event.hash_version == LEGACY and legacy.count == checked:
            legacy.add(event)
            last_legacy_id = event.pk
            if not _legacy_hash_reproduces(event):
                unreproduced.append(event.pk)
        elif event.hash_version == LEGACY:
            return report(
                event.pk,
                "it carries the old unkeyed hash after keyed events (only events from "
                "before the audit key may)",
            )
        else:
            return report(event.pk, f"unknown hash version {event.hash_version}")
        for checkpoint in by_count.get(position, ()):
            if (checkpoint.last_id, checkpoint.head) != (event.pk, event.hash):
                return report(
                    event.pk,
                    f"it differs from checkpoint {checkpoint.source} of "
                    f"{checkpoint.written_at} (the trail was rewritten up to here)",
                )
        expected_prev = event.hash
        checked = position

    beyond = [c for c in store.checkpoints if c.count > checked]
    if beyond:
        lost = max(beyond, key=lambda c: c.count)
        return report(
            lost.last_id,
            f"missing: checkpoint {lost.source} of {lost.written_at} counted {lost.count} "
            f"events up to event {lost.last_id}, the trail has {checked} (the newest "
            "events were deleted or the table was emptied)",
        )
    if legacy.count and not seals and require_seal:
        return report(
            last_legacy_id,
            f"{legacy.count} events from before the audit key carry the old unkeyed hash "
            f"and no signed seal in {store.path} vouches for them; after upgrading run "
            "`manage.py verify_audit --write-checkpoint` once (README, audit trail)",
        )
    digest = legacy.hexdigest()
    for seal in seals:
        if (seal.legacy_count, seal.legacy_digest) != (legacy.count, digest):
            return report(
                unreproduced[0] if unreproduced else last_legacy_id,
                f"the events from before the audit key do not match their seal "
                f"{seal.source} of {seal.written_at}, which counted {seal.legacy_count} "
                f"(edited or removed since)",
            )
    if store.problems:
        return report(None, store.problems[0])
    return report()
