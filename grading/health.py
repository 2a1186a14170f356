"""Liveness and readiness: is each dependency there, truthfully, and is grading keeping up."""

from __future__ import annotations

import datetime
import hmac
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.models import OrmQ

from .llm import check_health, endpoint_states, endpoints
from .models import Answer, AnswerStatus

# Grading is "falling behind" when an answer has waited longer than this.
BEHIND_AFTER = datetime.timedelta(minutes=10)
LLM_STATUS_CACHE_SECONDS = 30


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc)[:300]}


def _migrations() -> dict[str, Any]:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc)[:300]}
    return {"ok": not pending, "pending": [f"{m.app_label}.{m.name}" for m, _ in pending]}


def grading_backlog() -> dict[str, Any]:
    """Answers waiting for a scorer, and how long the oldest has waited."""
    waiting = Answer.objects.filter(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING])
    oldest = waiting.order_by("updated_at").values_list("updated_at", flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    queued = OrmQ.objects.count() if "orm" in settings.Q_CLUSTER else None
    return {
        "ok": age < BEHIND_AFTER.total_seconds(),
        "answers_waiting": waiting.count(),
        "oldest_waiting_seconds": round(age, 1),
        "queued_tasks": queued,
    }


def waiting_for_model() -> dict[str, Any]:
    """Answers waiting for the model server to come back, and since when."""
    waiting = Answer.objects.filter(
        status=AnswerStatus.GRADING, waiting_for_model_since__isnull=False
    )
    since = waiting.aggregate(since=Min("waiting_for_model_since"))["since"]
    return {"answers": waiting.count(), "since": since.isoformat() if since else None}


def llm_status(*, use_cache: bool = True) -> dict[str, Any]:
    """Reachable and serving the configured model? Cached briefly: pages ask on every load.

    With several replicas each is checked; `ok` while at least one serves. `endpoints`
    also gives each one's shared circuit breaker (open since when, next probe), and
    `waiting_for_model` the answers that wait for it to close.
    """
    if not settings.LLM_BASE_URL:
        return {"ok": True, "mode": "offline rule engine", "model": None}
    key = f"markwise:llm-status:{settings.LLM_BASE_URL}:{settings.LLM_MODEL}"
    if use_cache and (cached := cache.get(key)) is not None:
        return cached
    urls = endpoints()
    breakers = endpoint_states()
    reports = [check_health(base_url=url, timeout=3.0) for url in urls]
    serving = [r for r in reports if r.serving_model]
    first = serving[0] if serving else reports[0]
    status = {
        "ok": bool(serving),
        "mode": "model",
        "url": settings.LLM_BASE_URL,
        "model": first.model,
        "served": first.models,
        "error": "; ".join(r.error for r in reports if r.error),
        "endpoints": [
            {
                **breakers[url].as_json(),
                "serving": report.serving_model,
                "error": report.error,
            }
            for url, report in zip(urls, reports, strict=True)
        ],
        "waiting_for_model": waiting_for_model(),
    }
    cache.set(key, status, LLM_STATUS_CACHE_SECONDS)
    return status


def readiness(*, detail: bool = True) -> dict[str, Any]:
    """{"ready": bool}, with every check's report when `detail` is asked for.

    Without detail only what decides readiness runs (database and migrations): an
    anonymous probe never makes the server call the model endpoint or count the backlog.
    """
    checks: dict[str, Any] = {"database": _database()}
    if checks["database"]["ok"]:
        checks["migrations"] = _migrations()
        if detail:
            checks["grading"] = grading_backlog()
    # A model that is down does not make the site unready (teachers can still
    # review and grade by hand); it is reported, and the UI shows a banner.
    ready = checks["database"]["ok"] and checks.get("migrations", {}).get("ok", False)
    if not detail:
        return {"ready": ready}
    checks["llm"] = llm_status(use_cache=False)
    return {"ready": ready, "checks": checks}


def token_presented(request: HttpRequest) -> bool:
    """The caller sent READYZ_TOKEN (as a Bearer token or ?token=). Compared in constant
    time; with no token configured nothing matches, an empty one included."""
    expected = settings.READYZ_TOKEN
    if not expected:
        return False
    scheme, _sep, credentials = request.headers.get("Authorization", "").partition(" ")
    offered = credentials.strip() if scheme.lower() == "bearer" else ""
    offered = offered or request.GET.get("token", "")
    return bool(offered) and hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


def banner_problems() -> list[str]:
    """Short, translated messages for the staff banner (empty when all is well)."""
    problems = []
    llm = llm_status()
    if not llm["ok"]:
        problems.append(
            _("The AI model is unreachable: answers wait until it is back. (%(e)s)")
            % {"e": llm.get("error", "")}
        )
    waiting = llm.get("waiting_for_model") or {}
    if waiting.get("answers"):
        since = timezone.localtime(datetime.datetime.fromisoformat(waiting["since"]))
        problems.append(
            _("Grading has been waiting for the model since %(t)s (%(n)s answers).")
            % {"t": since.strftime("%H:%M"), "n": waiting["answers"]}
        )
    backlog = grading_backlog()
    if not backlog["ok"]:
        problems.append(
            _("Grading is falling behind: %(n)s answers waiting, the oldest for %(m)s minutes.")
            % {"n": backlog["answers_waiting"], "m": int(backlog["oldest_waiting_seconds"] // 60)}
        )
    return problems
