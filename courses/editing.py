"""Small helpers the services share for editing records: apply form values (cleaned by the
shared text rule), describe what changed (for the audit trail), and keep an `order` field
dense."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.db import models

from .text import clean_data

M = TypeVar("M", bound=models.Model)


def field_state(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named fields as plain data; related objects by primary key."""
    state = {}
    for name in fields:
        value = getattr(obj, name)
        state[name] = value.pk if hasattr(value, "pk") else value
    return state


def apply_values(obj: Any, fields: Iterable[str], values: dict[str, Any]) -> None:
    """Set the named fields; text (also inside JSON values) is cleaned by the shared rule."""
    for name in fields:
        if name in values:
            setattr(obj, name, clean_data(values[name]))


def unchanged(obj: Any, fields: Iterable[str], values: dict[str, Any]) -> bool:
    return all(getattr(obj, name) == clean_data(values[name]) for name in fields if name in values)


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """(old values, new values) of the fields that differ — what an audit event records."""
    changed = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}


def renumber(items: models.QuerySet[M]) -> list[M]:
    """Positions 1..n in the current order (after a delete leaves a gap)."""
    ordered = list(items.order_by("order", "pk"))
    for position, item in enumerate(ordered, start=1):
        item.order = position  # type: ignore[attr-defined]
    items.bulk_update(ordered, ["order"])
    return ordered


def move(items: models.QuerySet[M], pk: int, offset: int) -> tuple[int, int] | None:
    """Move one item up (-1) or down (+1) among `items`. Returns its (old, new) position,
    or None when it is already at that end."""
    ordered = list(items.order_by("order", "pk"))
    index = next(i for i, item in enumerate(ordered) if item.pk == pk)
    target = index + offset
    if not 0 <= target < len(ordered):
        return None
    ordered[index], ordered[target] = ordered[target], ordered[index]
    for position, item in enumerate(ordered, start=1):
        item.order = position  # type: ignore[attr-defined]
    items.bulk_update(ordered, ["order"])
    return index + 1, target + 1
