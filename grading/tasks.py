"""django-q2 entry points. Thin: every rule lives in `grading.services`."""

from __future__ import annotations

from typing import Any

from . import services


def grade_answers(answer_ids: list[int], force: bool = False) -> dict[str, int]:
    summary = services.answers_grade(answer_ids=answer_ids, force=force)
    return vars(summary)


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
