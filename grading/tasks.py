"""django-q2 entry points. Thin: every rule lives in `grading.services`."""

from __future__ import annotations

from typing import Any

from . import services, webhooks


def grade_answers(answer_ids: list[int], force: bool = False) -> dict[str, Any]:
    summary = services.answers_grade_chunk(answer_ids=answer_ids, force=force)
    return vars(summary)


def grade_pool() -> dict[str, Any]:
    summary = services.answers_grade_pool()
    return vars(summary) if summary is not None else {"claimed": 0}


def grading_finished(task: Any) -> None:
    """Hook: a chunk that crashed sends its unfinished answers to manual grading."""
    if not task.success:
        answer_ids = task.args[0] if task.args else []
        services.answers_mark_failed(
            answer_ids=answer_ids, reason=f"grading task failed: {str(task.result)[:1500]}"
        )


def requeue_stuck() -> int:
    """Scheduled sweeper: answers stuck in "grading" past the task timeout are retried."""
    return services.answers_requeue_stuck()


def model_probe() -> int:
    """One-off schedule while answers wait for the model: probe it, requeue them if it is back."""
    return services.model_outage_check()


def webhook_deliver(delivery_id: int) -> str:
    """One attempt of one webhook delivery; retries schedule themselves."""
    return webhooks.webhook_deliver(delivery_id=delivery_id)


def webhook_sweep() -> int:
    """Scheduled sweeper: webhook deliveries whose task was lost are enqueued again."""
    return webhooks.webhook_deliveries_requeue()
