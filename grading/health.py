"""Liveness and readiness: is each dependency there, truthfully, and is grading keeping up."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.models import OrmQ

from .llm import check_health
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


def llm_status(*, use_cache: bool = True) -> dict[str, Any]:
    """Reachable and serving the configured model? Cached briefly: pages ask on every load."""
    if not settings.LLM_BASE_URL:
        return {"ok": True, "mode": "offline rule engine", "model": None}
    key = f"markwise:llm-status:{settings.LLM_BASE_URL}:{settings.LLM_MODEL}"
    if use_cache and (cached := cache.get(key)) is not None:
        return cached
    report = check_health(timeout=3.0)
    status = {
        "ok": report.serving_model,
        "mode": "model",
        "url": settings.LLM_BASE_URL,
        "model": report.model,
        "served": report.models,
        "error": report.error,
    }
    cache.set(key, status, LLM_STATUS_CACHE_SECONDS)
    return status


def readiness() -> dict[str, Any]:
    checks: dict[str, Any] = {"database": _database()}
    if checks["database"]["ok"]:
        checks["migrations"] = _migrations()
        checks["grading"] = grading_backlog()
    checks["llm"] = llm_status(use_cache=False)
    # A model that is down does not make the site unready (teachers can still
    # review and grade by hand); it is reported, and the UI shows a banner.
    ready = checks["database"]["ok"] and checks.get("migrations", {}).get("ok", False)
    return {"ready": ready, "checks": checks}


def banner_problems() -> list[str]:
    """Short, translated messages for the staff banner (empty when all is well)."""
    problems = []
    llm = llm_status()
    if not llm["ok"]:
        problems.append(
            _("The AI model is unreachable: new answers wait or go to manual grading. (%(e)s)")
            % {"e": llm.get("error", "")}
        )
    backlog = grading_backlog()
    if not backlog["ok"]:
        problems.append(
            _("Grading is falling behind: %(n)s answers waiting, the oldest for %(m)s minutes.")
            % {"n": backlog["answers_waiting"], "m": int(backlog["oldest_waiting_seconds"] // 60)}
        )
    return problems
